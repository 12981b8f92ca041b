// An inherited listening socket (--fd, systemd's LISTEN_FDS): what is taken, what is
// refused, and the protocol's variables. The whole path through a real server is in
// tests/e2e/test_sockets.py.
#include "net/listener.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace {

using appserver::Config;
using appserver::net::adopt_listener;
using appserver::net::close_listener;
using appserver::net::ListenSocket;
using appserver::net::take_inherited_listener;
using appserver::net::UsageError;

int tcp_socket(bool listening, std::uint16_t& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    if (listening) {
        EXPECT_EQ(::listen(fd, 8), 0);
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    return fd;
}

std::string error_of(int fd) {
    try {
        ListenSocket s = adopt_listener(fd, "--fd");
        return "adopted fd " + std::to_string(s.fd);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
}

// Sets the LISTEN_* variables for one test and removes them after it.
class SocketActivationEnv : public ::testing::Test {
protected:
    void TearDown() override {
        for (const char* name : appserver::net::socket_activation_variables) {
            ::unsetenv(name);
        }
    }
    static void set(const char* fds, const std::string& pid) {
        ::setenv("LISTEN_FDS", fds, 1);
        ::setenv("LISTEN_PID", pid.c_str(), 1);
    }
    static bool any_left() {
        for (const char* name : appserver::net::socket_activation_variables) {
            if (std::getenv(name) != nullptr) {
                return true;
            }
        }
        return false;
    }
};

TEST(InheritedListener, TakesAListeningTcpSocketAsItIs) {
    std::uint16_t port = 0;
    const int fd = tcp_socket(true, port);
    ::fcntl(fd, F_SETFD, 0); // as inherited: not close-on-exec, blocking
    ListenSocket s = adopt_listener(fd, "--fd");
    EXPECT_EQ(s.fd, fd);
    EXPECT_EQ(s.family, AF_INET);
    EXPECT_EQ(s.host, "127.0.0.1");
    EXPECT_EQ(s.port, port);
    EXPECT_TRUE(s.inherited());
    EXPECT_EQ(s.address(), "http://127.0.0.1:" + std::to_string(port));
    EXPECT_EQ(s.url(), "http://127.0.0.1:" + std::to_string(port) + " (socket fd " +
                           std::to_string(fd) + " from --fd)");
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    close_listener(s, true);
}

TEST(InheritedListener, AUnixSocketFileIsNeverRemoved) {
    char dir[] = "/tmp/appserver-listener-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/s.sock";
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(fd, 8), 0);
    ListenSocket s = adopt_listener(fd, "systemd");
    EXPECT_EQ(s.family, AF_UNIX);
    EXPECT_EQ(s.uds_path, path);
    EXPECT_EQ(s.url(), "unix:" + path + " (socket fd " + std::to_string(fd) + " from systemd)");
    close_listener(s, true);
    struct stat st{};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << "an inherited socket's file was removed";
    ::unlink(path.c_str());
    ::rmdir(dir);
}

TEST(InheritedListener, RefusesWhatIsNotAListeningStreamSocket) {
    std::uint16_t port = 0;
    const int bound = tcp_socket(false, port);
    EXPECT_EQ(error_of(bound), "--fd: fd " + std::to_string(bound) +
                                   " is a socket that is not listening (listen() was not "
                                   "called on it)");
    ::close(bound);

    const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(error_of(udp), "--fd: fd " + std::to_string(udp) +
                                 " is not a stream socket (a datagram socket?)");
    ::close(udp);

    const int file = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    EXPECT_EQ(error_of(file), "--fd: fd " + std::to_string(file) + " is not a socket");
    ::close(file);

    EXPECT_EQ(error_of(file), "--fd: fd " + std::to_string(file) + " is not an open descriptor");
}

TEST(InheritedListener, FdWithUdsIsAUsageError) {
    Config config;
    config.listen_fd = 5;
    config.uds = "/run/app.sock";
    EXPECT_THROW(take_inherited_listener(config), UsageError);
}

TEST_F(SocketActivationEnv, NothingHandedOverMeansBind) {
    EXPECT_FALSE(take_inherited_listener(Config{}).has_value());
}

TEST_F(SocketActivationEnv, VariablesForAnotherProcessAreIgnoredAndRemoved) {
    set("1", std::to_string(::getpid() + 1));
    ::setenv("LISTEN_FDNAMES", "web", 1);
    EXPECT_FALSE(take_inherited_listener(Config{}).has_value());
    EXPECT_FALSE(any_left());
}

TEST_F(SocketActivationEnv, HalfTheProtocolIsNotActivation) {
    ::setenv("LISTEN_FDS", "1", 1);
    EXPECT_FALSE(take_inherited_listener(Config{}).has_value());
    EXPECT_FALSE(any_left());
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    EXPECT_FALSE(take_inherited_listener(Config{}).has_value());
    EXPECT_FALSE(any_left());
}

TEST_F(SocketActivationEnv, ZeroDescriptorsMeansBind) {
    set("0", std::to_string(::getpid()));
    EXPECT_FALSE(take_inherited_listener(Config{}).has_value());
    EXPECT_FALSE(any_left());
}

TEST_F(SocketActivationEnv, MalformedValuesAreErrors) {
    set("two", std::to_string(::getpid()));
    EXPECT_THROW(take_inherited_listener(Config{}), std::runtime_error);
    EXPECT_FALSE(any_left());
    set("1", "self");
    EXPECT_THROW(take_inherited_listener(Config{}), std::runtime_error);
    EXPECT_FALSE(any_left());
}

TEST_F(SocketActivationEnv, WithFdOrUdsIsAUsageError) {
    // Refused before any descriptor is looked at.
    Config with_fd;
    with_fd.listen_fd = 3;
    set("1", std::to_string(::getpid()));
    EXPECT_THROW(take_inherited_listener(with_fd), UsageError);
    Config with_uds;
    with_uds.uds = "/run/app.sock";
    set("1", std::to_string(::getpid()));
    EXPECT_THROW(take_inherited_listener(with_uds), UsageError);
    EXPECT_FALSE(any_left());
}

} // namespace
