// The scrape (see exposition.hpp): families from the StatsPage, /proc and TCP_INFO, the
// Accept negotiation, and the OpenMetrics 1.0 text that prometheus-cpp 1.0.1 lacks.
#include "metrics/exposition.hpp"

#include "http/field_list.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>
#include <prometheus/text_serializer.h>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <utility>

namespace appserver::metrics {
namespace {

namespace pm = prometheus;
using Labels = std::vector<pm::ClientMetric::Label>;

// ---- /proc and the kernel ---------------------------------------------------------------

bool read_file(const std::string& path, std::string& out) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    out.clear();
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            out.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
            ::close(fd);
            return n == 0;
        }
    }
}

template <typename T>
T parse_number(std::string_view s) {
    T v{};
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

// The fields of /proc/<pid>/stat a scrape needs (proc(5)).
struct ProcStat {
    char state = '?';
    std::uint64_t cpu_ticks = 0;   // utime + stime
    std::uint64_t start_ticks = 0; // since boot
    std::uint64_t vsize = 0;       // bytes
    std::int64_t rss_pages = 0;
    bool alive() const { return state != 'Z' && state != 'X' && state != 'x'; }
};

std::optional<ProcStat> read_proc_stat(const std::string& dir) {
    std::string text;
    if (!read_file(dir + "/stat", text)) {
        return std::nullopt;
    }
    // The command name (field 2) may hold spaces and parentheses: fields resume after
    // the last ')'.
    const std::size_t close = text.rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::vector<std::string_view> fields; // fields[0] is field 3 (state)
    std::string_view rest(text);
    rest.remove_prefix(close + 1);
    while (!rest.empty()) {
        const std::size_t start = rest.find_first_not_of(" \n");
        if (start == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(start);
        const std::size_t end = std::min(rest.find_first_of(" \n"), rest.size());
        fields.push_back(rest.substr(0, end));
        rest.remove_prefix(end);
    }
    if (fields.size() < 22) {
        return std::nullopt;
    }
    ProcStat st;
    st.state = fields[0].empty() ? '?' : fields[0][0];
    st.cpu_ticks =
        parse_number<std::uint64_t>(fields[11]) + parse_number<std::uint64_t>(fields[12]);
    st.start_ticks = parse_number<std::uint64_t>(fields[19]);
    st.vsize = parse_number<std::uint64_t>(fields[20]);
    st.rss_pages = std::max<std::int64_t>(0, parse_number<std::int64_t>(fields[21]));
    return st;
}

// Entries of <dir>/fd; the directory stream's own descriptor is not counted when the
// process is this one.
std::uint64_t count_fds(const std::string& dir, bool self) {
    DIR* d = ::opendir((dir + "/fd").c_str());
    if (d == nullptr) {
        return 0;
    }
    const int own = self ? ::dirfd(d) : -1;
    std::uint64_t n = 0;
    while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (own >= 0 && parse_number<int>(e->d_name) == own) {
            continue;
        }
        ++n;
    }
    ::closedir(d);
    return n;
}

double clock_ticks() {
    static const double ticks = [] {
        const long t = ::sysconf(_SC_CLK_TCK);
        return t > 0 ? static_cast<double>(t) : 100.0;
    }();
    return ticks;
}

double page_size() {
    static const double size = [] {
        const long p = ::sysconf(_SC_PAGESIZE);
        return p > 0 ? static_cast<double>(p) : 4096.0;
    }();
    return size;
}

// Boot time (seconds since the epoch) from /proc/stat; it does not change, read it once.
double boot_time() {
    static const double btime = [] {
        std::string text;
        if (!read_file("/proc/stat", text)) {
            return 0.0;
        }
        const std::size_t at = text.find("\nbtime ");
        if (at == std::string::npos) {
            return 0.0;
        }
        return static_cast<double>(
            parse_number<std::uint64_t>(std::string_view(text).substr(at + 7)));
    }();
    return btime;
}

// The accept queue of a TCP listening socket: on a LISTEN socket, TCP_INFO reports the
// current queue length in tcpi_unacked and the backlog in tcpi_sacked. The state check
// also guards against a descriptor that was closed and reused for something else.
std::optional<std::pair<std::uint64_t, std::uint64_t>> listen_queue(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (fd < 0 || ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
        info.tcpi_state != TCP_LISTEN) {
        return std::nullopt;
    }
    return std::make_pair(std::uint64_t{info.tcpi_unacked}, std::uint64_t{info.tcpi_sacked});
}

// ---- building families -------------------------------------------------------------------

// What the scrape copies out of the page under its mutex.
// One worker position (the `worker` label): during a replacement two processes (the
// draining predecessor and its successor) count towards it.
struct SlotView {
    Cumulative totals{};
    std::uint64_t gil_wait_ns = 0;
    std::uint64_t retired_cpu_ns = 0;
    std::vector<pid_t> pids;
    bool ready = false;
    std::uint64_t queue_depth = 0;
    std::uint64_t queue_capacity = 0;
    std::uint64_t blocking_threads = 0;
    std::uint64_t threads_busy = 0;
    std::uint64_t connections_open = 0;
    std::uint64_t loop_busy_ppm = 0;
};

// The live process behind a slot, read from /proc after the lock is released.
struct ProcessView {
    bool alive = false;
    double cpu_seconds = 0; // 0 when /proc has nothing (reaped)
    double resident_bytes = 0;
    double open_fds = 0;
};

class Builder {
public:
    explicit Builder(std::vector<pm::MetricFamily>& out) : out_(out) {}

    pm::MetricFamily& family(std::string name, std::string help, pm::MetricType type) {
        out_.push_back(pm::MetricFamily{std::move(name), std::move(help), type, {}});
        return out_.back();
    }

    void single(std::string name, std::string help, pm::MetricType type, double value,
                Labels labels = {}) {
        add(family(std::move(name), std::move(help), type), value, std::move(labels));
    }

    static void add(pm::MetricFamily& f, double value, Labels labels = {}) {
        pm::ClientMetric m;
        m.label = std::move(labels);
        if (f.type == pm::MetricType::Counter) {
            m.counter.value = value;
        } else {
            m.gauge.value = value;
        }
        f.metric.push_back(std::move(m));
    }

private:
    std::vector<pm::MetricFamily>& out_;
};

// Divisions rather than products with 1e-9: 1e9 is exact, so a whole number of ms reads
// back as the decimal it is (0.006, not 0.006000000000000001).
double seconds(std::uint64_t ns) {
    return static_cast<double>(ns) / 1e9;
}

// A histogram from one slot's (or the sum of the slots') per-bucket counts: index N is
// the +Inf bucket and N+1 the sum in ns (see observe()). Prometheus wants cumulative counts.
template <std::size_t N>
pm::ClientMetric histogram(const Cumulative& c, std::size_t base,
                           const std::array<double, N>& bounds, Labels labels) {
    pm::ClientMetric m;
    m.label = std::move(labels);
    std::uint64_t running = 0;
    m.histogram.bucket.reserve(N + 1);
    for (std::size_t i = 0; i < N; ++i) {
        running += c[base + i];
        m.histogram.bucket.push_back({running, bounds[i]});
    }
    running += c[base + N];
    m.histogram.bucket.push_back({running, std::numeric_limits<double>::infinity()});
    m.histogram.sample_count = running;
    m.histogram.sample_sum = seconds(c[base + N + 1]);
    return m;
}

Labels worker_label(std::size_t i) {
    return {{"worker", std::to_string(i)}};
}

double as_double(std::uint64_t v) {
    return static_cast<double>(v);
}

void add_process_metrics(Builder& b, pid_t pid) {
    const bool self = pid <= 0 || pid == ::getpid();
    const std::string dir = self ? std::string("/proc/self") : "/proc/" + std::to_string(pid);
    const auto st = read_proc_stat(dir);
    rlimit files{};
    const bool have_limit = self && ::getrlimit(RLIMIT_NOFILE, &files) == 0;
    const double ticks = clock_ticks();
    b.single("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
             pm::MetricType::Counter, st ? as_double(st->cpu_ticks) / ticks : 0.0);
    b.single("process_resident_memory_bytes", "Resident memory size in bytes.",
             pm::MetricType::Gauge, st ? as_double(st->rss_pages) * page_size() : 0.0);
    b.single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
             pm::MetricType::Gauge, st ? as_double(st->vsize) : 0.0);
    b.single("process_open_fds", "Number of open file descriptors.", pm::MetricType::Gauge,
             as_double(count_fds(dir, self)));
    if (have_limit) {
        b.single("process_max_fds", "Maximum number of open file descriptors.",
                 pm::MetricType::Gauge,
                 files.rlim_cur == RLIM_INFINITY ? std::numeric_limits<double>::infinity()
                                                 : as_double(files.rlim_cur));
    }
    if (st && boot_time() > 0) {
        b.single("process_start_time_seconds",
                 "Start time of the process since unix epoch in seconds.",
                 pm::MetricType::Gauge, boot_time() + as_double(st->start_ticks) / ticks);
    }
}

// ---- OpenMetrics text ---------------------------------------------------------------------

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Label values and HELP: backslash, double quote and line feed escaped.
void append_escaped(std::string& out, std::string_view s) {
    for (const char c : s) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out += c;
        }
    }
}

// A sample value: integers without a decimal point, other values in the shortest form
// that reads back the same double.
void append_value(std::string& out, double v) {
    char buf[64];
    if (std::isnan(v)) {
        out += "NaN";
        return;
    }
    if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
        return;
    }
    std::to_chars_result r;
    if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) { // 2^53: exact
        r = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(v));
    } else {
        r = std::to_chars(buf, buf + sizeof buf, v);
    }
    out.append(buf, r.ptr);
}

// "le" and "quantile" values follow the spec's canonical numbers: Go's %g (shortest
// digits; exponent form below 1e-4 or from 1e+06 on) with ".0" added when the result has
// neither a point nor an exponent: 0.0001, 0.5, 1.0, 10.0, 100000.0, 1e+06, +Inf.
void append_canonical(std::string& out, double v) {
    if (std::isnan(v) || std::isinf(v)) {
        append_value(out, v);
        return;
    }
    if (v == 0) {
        out += "0.0";
        return;
    }
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    const std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));
    std::string_view exp_text = sci.substr(sci.find('e') + 1);
    if (exp_text.front() == '+') {
        exp_text.remove_prefix(1); // from_chars takes a '-' but not a '+'
    }
    const int exponent = parse_number<int>(exp_text);
    if (exponent < -4 || exponent >= 6) {
        out += sci; // already Go's form: "1e-05", "2.5e+06"
        return;
    }
    r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
    const std::string_view fixed(buf, static_cast<std::size_t>(r.ptr - buf));
    out += fixed;
    if (fixed.find('.') == std::string_view::npos) {
        out += ".0";
    }
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const Labels& labels, std::string_view extra_name, double extra_value,
                   double value, std::int64_t timestamp_ms) {
    out += name;
    out += suffix;
    if (!labels.empty() || !extra_name.empty()) {
        out += '{';
        bool first = true;
        for (const auto& l : labels) {
            if (!first) {
                out += ',';
            }
            first = false;
            out += l.name;
            out += "=\"";
            append_escaped(out, l.value);
            out += '"';
        }
        if (!extra_name.empty()) {
            if (!first) {
                out += ',';
            }
            out += extra_name;
            out += "=\"";
            append_canonical(out, extra_value);
            out += '"';
        }
        out += '}';
    }
    out += ' ';
    append_value(out, value);
    if (timestamp_ms != 0) {
        out += ' ';
        append_value(out, static_cast<double>(timestamp_ms) / 1000.0); // seconds in OpenMetrics
    }
    out += '\n';
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const pm::ClientMetric& m, double value) {
    append_sample(out, name, suffix, m.label, {}, 0, value, m.timestamp_ms);
}

std::string_view openmetrics_type(pm::MetricType type) {
    switch (type) {
    case pm::MetricType::Counter: return "counter";
    case pm::MetricType::Gauge: return "gauge";
    case pm::MetricType::Summary: return "summary";
    case pm::MetricType::Histogram: return "histogram";
    case pm::MetricType::Untyped: break;
    }
    return "unknown";
}

// A UNIT line where the name ends in a base unit (the spec wants the unit as the name's
// suffix, and Prometheus checks that it is).
std::string_view unit_of(std::string_view family) {
    for (const std::string_view unit : {"seconds", "bytes", "ratio"}) {
        if (family.size() > unit.size() + 1 && ends_with(family, unit) &&
            family[family.size() - unit.size() - 1] == '_') {
            return unit;
        }
    }
    return {};
}

std::string to_openmetrics(const std::vector<pm::MetricFamily>& families) {
    std::string out;
    out.reserve(families.size() * 256);
    for (const auto& f : families) {
        std::string_view name = f.name;
        if (f.type == pm::MetricType::Counter && ends_with(name, "_total")) {
            name.remove_suffix(6);
        }
        out += "# TYPE ";
        out += name;
        out += ' ';
        out += openmetrics_type(f.type);
        out += '\n';
        if (const std::string_view unit = unit_of(name); !unit.empty()) {
            out += "# UNIT ";
            out += name;
            out += ' ';
            out += unit;
            out += '\n';
        }
        if (!f.help.empty()) {
            out += "# HELP ";
            out += name;
            out += ' ';
            append_escaped(out, f.help);
            out += '\n';
        }
        for (const auto& m : f.metric) {
            switch (f.type) {
            case pm::MetricType::Counter:
                append_sample(out, name, "_total", m, m.counter.value);
                break;
            case pm::MetricType::Gauge:
                append_sample(out, name, "", m, m.gauge.value);
                break;
            case pm::MetricType::Untyped:
                append_sample(out, name, "", m, m.untyped.value);
                break;
            case pm::MetricType::Summary:
                for (const auto& q : m.summary.quantile) {
                    append_sample(out, name, "", m.label, "quantile", q.quantile, q.value,
                                  m.timestamp_ms);
                }
                append_sample(out, name, "_count", m,
                              static_cast<double>(m.summary.sample_count));
                append_sample(out, name, "_sum", m, m.summary.sample_sum);
                break;
            case pm::MetricType::Histogram: {
                // The spec requires a +Inf bucket, and _count equal to it when _sum is there.
                const auto& buckets = m.histogram.bucket;
                for (const auto& b : buckets) {
                    append_sample(out, name, "_bucket", m.label, "le", b.upper_bound,
                                  static_cast<double>(b.cumulative_count), m.timestamp_ms);
                }
                if (buckets.empty() || !std::isinf(buckets.back().upper_bound)) {
                    append_sample(out, name, "_bucket", m.label, "le",
                                  std::numeric_limits<double>::infinity(),
                                  static_cast<double>(m.histogram.sample_count), m.timestamp_ms);
                }
                append_sample(out, name, "_count", m,
                              static_cast<double>(m.histogram.sample_count));
                append_sample(out, name, "_sum", m, m.histogram.sample_sum);
                break;
            }
            }
        }
    }
    out += "# EOF\n";
    return out;
}

// ---- Accept ------------------------------------------------------------------------------

std::string_view trim(std::string_view s) {
    const std::size_t b = s.find_first_not_of(" \t");
    if (b == std::string_view::npos) {
        return {};
    }
    const std::size_t e = s.find_last_not_of(" \t");
    return s.substr(b, e - b + 1);
}

// Splits off the text up to sep (the rest stays in s).
std::string_view next_part(std::string_view& s, char sep) {
    const std::size_t at = s.find(sep);
    const std::string_view part = s.substr(0, at);
    s = at == std::string_view::npos ? std::string_view{} : s.substr(at + 1);
    return part;
}

} // namespace

std::vector<pm::MetricFamily> collect(const ScrapeSources& sources) {
    std::vector<pm::MetricFamily> out;
    out.reserve(48);
    Builder b(out);
    b.single("appserver_build_info",
             "Always 1; the labels give the appserver version and the Python version it runs.",
             pm::MetricType::Gauge, 1.0,
             {{"version", sources.version}, {"python", sources.python_version}});

    const StatsPage* page = sources.page;
    if (page == nullptr) {
        add_process_metrics(b, sources.master_pid);
        return out;
    }
    const std::size_t slots = page->slots();
    const std::size_t active =
        std::min(page->positions() != 0 ? page->positions() : sources.active_slots, slots);

    // Copy out under the lock: a retire() in between two reads would otherwise show a
    // replaced worker's counters twice or not at all.
    std::vector<SlotView> view(slots);
    std::array<std::uint64_t, restart_reason_labels.size()> restarts{};
    {
        std::lock_guard lock(page->mutex());
        for (std::size_t p = 0; p < slots; ++p) {
            SlotView& v = view[p];
            v.totals = page->totals(p);
            v.gil_wait_ns = page->gil_wait_ns(p);
            v.retired_cpu_ns = page->retired_cpu_ns(p);
        }
        for (std::size_t i = 0; i < slots; ++i) {
            const WorkerSlot& s = page->slot(i);
            const pid_t pid = s.pid.load(std::memory_order_acquire);
            if (pid <= 0) {
                continue;
            }
            SlotView& v = view[page->position_of(i)];
            v.pids.push_back(pid);
            v.ready = v.ready || s.ready.load(std::memory_order_acquire) != 0;
            v.queue_depth += s.queue_depth.load(std::memory_order_relaxed);
            v.queue_capacity += s.queue_capacity.load(std::memory_order_relaxed);
            v.blocking_threads += s.blocking_threads.load(std::memory_order_relaxed);
            v.connections_open += s.connections_open.load(std::memory_order_relaxed);
            // The busiest process's share: two loops at 50 % are not one at 100 %.
            v.loop_busy_ppm =
                std::max(v.loop_busy_ppm, s.loop_busy_ppm.load(std::memory_order_relaxed));
            for (std::size_t t = 0; t < page->threads(); ++t) {
                v.threads_busy += page->thread_line(i, t).busy.load(std::memory_order_relaxed);
            }
        }
        for (std::size_t r = 0; r < restarts.size(); ++r) {
            restarts[r] = page->restarts(static_cast<RestartReason>(r));
        }
    }

    std::vector<ProcessView> procs(active);
    for (std::size_t i = 0; i < active; ++i) {
        for (const pid_t pid : view[i].pids) {
            const std::string dir = "/proc/" + std::to_string(pid);
            if (const auto st = read_proc_stat(dir)) {
                procs[i].alive = procs[i].alive || st->alive();
                // A zombie still shows its CPU time; only a reaped process has none here
                // (and its rusage is then the master's to add with add_retired_cpu()).
                procs[i].cpu_seconds += as_double(st->cpu_ticks) / clock_ticks();
                procs[i].resident_bytes += as_double(st->rss_pages) * page_size();
                procs[i].open_fds += st->alive() ? as_double(count_fds(dir, false)) : 0.0;
            }
        }
    }

    // Sums over every slot of the page (not only the active ones), so a counter does not
    // drop when --workers shrinks on a reload and a slot past the new count keeps totals.
    Cumulative all{};
    std::uint64_t connections_open = 0;
    for (const SlotView& v : view) {
        for (std::size_t k = 0; k < idx::count; ++k) {
            all[k] += v.totals[k];
        }
        connections_open += v.connections_open;
    }

    // ---- server-wide ----
    b.single("appserver_workers", "Worker processes the server runs (--workers).",
             pm::MetricType::Gauge, as_double(active));
    {
        auto& f = b.family("appserver_worker_restarts_total",
                           "Workers the master started again after one ended, by reason.",
                           pm::MetricType::Counter);
        for (std::size_t r = 0; r < restarts.size(); ++r) {
            Builder::add(f, as_double(restarts[r]),
                         {{"reason", std::string(restart_reason_labels[r])}});
        }
    }
    if (sources.listen_tcp) {
        if (const auto q = listen_queue(sources.listen_fd)) {
            b.single("appserver_listen_queue_depth",
                     "Connections completed by the kernel and not yet accepted by a worker "
                     "(TCP_INFO of the listening socket, read at scrape).",
                     pm::MetricType::Gauge, as_double(q->first));
            b.single("appserver_listen_queue_capacity",
                     "Backlog of the listening socket (--backlog capped by somaxconn).",
                     pm::MetricType::Gauge, as_double(q->second));
        }
    }
    {
        auto& f = b.family("appserver_requests_total",
                           "Responses sent, by request method and status class.",
                           pm::MetricType::Counter);
        f.metric.reserve(method_labels.size() * code_labels.size());
        for (std::size_t m = 0; m < method_labels.size(); ++m) {
            for (std::size_t c = 0; c < code_labels.size(); ++c) {
                Builder::add(f, as_double(all[idx::requests + m * code_labels.size() + c]),
                             {{"method", std::string(method_labels[m])},
                              {"code", std::string(code_labels[c])}});
            }
        }
    }
    {
        auto& f = b.family("appserver_request_duration_seconds",
                           "Time from the first byte of a request to the last byte of its "
                           "response.",
                           pm::MetricType::Histogram);
        f.metric.push_back(histogram(all, idx::request_duration, request_duration_bounds, {}));
    }
    b.single("appserver_request_body_bytes_total",
             "Request body bytes read (after chunked decoding).", pm::MetricType::Counter,
             as_double(all[idx::request_body_bytes]));
    b.single("appserver_response_body_bytes_total",
             "Response body bytes sent (not counting the head).", pm::MetricType::Counter,
             as_double(all[idx::response_body_bytes]));
    b.single("appserver_connections_open", "Client connections open now.",
             pm::MetricType::Gauge, as_double(connections_open));
    b.single("appserver_connections_accepted_total", "Client connections accepted.",
             pm::MetricType::Counter, as_double(all[idx::connections_accepted]));
    {
        auto& f = b.family("appserver_connections_closed_total",
                           "Client connections closed, by reason.", pm::MetricType::Counter);
        for (std::size_t r = 0; r < close_reason_labels.size(); ++r) {
            Builder::add(f, as_double(all[idx::connections_closed + r]),
                         {{"reason", std::string(close_reason_labels[r])}});
        }
    }
    b.single("appserver_access_log_dropped_total",
             "Access log lines dropped because the writer could not keep up.",
             pm::MetricType::Counter, as_double(all[idx::access_log_dropped]));
    b.single("appserver_log_dropped_total",
             "Server log lines dropped because the writer could not keep up.",
             pm::MetricType::Counter, as_double(all[idx::log_dropped]));

    // ---- per worker ----
    auto per_worker = [&](std::string name, std::string help, pm::MetricType type,
                          auto&& value_of) {
        auto& f = b.family(std::move(name), std::move(help), type);
        f.metric.reserve(active);
        for (std::size_t i = 0; i < active; ++i) {
            Builder::add(f, value_of(i), worker_label(i));
        }
    };
    per_worker("appserver_worker_up",
               "1 while the worker in this slot is alive and serving, else 0 (read at scrape).",
               pm::MetricType::Gauge,
               [&](std::size_t i) { return procs[i].alive && view[i].ready ? 1.0 : 0.0; });
    per_worker("appserver_request_queue_depth",
               "Requests parsed and waiting for a blocking thread now.", pm::MetricType::Gauge,
               [&](std::size_t i) { return as_double(view[i].queue_depth); });
    per_worker("appserver_request_queue_capacity",
               "Capacity of the worker's request queue (--request-queue-size).",
               pm::MetricType::Gauge,
               [&](std::size_t i) { return as_double(view[i].queue_capacity); });
    {
        auto& f = b.family("appserver_request_queue_wait_seconds",
                           "Time from a request entering the queue to a blocking thread "
                           "taking it.",
                           pm::MetricType::Histogram);
        for (std::size_t i = 0; i < active; ++i) {
            f.metric.push_back(
                histogram(view[i].totals, idx::queue_wait, queue_wait_bounds, worker_label(i)));
        }
    }
    per_worker("appserver_request_queue_rejected_total",
               "Requests answered 503 because the worker's queue was full.",
               pm::MetricType::Counter,
               [&](std::size_t i) { return as_double(view[i].totals[idx::queue_rejected]); });
    per_worker("appserver_request_queue_expired_total",
               "Requests answered 503 because they waited past --request-queue-timeout.",
               pm::MetricType::Counter,
               [&](std::size_t i) { return as_double(view[i].totals[idx::queue_expired]); });
    per_worker("appserver_request_queue_abandoned_total",
               "Queued requests dropped because their client had left.",
               pm::MetricType::Counter,
               [&](std::size_t i) { return as_double(view[i].totals[idx::queue_abandoned]); });
    per_worker("appserver_event_loop_busy_ratio",
               "Share of the last second the worker's event-loop thread spent on the CPU.",
               pm::MetricType::Gauge,
               [&](std::size_t i) { return as_double(view[i].loop_busy_ppm) / 1e6; });
    per_worker("appserver_event_loop_busy_seconds_total",
               "CPU time of the worker's event-loop thread (updated about once a second).",
               pm::MetricType::Counter,
               [&](std::size_t i) { return seconds(view[i].totals[idx::loop_busy_ns]); });
    {
        auto& f = b.family("appserver_event_loop_lag_seconds",
                           "How late the event loop's periodic timer fired (about one "
                           "observation per second).",
                           pm::MetricType::Histogram);
        for (std::size_t i = 0; i < active; ++i) {
            f.metric.push_back(
                histogram(view[i].totals, idx::loop_lag, loop_lag_bounds, worker_label(i)));
        }
    }
    per_worker("appserver_blocking_threads",
               "Blocking threads of the worker (--blocking-threads).", pm::MetricType::Gauge,
               [&](std::size_t i) { return as_double(view[i].blocking_threads); });
    per_worker("appserver_blocking_threads_busy", "Blocking threads running a request now.",
               pm::MetricType::Gauge,
               [&](std::size_t i) { return as_double(view[i].threads_busy); });
    per_worker("appserver_gil_wait_seconds_total",
               "Time the blocking threads spent waiting for the GIL before running a request.",
               pm::MetricType::Counter,
               [&](std::size_t i) { return seconds(view[i].gil_wait_ns); });
    per_worker("appserver_worker_resident_memory_bytes",
               "Resident memory of the worker process (/proc, read at scrape).",
               pm::MetricType::Gauge, [&](std::size_t i) { return procs[i].resident_bytes; });
    per_worker("appserver_worker_cpu_seconds_total",
               "User and system CPU time of the workers that ran in this slot, replaced ones "
               "included (read at scrape).",
               pm::MetricType::Counter, [&](std::size_t i) {
                   return procs[i].cpu_seconds + seconds(view[i].retired_cpu_ns);
               });
    per_worker("appserver_worker_open_fds",
               "Open file descriptors of the worker process (/proc, read at scrape).",
               pm::MetricType::Gauge, [&](std::size_t i) { return procs[i].open_fds; });

    add_process_metrics(b, sources.master_pid);
    return out;
}

ExpositionFormat negotiate(std::string_view accept_header) {
    // Best q-value of a range each format matches; -1 = not named at all.
    double openmetrics_q = -1;
    double text_q = -1;
    while (!accept_header.empty()) {
        std::string_view element = next_part(accept_header, ',');
        const std::string_view range = trim(next_part(element, ';'));
        double q = 1;
        std::string_view version;
        while (!element.empty()) {
            std::string_view param = next_part(element, ';');
            const std::string_view name = trim(next_part(param, '='));
            std::string_view value = trim(param);
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
                value = value.substr(1, value.size() - 2);
            }
            if (http::iequals(name, "q")) {
                const auto r = std::from_chars(value.data(), value.data() + value.size(), q);
                if (r.ec != std::errc{} || r.ptr != value.data() + value.size()) {
                    q = 0; // a malformed weight: do not act on that range
                }
                q = std::clamp(q, 0.0, 1.0);
            } else if (http::iequals(name, "version")) {
                version = value;
            }
        }
        if (http::iequals(range, "application/openmetrics-text")) {
            // 0.0.1 is the draft Prometheus 2.x also lists; the text is the same.
            if (version.empty() || version == "1.0.0" || version == "0.0.1") {
                openmetrics_q = std::max(openmetrics_q, q);
            }
        } else if (http::iequals(range, "text/plain") || http::iequals(range, "text/*") ||
                   range == "*/*") {
            text_q = std::max(text_q, q);
        }
    }
    return openmetrics_q > 0 && openmetrics_q >= text_q ? ExpositionFormat::openmetrics
                                                        : ExpositionFormat::prometheus;
}

std::string_view content_type(ExpositionFormat format) {
    return format == ExpositionFormat::openmetrics
               ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
               : "text/plain; version=0.0.4; charset=utf-8";
}

std::string serialize(const std::vector<pm::MetricFamily>& families, ExpositionFormat format) {
    if (format == ExpositionFormat::openmetrics) {
        return to_openmetrics(families);
    }
    return pm::TextSerializer().Serialize(families);
}

} // namespace appserver::metrics
