// Unit tests for the worker's pure policies (src/server/worker.hpp).
#include "server/worker.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace {

using appserver::Config;
using appserver::server::Worker;
using std::chrono::milliseconds;

TEST(WorkerSweep, OnceASecondWithTheDefaultTimeouts) {
    EXPECT_EQ(Worker::sweep_period(Config{}), milliseconds(1000));
}

TEST(WorkerSweep, AQuarterOfTheShortestTimeoutWhenThatIsLess) {
    // A 1 s keep-alive timeout checked once a second could fire after up to 2 s.
    Config c;
    c.keep_alive_timeout = 1.0;
    EXPECT_EQ(Worker::sweep_period(c), milliseconds(250));
    c = Config{};
    c.header_read_timeout = 2.0;
    EXPECT_EQ(Worker::sweep_period(c), milliseconds(500));
    c = Config{};
    c.write_timeout = 0.4;
    EXPECT_EQ(Worker::sweep_period(c), milliseconds(100));
}

TEST(WorkerSweep, NeverMoreOftenThanEvery50Ms) {
    Config c;
    c.read_timeout = 0.01;
    EXPECT_EQ(Worker::sweep_period(c), milliseconds(50));
}

} // namespace
