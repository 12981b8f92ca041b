// --version: appserver's version, the Python it runs on and the libraries built into it.
#pragma once

#include <string>

namespace appserver::cli {

// One "name version" per line: appserver first, then Python (the interpreter this process
// runs: the embedded libpython, or the one that loaded the extension module), then the
// libraries, as their headers said when appserver was built.
std::string version_report();

} // namespace appserver::cli
