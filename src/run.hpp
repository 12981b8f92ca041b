// The front doors' way into run(): the configuration and the warnings found while reading it
// (an --ini option ignored here), which are logged once the server's log is set up.
#pragma once

#include <appserver/config.hpp>

#include <string>
#include <vector>

namespace appserver {

int run(const Config& config, const std::vector<std::string>& startup_warnings);

} // namespace appserver
