// Front door 2: the extension module behind `python -m appserver` and the `appserver`
// console script. The interpreter is the one already running.
#include <appserver/server.hpp>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;

PYBIND11_MODULE(_appserver, m) {
    m.doc() = "appserver native core";
    m.attr("__version__") = appserver::version();
    m.def(
        "main",
        [](const std::vector<std::string>& argv) { return appserver::run_command_line(argv); },
        py::arg("argv"),
        "Run appserver with a command line (argv[0] is the program name); returns the exit "
        "code.");
}
