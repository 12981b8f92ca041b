// Command-line and environment parsing. One option table drives the flags, the
// APPSERVER_<NAME> environment variables, --help and docs/cli.md.
#pragma once

#include <appserver/config.hpp>

#include <functional>
#include <string>
#include <vector>

namespace appserver::cli {

struct ParseOutcome {
    enum class Kind { run, exit };
    Kind kind = Kind::run;
    int exit_code = 0;   // for Kind::exit: 0 for --help/--version, 2 for usage errors
    std::string output;  // for Kind::exit: text to print (stdout when exit_code == 0, else stderr)
    Config config;       // for Kind::run
    // One line each (an --ini option ignored here): for Kind::run the server logs them once
    // its log is set up; for Kind::exit print_and_exit_code writes them to stderr first.
    std::vector<std::string> warnings;
};

using EnvLookup = std::function<const char*(const char*)>;

// args[0] is the program name. env defaults to ::getenv.
ParseOutcome parse(const std::vector<std::string>& args, const EnvLookup& env = {});

// One warning line for each name that starts with APPSERVER_ but is no option's variable
// (a typo such as APPSERVER_WORKER, or an alias's name): such a variable is ignored.
std::vector<std::string> unknown_environment_variables(const std::vector<std::string>& names);

// For Kind::exit: prints the warnings (stderr), then output (stdout for exit code 0, else
// stderr), and returns the code.
int print_and_exit_code(const ParseOutcome& outcome);

// The CLI reference as Markdown, generated from the option table (docs/cli.md).
std::string markdown_reference();

} // namespace appserver::cli
