// Logging setup (see log.hpp): the text and JSON line formats, the request id, and the
// sink that hands lines to the background writer.
#include "log/log.hpp"

#include "log/line_writer.hpp"
#include "log/throttle.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <charconv>
#include <ctime>
#include <memory>
#include <mutex>

#include <pthread.h>
#include <unistd.h>

namespace appserver::log {

spdlog::level::level_enum to_spdlog(LogLevel level) {
    switch (level) {
    case LogLevel::debug: return spdlog::level::debug;
    case LogLevel::info: return spdlog::level::info;
    case LogLevel::warning: return spdlog::level::warn;
    case LogLevel::error: return spdlog::level::err;
    case LogLevel::critical: return spdlog::level::critical;
    }
    return spdlog::level::info;
}

namespace {

constexpr std::size_t server_log_capacity = 1024 * 1024;
constexpr char hex_digits[] = "0123456789abcdef";

thread_local std::string_view current_id;
std::atomic<int> cached_pid{0};

std::shared_ptr<spdlog::logger> app_logger;
std::shared_ptr<LineWriter> background_writer;
std::atomic<std::atomic<std::uint64_t>*> dropped_counter{nullptr};

void append(spdlog::memory_buf_t& out, std::string_view s) {
    out.append(s.data(), s.data() + s.size());
}

// Length of the valid UTF-8 sequence at s[i] (a non-ASCII lead byte), 0 if invalid.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) {
        return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0U;
    };
    const auto cont = [&](std::size_t k) { return (b(k) & 0xc0U) == 0x80U; };
    const unsigned c = b(0);
    if (c >= 0xc2 && c <= 0xdf) {
        return cont(1) ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        const unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return b(1) >= lo && b(1) <= hi && cont(2) ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        const unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return b(1) >= lo && b(1) <= hi && cont(2) && cont(3) ? 4 : 0;
    }
    return 0;
}

// A JSON string (RFC 8259): valid UTF-8 is kept (a traceback's non-ASCII text stays
// readable), a byte that is not is written \u00XX, so the line is always valid JSON.
void append_json_string(spdlog::memory_buf_t& out, std::string_view s) {
    out.push_back('"');
    std::size_t clean = 0;
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            ++i;
            continue;
        }
        if (c >= 0x80) {
            if (const std::size_t n = utf8_sequence(s, i); n != 0) {
                i += n;
                continue;
            }
        }
        append(out, s.substr(clean, i - clean));
        switch (c) {
        case '"': append(out, "\\\""); break;
        case '\\': append(out, "\\\\"); break;
        case '\n': append(out, "\\n"); break;
        case '\r': append(out, "\\r"); break;
        case '\t': append(out, "\\t"); break;
        default: {
            const char esc[6] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 0xf]};
            out.append(esc, esc + 6);
        }
        }
        clean = ++i;
    }
    append(out, s.substr(clean));
    out.push_back('"');
}

// Text format: "[request_id=...] " before the message, only while an id is set, so lines
// without one are exactly what they always were. The id may come from a client's header:
// bytes that could forge a line are written \xHH.
class RequestIdFlag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg&, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        const std::string_view id = current_id;
        if (id.empty()) {
            return;
        }
        append(dest, "[request_id=");
        for (const char ch : id) {
            const auto c = static_cast<unsigned char>(ch);
            if (c < 0x20 || c >= 0x7f || c == ']' || c == '\\') {
                const char esc[4] = {'\\', 'x', hex_digits[c >> 4], hex_digits[c & 0xf]};
                dest.append(esc, esc + 4);
            } else {
                dest.push_back(ch);
            }
        }
        append(dest, "] ");
    }

    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<RequestIdFlag>();
    }
};

std::unique_ptr<spdlog::formatter> text_formatter(std::string_view level_field) {
    // ISO 8601 local time with its UTC offset, so lines from hosts in other zones (or a
    // container without one) still sort and parse.
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<RequestIdFlag>('&').set_pattern("[%Y-%m-%dT%H:%M:%S.%e%z] [%n] [%P] [" +
                                                std::string(level_field) + "] %&%v");
    return f;
}

// One JSON object per line:
// {"time":"2026-12-08T01:02:03.456+00:00","level":"info","process":"worker.0","pid":123,
//  "message":"...","request_id":"..."} (request_id only while one is set). wsgi.errors
// lines have "level":"app": like the text format, which puts "wsgi.errors" where the
// level goes, it says where the line came from without inventing a severity, and every
// line keeps the same keys.
class JsonFormatter final : public spdlog::formatter {
public:
    explicit JsonFormatter(bool app) : app_(app) {}

    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        const auto since_epoch = msg.time.time_since_epoch();
        const auto second = std::chrono::floor<std::chrono::seconds>(since_epoch);
        if (second.count() != cached_second_) {
            cache_time(second.count());
        }
        const auto ms = static_cast<int>(
            std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - second)
                .count());
        append(dest, R"({"time":")");
        append(dest, std::string_view(date_, date_size_));
        const char millis[4] = {'.', static_cast<char>('0' + ms / 100),
                                static_cast<char>('0' + ms / 10 % 10),
                                static_cast<char>('0' + ms % 10)};
        dest.append(millis, millis + 4);
        append(dest, std::string_view(offset_, 6));
        append(dest, R"(","level":")");
        append(dest, app_ ? std::string_view("app") : level_name(msg.level));
        append(dest, R"(","process":)");
        append_json_string(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
        append(dest, R"(,"pid":)");
        char pid[16];
        dest.append(pid, std::to_chars(pid, pid + sizeof pid, process_id()).ptr);
        append(dest, R"(,"message":)");
        append_json_string(dest, std::string_view(msg.payload.data(), msg.payload.size()));
        if (const std::string_view id = current_id; !id.empty()) {
            append(dest, R"(,"request_id":)");
            append_json_string(dest, id);
        }
        append(dest, "}\n");
    }

    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonFormatter>(app_);
    }

private:
    // The names --log-level takes.
    static std::string_view level_name(spdlog::level::level_enum level) {
        switch (level) {
        case spdlog::level::trace: return "trace";
        case spdlog::level::debug: return "debug";
        case spdlog::level::info: return "info";
        case spdlog::level::warn: return "warning";
        case spdlog::level::err: return "error";
        case spdlog::level::critical: return "critical";
        default: return "info";
        }
    }

    // Called under the sink's mutex, at most once a second.
    void cache_time(std::int64_t second) {
        const auto t = static_cast<std::time_t>(second);
        std::tm tm{};
        ::localtime_r(&t, &tm);
        date_size_ = std::strftime(date_, sizeof date_, "%Y-%m-%dT%H:%M:%S", &tm);
        const long gmtoff = tm.tm_gmtoff;
        const long minutes = (gmtoff < 0 ? -gmtoff : gmtoff) / 60;
        offset_[0] = gmtoff < 0 ? '-' : '+';
        offset_[1] = static_cast<char>('0' + minutes / 60 / 10 % 10);
        offset_[2] = static_cast<char>('0' + minutes / 60 % 10);
        offset_[3] = ':';
        offset_[4] = static_cast<char>('0' + minutes % 60 / 10);
        offset_[5] = static_cast<char>('0' + minutes % 10);
        cached_second_ = second;
    }

    const bool app_;
    std::int64_t cached_second_ = INT64_MIN;
    char date_[32] = {};
    std::size_t date_size_ = 0;
    char offset_[6] = {};
};

// Formats on the logging thread (under this sink's mutex), then hands the line to the
// writer: never a write(2) on the caller's thread.
class WriterSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit WriterSink(std::shared_ptr<LineWriter> writer) : writer_(std::move(writer)) {}

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        line_.clear(); // keeps its capacity: no allocation per line
        formatter_->format(msg, line_);
        writer_->push(std::string_view(line_.data(), line_.size()));
    }

    // Only an explicit flush (log::flush(), logger->flush()) gets here: the loggers do not
    // flush_on any level, which would make every line wait for the disk.
    void flush_() override { writer_->flush(); }

private:
    std::shared_ptr<LineWriter> writer_;
    spdlog::memory_buf_t line_;
};

std::shared_ptr<spdlog::logger> make_logger(const std::string& name,
                                            const std::shared_ptr<LineWriter>& writer,
                                            LogFormat format, bool app) {
    // A sink each (a sink owns its line format); spdlog's console sinks share one mutex,
    // and the writer takes whole lines, so lines of the two loggers are never spliced.
    spdlog::sink_ptr sink;
    if (writer != nullptr) {
        sink = std::make_shared<WriterSink>(writer);
    } else {
        sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    }
    auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
    if (format == LogFormat::json) {
        logger->set_formatter(std::make_unique<JsonFormatter>(app));
    } else {
        logger->set_formatter(text_formatter(app ? "wsgi.errors" : "%^%l%$"));
    }
    if (writer != nullptr) {
        logger->flush_on(spdlog::level::off);
    } else {
        logger->flush_on(app ? spdlog::level::trace : spdlog::level::info);
    }
    return logger;
}

} // namespace

void init(LogLevel level, const std::string& process_name, LogFormat format, bool background) {
    std::shared_ptr<LineWriter> writer;
    if (background) {
        writer = LineWriter::for_fd(STDERR_FILENO, server_log_capacity);
        writer->set_drop_counter(dropped_counter.load(std::memory_order_acquire));
        writer->start();
    }
    auto logger = make_logger(process_name, writer, format, false);
    logger->set_level(to_spdlog(level));
    auto app = make_logger(process_name, writer, format, true);
    app->set_level(spdlog::level::trace);

    // What the previous loggers still hold goes out before the new ones write. A writer
    // inherited through fork is not flushed (its thread stayed in the parent): it is left
    // to the sinks that share it, and its destructor leaks it (see ~LineWriter).
    if (background_writer != nullptr) {
        background_writer->flush();
    }
    spdlog::set_default_logger(std::move(logger));
    app_logger = std::move(app);
    background_writer = std::move(writer);
}

void flush() {
    if (background_writer != nullptr) {
        background_writer->flush();
    }
    if (auto* logger = spdlog::default_logger_raw(); logger != nullptr) {
        logger->flush();
    }
    if (app_logger != nullptr) {
        app_logger->flush();
    }
}

void set_dropped_counter(std::atomic<std::uint64_t>* counter) {
    dropped_counter.store(counter, std::memory_order_release);
    if (background_writer != nullptr) {
        background_writer->set_drop_counter(counter);
    }
}

RequestIdScope::RequestIdScope(std::string_view id) noexcept : previous_(current_id) {
    current_id = id;
}

RequestIdScope::~RequestIdScope() {
    current_id = previous_;
}

std::string_view current_request_id() noexcept {
    return current_id;
}

int process_id() noexcept {
    int pid = cached_pid.load(std::memory_order_relaxed);
    if (pid == 0) {
        static const bool reset_in_children =
            ::pthread_atfork(nullptr, nullptr, [] { cached_pid.store(0); }) == 0;
        (void)reset_in_children;
        pid = static_cast<int>(::getpid());
        cached_pid.store(pid, std::memory_order_relaxed);
    }
    return pid;
}

Throttle& client_events() {
    static Throttle throttle(20, std::chrono::seconds(10));
    return throttle;
}

spdlog::logger& app_output() {
    // Set by init() before any app code runs (re-set, renamed, in each worker); a host
    // that embeds the library without init() gets its default logger.
    return app_logger != nullptr ? *app_logger : *spdlog::default_logger_raw();
}

} // namespace appserver::log
