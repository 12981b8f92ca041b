// Unit tests for the blocking socket helpers (src/net/socket_io.hpp) where their contract
// with the caller's lock matters.
#include "net/socket_io.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include <sys/socket.h>
#include <unistd.h>

namespace {

using appserver::net::BlockingScope;
using appserver::net::IoResult;

class CountingScope final : public BlockingScope {
public:
    void enter() noexcept override {
        ++entered;
        inside = true;
    }
    void leave() noexcept override {
        ++left;
        inside = false;
    }
    int entered = 0;
    int left = 0;
    bool inside = false;
};

// sendfile may read from a cold disk: the caller's lock (the GIL) must be dropped for the
// call itself, not only while waiting for the socket, or every Python thread stalls.
TEST(SocketIo, SendFileDropsTheCallersLockAroundTheCopy) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    std::FILE* file = std::tmpfile();
    ASSERT_NE(file, nullptr);
    const std::string data(4096, 'x'); // fits the socket buffer: no wait at all
    ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), file), data.size());
    std::fflush(file);

    CountingScope scope;
    EXPECT_EQ(appserver::net::send_file(sv[0], ::fileno(file), 0, data.size(), 5.0, scope),
              IoResult::ok);
    EXPECT_GE(scope.entered, 1);
    EXPECT_EQ(scope.entered, scope.left);
    EXPECT_FALSE(scope.inside);

    std::string got(data.size(), '\0');
    std::size_t have = 0;
    while (have < got.size()) {
        const ssize_t n = ::read(sv[1], got.data() + have, got.size() - have);
        ASSERT_GT(n, 0);
        have += static_cast<std::size_t>(n);
    }
    EXPECT_EQ(got, data);
    std::fclose(file);
    ::close(sv[0]);
    ::close(sv[1]);
}

} // namespace
