// Unit tests for the bounded request queue (src/server/backlog.hpp): capacity, order, close
// and many consumers. Threads synchronise on counts and joins, never on sleeps or timings.
#include "server/backlog.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

namespace {

using appserver::server::Backlog;

TEST(Backlog, StartsEmpty) {
    Backlog<int> q(4);
    EXPECT_EQ(q.depth(), 0U);
    EXPECT_EQ(q.capacity(), 4U);
}

TEST(Backlog, CapacityIsRespected) {
    Backlog<int> q(3);
    for (int i = 0; i < 3; ++i) {
        int item = i;
        EXPECT_TRUE(q.try_push(item));
        EXPECT_EQ(q.depth(), static_cast<std::size_t>(i + 1));
    }
    int extra = 42;
    EXPECT_FALSE(q.try_push(extra));
    EXPECT_EQ(extra, 42);
    EXPECT_EQ(q.depth(), 3U);

    int out = -1;
    ASSERT_TRUE(q.pop(out));
    EXPECT_EQ(out, 0);
    EXPECT_EQ(q.depth(), 2U);
    EXPECT_TRUE(q.try_push(extra)); // room again
    EXPECT_EQ(q.depth(), 3U);
}

TEST(Backlog, RejectedItemIsLeftUntouched) {
    Backlog<std::unique_ptr<int>> q(1);
    auto first = std::make_unique<int>(1);
    ASSERT_TRUE(q.try_push(first));
    EXPECT_EQ(first, nullptr); // moved into the queue

    auto second = std::make_unique<int>(2);
    int* const raw = second.get();
    EXPECT_FALSE(q.try_push(second));
    ASSERT_NE(second, nullptr); // the caller still owns it and can answer 503 with it
    EXPECT_EQ(second.get(), raw);
    EXPECT_EQ(*second, 2);
}

TEST(Backlog, ZeroCapacityRejectsEverything) {
    Backlog<int> q(0);
    int item = 7;
    EXPECT_FALSE(q.try_push(item));
    EXPECT_EQ(item, 7);
    EXPECT_EQ(q.depth(), 0U);
}

TEST(Backlog, FifoOrder) {
    Backlog<int> q(100);
    for (int i = 0; i < 100; ++i) {
        int item = i;
        ASSERT_TRUE(q.try_push(item));
    }
    for (int i = 0; i < 100; ++i) {
        int out = -1;
        ASSERT_TRUE(q.pop(out));
        EXPECT_EQ(out, i);
    }
    EXPECT_EQ(q.depth(), 0U);
}

TEST(Backlog, FifoOrderAcrossWrapAround) {
    Backlog<int> q(3);
    int next_in = 0;
    int next_out = 0;
    for (int round = 0; round < 10; ++round) {
        while (q.depth() < q.capacity()) {
            int item = next_in++;
            ASSERT_TRUE(q.try_push(item));
        }
        for (int k = 0; k < 2; ++k) {
            int out = -1;
            ASSERT_TRUE(q.pop(out));
            EXPECT_EQ(out, next_out++);
        }
    }
}

TEST(Backlog, CloseDrainsThenPopReturnsFalse) {
    Backlog<int> q(4);
    for (int i = 0; i < 3; ++i) {
        int item = i;
        ASSERT_TRUE(q.try_push(item));
    }
    q.close();
    int rejected = 9;
    EXPECT_FALSE(q.try_push(rejected)); // closed: no new work
    EXPECT_EQ(rejected, 9);
    int out = -1;
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(q.pop(out)); // what was queued is still served
        EXPECT_EQ(out, i);
    }
    out = -1;
    EXPECT_FALSE(q.pop(out));
    EXPECT_EQ(out, -1);
    EXPECT_FALSE(q.pop(out)); // and stays that way
    EXPECT_EQ(q.depth(), 0U);
}

TEST(Backlog, TryPopNeverBlocks) {
    Backlog<int> q(4);
    int out = -1;
    EXPECT_FALSE(q.try_pop(out)); // empty: returns at once
    EXPECT_EQ(out, -1);
    for (int i = 0; i < 3; ++i) {
        int item = 10 + i;
        ASSERT_TRUE(q.try_push(item));
    }
    ASSERT_TRUE(q.try_pop(out));
    EXPECT_EQ(out, 10);
    EXPECT_EQ(q.depth(), 2U);
    q.close();
    ASSERT_TRUE(q.try_pop(out)); // closed, but queued items are still handed out
    EXPECT_EQ(out, 11);
    ASSERT_TRUE(q.pop(out));
    EXPECT_EQ(out, 12);
    out = -1;
    EXPECT_FALSE(q.try_pop(out));
    EXPECT_EQ(out, -1);
}

TEST(Backlog, CloseWakesBlockedConsumers) {
    Backlog<int> q(4);
    constexpr int consumers = 4;
    std::atomic<int> started{0};
    std::atomic<int> returned_false{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < consumers; ++i) {
        threads.emplace_back([&] {
            started.fetch_add(1);
            int out = 0;
            if (!q.pop(out)) { // blocks: the queue is empty
                returned_false.fetch_add(1);
            }
        });
    }
    while (started.load() < consumers) {
        std::this_thread::yield();
    }
    q.close(); // must wake every sleeper, or the joins below never return
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(returned_false.load(), consumers);
}

TEST(Backlog, BlockedConsumerGetsAPushedItem) {
    Backlog<int> q(4);
    std::atomic<bool> started{false};
    int got = -1;
    bool ok = false;
    std::thread consumer([&] {
        started.store(true);
        ok = q.pop(got);
    });
    while (!started.load()) {
        std::this_thread::yield();
    }
    int item = 5;
    ASSERT_TRUE(q.try_push(item));
    consumer.join();
    EXPECT_TRUE(ok);
    EXPECT_EQ(got, 5);
}

TEST(Backlog, ManyConsumersNoLostOrDuplicatedItems) {
    constexpr int total = 20000;
    constexpr int consumers = 4;
    Backlog<int> q(8);
    std::vector<std::vector<int>> seen(consumers);
    std::vector<std::thread> threads;
    for (int c = 0; c < consumers; ++c) {
        threads.emplace_back([&q, &seen, c] {
            int out = 0;
            while (q.pop(out)) {
                seen[c].push_back(out);
            }
        });
    }
    std::size_t rejected_pushes = 0;
    for (int i = 0; i < total; ++i) {
        int item = i;
        while (!q.try_push(item)) { // full: spin until a consumer makes room
            ++rejected_pushes;
            EXPECT_EQ(item, i);
            std::this_thread::yield();
        }
    }
    q.close();
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(q.depth(), 0U);

    std::vector<int> count(total, 0);
    std::size_t received = 0;
    for (const auto& s : seen) {
        received += s.size();
        // One producer, FIFO queue: each consumer sees its items in increasing order.
        EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
        for (int v : s) {
            ASSERT_GE(v, 0);
            ASSERT_LT(v, total);
            ++count[v];
        }
    }
    EXPECT_EQ(received, static_cast<std::size_t>(total));
    for (int i = 0; i < total; ++i) {
        ASSERT_EQ(count[i], 1) << "item " << i;
    }
    (void)rejected_pushes; // how often the queue was full depends on scheduling
}

TEST(Backlog, ManyProducersAndConsumers) {
    // The worker has one producer, but the queue is a general MPMC queue under one mutex.
    constexpr int producers = 3;
    constexpr int per_producer = 5000;
    constexpr int consumers = 3;
    Backlog<int> q(16);
    std::atomic<long long> sum{0};
    std::atomic<int> popped{0};
    std::vector<std::thread> threads;
    for (int c = 0; c < consumers; ++c) {
        threads.emplace_back([&] {
            int out = 0;
            while (q.pop(out)) {
                sum.fetch_add(out);
                popped.fetch_add(1);
            }
        });
    }
    std::vector<std::thread> producer_threads;
    for (int p = 0; p < producers; ++p) {
        producer_threads.emplace_back([&q, p] {
            for (int i = 1; i <= per_producer; ++i) {
                int item = p * per_producer + i;
                while (!q.try_push(item)) {
                    std::this_thread::yield();
                }
            }
        });
    }
    for (auto& t : producer_threads) {
        t.join();
    }
    q.close();
    for (auto& t : threads) {
        t.join();
    }
    const long long n = static_cast<long long>(producers) * per_producer;
    EXPECT_EQ(popped.load(), n);
    EXPECT_EQ(sum.load(), n * (n + 1) / 2);
}

TEST(Backlog, NoWakeUpWhileConsumersContendForTheSharedResource) {
    Backlog<int> q(4);
    std::atomic<int> contention{0};
    q.set_contention(&contention);
    std::atomic<int> got{-1};
    std::thread consumer([&] {
        int out = 0;
        if (q.pop(out)) {
            got.store(out);
        }
    });
    while (q.sleepers() != 1) {
        std::this_thread::yield(); // until the consumer is asleep in pop()
    }
    contention.store(1); // someone waits for the GIL: a second waiter gains nothing
    int item = 7;
    ASSERT_TRUE(q.try_push(item));
    EXPECT_EQ(q.wakeups(), 0U);
    q.wake_one_if_pending(); // still contended: still no wake-up
    EXPECT_EQ(q.wakeups(), 0U);
    contention.store(0); // the waiter got it: pass the baton to a sleeper
    q.wake_one_if_pending(); // (a spurious wake-up may have beaten us to it: at most one)
    EXPECT_LE(q.wakeups(), 1U);
    consumer.join();
    EXPECT_EQ(got.load(), 7);
}

TEST(Backlog, WakesASleeperWhenUncontended) {
    Backlog<int> q(4);
    std::atomic<int> contention{0};
    q.set_contention(&contention);
    std::thread consumer([&] {
        int out = 0;
        q.pop(out);
    });
    while (q.sleepers() != 1) {
        std::this_thread::yield();
    }
    int item = 1;
    ASSERT_TRUE(q.try_push(item));
    EXPECT_EQ(q.wakeups(), 1U);
    consumer.join();
}

} // namespace
