// --version's report. Needs no initialised interpreter: Py_GetVersion() is static data.
#include "cli/version.hpp"

#include <CLI/Version.hpp>
#include <boost/version.hpp>
#include <llhttp.h>
#include <pybind11/detail/common.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/version.h>

#include <Python.h>

#include <string>
#include <string_view>

#ifndef APPSERVER_VERSION
#error "APPSERVER_VERSION must be defined by the build (see CMakeLists.txt)"
#endif

#define APPSERVER_STRINGIFY_(x) #x
#define APPSERVER_STRINGIFY(x) APPSERVER_STRINGIFY_(x)

namespace appserver::cli {
namespace {

std::string dotted(int major, int minor, int patch) {
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

} // namespace

std::string version_report() {
    const std::string_view python = Py_GetVersion(); // "3.11.2 (main, ...) [GCC ...]"
    std::string out;
    out += "appserver " APPSERVER_VERSION "\n";
    out += "Python " + std::string(python.substr(0, python.find(' '))) + "\n";
    out += "Boost " +
           dotted(BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000, BOOST_VERSION % 100) + "\n";
    out +=
        "llhttp " + dotted(LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH) + "\n";
    // The patch part may be text ("0.dev1"): spelled as the header spells it.
    out += "pybind11 " APPSERVER_STRINGIFY(PYBIND11_VERSION_MAJOR) "." APPSERVER_STRINGIFY(
        PYBIND11_VERSION_MINOR) "." APPSERVER_STRINGIFY(PYBIND11_VERSION_PATCH) "\n";
    out += "spdlog " + dotted(SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH) + "\n";
    out += "fmt " + dotted(FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100) + "\n";
#ifdef APPSERVER_PROMETHEUS_CPP_VERSION
    // prometheus-cpp has no version header; CMake's package version, when it has one.
    if (std::string_view(APPSERVER_PROMETHEUS_CPP_VERSION).size() > 0) {
        out += "prometheus-cpp " APPSERVER_PROMETHEUS_CPP_VERSION "\n";
    }
#endif
    out += "CLI11 " CLI11_VERSION "\n";
    return out;
}

} // namespace appserver::cli
