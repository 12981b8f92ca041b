// The bounded queue between a worker's event loop (one producer) and its blocking
// threads (consumers). Full means "answer 503" (and stop accepting), never "grow".
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>

namespace appserver::server {

template <class T>
class Backlog {
public:
    explicit Backlog(std::size_t capacity) : capacity_(capacity) {}

    // Optional: how many consumers are currently waiting for a shared resource they all
    // need (the GIL). While one is, waking another consumer only adds a second waiter and
    // two context switches; the queued item is taken by a running consumer instead.
    void set_contention(const std::atomic<int>* waiting) { contention_ = waiting; }

    // Optional: a counter (in memory shared with the metrics endpoint) that mirrors the
    // depth, written under the queue's lock so it is never stale for long.
    void mirror_depth(std::atomic<std::uint64_t>* mirror) { mirror_ = mirror; }

    // Returns false (and leaves item untouched) when the queue is full or closed.
    bool try_push(T& item) {
        bool full_after = false;
        return try_push(item, full_after);
    }

    // The same; full_after says whether the queue is full (or closed) after the call.
    bool try_push(T& item, bool& full_after) {
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            if (closed_ || items_.size() >= capacity_) {
                full_after = true;
                return false;
            }
            items_.push_back(std::move(item));
            set_depth();
            full_after = items_.size() >= capacity_;
            // A consumer that is already running will come back for this item on its
            // own; only pay for a wake-up when someone is actually asleep (and would not
            // just queue up behind another consumer for the same resource).
            wake = sleepers_ > 0 && !contended();
        }
        if (wake) {
            wakeups_.fetch_add(1, std::memory_order_relaxed);
            ready_.notify_one();
        }
        return true;
    }

    // Blocks until an item arrives; false once the queue is closed and drained.
    bool pop(T& out) {
        std::unique_lock lock(mutex_);
        while (items_.empty()) {
            if (closed_) {
                return false;
            }
            ++sleepers_;
            ready_.wait(lock);
            --sleepers_;
        }
        out = std::move(items_.front());
        items_.pop_front();
        set_depth();
        return true;
    }

    // A consumer that just got the contended resource passes the baton: if work is queued
    // and someone sleeps, wake one, so consumers keep flowing while the resource is
    // released by the app (a request sleeping or doing I/O without the GIL).
    void wake_one_if_pending() {
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            wake = !items_.empty() && sleepers_ > 0 && !contended();
        }
        if (wake) {
            wakeups_.fetch_add(1, std::memory_order_relaxed);
            ready_.notify_one();
        }
    }

    // Non-blocking pop: false when nothing is queued right now.
    bool try_pop(T& out) {
        std::lock_guard lock(mutex_);
        if (items_.empty()) {
            return false;
        }
        out = std::move(items_.front());
        items_.pop_front();
        set_depth();
        return true;
    }

    // Removes items from the front while expired(item) holds (the oldest first), into
    // out: the producer takes back what waited too long for a consumer.
    template <class Pred, class Out>
    std::size_t take_front_while(Pred expired, Out& out) {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        while (!items_.empty() && expired(items_.front())) {
            out.push_back(std::move(items_.front()));
            items_.pop_front();
            ++n;
        }
        set_depth();
        return n;
    }

    // Consumers finish what is queued, then pop() returns false.
    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        ready_.notify_all();
    }

    std::size_t depth() const {
        std::lock_guard lock(mutex_);
        return items_.size();
    }

    std::size_t capacity() const { return capacity_; }

    // depth() without the lock, for a decision that tolerates a stale answer.
    std::size_t depth_hint() const { return depth_.load(std::memory_order_relaxed); }

    // Consumers asleep in pop() right now, and wake-ups sent so far (metrics, tests).
    std::size_t sleepers() const {
        std::lock_guard lock(mutex_);
        return sleepers_;
    }
    std::uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }

private:
    void set_depth() {
        depth_.store(items_.size(), std::memory_order_relaxed);
        if (mirror_ != nullptr) {
            mirror_->store(items_.size(), std::memory_order_relaxed);
        }
    }

    bool contended() const {
        return contention_ != nullptr && contention_->load(std::memory_order_relaxed) > 0;
    }

    const std::size_t capacity_;
    const std::atomic<int>* contention_ = nullptr;
    mutable std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<T> items_;
    std::size_t sleepers_ = 0;
    bool closed_ = false;
    std::atomic<std::uint64_t> wakeups_{0};
    std::atomic<std::size_t> depth_{0}; // items_.size(), readable without the lock
    std::atomic<std::uint64_t>* mirror_ = nullptr;
};

} // namespace appserver::server
