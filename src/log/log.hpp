// Process-wide logging on spdlog: one stderr logger whose name says which process
// (master or worker N) wrote the line.
#pragma once

#include <appserver/config.hpp>

#include <spdlog/spdlog.h>

#include <string>

namespace appserver::log {

// Sets the default spdlog logger; safe to call again after fork to rename it.
void init(LogLevel level, const std::string& process_name);

spdlog::level::level_enum to_spdlog(LogLevel level);

// What the app writes to wsgi.errors: the same stream and process name, with
// "wsgi.errors" where the level would be. The app's text has no level the server could
// know (Flask's app.logger.info goes there too), so it is neither labelled an error nor
// filtered by --log-level.
spdlog::logger& app_output();

// Lines a client can cause (bad requests, timeouts, cut-off responses): 20 per 10 s per
// process, the rest counted; the worker's sweep reports the count.
class Throttle;
Throttle& client_events();

} // namespace appserver::log
