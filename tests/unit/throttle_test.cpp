// Unit tests for the log throttle (src/log/throttle.hpp), on a synthetic clock.
#include "log/throttle.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace {

using appserver::log::Throttle;
using std::chrono::milliseconds;
using std::chrono::seconds;

const Throttle::clock::time_point t0 = Throttle::clock::time_point() + std::chrono::hours(1);

TEST(Throttle, KeepsTheFirstLinesOfEachWindow) {
    Throttle t(3, seconds(10));
    EXPECT_TRUE(t.allow(t0));
    EXPECT_TRUE(t.allow(t0 + milliseconds(1)));
    EXPECT_TRUE(t.allow(t0 + milliseconds(2)));
    EXPECT_FALSE(t.allow(t0 + milliseconds(3)));
    EXPECT_TRUE(t.allow(t0 + seconds(10))); // a new window
}

TEST(Throttle, ReportsABurstsTailOnceEvenIfNothingFollows) {
    Throttle t(1, seconds(10));
    t.allow(t0);
    t.allow(t0);
    t.allow(t0);
    EXPECT_EQ(t.take_left_out(t0 + seconds(1)), 2U);
    EXPECT_EQ(t.take_left_out(t0 + seconds(20)), 0U); // nothing new
}

TEST(Throttle, ReportsASteadyFloodEveryWindow) {
    // Two lines a second for 30 s, one kept per window: the count must come out while
    // the flood lasts, not only when it stops.
    Throttle t(1, seconds(10));
    std::uint64_t reported = 0;
    int reports = 0;
    for (int s = 0; s < 30; ++s) {
        t.allow(t0 + seconds(s));
        t.allow(t0 + seconds(s) + milliseconds(500));
        if (const auto n = t.take_left_out(t0 + seconds(s) + milliseconds(900)); n > 0) {
            reported += n;
            ++reports;
        }
    }
    EXPECT_GE(reports, 3);
    reported += t.take_all_left_out();
    EXPECT_EQ(reported, 60U - 3U); // one line kept per 10 s window
}

} // namespace
