// Process-wide logging on spdlog: one stderr logger whose name says which process
// (master or worker N) wrote the line, as text or JSON, written off the hot threads.
#pragma once

#include <appserver/config.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace appserver::log {

// Sets the default spdlog logger and app_output(); safe to call again after fork (a
// worker renames its logger). `background` (worker processes, after the fork): lines are
// formatted on the calling thread and written by a writer thread started here, so no
// caller ever blocks in write(2); a full buffer drops lines (counted, see
// set_dropped_counter). Without it, lines are written synchronously: the master, which
// forks and must have no other thread then.
void init(LogLevel level, const std::string& process_name, LogFormat format = LogFormat::text,
          bool background = false);

// Writes out what the background writer holds (before _exit); also flushes the loggers.
void flush();

// Where the background writer also counts the lines it drops (shared memory read by the
// metrics endpoint); kept across init() calls. nullptr stops it.
void set_dropped_counter(std::atomic<std::uint64_t>* counter);

spdlog::level::level_enum to_spdlog(LogLevel level);

// What the app writes to wsgi.errors: the same stream and process name, with
// "wsgi.errors" where the level would be (JSON: "level":"app"). The app's text has no
// level the server could know (Flask's app.logger.info goes there too), so it is neither
// labelled an error nor filtered by --log-level.
spdlog::logger& app_output();

// The request a thread is working on, added to its log lines ("[request_id=...]" in text,
// "request_id" in JSON) while the scope lives; scopes nest (the previous id comes back).
// The id is not copied (no allocation per request): it must outlive the scope.
class RequestIdScope {
public:
    explicit RequestIdScope(std::string_view id) noexcept;
    ~RequestIdScope();
    RequestIdScope(const RequestIdScope&) = delete;
    RequestIdScope& operator=(const RequestIdScope&) = delete;

private:
    std::string_view previous_;
};

// "" when no RequestIdScope is active on this thread.
std::string_view current_request_id() noexcept;

// getpid(), without a system call each time (glibc no longer caches it); a forked child
// gets its own.
int process_id() noexcept;

// Lines a client can cause (bad requests, timeouts, cut-off responses): 20 per 10 s per
// process, the rest counted; the worker's sweep reports the count.
class Throttle;
Throttle& client_events();

} // namespace appserver::log
