// Public entry points of the appserver core. The embedding program owns the Python
// interpreter: initialise it and hold the GIL on the calling thread before calling these.
#pragma once

#include <appserver/config.hpp>

#include <string>
#include <vector>

namespace appserver {

// "0.1.0"
const char* version();

// Parses a command line (args[0] = program name) and the APPSERVER_* environment, then
// runs the server until it is stopped. Returns the process exit code. Usage errors and
// --help/--version return without touching Python.
int run_command_line(const std::vector<std::string>& args);

// Runs the server with a ready configuration: imports the app, binds, forks the
// workers, supervises them until SIGINT/SIGTERM. Returns the process exit code.
int run(const Config& config);

} // namespace appserver
