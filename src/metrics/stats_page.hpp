// Counters shared between the workers (writers) and the master's metrics endpoint
// (reader): one anonymous MAP_SHARED region, mapped by the master before the first fork,
// with one cache-line-aligned slot per worker slot. Workers update plain relaxed atomics
// (no locks, no system calls); the scrape reads them as they are now. When a worker is
// replaced, the master folds its cumulative values into its own per-slot totals before
// the slot is reused, so no counter goes backwards.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace appserver::metrics {

// ---- fixed label sets -------------------------------------------------------------------

// appserver_requests_total{method}: a fixed set, so a client cannot create series.
inline constexpr std::array<std::string_view, 10> method_labels{
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"};
std::size_t method_index(std::string_view method);

// appserver_requests_total{code}: 1xx..5xx.
inline constexpr std::array<std::string_view, 5> code_labels{"1xx", "2xx", "3xx", "4xx", "5xx"};
// Index into code_labels; status outside 100..599 counts as 5xx.
std::size_t code_index(int status);

// appserver_connections_closed_total{reason}.
enum class CloseReason : std::size_t {
    client,             // the client closed or reset the connection
    keep_alive_timeout, // idle past --keep-alive-timeout
    read_timeout,       // request head or body too slow (408)
    write_timeout,      // the client took no response bytes for --write-timeout
    bad_request,        // the parser refused the request (4xx)
    overload,           // 503: request queue full or request expired in it
    response,           // the response ended the connection (Connection: close, HTTP/1.0,
                        // a body the app left unread, an app error mid-body)
    shutdown,           // the server is stopping
    error,              // a socket error on the server's side
    connection_limit,   // idle, closed to make room under --max-connections
    count_
};
inline constexpr std::array<std::string_view, static_cast<std::size_t>(CloseReason::count_)>
    close_reason_labels{"client",      "keep_alive_timeout", "read_timeout",
                        "write_timeout", "bad_request",      "overload",
                        "response",    "shutdown",           "error",
                        "connection_limit"};

// appserver_worker_restarts_total{reason}: why the master started a worker again.
enum class RestartReason : std::size_t {
    crash,        // died (signal, non-zero exit) after it was serving
    boot_failure, // died before it was ready
    exit,         // exited with status 0 by itself
    max_requests, // recycled: --max-requests
    lifetime,     // recycled: --workers-lifetime
    max_rss,      // recycled: --workers-max-rss
    reload,       // replaced by a reload (SIGHUP)
    request_timeout, // replaced around a thread stuck past --request-timeout
    count_
};
inline constexpr std::array<std::string_view, static_cast<std::size_t>(RestartReason::count_)>
    restart_reason_labels{"crash",    "boot_failure", "exit",   "max_requests",
                          "lifetime", "max_rss",      "reload", "request_timeout"};

// ---- histogram bucket bounds (seconds; +Inf is implicit) ---------------------------------

inline constexpr std::array<double, 16> request_duration_bounds{
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0};
inline constexpr std::array<double, 16> queue_wait_bounds{
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
inline constexpr std::array<double, 12> loop_lag_bounds{
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};

// ---- the flat array of cumulative values in a slot ---------------------------------------
// Everything that only grows lives in one array of atomics, so folding a retired worker
// into the master's totals is an element-wise sum. Offsets below name the ranges.
namespace idx {
inline constexpr std::size_t connections_accepted = 0;
inline constexpr std::size_t connections_closed = 1; // + CloseReason
inline constexpr std::size_t requests = connections_closed + close_reason_labels.size();
// requests + method * code_labels.size() + code
inline constexpr std::size_t request_body_bytes =
    requests + method_labels.size() * code_labels.size();
inline constexpr std::size_t response_body_bytes = request_body_bytes + 1;
inline constexpr std::size_t queue_rejected = response_body_bytes + 1;
inline constexpr std::size_t queue_expired = queue_rejected + 1;
inline constexpr std::size_t queue_abandoned = queue_expired + 1;
inline constexpr std::size_t loop_busy_ns = queue_abandoned + 1;
inline constexpr std::size_t access_log_dropped = loop_busy_ns + 1;
inline constexpr std::size_t log_dropped = access_log_dropped + 1;
// Histograms: one count per bucket (not cumulative; the last is +Inf), then the sum in ns.
inline constexpr std::size_t request_duration = log_dropped + 1;
inline constexpr std::size_t queue_wait = request_duration + request_duration_bounds.size() + 2;
inline constexpr std::size_t loop_lag = queue_wait + queue_wait_bounds.size() + 2;
inline constexpr std::size_t count = loop_lag + loop_lag_bounds.size() + 2;
} // namespace idx

using Cumulative = std::array<std::uint64_t, idx::count>;

// One line per blocking thread: written only by that thread.
struct alignas(64) ThreadLine {
    std::atomic<std::uint64_t> busy{0};        // 1 while it runs a request
    std::atomic<std::uint64_t> gil_wait_ns{0}; // time spent waiting to enter the app
};

// One worker's slot. Gauges describe the worker running now (zeroed when it is replaced);
// `cumulative` only grows. Unless noted, a value has one writer: the worker's event-loop
// thread, which updates it with a relaxed load + store (no locked instruction).
struct alignas(64) WorkerSlot {
    // Lifecycle: pid written by the master at fork; ready by the worker once it serves.
    std::atomic<std::int32_t> pid{0};
    std::atomic<std::uint32_t> ready{0};
    // Which worker (the `worker` label, 0..--workers-1) this process is. A replacement runs
    // in a slot of its own beside its predecessor; both count towards the same worker.
    // Written by the master before the fork.
    std::atomic<std::uint32_t> position{0};
    // Set by the worker when it wants to be replaced: 1 --max-requests reached, 2 a thread
    // stuck past --request-timeout was written off.
    std::atomic<std::uint32_t> recycle{0};
    // Gauges.
    std::atomic<std::uint64_t> queue_depth{0};    // written under the backlog's lock
    std::atomic<std::uint64_t> queue_capacity{0};
    std::atomic<std::uint64_t> blocking_threads{0};
    std::atomic<std::uint64_t> connections_open{0};
    std::atomic<std::uint64_t> loop_busy_ppm{0};  // share of the last second, parts per million
    alignas(64) std::array<std::atomic<std::uint64_t>, idx::count> cumulative{};
    // Followed in the region by `threads` ThreadLines (see StatsPage::thread_line).
};

// Single-writer increment: no locked instruction. Only for values with one writer.
inline void bump(std::atomic<std::uint64_t>& v, std::uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// A duration as the histograms take it: nanoseconds, a negative one (clock skew between
// threads' reads) as 0.
inline std::uint64_t to_ns(std::chrono::steady_clock::duration d) {
    return d.count() <= 0 ? 0
                          : static_cast<std::uint64_t>(
                                std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

// Records one observation (ns) into the histogram that starts at cumulative[base].
template <std::size_t N>
void observe(WorkerSlot& slot, std::size_t base, const std::array<double, N>& bounds,
             std::uint64_t ns) {
    std::size_t i = 0;
    const double s = static_cast<double>(ns) * 1e-9;
    while (i < N && s > bounds[i]) {
        ++i;
    }
    bump(slot.cumulative[base + i]);
    bump(slot.cumulative[base + N + 1], ns);
}

// The region: mapped once by the master, inherited by every worker. It lives in a memfd,
// so a master that re-executes itself (a reload with the app imported in the master)
// maps the same counters again: nothing is lost, nothing counts twice.
class StatsPage {
public:
    // Room for `slots` workers (more than --workers, so resizing and rolling reloads can
    // add workers without remapping), each with `threads` thread lines.
    StatsPage(std::size_t slots, std::size_t threads);
    // Maps the region of a previous master image (its fd, inherited across exec); throws
    // when it is not one.
    explicit StatsPage(int fd);
    ~StatsPage();
    StatsPage(const StatsPage&) = delete;
    StatsPage& operator=(const StatsPage&) = delete;

    std::size_t slots() const { return slots_; }
    // The memfd behind the region (close-on-exec; the master clears that to hand it on).
    int fd() const { return fd_; }
    std::size_t threads() const { return threads_; }
    WorkerSlot& slot(std::size_t i);
    ThreadLine& thread_line(std::size_t slot, std::size_t thread);
    // Read-only views for the scrape (the exposition holds a const StatsPage*).
    const WorkerSlot& slot(std::size_t i) const;
    const ThreadLine& thread_line(std::size_t slot, std::size_t thread) const;

    // ---- master only -----------------------------------------------------------------
    // The worker in slot i is gone (reaped): add its cumulative values to the retired
    // totals of its position (the worker number) and zero the slot for its successor.
    // Under mutex(), so a scrape never sees a value twice or not at all.
    void retire(std::size_t i);
    // The readers below take no lock (a scrape calls them all under one hold of mutex()):
    // hold mutex() when another thread may retire() or add to the totals at the same time.
    // The writers (retire, add_retired_cpu, note_restart) lock it themselves. To keep
    // appserver_worker_cpu_seconds_total from dipping, call add_retired_cpu(i, ...) before
    // retire(i): until retire() clears the pid the scrape adds the live /proc figure, which
    // is gone once the process is reaped.
    // Cumulative values of worker position p as a scrape reports them: retired + live
    // (every slot whose position is p). Positions start out equal to slot indexes.
    Cumulative totals(std::size_t p) const;
    std::uint64_t gil_wait_ns(std::size_t p) const; // retired + live threads
    // CPU time (user + system, ns) of the gone workers of slot i's position (wait4's
    // rusage), so appserver_worker_cpu_seconds_total survives a replacement.
    void add_retired_cpu(std::size_t i, std::uint64_t ns);
    std::uint64_t retired_cpu_ns(std::size_t p) const;
    // The position slot i counts towards.
    std::size_t position_of(std::size_t i) const;
    void note_restart(RestartReason reason);
    std::uint64_t restarts(RestartReason reason) const;
    // How many workers the server runs now (--workers, changed by SIGTTIN/SIGTTOU);
    // positions 0..positions()-1 are reported. 0 until the master sets it.
    void set_positions(std::size_t n);
    std::size_t positions() const;
    // Held by retire() and by the scrape while it reads.
    std::mutex& mutex() const { return mutex_; }

private:
    struct Header;
    struct Retired;
    void map(bool create);

    std::size_t slots_ = 0;
    std::size_t threads_ = 0;
    std::size_t stride_ = 0;
    std::size_t slots_offset_ = 0;
    std::size_t bytes_ = 0;
    int fd_ = -1;
    unsigned char* base_ = nullptr;
    Header* header_ = nullptr;
    Retired* retired_ = nullptr; // per position; written by the master only
    mutable std::mutex mutex_;
};

} // namespace appserver::metrics
