// Unit tests for peers' listening addresses (src/cli/address.hpp).
#include "cli/address.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using appserver::cli::ListenAddress;
using Kind = ListenAddress::Kind;

ListenAddress bind_ok(const char* text) {
    ListenAddress out;
    std::string error;
    EXPECT_TRUE(appserver::cli::parse_bind_address(text, out, error)) << text << ": " << error;
    return out;
}

std::string bind_error(const char* text) {
    ListenAddress out;
    std::string error;
    EXPECT_FALSE(appserver::cli::parse_bind_address(text, out, error)) << text;
    return error;
}

ListenAddress uwsgi_ok(const char* text) {
    ListenAddress out;
    std::string error;
    EXPECT_TRUE(appserver::cli::parse_uwsgi_address(text, out, error)) << text << ": " << error;
    return out;
}

std::string uwsgi_error(const char* text) {
    ListenAddress out;
    std::string error;
    EXPECT_FALSE(appserver::cli::parse_uwsgi_address(text, out, error)) << text;
    return error;
}

TEST(BindAddress, HostAndPort) {
    auto a = bind_ok("127.0.0.1:8000");
    EXPECT_EQ(a.kind, Kind::tcp);
    EXPECT_EQ(a.host, "127.0.0.1");
    EXPECT_EQ(a.port, "8000");
    a = bind_ok("localhost");
    EXPECT_EQ(a.host, "localhost");
    EXPECT_EQ(a.port, "");
    a = bind_ok(":8000");
    EXPECT_EQ(a.host, "0.0.0.0");
    EXPECT_EQ(a.port, "8000");
    a = bind_ok("[::1]:8000");
    EXPECT_EQ(a.host, "::1");
    EXPECT_EQ(a.port, "8000");
    a = bind_ok("[fe80::1%eth0]");
    EXPECT_EQ(a.host, "fe80::1%eth0");
    EXPECT_EQ(a.port, "");
    a = bind_ok("tcp://0.0.0.0:80");
    EXPECT_EQ(a.host, "0.0.0.0");
    EXPECT_EQ(a.port, "80");
}

TEST(BindAddress, UnixSocketsAndDescriptors) {
    auto a = bind_ok("unix:/run/app.sock");
    EXPECT_EQ(a.kind, Kind::unix_socket);
    EXPECT_EQ(a.path, "/run/app.sock");
    EXPECT_EQ(bind_ok("unix:///run/app.sock").path, "/run/app.sock");
    EXPECT_EQ(bind_ok("unix:relative.sock").path, "relative.sock");
    a = bind_ok("fd://3");
    EXPECT_EQ(a.kind, Kind::fd);
    EXPECT_EQ(a.fd, "3");
}

TEST(BindAddress, Errors) {
    EXPECT_EQ(bind_error(""), "must not be empty");
    EXPECT_EQ(bind_error("::1"), "looks like an IPv6 address: put it in brackets, e.g. [::1]:8000");
    EXPECT_EQ(bind_error("[::1"), "has a '[' without its ']'");
    EXPECT_EQ(bind_error("[]:80"), "has an empty IPv6 address in brackets");
    EXPECT_EQ(bind_error("[::1]80"), "has something other than ':PORT' after the ']'");
    EXPECT_EQ(bind_error("host:"), "has a port that is not a number");
    EXPECT_EQ(bind_error("host:http"), "has a port that is not a number");
    EXPECT_EQ(bind_error("unix:"), "has no socket path after 'unix:'");
    EXPECT_EQ(bind_error("fd://"), "has a descriptor that is not a number after 'fd://'");
    EXPECT_EQ(bind_error("tcp://"), "has no address");
}

TEST(UwsgiAddress, ColonMeansTcpAndNoColonASocketPath) {
    auto a = uwsgi_ok(":8000");
    EXPECT_EQ(a.kind, Kind::tcp);
    EXPECT_EQ(a.host, "0.0.0.0");
    EXPECT_EQ(a.port, "8000");
    a = uwsgi_ok("127.0.0.1:3031");
    EXPECT_EQ(a.host, "127.0.0.1");
    a = uwsgi_ok("[::]:80");
    EXPECT_EQ(a.host, "::");
    a = uwsgi_ok("/run/app.sock");
    EXPECT_EQ(a.kind, Kind::unix_socket);
    EXPECT_EQ(a.path, "/run/app.sock");
    EXPECT_EQ(uwsgi_ok("app.sock").path, "app.sock");
}

TEST(UwsgiAddress, Errors) {
    EXPECT_EQ(uwsgi_error(""), "must not be empty");
    EXPECT_EQ(uwsgi_error("@app"), "is an abstract unix socket, which appserver does not bind");
    EXPECT_EQ(uwsgi_error("=0"), "refers to a shared socket, which appserver does not have");
    EXPECT_EQ(uwsgi_error("[::1]"), "has no port");
    EXPECT_EQ(uwsgi_error("host:x"), "has a port that is not a number");
}

} // namespace
