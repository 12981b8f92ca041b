// Unit tests for the held-response list of a blocking thread (src/server/response_cork.hpp):
// order, the loop's staleness rule, buffer reuse. Connections are left null: the list only
// carries them.
#include "server/response_cork.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using appserver::server::ResponseCork;

void hold(ResponseCork& cork, const std::string& bytes) {
    cork.staging().append(bytes);
    cork.hold(nullptr);
}

TEST(ResponseCork, KeepsResponsesInOrderAndEmptiesOnTake) {
    ResponseCork cork;
    EXPECT_EQ(cork.held(), 0U);
    hold(cork, "first");
    hold(cork, "second");
    EXPECT_EQ(cork.held(), 2U);
    EXPECT_TRUE(cork.staging().empty()) << "each response starts from an empty staging buffer";
    std::vector<ResponseCork::Held> out;
    cork.take(out);
    ASSERT_EQ(out.size(), 2U);
    EXPECT_EQ(out[0].bytes, "first");
    EXPECT_EQ(out[1].bytes, "second");
    EXPECT_EQ(cork.held(), 0U);
    cork.recycle(out);
    EXPECT_TRUE(out.empty());
    cork.take(out);
    EXPECT_TRUE(out.empty());
}

TEST(ResponseCork, TheLoopTakesOnlyWhatWaitedPastTheBound) {
    ResponseCork cork;
    std::vector<ResponseCork::Held> out;
    EXPECT_FALSE(cork.take_stale(ResponseCork::clock::now(), out)) << "nothing held";
    hold(cork, "a");
    const auto held_at = cork.oldest();
    EXPECT_FALSE(cork.take_stale(held_at - std::chrono::microseconds(1), out))
        << "younger than the bound: the owner thread will write it";
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(cork.held(), 1U);
    hold(cork, "b");
    EXPECT_EQ(cork.oldest(), held_at) << "the age is the oldest response's";
    EXPECT_TRUE(cork.take_stale(held_at, out));
    ASSERT_EQ(out.size(), 2U);
    EXPECT_EQ(cork.held(), 0U);
}

TEST(ResponseCork, BuffersAreReusedNotReallocated) {
    ResponseCork cork;
    hold(cork, std::string(4096, 'x'));
    std::vector<ResponseCork::Held> out;
    cork.take(out);
    const char* buffer = out[0].bytes.data();
    cork.recycle(out);
    hold(cork, "next"); // takes the recycled buffer as its staging for the following one
    EXPECT_EQ(cork.staging().data(), buffer);
    EXPECT_GE(cork.staging().capacity(), 4096U);
}

TEST(ResponseCork, OversizedBuffersAreNotKept) {
    ResponseCork cork;
    hold(cork, std::string(ResponseCork::max_bytes * 2, 'x'));
    std::vector<ResponseCork::Held> out;
    cork.take(out);
    cork.recycle(out);
    hold(cork, "next");
    EXPECT_LT(cork.staging().capacity(), ResponseCork::max_bytes * 2);
}

} // namespace
