// Held responses of one blocking thread (see response_cork.hpp).
#include "server/response_cork.hpp"

#include "server/connection.hpp"

namespace appserver::server {

void ResponseCork::hold(std::shared_ptr<Connection> connection) {
    std::string next;
    std::lock_guard lock(mutex_);
    if (held_.empty()) {
        oldest_ = clock::now();
        oldest_ticks_.store(oldest_.time_since_epoch().count(), std::memory_order_relaxed);
    }
    if (!spare_.empty()) {
        next.swap(spare_.back());
        spare_.pop_back();
    }
    held_.push_back(Held{std::move(connection), std::move(staging_)});
    staging_.swap(next);
    staging_.clear();
    count_.store(held_.size(), std::memory_order_seq_cst);
}

ResponseCork::clock::time_point ResponseCork::oldest() const {
    return clock::time_point(clock::duration(oldest_ticks_.load(std::memory_order_relaxed)));
}

void ResponseCork::take(std::vector<Held>& out) {
    std::lock_guard lock(mutex_);
    out.swap(held_);
    held_.clear();
    count_.store(0, std::memory_order_relaxed);
}

bool ResponseCork::take_stale(clock::time_point older_than, std::vector<Held>& out) {
    if (count_.load(std::memory_order_seq_cst) == 0 || oldest() > older_than) {
        return false;
    }
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock() || held_.empty() || oldest_ > older_than) {
        return false;
    }
    out.swap(held_);
    held_.clear();
    count_.store(0, std::memory_order_relaxed);
    return true;
}

void ResponseCork::recycle(std::vector<Held>& done) {
    for (auto& h : done) {
        h.connection.reset(); // outside the lock: this may be the last reference
    }
    std::lock_guard lock(mutex_);
    for (auto& h : done) {
        if (spare_.size() < max_held && h.bytes.capacity() <= max_bytes) {
            h.bytes.clear();
            spare_.push_back(std::move(h.bytes));
        }
    }
    done.clear();
}

} // namespace appserver::server
