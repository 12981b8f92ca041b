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

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

namespace appserver::net {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
    throw std::runtime_error(what + ": " + std::strerror(err));
}

// Fills host/port (TCP) or uds_path (unix) from the socket's own address.
void read_address(ListenSocket& s) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(s.fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) {
        return;
    }
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
        s.port = ntohs(a->sin_port);
        s.host = buf;
    } else if (ss.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
        s.port = ntohs(a->sin6_port);
        s.host = buf;
    } else if (ss.ss_family == AF_UNIX && s.uds_path.empty()) {
        const auto* a = reinterpret_cast<sockaddr_un*>(&ss);
        const std::size_t n = len > offsetof(sockaddr_un, sun_path)
                                  ? len - offsetof(sockaddr_un, sun_path)
                                  : 0;
        if (n > 0 && a->sun_path[0] == '\0') {
            s.uds_path = "@" + std::string(a->sun_path + 1, n - 1); // abstract
        } else {
            s.uds_path = std::string(a->sun_path, ::strnlen(a->sun_path, n));
        }
    }
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

// sd_listen_fds(3) without libsystemd: the descriptors systemd passed to this process.
struct SystemdSockets {
    std::vector<int> fds;
    std::vector<std::string> names; // LISTEN_FDNAMES, when given
};

constexpr int listen_fds_start = 3; // SD_LISTEN_FDS_START

std::string getenv_string(const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr ? value : "";
}

// A non-negative decimal integer, or -1.
long long parse_count(const std::string& text) {
    if (text.empty() || text.size() > 18 ||
        text.find_first_not_of("0123456789") != std::string::npos) {
        return -1;
    }
    return std::stoll(text);
}

SystemdSockets take_systemd_sockets() {
    const std::string fds_text = getenv_string("LISTEN_FDS");
    const std::string pid_text = getenv_string("LISTEN_PID");
    const std::string names_text = getenv_string("LISTEN_FDNAMES");
    // Whoever they were meant for, they must not reach the app or what it starts: a child
    // would not take them (LISTEN_PID is not its pid), but the variables would be noise.
    for (const char* name : socket_activation_variables) {
        ::unsetenv(name);
    }
    SystemdSockets out;
    if (fds_text.empty()) {
        return out; // no socket activation (an empty variable counts as unset)
    }
    if (pid_text.empty()) {
        spdlog::warn("LISTEN_FDS is set without LISTEN_PID; ignored (not socket activation "
                     "for this process)");
        return out;
    }
    const long long pid = parse_count(pid_text);
    if (pid <= 0) {
        throw std::runtime_error("LISTEN_PID='" + pid_text + "' is not a process id");
    }
    if (pid != ::getpid()) {
        spdlog::debug("LISTEN_PID={} is not this process ({}); LISTEN_FDS ignored", pid,
                      ::getpid());
        return out;
    }
    const long long count = parse_count(fds_text);
    if (count < 0 || count > std::numeric_limits<int>::max() - listen_fds_start) {
        throw std::runtime_error("LISTEN_FDS='" + fds_text + "' is not a number of descriptors");
    }
    for (int i = 0; i < static_cast<int>(count); ++i) {
        const int fd = listen_fds_start + i;
        // As sd_listen_fds does: none of them leaks into what the app executes.
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags >= 0) {
            ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
        out.fds.push_back(fd);
    }
    std::size_t start = 0;
    while (!names_text.empty() && start <= names_text.size()) {
        const std::size_t colon = std::min(names_text.find(':', start), names_text.size());
        out.names.push_back(names_text.substr(start, colon - start));
        start = colon + 1;
    }
    return out;
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
    read_address(s);
    return s;
}

} // namespace

std::string ListenSocket::address() const {
    if (family == AF_UNIX) {
        return "unix:" + (uds_path.empty() ? std::string("(unnamed)") : uds_path);
    }
    if (family == AF_INET6) {
        return "http://[" + host + "]:" + std::to_string(port);
    }
    return "http://" + host + ":" + std::to_string(port);
}

std::string ListenSocket::url() const {
    return inherited() ? address() + " (" + origin + ")" : address();
}

ListenSocket adopt_listener(int fd, const std::string& origin) {
    const std::string which = origin + ": fd " + std::to_string(fd);
    if (::fcntl(fd, F_GETFD) < 0) {
        throw std::runtime_error(which + " is not an open descriptor");
    }
    auto option = [&](int name, const char* label) {
        int value = 0;
        socklen_t len = sizeof value;
        if (::getsockopt(fd, SOL_SOCKET, name, &value, &len) < 0) {
            const int err = errno;
            if (err == ENOTSOCK) {
                throw std::runtime_error(which + " is not a socket");
            }
            fail(which + ": cannot read " + label, err);
        }
        return value;
    };
    const int domain = option(SO_DOMAIN, "SO_DOMAIN");
    const int type = option(SO_TYPE, "SO_TYPE");
    const bool listening = option(SO_ACCEPTCONN, "SO_ACCEPTCONN") != 0;
    if (domain != AF_INET && domain != AF_INET6 && domain != AF_UNIX) {
        throw std::runtime_error(which + " is not a TCP or unix socket (address family " +
                                 std::to_string(domain) + ")");
    }
    if (type != SOCK_STREAM) {
        throw std::runtime_error(which + " is not a stream socket (a datagram socket?)");
    }
    if (!listening) {
        // systemd's Accept=yes passes one connected socket per connection.
        throw std::runtime_error(which + " is a socket that is not listening (listen() was not "
                                 "called on it" +
                                 std::string(origin == "systemd" ? "; Accept=yes?" : "") + ")");
    }
    ListenSocket s;
    s.family = domain;
    s.origin = "socket fd " + std::to_string(fd) + " from " + origin;
    s.fd = fd;
    if (fd <= STDERR_FILENO) {
        // Standard input as the socket (inetd style, systemd's StandardInput=socket): move
        // it out of the way, so that fd 0 (1, 2) stays open for what the app starts, on
        // /dev/null, and --debug's stdin check sees no socket.
        const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        if (moved < 0) {
            fail(which + ": cannot duplicate it", errno);
        }
        const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            ::dup2(null, fd); // dup2 clears close-on-exec on fd
            ::close(null);
        }
        s.fd = moved;
    }
    read_address(s);
    // Close-on-exec (a flag of this descriptor): what the app executes does not get it.
    // Non-blocking, for the workers' event loops: a flag of the open socket, so shared with
    // whoever else holds it (a supervisor that only hands it over does not notice).
    ::fcntl(s.fd, F_SETFD, ::fcntl(s.fd, F_GETFD) | FD_CLOEXEC);
    ::fcntl(s.fd, F_SETFL, ::fcntl(s.fd, F_GETFL) | O_NONBLOCK);
    return s;
}

std::optional<ListenSocket> take_inherited_listener(const Config& config) {
    const SystemdSockets systemd = take_systemd_sockets();
    if (!systemd.fds.empty()) {
        if (config.listen_fd >= 0) {
            throw UsageError("--fd " + std::to_string(config.listen_fd) +
                             " and systemd's LISTEN_FDS both give the listening socket; use "
                             "one of them");
        }
        if (!config.uds.empty()) {
            throw UsageError("--uds and systemd's LISTEN_FDS both give the listening socket; "
                             "use one of them");
        }
        // Multi-socket serving is later work: the first one, and no descriptor left open
        // for nothing (systemd keeps its own copies).
        for (std::size_t i = 1; i < systemd.fds.size(); ++i) {
            const std::string name = i < systemd.names.size() ? systemd.names[i] : "";
            spdlog::warn("systemd passed {} sockets (LISTEN_FDS); only the first (fd {}) is "
                         "served, fd {}{} is ignored and closed",
                         systemd.fds.size(), systemd.fds.front(), systemd.fds[i],
                         name.empty() || name == "unknown" ? "" : " (" + name + ")");
            ::close(systemd.fds[i]);
        }
        return adopt_listener(systemd.fds.front(), "systemd");
    }
    if (config.listen_fd >= 0) {
        if (!config.uds.empty()) {
            throw UsageError("--fd and --uds both give the listening socket; use one of them");
        }
        return adopt_listener(config.listen_fd, "--fd");
    }
    return std::nullopt;
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
    if (remove_path && !sock.inherited() && sock.family == AF_UNIX && !sock.uds_path.empty() &&
        sock.uds_inode != 0) {
        // Only the file we bound: another server may have taken the path since.
        struct stat st{};
        if (::lstat(sock.uds_path.c_str(), &st) == 0 && st.st_ino == sock.uds_inode) {
            ::unlink(sock.uds_path.c_str());
        }
    }
}

} // namespace appserver::net
