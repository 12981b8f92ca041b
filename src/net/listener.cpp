// Binding the listening socket (see listener.hpp).
#include "net/listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace appserver::net {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
    throw std::runtime_error(what + ": " + std::strerror(err));
}

ListenSocket bind_unix(const Config& config) {
    ListenSocket s;
    s.family = AF_UNIX;
    s.uds_path = config.uds;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (config.uds.size() >= sizeof addr.sun_path) {
        throw std::runtime_error("--uds: path too long for a unix socket: " + config.uds);
    }
    std::memcpy(addr.sun_path, config.uds.c_str(), config.uds.size() + 1);
    // A socket file left by a previous run would make bind fail: remove it, but only if
    // nobody answers on it (a live server keeps its path).
    struct stat st{};
    if (::lstat(config.uds.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            throw std::runtime_error("--uds: " + config.uds + " exists and is not a socket");
        }
        const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const bool live =
            probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
        if (probe >= 0) {
            ::close(probe);
        }
        if (live) {
            throw std::runtime_error("--uds: another server is listening on " + config.uds);
        }
        ::unlink(config.uds.c_str());
    }
    s.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s.fd < 0) {
        fail("socket", errno);
    }
    if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        const int err = errno;
        ::close(s.fd);
        fail("cannot bind unix socket " + config.uds, err);
    }
    if (!config.uds_permissions.empty() &&
        ::chmod(config.uds.c_str(),
                static_cast<mode_t>(std::stoul(config.uds_permissions, nullptr, 8))) < 0) {
        const int err = errno;
        ::close(s.fd);
        ::unlink(config.uds.c_str());
        fail("cannot set --uds-permissions on " + config.uds, err);
    }
    if (::stat(config.uds.c_str(), &st) == 0) {
        s.uds_inode = st.st_ino;
    }
    return s;
}

// "[::1]" (the URI form of an IPv6 address) is "::1" to getaddrinfo.
std::string bare_host(const std::string& host) {
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        return host.substr(1, host.size() - 2);
    }
    return host;
}

addrinfo* resolve(const Config& config) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string host = bare_host(config.host);
    const std::string port = std::to_string(config.port);
    const int gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
    if (gai != 0) {
        std::string hint;
        if (host.find(':') != std::string::npos && host.find("::") == std::string::npos &&
            std::count(host.begin(), host.end(), ':') == 1) {
            hint = " (the port goes in --port)";
        }
        throw std::runtime_error("--host: cannot resolve '" + config.host +
                                 "': " + ::gai_strerror(gai) + hint);
    }
    return res;
}

ListenSocket bind_tcp(const Config& config) {
    addrinfo* res = resolve(config);
    const std::string port = std::to_string(config.port);
    int last_err = 0;
    ListenSocket s;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_err = errno;
            continue;
        }
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6) {
            ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        }
        if (::bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            last_err = errno;
            ::close(fd);
            continue;
        }
        s.fd = fd;
        s.family = ai->ai_family;
        break;
    }
    ::freeaddrinfo(res);
    if (s.fd < 0) {
        const std::string host = bare_host(config.host);
        fail("cannot bind " + (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                 ":" + port,
             last_err);
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&ss), &len);
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
        s.port = ntohs(a->sin_port);
    } else {
        const auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
        s.port = ntohs(a->sin6_port);
    }
    s.host = buf;
    return s;
}

} // namespace

std::string ListenSocket::url() const {
    if (family == AF_UNIX) {
        return "unix:" + uds_path;
    }
    if (family == AF_INET6) {
        return "http://[" + host + "]:" + std::to_string(port);
    }
    return "http://" + host + ":" + std::to_string(port);
}

void check_address(const Config& config) {
    if (config.uds.empty()) {
        ::freeaddrinfo(resolve(config));
    }
}

ListenSocket bind_listener(const Config& config) {
    ListenSocket s = config.uds.empty() ? bind_tcp(config) : bind_unix(config);
    if (::listen(s.fd, config.backlog) < 0) {
        const int err = errno;
        close_listener(s, true);
        fail("listen", err);
    }
    // Workers accept from an event loop: the socket must never block.
    ::fcntl(s.fd, F_SETFL, ::fcntl(s.fd, F_GETFL) | O_NONBLOCK);
    return s;
}

void close_listener(ListenSocket& sock, bool remove_path) {
    if (sock.fd >= 0) {
        ::close(sock.fd);
        sock.fd = -1;
    }
    if (remove_path && sock.family == AF_UNIX && !sock.uds_path.empty()) {
        // Only the file we bound: another server may have taken the path since.
        struct stat st{};
        if (::lstat(sock.uds_path.c_str(), &st) == 0 && st.st_ino == sock.uds_inode) {
            ::unlink(sock.uds_path.c_str());
        }
    }
}

} // namespace appserver::net
