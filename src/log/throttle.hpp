// Rate limiting for log lines a client can cause (bad requests, timeouts, refusals): an
// attacker or a broken client must not be able to flood the log, yet the first lines of a
// burst are kept whole, and what was left out is counted and reported.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace appserver::log {

class Throttle {
public:
    using clock = std::chrono::steady_clock;

    Throttle(unsigned lines_per_window, clock::duration window)
        : limit_(lines_per_window), window_(window) {}

    // Whether a line may be written now; if not, it is counted as left out.
    bool allow(clock::time_point now = clock::now()) {
        std::lock_guard lock(mutex_);
        roll(now);
        if (written_ < limit_) {
            ++written_;
            return true;
        }
        ++left_out_;
        return false;
    }

    // How many lines were left out since the last report, at most once per window
    // (then 0 again). Called periodically, so both a burst's tail and a steady flood
    // get reported.
    std::uint64_t take_left_out(clock::time_point now = clock::now()) {
        std::lock_guard lock(mutex_);
        if (left_out_ == 0 || now - last_report_ < window_) {
            return 0;
        }
        last_report_ = now;
        const std::uint64_t n = left_out_;
        left_out_ = 0;
        return n;
    }

    // Everything left out so far, window over or not (at shutdown).
    std::uint64_t take_all_left_out() {
        std::lock_guard lock(mutex_);
        const std::uint64_t n = left_out_;
        left_out_ = 0;
        return n;
    }

private:
    void roll(clock::time_point now) {
        if (now - window_start_ >= window_) {
            window_start_ = now;
            written_ = 0;
        }
    }

    const unsigned limit_;
    const clock::duration window_;
    std::mutex mutex_;
    clock::time_point window_start_{};
    clock::time_point last_report_{};
    unsigned written_ = 0;
    std::uint64_t left_out_ = 0;
};

} // namespace appserver::log
