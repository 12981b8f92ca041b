// Unit tests for --version's report (src/cli/version.hpp).
#include "cli/version.hpp"

#include <gtest/gtest.h>

#include <Python.h>

#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace {

TEST(Version, OneNameAndVersionPerLine) {
    const std::string report = appserver::cli::version_report();
    std::vector<std::string> names;
    std::istringstream in(report);
    const std::regex line(R"(([A-Za-z0-9+-]+) (\d+\.\d+\.\S+))");
    for (std::string text; std::getline(in, text);) {
        std::smatch match;
        ASSERT_TRUE(std::regex_match(text, match, line)) << text;
        names.push_back(match[1]);
    }
    const std::vector<std::string> expected{"appserver", "Python",         "Boost",
                                            "llhttp",    "pybind11",       "spdlog",
                                            "fmt",       "prometheus-cpp", "CLI11"};
    EXPECT_EQ(names, expected) << report;
    EXPECT_EQ(report.back(), '\n');
}

TEST(Version, PythonIsTheRunningInterpreter) {
    const std::string report = appserver::cli::version_report();
    EXPECT_NE(report.find("\nPython " PY_VERSION "\n"), std::string::npos) << report;
}

} // namespace
