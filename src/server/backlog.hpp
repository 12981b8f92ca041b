// The bounded queue between a worker's event loop (one producer) and its blocking
// threads (consumers). Full means "answer 503", never "grow".
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace appserver::server {

template <class T>
class Backlog {
public:
    explicit Backlog(std::size_t capacity) : capacity_(capacity) {}

    // Returns false (and leaves item untouched) when the queue is full or closed.
    bool try_push(T& item) {
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            if (closed_ || items_.size() >= capacity_) {
                return false;
            }
            items_.push_back(std::move(item));
            // A consumer that is already running will come back for this item on its
            // own; only pay for a wake-up when someone is actually asleep.
            wake = sleepers_ > 0;
        }
        if (wake) {
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
        return true;
    }

    // Non-blocking pop: false when nothing is queued right now.
    bool try_pop(T& out) {
        std::lock_guard lock(mutex_);
        if (items_.empty()) {
            return false;
        }
        out = std::move(items_.front());
        items_.pop_front();
        return true;
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

private:
    const std::size_t capacity_;
    mutable std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<T> items_;
    std::size_t sleepers_ = 0;
    bool closed_ = false;
};

} // namespace appserver::server
