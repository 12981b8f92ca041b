// The access log: one line per request in a gunicorn-style format (or JSON), formatted
// on the thread that finished the request and written by a LineWriter.
#pragma once

#include "log/line_writer.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace appserver::log {

// What the server knows of a finished request. Views into the connection's buffers: valid
// for the duration of AccessLog::write() only.
struct AccessRecord {
    std::string_view remote_addr; // "" for a unix-socket peer
    std::uint16_t remote_port = 0;
    std::string_view method; // as sent, "" when the request head never parsed
    std::string_view target; // raw request-target as sent (path?query), "" when unknown
    unsigned version_major = 1, version_minor = 1;
    int status = 0; // 0: no response was sent
    std::uint64_t request_body_bytes = 0;
    std::uint64_t response_body_bytes = 0;
    std::chrono::system_clock::time_point start; // when the request's first byte arrived
    std::chrono::nanoseconds duration{0};        // first request byte -> last response byte
    std::string_view request_id;
    unsigned worker = 0;
    // First field with this name (case-insensitive), or nullopt. Either may be null.
    const void* context = nullptr;
    std::optional<std::string_view> (*request_header)(const void*, std::string_view) = nullptr;
    std::optional<std::string_view> (*response_header)(const void*, std::string_view) = nullptr;
};

// A compiled --access-log-format: "common", "combined", "json", or gunicorn's atoms
// (%(h)s, %({name}i)s, ...; see docs/cli.md) plus %(rid)s and %(w)s.
class AccessLogFormat {
public:
    static std::optional<AccessLogFormat> compile(std::string_view spec, std::string& error);

    // Appends one line, '\n'-terminated. Thread-safe; allocates nothing once `out` has
    // room for a line.
    void format(const AccessRecord& record, std::string& out) const;

    bool is_json() const noexcept { return json_; }

    enum class Atom : std::uint8_t {
        literal,
        remote_addr,     // h
        dash,            // l
        user,            // u
        time,            // t
        request_line,    // r
        method,          // m
        path,            // U
        query,           // q
        protocol,        // H
        status,          // s
        body_bytes,      // B
        body_bytes_dash, // b
        referer,         // f
        user_agent,      // a
        seconds,         // T
        milliseconds,    // M
        microseconds,    // D
        decimal_seconds, // L
        pid,             // p
        request_header,  // {name}i
        response_header, // {name}o
        request_id,      // rid
        worker,          // w
    };

private:
    struct Part {
        Atom atom;
        std::string text; // the literal, or the header name
    };

    AccessLogFormat() = default;
    void format_text(const AccessRecord& record, std::string& out) const;
    void format_json(const AccessRecord& record, std::string& out) const;

    std::vector<Part> parts_;
    bool json_ = false;
};

// "" when `spec` compiles, else why not (the CLI refuses a bad --access-log-format).
std::string check_access_log_format(std::string_view spec);

class AccessLog {
public:
    AccessLog(std::unique_ptr<LineWriter> writer, AccessLogFormat format);

    // Formats the line on the calling thread and hands it to the writer; never blocks on
    // I/O (a full buffer drops the line and counts it).
    void write(const AccessRecord& record) noexcept;

    void start() { writer_->start(); }
    void reopen() { writer_->reopen(); }
    void flush() { writer_->flush(); }
    LineWriter& writer() noexcept { return *writer_; }
    const AccessLogFormat& format() const noexcept { return format_; }

private:
    std::unique_ptr<LineWriter> writer_;
    AccessLogFormat format_;
};

} // namespace appserver::log
