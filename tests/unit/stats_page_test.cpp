// Unit tests for the shared statistics page (src/metrics/stats_page.hpp): layout, label
// indexes, and retire() folding a replaced worker into the totals.
#include "metrics/stats_page.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>

namespace {

using namespace appserver::metrics;

TEST(StatsPage, MethodIndexIsExactAndCaseSensitive) {
    EXPECT_EQ(method_labels[method_index("GET")], "GET");
    EXPECT_EQ(method_labels[method_index("TRACE")], "TRACE");
    EXPECT_EQ(method_labels[method_index("get")], "other");
    EXPECT_EQ(method_labels[method_index("PROPFIND")], "other");
    EXPECT_EQ(method_labels[method_index("")], "other");
    EXPECT_EQ(method_labels[method_index("other")], "other");
}

TEST(StatsPage, CodeIndexByClassAndOutOfRangeIs5xx) {
    EXPECT_EQ(code_labels[code_index(100)], "1xx");
    EXPECT_EQ(code_labels[code_index(204)], "2xx");
    EXPECT_EQ(code_labels[code_index(399)], "3xx");
    EXPECT_EQ(code_labels[code_index(404)], "4xx");
    EXPECT_EQ(code_labels[code_index(599)], "5xx");
    EXPECT_EQ(code_labels[code_index(600)], "5xx");
    EXPECT_EQ(code_labels[code_index(99)], "5xx");
    EXPECT_EQ(code_labels[code_index(0)], "5xx");
}

TEST(StatsPage, SlotsAndThreadLinesAreCacheLineAlignedAndDistinct) {
    StatsPage page(3, 5);
    EXPECT_EQ(page.slots(), 3u);
    EXPECT_EQ(page.threads(), 5u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&page.slot(i)) % 64, 0u);
        for (std::size_t t = 0; t < 5; ++t) {
            auto* line = &page.thread_line(i, t);
            EXPECT_EQ(reinterpret_cast<std::uintptr_t>(line) % 64, 0u);
            // A line lies after its slot and before the next slot.
            EXPECT_GE(reinterpret_cast<const char*>(line),
                      reinterpret_cast<const char*>(&page.slot(i)) + sizeof(WorkerSlot));
            if (i + 1 < 3) {
                EXPECT_LE(reinterpret_cast<const char*>(line) + sizeof(ThreadLine),
                          reinterpret_cast<const char*>(&page.slot(i + 1)));
            }
        }
    }
    // Everything starts at zero.
    EXPECT_EQ(page.slot(2).pid.load(), 0);
    EXPECT_EQ(page.thread_line(2, 4).gil_wait_ns.load(), 0u);
    EXPECT_EQ(page.totals(1)[idx::connections_accepted], 0u);
}

TEST(StatsPage, ObserveCountsOneBucketAndTheSum) {
    StatsPage page(1, 1);
    WorkerSlot& s = page.slot(0);
    observe(s, idx::loop_lag, loop_lag_bounds, 50'000);        // 0.05 ms: the first bucket
    observe(s, idx::loop_lag, loop_lag_bounds, 2'000'000);     // 2 ms: the 2.5 ms bucket
    observe(s, idx::loop_lag, loop_lag_bounds, 5'000'000'000); // 5 s: +Inf
    const Cumulative c = page.totals(0);
    EXPECT_EQ(c[idx::loop_lag + 0], 1u);
    EXPECT_EQ(c[idx::loop_lag + 3], 1u);
    EXPECT_EQ(c[idx::loop_lag + loop_lag_bounds.size()], 1u);
    EXPECT_EQ(c[idx::loop_lag + loop_lag_bounds.size() + 1], 5'002'050'000u);
}

TEST(StatsPage, RetireKeepsTotalsAndClearsTheSlot) {
    StatsPage page(2, 2);
    WorkerSlot& s = page.slot(1);
    s.pid = 1234;
    s.ready = 1;
    s.queue_depth = 3;
    s.queue_capacity = 10;
    s.blocking_threads = 2;
    s.connections_open = 7;
    s.loop_busy_ppm = 500'000;
    bump(s.cumulative[idx::connections_accepted], 5);
    bump(s.cumulative[idx::requests + 7], 2);
    bump(s.cumulative[idx::log_dropped]);
    page.thread_line(1, 0).gil_wait_ns = 100;
    page.thread_line(1, 1).gil_wait_ns = 50;
    page.thread_line(1, 1).busy = 1;

    const Cumulative before = page.totals(1);
    EXPECT_EQ(page.gil_wait_ns(1), 150u);
    page.retire(1);

    // Nothing goes backwards, nothing is counted twice.
    EXPECT_EQ(page.totals(1), before);
    EXPECT_EQ(page.gil_wait_ns(1), 150u);
    // The slot is clean for the next worker.
    EXPECT_EQ(s.pid.load(), 0);
    EXPECT_EQ(s.ready.load(), 0u);
    EXPECT_EQ(s.queue_depth.load(), 0u);
    EXPECT_EQ(s.queue_capacity.load(), 0u);
    EXPECT_EQ(s.blocking_threads.load(), 0u);
    EXPECT_EQ(s.connections_open.load(), 0u);
    EXPECT_EQ(s.loop_busy_ppm.load(), 0u);
    EXPECT_EQ(s.cumulative[idx::connections_accepted].load(), 0u);
    EXPECT_EQ(page.thread_line(1, 0).gil_wait_ns.load(), 0u);
    EXPECT_EQ(page.thread_line(1, 1).busy.load(), 0u);

    // The successor's counts add on top.
    bump(s.cumulative[idx::connections_accepted], 2);
    page.thread_line(1, 0).gil_wait_ns = 10;
    EXPECT_EQ(page.totals(1)[idx::connections_accepted], 7u);
    EXPECT_EQ(page.gil_wait_ns(1), 160u);
    page.retire(1);
    EXPECT_EQ(page.totals(1)[idx::connections_accepted], 7u);
    EXPECT_EQ(page.totals(1)[idx::requests + 7], 2u);
    // The other slot is untouched.
    EXPECT_EQ(page.totals(0)[idx::connections_accepted], 0u);
}

TEST(StatsPage, RetiredCpuAndRestartsAccumulate) {
    StatsPage page(2, 1);
    page.add_retired_cpu(0, 1'500'000'000);
    page.add_retired_cpu(0, 500'000'000);
    EXPECT_EQ(page.retired_cpu_ns(0), 2'000'000'000u);
    EXPECT_EQ(page.retired_cpu_ns(1), 0u);
    page.note_restart(RestartReason::crash);
    page.note_restart(RestartReason::crash);
    page.note_restart(RestartReason::exit);
    EXPECT_EQ(page.restarts(RestartReason::crash), 2u);
    EXPECT_EQ(page.restarts(RestartReason::boot_failure), 0u);
    EXPECT_EQ(page.restarts(RestartReason::exit), 1u);
}

// A forked child writes its slot and exits: the master sees the writes (the region is
// shared, not copied on write), and retire() then keeps them.
TEST(StatsPage, AChildsWritesAreSeenByTheParentAndSurviveRetire) {
    StatsPage page(2, 2);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        WorkerSlot& s = page.slot(1);
        s.ready.store(1);
        s.queue_depth.store(4);
        bump(s.cumulative[idx::connections_accepted], 42);
        observe(s, idx::request_duration, request_duration_bounds, 3'000'000);
        page.thread_line(1, 1).gil_wait_ns.store(777);
        ::_exit(0);
    }
    page.slot(1).pid = pid;
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    EXPECT_EQ(page.slot(1).ready.load(), 1u);
    EXPECT_EQ(page.slot(1).queue_depth.load(), 4u);
    EXPECT_EQ(page.totals(1)[idx::connections_accepted], 42u);
    EXPECT_EQ(page.gil_wait_ns(1), 777u);

    page.retire(1);
    const Cumulative t = page.totals(1);
    EXPECT_EQ(t[idx::connections_accepted], 42u);
    EXPECT_EQ(t[idx::request_duration + 3], 1u); // 3 ms: the 5 ms bucket
    EXPECT_EQ(t[idx::request_duration + request_duration_bounds.size() + 1], 3'000'000u);
    EXPECT_EQ(page.gil_wait_ns(1), 777u);
    EXPECT_EQ(page.slot(1).pid.load(), 0);
    EXPECT_EQ(page.slot(1).queue_depth.load(), 0u);
}

} // namespace
