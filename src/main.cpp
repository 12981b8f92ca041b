// Front door 1: the standalone executable. Embeds CPython (pybind11::embed) and hands
// the command line to the core. Which Python: the libpython it was linked with (found
// through its RUNPATH, see CMakeLists.txt), with the packages of the virtualenv it is told
// to use (--virtualenv, or an activated one).
#include <appserver/server.hpp>

#include "cli/options.hpp"
#include "run.hpp"

#include <pybind11/embed.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

struct Virtualenv {
    std::string dir;
    std::string named_by; // "--virtualenv" or "VIRTUAL_ENV", for the error messages
    std::string python;   // its interpreter: becomes sys.executable
};

// "version = 3.11.7" (venv) or "version_info = 3.11.7.final.0" (virtualenv) -> "3.11.7...".
std::string pyvenv_version(const std::string& dir) {
    std::ifstream in(dir + "/pyvenv.cfg");
    std::string line;
    while (std::getline(in, line)) {
        const auto eq = line.find('=');
        if (eq == std::string::npos) {
            continue;
        }
        std::string key = line.substr(0, eq);
        key.erase(key.find_last_not_of(" \t") + 1);
        if (key == "version" || key == "version_info") {
            const auto start = line.find_first_not_of(" \t", eq + 1);
            return start == std::string::npos ? "" : line.substr(start);
        }
    }
    return {};
}

bool same_minor_version(const std::string& version) {
    const std::string ours =
        std::to_string(PY_MAJOR_VERSION) + "." + std::to_string(PY_MINOR_VERSION);
    return version.compare(0, ours.size(), ours) == 0 &&
           (version.size() == ours.size() || version[ours.size()] == '.');
}

// The virtualenv to use, or nullopt for the bare interpreter; an error line when the one
// named cannot be used. The interpreter finds the environment itself (CPython's getpath
// reads pyvenv.cfg beside the executable it is given), exactly as `venv/bin/python` would.
std::optional<Virtualenv> choose_virtualenv(const appserver::Config& config, std::string& error) {
    Virtualenv venv;
    if (!config.virtualenv.empty()) {
        venv.dir = config.virtualenv;
        venv.named_by = "--virtualenv";
    } else if (const char* active = std::getenv("VIRTUAL_ENV");
               active != nullptr && *active != '\0') {
        venv.dir = active;
        venv.named_by = "VIRTUAL_ENV";
    } else {
        return std::nullopt;
    }
    while (venv.dir.size() > 1 && venv.dir.back() == '/') {
        venv.dir.pop_back();
    }
    const std::string where = "the virtualenv " + venv.dir + " (" + venv.named_by + ")";
    if (::access((venv.dir + "/pyvenv.cfg").c_str(), R_OK) != 0) {
        error = where + " is not a virtualenv: it has no pyvenv.cfg";
        return std::nullopt;
    }
    const std::string version = pyvenv_version(venv.dir);
    if (!version.empty() && !same_minor_version(version)) {
        error = where + " was made with Python " + version + ", but appserver embeds Python " +
                PY_VERSION + ": make the virtualenv with python" +
                std::to_string(PY_MAJOR_VERSION) + "." + std::to_string(PY_MINOR_VERSION) +
                ", or build appserver against the virtualenv's Python";
        return std::nullopt;
    }
    for (const char* name : {"python", "python3"}) {
        const std::string candidate = venv.dir + "/bin/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) {
            venv.python = candidate;
            break;
        }
    }
    if (venv.python.empty()) {
        error = where + " has no bin/python";
        return std::nullopt;
    }
    return venv;
}

} // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    // Usage errors, --help and --version need no interpreter.
    appserver::cli::ParseOutcome outcome = appserver::cli::parse(args);
    if (outcome.kind == appserver::cli::ParseOutcome::Kind::exit) {
        return appserver::cli::print_and_exit_code(outcome);
    }
    std::string venv_error;
    const std::optional<Virtualenv> venv = choose_virtualenv(outcome.config, venv_error);
    if (!venv_error.empty()) {
        std::fprintf(stderr, "appserver: error: %s\n", venv_error.c_str());
        return 1;
    }

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;
    // sys.executable must be a Python interpreter, not this server: apps run
    // subprocess([sys.executable, ...]) and multiprocessing's spawn/forkserver start it
    // with Python's own options. In a virtualenv that is its python (so its site-packages
    // apply there too); otherwise the interpreter appserver was built against, when it is
    // still there.
    std::string executable;
    if (venv) {
        PyConfig_SetBytesString(&config, &config.program_name, venv->python.c_str());
        executable = venv->python;
    } else if (::access(APPSERVER_PYTHON_EXECUTABLE, X_OK) == 0) {
        executable = APPSERVER_PYTHON_EXECUTABLE;
    }
    if (!executable.empty()) {
        PyConfig_SetBytesString(&config, &config.executable, executable.c_str());
    }
    const char* py_argv[] = {argv[0]};
    py::scoped_interpreter interpreter(&config, 1, py_argv, false);
    return appserver::run(outcome.config, outcome.warnings);
}
