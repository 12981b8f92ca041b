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

} // namespace appserver::log
