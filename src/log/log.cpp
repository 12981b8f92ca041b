// Logging setup (see log.hpp).
#include "log/log.hpp"

#include "log/throttle.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <memory>

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
std::shared_ptr<spdlog::logger> app_logger;
}

// ISO 8601 local time with its UTC offset, so lines from hosts in other zones (or a
// container without one) still sort and parse.
void init(LogLevel level, const std::string& process_name) {
    // A sink each (a sink owns its line format); spdlog's console sinks share one mutex,
    // so lines of the two loggers are never spliced.
    auto logger = std::make_shared<spdlog::logger>(
        process_name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("[%Y-%m-%dT%H:%M:%S.%e%z] [%n] [%P] [%^%l%$] %v");
    logger->set_level(to_spdlog(level));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(std::move(logger));
    auto app = std::make_shared<spdlog::logger>(
        process_name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
    app->set_pattern("[%Y-%m-%dT%H:%M:%S.%e%z] [%n] [%P] [wsgi.errors] %v");
    app->set_level(spdlog::level::trace);
    app->flush_on(spdlog::level::trace);
    app_logger = std::move(app);
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
