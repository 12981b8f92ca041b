// Front door 1: the standalone executable. Embeds CPython (pybind11::embed) and hands
// the command line to the core.
#include <appserver/server.hpp>

#include "cli/options.hpp"
#include "run.hpp"

#include <pybind11/embed.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace py = pybind11;

int main(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    // Usage errors, --help and --version need no interpreter.
    appserver::cli::ParseOutcome outcome = appserver::cli::parse(args);
    if (outcome.kind == appserver::cli::ParseOutcome::Kind::exit) {
        return appserver::cli::print_and_exit_code(outcome);
    }

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;
    // sys.executable must be a Python interpreter, not this server: apps run
    // subprocess([sys.executable, ...]) and multiprocessing's spawn/forkserver start it
    // with Python's own options. Inside an activated virtualenv that is its python (so
    // its site-packages apply too); otherwise the interpreter appserver was built
    // against, when it is still there.
    std::string executable;
    if (const char* venv = std::getenv("VIRTUAL_ENV"); venv != nullptr && *venv != '\0') {
        const std::string venv_python = std::string(venv) + "/bin/python";
        PyConfig_SetBytesString(&config, &config.program_name, venv_python.c_str());
        if (::access(venv_python.c_str(), X_OK) == 0) {
            executable = venv_python;
        }
    }
    if (executable.empty() && ::access(APPSERVER_PYTHON_EXECUTABLE, X_OK) == 0) {
        executable = APPSERVER_PYTHON_EXECUTABLE;
    }
    if (!executable.empty()) {
        PyConfig_SetBytesString(&config, &config.executable, executable.c_str());
    }
    const char* py_argv[] = {argv[0]};
    py::scoped_interpreter interpreter(&config, 1, py_argv, false);
    return appserver::run(outcome.config, outcome.warnings);
}
