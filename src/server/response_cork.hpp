// Finished small responses of one blocking thread, held back briefly so that they are
// written in a burst rather than one at a time.
//
// Why: a response written on its own usually finds its client asleep, and the write pays
// for waking it (on loopback the kernel even runs the client's receive path and wake-up
// in the writer's context: about a fifth of a worker's CPU on the json benchmark). When
// a thread is busy with a queue of requests, the responses it finishes one after another
// can wait for each other a few tens of microseconds and go out back to back: the first
// write wakes the client, the next ones find it already running. It is the same trade as
// TCP autocorking, bounded three ways:
//   - only while requests are waiting in the queue (an idle server writes at once) and
//     only for apps whose recent requests were fast (max_app_time; a slow app gains
//     nothing and its responses would wait the longest);
//   - the owner thread writes what it holds when the queue runs dry, when it holds
//     max_held responses, or before starting another request once the oldest waited
//     soft_hold;
//   - the event loop writes whatever a thread still holds after hard_hold, so a response
//     never waits for a slow request that happens to come next.
// The owner thread and the loop share the held list under a mutex the owner takes twice
// per held response (uncontended: the loop only looks once a millisecond while holding
// is going on).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace appserver::server {

class Connection;

class ResponseCork {
public:
    using clock = std::chrono::steady_clock;

    static constexpr std::size_t max_held = 8;
    static constexpr std::size_t max_bytes = 64 * 1024; // per response
    static constexpr auto soft_hold = std::chrono::microseconds(500);
    static constexpr auto hard_hold = std::chrono::milliseconds(1);
    static constexpr auto max_app_time = std::chrono::microseconds(250);

    struct Held {
        std::shared_ptr<Connection> connection;
        std::string bytes; // the complete final write of its response
    };

    // ---- owner thread ------------------------------------------------------------------
    // Where the exchange puts the final write of the response being made (then hold()).
    std::string& staging() { return staging_; }
    // The staged bytes belong to this connection's finished exchange; keep them.
    void hold(std::shared_ptr<Connection> connection);
    std::size_t held() const { return count_.load(std::memory_order_relaxed); }
    // The same, ordered with the loop's store of its "watching" flag (Worker::cork_tick).
    std::size_t held_ordered() const { return count_.load(std::memory_order_seq_cst); }
    // When the oldest held response was held (valid while held() > 0).
    clock::time_point oldest() const;

    // ---- owner thread or event loop ----------------------------------------------------
    // Moves everything held into out (empty when nothing is). The loop passes
    // older_than: it takes nothing while the owner holds the lock or the oldest response
    // is younger than that.
    void take(std::vector<Held>& out);
    bool take_stale(clock::time_point older_than, std::vector<Held>& out);
    // Gives written entries' buffers back for reuse (no allocation per response).
    void recycle(std::vector<Held>& done);

private:
    mutable std::mutex mutex_;
    std::vector<Held> held_;          // guarded by mutex_
    std::vector<std::string> spare_;  // guarded by mutex_
    clock::time_point oldest_{};      // guarded by mutex_
    std::atomic<std::size_t> count_{0};
    std::atomic<clock::rep> oldest_ticks_{0};
    std::string staging_; // owner only
};

} // namespace appserver::server
