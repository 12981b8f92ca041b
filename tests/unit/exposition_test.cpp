// Unit tests for the scrape (src/metrics/exposition.hpp) and the master's /metrics
// endpoint (src/metrics/metrics_server.hpp), the latter over a real loopback socket.
#include "metrics/exposition.hpp"
#include "metrics/metrics_server.hpp"

#include <gtest/gtest.h>
#include <prometheus/metric_family.h>
#include <pybind11/embed.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace appserver::metrics;
namespace pm = prometheus;
using namespace std::chrono_literals;

// ---- helpers ----------------------------------------------------------------------------

std::size_t request_index(std::string_view method, int status) {
    return idx::requests + method_index(method) * code_labels.size() + code_index(status);
}

// Slot 0: a live, ready worker (this process stands in for it). Slot 1: a worker that
// died and was retired, nothing running now. Slot 2: past --workers, with old totals.
void fill(StatsPage& page) {
    WorkerSlot& s0 = page.slot(0);
    s0.pid = ::getpid();
    s0.ready = 1;
    s0.queue_depth = 2;
    s0.queue_capacity = 64;
    s0.blocking_threads = 2;
    s0.connections_open = 3;
    s0.loop_busy_ppm = 250'000;
    bump(s0.cumulative[request_index("GET", 200)], 3);
    bump(s0.cumulative[request_index("BREW", 418)], 1);
    bump(s0.cumulative[idx::connections_accepted], 4);
    bump(s0.cumulative[idx::connections_closed + static_cast<std::size_t>(CloseReason::client)]);
    bump(s0.cumulative[idx::request_body_bytes], 100);
    bump(s0.cumulative[idx::response_body_bytes], 2048);
    bump(s0.cumulative[idx::queue_rejected], 5);
    bump(s0.cumulative[idx::loop_busy_ns], 1'500'000'000);
    observe(s0, idx::request_duration, request_duration_bounds, 2'000'000);   // 2 ms
    observe(s0, idx::request_duration, request_duration_bounds, 2'000'000);
    observe(s0, idx::request_duration, request_duration_bounds, 90'000'000'000); // +Inf
    observe(s0, idx::queue_wait, queue_wait_bounds, 300'000);
    observe(s0, idx::loop_lag, loop_lag_bounds, 700'000);
    page.thread_line(0, 0).busy = 1;
    page.thread_line(0, 0).gil_wait_ns = 250'000'000;
    page.thread_line(0, 1).gil_wait_ns = 250'000'000;

    WorkerSlot& s1 = page.slot(1);
    s1.pid = 999'999'999; // not a process: the retire below clears it anyway
    bump(s1.cumulative[request_index("POST", 503)], 2);
    bump(s1.cumulative[idx::connections_accepted], 6);
    observe(s1, idx::request_duration, request_duration_bounds, 2'000'000);
    page.thread_line(1, 1).gil_wait_ns = 1'000'000'000;
    page.add_retired_cpu(1, 2'000'000'000);
    page.retire(1);
    page.note_restart(RestartReason::crash);

    bump(page.slot(2).cumulative[request_index("GET", 200)], 1);
}

const pm::MetricFamily* find_family(const std::vector<pm::MetricFamily>& fs,
                                    std::string_view name) {
    for (const auto& f : fs) {
        if (f.name == name) {
            return &f;
        }
    }
    return nullptr;
}

const pm::ClientMetric* find_metric(const std::vector<pm::MetricFamily>& fs,
                                    std::string_view name,
                                    const std::map<std::string, std::string>& labels = {}) {
    const pm::MetricFamily* f = find_family(fs, name);
    if (f == nullptr) {
        return nullptr;
    }
    for (const auto& m : f->metric) {
        std::map<std::string, std::string> got;
        for (const auto& l : m.label) {
            got[l.name] = l.value;
        }
        if (got == labels) {
            return &m;
        }
    }
    return nullptr;
}

double value(const std::vector<pm::MetricFamily>& fs, std::string_view name,
             const std::map<std::string, std::string>& labels = {}) {
    const pm::ClientMetric* m = find_metric(fs, name, labels);
    if (m == nullptr) {
        ADD_FAILURE() << "no sample " << name;
        return std::numeric_limits<double>::quiet_NaN();
    }
    const pm::MetricFamily* f = find_family(fs, name);
    return f->type == pm::MetricType::Counter ? m->counter.value : m->gauge.value;
}

struct Fixture {
    StatsPage page{3, 2};
    ScrapeSources sources;
    Fixture() {
        fill(page);
        sources.page = &page;
        sources.active_slots = 2;
        sources.version = "1.2.3";
        sources.python_version = "3.11.7";
        sources.master_pid = ::getpid();
    }
};

bool contains(const std::string& text, std::string_view what) {
    return text.find(what) != std::string::npos;
}

// A TCP listening socket on loopback with the given backlog; returns its fd and port.
int loopback_listener(int backlog, std::uint16_t& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd, backlog) != 0) {
        return -1;
    }
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    return fd;
}

int connect_loopback(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    // A failsafe against a hung test, not a synchronisation: every read waits for an event.
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        const int err = errno;
        ::close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

// ---- negotiation -------------------------------------------------------------------------

TEST(Exposition, NegotiatesOpenMetricsOnlyWhenAsked) {
    EXPECT_EQ(negotiate(""), ExpositionFormat::prometheus);
    EXPECT_EQ(negotiate("*/*"), ExpositionFormat::prometheus);
    EXPECT_EQ(negotiate("application/json"), ExpositionFormat::prometheus);
    EXPECT_EQ(negotiate("text/plain;version=0.0.4"), ExpositionFormat::prometheus);
    // What Prometheus 2.x sends by default.
    EXPECT_EQ(negotiate("application/openmetrics-text;version=1.0.0,application/"
                        "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,"
                        "*/*;q=0.1"),
              ExpositionFormat::openmetrics);
    EXPECT_EQ(negotiate("application/openmetrics-text"), ExpositionFormat::openmetrics);
    EXPECT_EQ(negotiate("Application/OpenMetrics-Text; Version=\"1.0.0\""),
              ExpositionFormat::openmetrics);
    EXPECT_EQ(negotiate("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
              ExpositionFormat::openmetrics);
    // A scraper that prefers the 0.0.4 text gets it.
    EXPECT_EQ(negotiate("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.8"),
              ExpositionFormat::prometheus);
    EXPECT_EQ(negotiate("*/*, application/openmetrics-text;q=0.5"),
              ExpositionFormat::prometheus);
    // Not acceptable, an unknown version, a malformed weight.
    EXPECT_EQ(negotiate("application/openmetrics-text;q=0"), ExpositionFormat::prometheus);
    EXPECT_EQ(negotiate("application/openmetrics-text;version=2.0.0"),
              ExpositionFormat::prometheus);
    EXPECT_EQ(negotiate("application/openmetrics-text;q=high"), ExpositionFormat::prometheus);
    // The protobuf format is not offered; the OpenMetrics text is the next choice.
    EXPECT_EQ(negotiate("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                        "encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;"
                        "q=0.6,text/plain;version=0.0.4;q=0.3"),
              ExpositionFormat::openmetrics);
}

TEST(Exposition, ContentTypes) {
    EXPECT_EQ(content_type(ExpositionFormat::prometheus),
              "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(content_type(ExpositionFormat::openmetrics),
              "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

// ---- collect -----------------------------------------------------------------------------

TEST(Exposition, FamiliesHaveTheDocumentedNamesTypesAndHelp) {
    Fixture fx;
    std::uint16_t port = 0;
    const int listener = loopback_listener(8, port);
    ASSERT_GE(listener, 0);
    fx.sources.listen_fd = listener;
    fx.sources.listen_tcp = true;
    const auto fs = collect(fx.sources);
    ::close(listener);

    const std::map<std::string, pm::MetricType> expected{
        {"appserver_request_queue_depth", pm::MetricType::Gauge},
        {"appserver_request_queue_capacity", pm::MetricType::Gauge},
        {"appserver_request_queue_wait_seconds", pm::MetricType::Histogram},
        {"appserver_request_queue_rejected_total", pm::MetricType::Counter},
        {"appserver_request_queue_expired_total", pm::MetricType::Counter},
        {"appserver_request_queue_abandoned_total", pm::MetricType::Counter},
        {"appserver_event_loop_busy_ratio", pm::MetricType::Gauge},
        {"appserver_event_loop_busy_seconds_total", pm::MetricType::Counter},
        {"appserver_event_loop_lag_seconds", pm::MetricType::Histogram},
        {"appserver_blocking_threads", pm::MetricType::Gauge},
        {"appserver_blocking_threads_busy", pm::MetricType::Gauge},
        {"appserver_gil_wait_seconds_total", pm::MetricType::Counter},
        {"appserver_worker_resident_memory_bytes", pm::MetricType::Gauge},
        {"appserver_worker_cpu_seconds_total", pm::MetricType::Counter},
        {"appserver_worker_open_fds", pm::MetricType::Gauge},
        {"appserver_worker_up", pm::MetricType::Gauge},
        {"appserver_listen_queue_depth", pm::MetricType::Gauge},
        {"appserver_listen_queue_capacity", pm::MetricType::Gauge},
        {"appserver_requests_total", pm::MetricType::Counter},
        {"appserver_request_duration_seconds", pm::MetricType::Histogram},
        {"appserver_request_body_bytes_total", pm::MetricType::Counter},
        {"appserver_response_body_bytes_total", pm::MetricType::Counter},
        {"appserver_connections_open", pm::MetricType::Gauge},
        {"appserver_connections_accepted_total", pm::MetricType::Counter},
        {"appserver_connections_closed_total", pm::MetricType::Counter},
        {"appserver_workers", pm::MetricType::Gauge},
        {"appserver_worker_restarts_total", pm::MetricType::Counter},
        {"appserver_access_log_dropped_total", pm::MetricType::Counter},
        {"appserver_log_dropped_total", pm::MetricType::Counter},
        {"appserver_build_info", pm::MetricType::Gauge},
        {"process_cpu_seconds_total", pm::MetricType::Counter},
        {"process_resident_memory_bytes", pm::MetricType::Gauge},
        {"process_virtual_memory_bytes", pm::MetricType::Gauge},
        {"process_open_fds", pm::MetricType::Gauge},
        {"process_max_fds", pm::MetricType::Gauge},
        {"process_start_time_seconds", pm::MetricType::Gauge},
    };
    std::map<std::string, pm::MetricType> got;
    for (const auto& f : fs) {
        EXPECT_TRUE(got.emplace(f.name, f.type).second) << "duplicate family " << f.name;
        // One line, and nothing prometheus-cpp's 0.0.4 writer would have to escape.
        EXPECT_FALSE(f.help.empty()) << f.name;
        EXPECT_EQ(f.help.find_first_of("\\\n"), std::string::npos) << f.name;
        EXPECT_EQ(f.type == pm::MetricType::Counter, f.name.ends_with("_total")) << f.name;
        EXPECT_FALSE(f.metric.empty()) << f.name;
    }
    EXPECT_EQ(got, expected);
}

TEST(Exposition, AggregatesSumEverySlotAndPerWorkerValuesCarryTheSlot) {
    Fixture fx;
    const auto fs = collect(fx.sources);
    // Every method x class, so a series exists before its first request.
    EXPECT_EQ(find_family(fs, "appserver_requests_total")->metric.size(), 50u);
    EXPECT_EQ(value(fs, "appserver_requests_total", {{"method", "GET"}, {"code", "2xx"}}), 4);
    EXPECT_EQ(value(fs, "appserver_requests_total", {{"method", "other"}, {"code", "4xx"}}), 1);
    EXPECT_EQ(value(fs, "appserver_requests_total", {{"method", "POST"}, {"code", "5xx"}}), 2);
    EXPECT_EQ(value(fs, "appserver_requests_total", {{"method", "PUT"}, {"code", "1xx"}}), 0);
    EXPECT_EQ(value(fs, "appserver_connections_accepted_total"), 10);
    EXPECT_EQ(value(fs, "appserver_connections_closed_total", {{"reason", "client"}}), 1);
    EXPECT_EQ(find_family(fs, "appserver_connections_closed_total")->metric.size(),
              close_reason_labels.size());
    EXPECT_EQ(value(fs, "appserver_connections_open"), 3);
    EXPECT_EQ(value(fs, "appserver_request_body_bytes_total"), 100);
    EXPECT_EQ(value(fs, "appserver_response_body_bytes_total"), 2048);
    EXPECT_EQ(value(fs, "appserver_workers"), 2);
    EXPECT_EQ(value(fs, "appserver_worker_restarts_total", {{"reason", "crash"}}), 1);
    EXPECT_EQ(value(fs, "appserver_worker_restarts_total", {{"reason", "boot_failure"}}), 0);
    EXPECT_EQ(value(fs, "appserver_build_info", {{"version", "1.2.3"}, {"python", "3.11.7"}}), 1);

    // Per worker: slots 0 and 1 only.
    EXPECT_EQ(find_family(fs, "appserver_worker_up")->metric.size(), 2u);
    EXPECT_EQ(find_metric(fs, "appserver_worker_up", {{"worker", "2"}}), nullptr);
    EXPECT_EQ(value(fs, "appserver_worker_up", {{"worker", "0"}}), 1);
    EXPECT_EQ(value(fs, "appserver_worker_up", {{"worker", "1"}}), 0);
    EXPECT_EQ(value(fs, "appserver_request_queue_depth", {{"worker", "0"}}), 2);
    EXPECT_EQ(value(fs, "appserver_request_queue_capacity", {{"worker", "0"}}), 64);
    EXPECT_EQ(value(fs, "appserver_request_queue_rejected_total", {{"worker", "0"}}), 5);
    EXPECT_EQ(value(fs, "appserver_event_loop_busy_ratio", {{"worker", "0"}}), 0.25);
    EXPECT_EQ(value(fs, "appserver_event_loop_busy_seconds_total", {{"worker", "0"}}), 1.5);
    EXPECT_EQ(value(fs, "appserver_blocking_threads", {{"worker", "0"}}), 2);
    EXPECT_EQ(value(fs, "appserver_blocking_threads_busy", {{"worker", "0"}}), 1);
    EXPECT_EQ(value(fs, "appserver_gil_wait_seconds_total", {{"worker", "0"}}), 0.5);
    EXPECT_EQ(value(fs, "appserver_gil_wait_seconds_total", {{"worker", "1"}}), 1.0);
    // Slot 0 is this process: /proc has its memory, CPU and descriptors.
    EXPECT_GT(value(fs, "appserver_worker_resident_memory_bytes", {{"worker", "0"}}), 1 << 20);
    EXPECT_GT(value(fs, "appserver_worker_open_fds", {{"worker", "0"}}), 2);
    EXPECT_GE(value(fs, "appserver_worker_cpu_seconds_total", {{"worker", "0"}}), 0);
    // Slot 1 has no process: its replaced workers' CPU time only.
    EXPECT_EQ(value(fs, "appserver_worker_cpu_seconds_total", {{"worker", "1"}}), 2.0);
    EXPECT_EQ(value(fs, "appserver_worker_resident_memory_bytes", {{"worker", "1"}}), 0);
    EXPECT_EQ(value(fs, "appserver_worker_open_fds", {{"worker", "1"}}), 0);

    // The serving process.
    EXPECT_GT(value(fs, "process_resident_memory_bytes"), 1 << 20);
    EXPECT_GE(value(fs, "process_virtual_memory_bytes"),
              value(fs, "process_resident_memory_bytes"));
    EXPECT_GT(value(fs, "process_open_fds"), 2);
    EXPECT_GT(value(fs, "process_max_fds"), value(fs, "process_open_fds"));
    const double start = value(fs, "process_start_time_seconds");
    const double now = static_cast<double>(::time(nullptr));
    EXPECT_LE(start, now + 1);
    EXPECT_GT(start, now - 24 * 3600.0 * 365);
}

TEST(Exposition, HistogramsAreCumulativeWithInfCountAndSum) {
    Fixture fx;
    const auto fs = collect(fx.sources);
    // Aggregated: slot 0's three observations and retired slot 1's one.
    const pm::ClientMetric* d = find_metric(fs, "appserver_request_duration_seconds");
    ASSERT_NE(d, nullptr);
    const auto& buckets = d->histogram.bucket;
    ASSERT_EQ(buckets.size(), request_duration_bounds.size() + 1);
    EXPECT_EQ(buckets[2].upper_bound, 0.0025);
    EXPECT_EQ(buckets[1].cumulative_count, 0u); // <= 1 ms
    EXPECT_EQ(buckets[2].cumulative_count, 3u); // <= 2.5 ms
    EXPECT_EQ(buckets[15].cumulative_count, 3u); // <= 60 s
    EXPECT_TRUE(std::isinf(buckets.back().upper_bound));
    EXPECT_EQ(buckets.back().cumulative_count, 4u);
    EXPECT_EQ(d->histogram.sample_count, 4u);
    EXPECT_DOUBLE_EQ(d->histogram.sample_sum, 0.006 + 90.0);
    for (std::size_t i = 1; i < buckets.size(); ++i) {
        EXPECT_LE(buckets[i - 1].cumulative_count, buckets[i].cumulative_count);
    }
    // Per worker.
    const pm::ClientMetric* w =
        find_metric(fs, "appserver_request_queue_wait_seconds", {{"worker", "0"}});
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->histogram.sample_count, 1u);
    EXPECT_EQ(w->histogram.bucket[2].cumulative_count, 1u); // 0.3 ms <= 0.5 ms
    EXPECT_EQ(w->histogram.bucket[1].cumulative_count, 0u);
    const pm::ClientMetric* lag =
        find_metric(fs, "appserver_event_loop_lag_seconds", {{"worker", "1"}});
    ASSERT_NE(lag, nullptr);
    EXPECT_EQ(lag->histogram.sample_count, 0u);
    EXPECT_EQ(lag->histogram.bucket.size(), loop_lag_bounds.size() + 1);
}

TEST(Exposition, ListenQueueFromTcpInfoOnlyForATcpListener) {
    Fixture fx;
    std::uint16_t port = 0;
    const int listener = loopback_listener(7, port);
    ASSERT_GE(listener, 0);
    const int c1 = connect_loopback(port);
    const int c2 = connect_loopback(port);
    ASSERT_GE(c1, 0);
    ASSERT_GE(c2, 0);
    pollfd p{listener, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10'000), 1); // the kernel queued at least one of them

    fx.sources.listen_fd = listener;
    fx.sources.listen_tcp = true;
    auto fs = collect(fx.sources);
    EXPECT_EQ(value(fs, "appserver_listen_queue_capacity"), 7);
    const double depth = value(fs, "appserver_listen_queue_depth");
    EXPECT_GE(depth, 1);
    EXPECT_LE(depth, 2);

    // A unix socket (or --uds): no such families.
    fx.sources.listen_tcp = false;
    fs = collect(fx.sources);
    EXPECT_EQ(find_family(fs, "appserver_listen_queue_depth"), nullptr);
    EXPECT_EQ(find_family(fs, "appserver_listen_queue_capacity"), nullptr);
    // A descriptor that is not a listening socket (closed, reused): none either.
    fx.sources.listen_tcp = true;
    fx.sources.listen_fd = c1;
    fs = collect(fx.sources);
    EXPECT_EQ(find_family(fs, "appserver_listen_queue_depth"), nullptr);
    ::close(c1);
    ::close(c2);
    ::close(listener);
}

// The master retires slot 0 over and over (its worker "ran" and was reaped) while
// another thread scrapes: the count only ever grows, as the page mutex guarantees.
TEST(Exposition, ConcurrentRetiresNeverMakeAScrapedCounterGoBackwards) {
    Fixture fx;
    WorkerSlot& s = fx.page.slot(0);
    const std::map<std::string, std::string> get_2xx{{"method", "GET"}, {"code", "2xx"}};
    std::atomic<bool> done{false};
    std::thread master([&] {
        while (!done.load()) {
            bump(s.cumulative[request_index("GET", 200)], 10);
            fx.page.retire(0);
        }
    });
    double last = 0;
    for (int i = 0; i < 300; ++i) {
        const double now = value(collect(fx.sources), "appserver_requests_total", get_2xx);
        EXPECT_GE(now, last);
        last = now;
    }
    done = true;
    master.join();
    EXPECT_EQ(std::fmod(value(collect(fx.sources), "appserver_requests_total", get_2xx) - 4, 10),
              0);
}

// ---- text --------------------------------------------------------------------------------

TEST(Exposition, PrometheusTextHasTotalNamedCounterFamilies) {
    Fixture fx;
    const std::string text = serialize(collect(fx.sources), ExpositionFormat::prometheus);
    EXPECT_TRUE(contains(text, "# TYPE appserver_requests_total counter\n"));
    EXPECT_TRUE(contains(text, "appserver_requests_total{method=\"GET\",code=\"2xx\"} 4\n"));
    EXPECT_TRUE(contains(text, "# HELP appserver_event_loop_busy_ratio "));
    EXPECT_TRUE(contains(text, "appserver_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
    EXPECT_TRUE(contains(text, "appserver_request_duration_seconds_count 4\n"));
    EXPECT_TRUE(contains(text, "appserver_worker_up{worker=\"0\"} 1\n"));
    EXPECT_FALSE(contains(text, "# EOF"));
}

TEST(Exposition, OpenMetricsTextFollowsTheSpec) {
    Fixture fx;
    const std::string text = serialize(collect(fx.sources), ExpositionFormat::openmetrics);
    // Counters: the family without _total, the samples with it.
    EXPECT_TRUE(contains(text, "# TYPE appserver_requests counter\n"));
    EXPECT_TRUE(contains(text, "# HELP appserver_requests Responses sent"));
    EXPECT_TRUE(contains(text, "\nappserver_requests_total{method=\"GET\",code=\"2xx\"} 4\n"));
    EXPECT_FALSE(contains(text, "# TYPE appserver_requests_total"));
    EXPECT_TRUE(contains(text, "# TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds "
                               "seconds\n"));
    // Units where the name ends in one.
    EXPECT_TRUE(contains(text, "# UNIT appserver_request_duration_seconds seconds\n"));
    EXPECT_TRUE(contains(text, "# UNIT appserver_worker_resident_memory_bytes bytes\n"));
    EXPECT_FALSE(contains(text, "# UNIT appserver_requests "));
    // Histograms: canonical le values, +Inf, then _count and _sum.
    EXPECT_TRUE(contains(text, "appserver_request_duration_seconds_bucket{le=\"0.0005\"} 0\n"));
    EXPECT_TRUE(contains(text, "appserver_request_duration_seconds_bucket{le=\"1.0\"} 3\n"));
    EXPECT_TRUE(contains(text, "appserver_request_duration_seconds_bucket{le=\"60.0\"} 3\n"));
    EXPECT_TRUE(contains(text, "appserver_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                               "appserver_request_duration_seconds_count 4\n"
                               "appserver_request_duration_seconds_sum 90.006\n"));
    EXPECT_TRUE(contains(
        text, "appserver_request_queue_wait_seconds_bucket{worker=\"0\",le=\"0.0001\"} 0\n"));
    EXPECT_TRUE(contains(text, "appserver_event_loop_busy_ratio{worker=\"0\"} 0.25\n"));
    EXPECT_TRUE(text.ends_with("\n# EOF\n"));
    EXPECT_EQ(text.find("# EOF"), text.size() - 6);
}

TEST(Exposition, OpenMetricsCanonicalNumbersAndEscaping) {
    std::vector<pm::MetricFamily> fs;
    pm::MetricFamily h{"foo_seconds", "Quote \" backslash \\ newline \n end.",
                       pm::MetricType::Histogram, {}};
    pm::ClientMetric hm;
    hm.label = {{"path", "a\"b\\c\nd"}};
    std::uint64_t n = 0;
    // The spec's own example values.
    for (double b : {0.0, 1e-05, 0.0001, 0.1, 1.0, 10.0, 100000.0, 1e+06, 1e+23, 1.1e+23}) {
        hm.histogram.bucket.push_back({++n, b});
    }
    hm.histogram.sample_count = n; // no +Inf bucket given: the writer adds it
    hm.histogram.sample_sum = 0.1 + 0.2;
    h.metric.push_back(hm);
    fs.push_back(h);
    pm::MetricFamily c{"bar", "A counter named without the suffix.", pm::MetricType::Counter, {}};
    pm::ClientMetric cm;
    cm.counter.value = 17;
    c.metric.push_back(cm);
    fs.push_back(c);
    pm::MetricFamily g{"baz", "", pm::MetricType::Gauge, {}};
    for (double v : {std::numeric_limits<double>::quiet_NaN(),
                     -std::numeric_limits<double>::infinity(), 1e20, -2.5}) {
        pm::ClientMetric gm;
        gm.label = {{"v", std::to_string(g.metric.size())}};
        gm.gauge.value = v;
        g.metric.push_back(gm);
    }
    fs.push_back(g);

    const std::string text = serialize(fs, ExpositionFormat::openmetrics);
    const std::string expected =
        "# TYPE foo_seconds histogram\n"
        "# UNIT foo_seconds seconds\n"
        "# HELP foo_seconds Quote \\\" backslash \\\\ newline \\n end.\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"0.0\"} 1\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"1e-05\"} 2\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"0.0001\"} 3\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"0.1\"} 4\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"1.0\"} 5\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"10.0\"} 6\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"100000.0\"} 7\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"1e+06\"} 8\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"1e+23\"} 9\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"1.1e+23\"} 10\n"
        "foo_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} 10\n"
        "foo_seconds_count{path=\"a\\\"b\\\\c\\nd\"} 10\n"
        "foo_seconds_sum{path=\"a\\\"b\\\\c\\nd\"} 0.30000000000000004\n"
        "# TYPE bar counter\n"
        "# HELP bar A counter named without the suffix.\n"
        "bar_total 17\n"
        "# TYPE baz gauge\n"
        "baz{v=\"0\"} NaN\n"
        "baz{v=\"1\"} -Inf\n"
        "baz{v=\"2\"} 1e+20\n"
        "baz{v=\"3\"} -2.5\n"
        "# EOF\n";
    EXPECT_EQ(text, expected);
}

// promtool's linter (Debian package "prometheus"): HELP everywhere, _total on counters,
// base units, no duplicates. Skipped where promtool is not installed.
TEST(Exposition, PromtoolAcceptsTheScrape) {
    if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "promtool not installed";
    }
    Fixture fx;
    std::uint16_t port = 0;
    const int listener = loopback_listener(8, port);
    fx.sources.listen_fd = listener;
    fx.sources.listen_tcp = true;
    const std::string text = serialize(collect(fx.sources), ExpositionFormat::prometheus);
    ::close(listener);
    char path[] = "/tmp/appserver-scrape-XXXXXX";
    const int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    const std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string output;
    char buf[512];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) {
        output.append(buf, n);
    }
    const int status = ::pclose(p);
    ::unlink(path);
    EXPECT_EQ(status, 0) << output;
    EXPECT_EQ(output, "");
}

// An independent strict OpenMetrics parser (prometheus_client's, Python), where installed.
TEST(Exposition, OpenMetricsParserAcceptsTheScrape) {
    namespace py = pybind11;
    Fixture fx;
    const std::string text = serialize(collect(fx.sources), ExpositionFormat::openmetrics);
    py::object parse;
    try {
        parse = py::module_::import("prometheus_client.openmetrics.parser")
                    .attr("text_string_to_metric_families");
    } catch (const py::error_already_set&) {
        GTEST_SKIP() << "prometheus_client not installed";
    }
    try {
        const py::list families = py::module_::import("builtins").attr("list")(parse(text));
        EXPECT_EQ(families.size(), collect(fx.sources).size());
    } catch (const py::error_already_set& e) {
        ADD_FAILURE() << e.what();
    }
}

// ---- the server --------------------------------------------------------------------------

struct Response {
    int status = 0;
    std::map<std::string, std::string> headers; // names in lower case
    std::string body;
    std::string header(const std::string& name) const {
        const auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

class Client {
public:
    explicit Client(std::uint16_t port) : fd_(connect_loopback(port)) {}
    ~Client() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    bool connected() const { return fd_ >= 0; }

    void send(std::string_view data) {
        ASSERT_EQ(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL),
                  static_cast<ssize_t>(data.size()));
    }

    // Reads one response; a HEAD response has no body whatever its Content-Length says.
    Response read_response(bool head_request = false) {
        Response r;
        std::size_t end;
        while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
            if (!fill()) {
                return r;
            }
        }
        const std::string head = buf_.substr(0, end);
        buf_.erase(0, end + 4);
        r.status = std::atoi(head.substr(9, 3).c_str());
        std::size_t pos = head.find("\r\n");
        while (pos != std::string::npos) {
            const std::size_t next = head.find("\r\n", pos + 2);
            const std::string line = head.substr(pos + 2, next - pos - 2);
            const std::size_t colon = line.find(':');
            std::string name = line.substr(0, colon);
            std::transform(name.begin(), name.end(), name.begin(), ::tolower);
            r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
            pos = next;
        }
        const std::size_t length =
            head_request ? 0 : std::strtoul(r.header("content-length").c_str(), nullptr, 10);
        while (buf_.size() < length) {
            if (!fill()) {
                return r;
            }
        }
        r.body = buf_.substr(0, length);
        buf_.erase(0, length);
        return r;
    }

    Response request(const std::string& method, const std::string& target,
                     const std::string& extra_fields = {}) {
        send(method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra_fields + "\r\n");
        return read_response(method == "HEAD");
    }

    // The server closed the connection (end of stream or a reset), and sent nothing more.
    bool closed_by_server() {
        char c;
        const ssize_t n = ::recv(fd_, &c, 1, 0);
        return buf_.empty() && (n == 0 || (n < 0 && errno == ECONNRESET));
    }

    int fd() const { return fd_; }

private:
    bool fill() {
        char tmp[16384];
        const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n <= 0) {
            return false;
        }
        buf_.append(tmp, static_cast<std::size_t>(n));
        return true;
    }

    int fd_;
    std::string buf_;
};

struct ServerFixture {
    Fixture data;
    std::unique_ptr<MetricsServer> server;
    explicit ServerFixture(const MetricsServerLimits& limits = {}) {
        std::string error;
        server = MetricsServer::start("127.0.0.1", 0, data.sources, error, limits);
        EXPECT_NE(server, nullptr) << error;
        if (server) {
            server->run();
        }
    }
    std::uint16_t port() const { return server->port(); }
};

TEST(MetricsServer, ServesTheScrapeInTheTextFormat) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    EXPECT_EQ(fx.server->endpoint(), "127.0.0.1:" + std::to_string(fx.port()));
    Client c(fx.port());
    ASSERT_TRUE(c.connected());
    const Response r = c.request("GET", "/metrics?debug=1");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
    EXPECT_TRUE(contains(r.body, "# TYPE appserver_requests_total counter\n"));
    EXPECT_TRUE(
        contains(r.body, "appserver_build_info{version=\"1.2.3\",python=\"3.11.7\"} 1\n"));
    EXPECT_TRUE(contains(r.body, "appserver_requests_total{method=\"GET\",code=\"2xx\"} 4\n"));
    EXPECT_FALSE(contains(r.body, "# EOF"));
}

TEST(MetricsServer, NegotiatesOpenMetrics) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    Client c(fx.port());
    const Response r = c.request(
        "GET", "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-type"),
              "application/openmetrics-text; version=1.0.0; charset=utf-8");
    EXPECT_TRUE(contains(r.body, "# TYPE appserver_requests counter\n"));
    EXPECT_TRUE(r.body.ends_with("# EOF\n"));
}

TEST(MetricsServer, HeadHasTheLengthButNoBody) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    Client c(fx.port());
    const Response head = c.request("HEAD", "/metrics");
    EXPECT_EQ(head.status, 200);
    EXPECT_GT(std::strtoul(head.header("content-length").c_str(), nullptr, 10), 1000u);
    // Had a body followed, the next response would not start where it should.
    const Response get = c.request("GET", "/");
    EXPECT_EQ(get.status, 200);
    EXPECT_TRUE(contains(get.body, "/metrics"));
}

TEST(MetricsServer, OtherPathsAndMethods) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    Client c(fx.port());
    EXPECT_EQ(c.request("GET", "/metricsx").status, 404);
    EXPECT_EQ(c.request("GET", "/other/metrics").status, 404);
    const Response post = c.request("POST", "/metrics", "Content-Length: 0\r\n");
    EXPECT_EQ(post.status, 405);
    EXPECT_EQ(post.header("allow"), "GET, HEAD");
    const Response del = c.request("DELETE", "/");
    EXPECT_EQ(del.status, 405);
    // All on one connection: none of these closes it.
    EXPECT_EQ(c.request("GET", "http://localhost/metrics").status, 200);
}

TEST(MetricsServer, KeepAliveAndPipelining) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    Client c(fx.port());
    EXPECT_EQ(c.request("GET", "/metrics").status, 200);
    EXPECT_EQ(c.request("GET", "/metrics").status, 200);
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(c.read_response().status, 200);
    const Response second = c.read_response();
    EXPECT_EQ(second.status, 200);
    EXPECT_TRUE(contains(second.body, "appserver_workers 2\n"));
    const Response last = c.read_response();
    EXPECT_EQ(last.status, 404);
    EXPECT_EQ(last.header("connection"), "close");
    EXPECT_TRUE(c.closed_by_server());
}

TEST(MetricsServer, Http10ClosesUnlessAskedToKeepAlive) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    {
        Client c(fx.port());
        c.send("GET /metrics HTTP/1.0\r\n\r\n");
        EXPECT_EQ(c.read_response().status, 200);
        EXPECT_TRUE(c.closed_by_server());
    }
    Client c(fx.port());
    c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const Response r = c.read_response();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("connection"), "keep-alive");
    c.send("GET /metrics HTTP/1.0\r\n\r\n");
    EXPECT_EQ(c.read_response().status, 200);
    EXPECT_TRUE(c.closed_by_server());
}

TEST(MetricsServer, BadRequestsGetTheParsersAnswerAndAClose) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    {
        Client c(fx.port());
        c.send("GARBAGE\r\n\r\n");
        const Response r = c.read_response();
        EXPECT_EQ(r.status, 400);
        EXPECT_EQ(r.header("connection"), "close");
        EXPECT_TRUE(c.closed_by_server());
    }
    {
        Client c(fx.port());
        c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               "Content-Length: 3\r\n\r\n");
        EXPECT_EQ(c.read_response().status, 400);
        EXPECT_TRUE(c.closed_by_server());
    }
    {
        // A body is never expected here.
        Client c(fx.port());
        c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        EXPECT_EQ(c.read_response().status, 413);
        EXPECT_TRUE(c.closed_by_server());
    }
    {
        // A head larger than 8 KiB.
        Client c(fx.port());
        c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9000, 'a') +
               "\r\n\r\n");
        const int status = c.read_response().status;
        EXPECT_TRUE(status == 431 || status == 400) << status;
        EXPECT_TRUE(c.closed_by_server());
    }
    // The endpoint goes on.
    Client c(fx.port());
    EXPECT_EQ(c.request("GET", "/metrics").status, 200);
}

TEST(MetricsServer, IdleAndSlowHeadConnectionsAreClosedAtTheirDeadline) {
    MetricsServerLimits limits;
    limits.idle_timeout = 200ms;
    limits.head_timeout = 100ms;
    ServerFixture fx(limits);
    ASSERT_TRUE(fx.server);
    Client idle(fx.port());
    Client slow(fx.port());
    slow.send("GET /metrics HTTP/1.1\r\n");
    EXPECT_TRUE(slow.closed_by_server());
    EXPECT_TRUE(idle.closed_by_server());
    Client kept(fx.port());
    EXPECT_EQ(kept.request("GET", "/").status, 200);
    EXPECT_TRUE(kept.closed_by_server()); // idle after its response
}

TEST(MetricsServer, ConnectionsPastTheCapAreClosedAtOnce) {
    MetricsServerLimits limits;
    limits.max_connections = 1;
    ServerFixture fx(limits);
    ASSERT_TRUE(fx.server);
    Client first(fx.port());
    EXPECT_EQ(first.request("GET", "/").status, 200); // accepted and counted
    Client second(fx.port());
    EXPECT_TRUE(second.closed_by_server());
    EXPECT_EQ(first.request("GET", "/metrics").status, 200);
}

TEST(MetricsServer, BindFailureIsAClearError) {
    std::uint16_t port = 0;
    const int taken = loopback_listener(1, port);
    ASSERT_GE(taken, 0);
    Fixture data;
    std::string error;
    auto server = MetricsServer::start("127.0.0.1", port, data.sources, error);
    EXPECT_EQ(server, nullptr);
    EXPECT_EQ(error, "cannot listen for metrics on 127.0.0.1:" + std::to_string(port) +
                         ": Address already in use");
    ::close(taken);

    // TEST-NET-1: a valid address that is not this host's.
    server = MetricsServer::start("192.0.2.1", 9090, data.sources, error);
    EXPECT_EQ(server, nullptr);
    EXPECT_EQ(error,
              "cannot listen for metrics on 192.0.2.1:9090: Cannot assign requested address");
}

TEST(MetricsServer, ListensOnIpv6) {
    Fixture data;
    std::string error;
    auto server = MetricsServer::start("::1", 0, data.sources, error);
    if (!server) {
        GTEST_SKIP() << "no IPv6 loopback: " << error;
    }
    EXPECT_EQ(server->endpoint(), "[::1]:" + std::to_string(server->port()));
}

TEST(MetricsServer, StopIsIdempotentAndClosesThePort) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    const std::uint16_t port = fx.port();
    Client c(port);
    EXPECT_EQ(c.request("GET", "/").status, 200);
    fx.server->stop();
    fx.server->stop();
    EXPECT_TRUE(c.closed_by_server());
    EXPECT_EQ(connect_loopback(port), -1);
    EXPECT_EQ(errno, ECONNREFUSED);
}

// A forked child closes its copies of the listening socket and of every connection: once
// the parent stops, the port refuses connections and the client sees the close, although
// the child is still alive.
TEST(MetricsServer, AForkedChildHoldsNeitherThePortNorAConnection) {
    ServerFixture fx;
    ASSERT_TRUE(fx.server);
    const std::uint16_t port = fx.port();
    Client c(port);
    EXPECT_EQ(c.request("GET", "/metrics").status, 200);

    int ready[2];
    int release[2];
    ASSERT_EQ(::pipe(ready), 0);
    ASSERT_EQ(::pipe(release), 0);
    fx.server->before_fork();
    const pid_t pid = ::fork();
    if (pid == 0) {
        fx.server->after_fork_child();
        fx.server->stop(); // a no-op in the child
        char x = 'x';
        (void)!::write(ready[1], &x, 1);
        (void)!::read(release[0], &x, 1);
        ::_exit(0);
    }
    fx.server->after_fork_parent();
    ASSERT_GT(pid, 0);
    char x;
    ASSERT_EQ(::read(ready[0], &x, 1), 1);

    // The parent still serves, on the same connection.
    EXPECT_EQ(c.request("GET", "/").status, 200);
    fx.server->stop();
    EXPECT_TRUE(c.closed_by_server());
    EXPECT_EQ(connect_loopback(port), -1);
    EXPECT_EQ(errno, ECONNREFUSED);

    ASSERT_EQ(::write(release[1], "x", 1), 1);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int fd : {ready[0], ready[1], release[0], release[1]}) {
        ::close(fd);
    }
}

} // namespace
