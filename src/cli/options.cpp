// Command-line and environment parsing for the appserver front doors. The option table below
// is the only list of options: CLI11 registration, APPSERVER_* variables, --help and
// docs/cli.md (markdown_reference) are all generated from it.
#include "cli/options.hpp"

#include "cli/address.hpp"
#include "cli/peers.hpp"
#include "cli/units.hpp"
#include "cli/uwsgi_ini.hpp"
#include "cli/version.hpp"
#include "log/access_log.hpp"
#include "net/proxy.hpp"

#include <CLI/CLI.hpp>

#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef APPSERVER_VERSION
#error "APPSERVER_VERSION must be defined by the build (see CMakeLists.txt)"
#endif

namespace appserver::cli {
namespace {

constexpr std::string_view program_name = "appserver";
constexpr std::string_view env_prefix = "APPSERVER_";
constexpr std::string_view usage_hint = " (see 'appserver --help')";

constexpr std::string_view app_description =
    "appserver: a WSGI application server with a C++ core and a bounded request queue.";
constexpr std::string_view target_name = "TARGET";
constexpr std::string_view target_help =
    "The WSGI application as module:attribute, e.g. mysite.wsgi:application. The module part "
    "is a dotted module path, the attribute part a dotted attribute path; both consist of "
    "identifiers (ASCII letters, digits, '_', not starting with a digit). Without "
    "':attribute' the attribute is 'application' (mysite.wsgi means "
    "mysite.wsgi:application, as in gunicorn). Required, unless an --ini file names the "
    "application (the command line wins).";
constexpr std::string_view default_attribute = "application";
constexpr std::array<std::string_view, 2> help_flags{"-h", "--help"};
constexpr std::string_view help_flag_help = "Print this help and exit.";
constexpr std::string_view version_flag = "--version";
constexpr std::string_view version_flag_help =
    "Print appserver's version, the Python it runs on and the versions of the libraries "
    "built into it (Boost, llhttp, pybind11, spdlog, fmt, prometheus-cpp, CLI11), one per "
    "line, and exit.";
constexpr std::string_view ini_flag = "--ini";
constexpr std::string_view ini_metavar = "FILE[:SECTION]";
constexpr std::string_view ini_flag_help =
    "Read the options of a uWSGI ini file (its [uwsgi] section, or SECTION): each uWSGI option "
    "is mapped to appserver's (module and callable become TARGET, processes --workers, "
    "harakiri --request-timeout, ...), ignored with one warning line when it has no meaning "
    "here, or refused (exit 2, naming it) when appserver cannot honour it; "
    "docs/migrating-from-uwsgi.md has the table. uWSGI's placeholders (%d, %n, $(VAR), "
    "%(option), @(file)) are substituted. APPSERVER_* variables and the command line override "
    "the file. With the default import mode a reload (SIGHUP) reads the file again.";
constexpr std::string_view print_config_flag = "--print-config";
constexpr std::string_view print_config_flag_help =
    "Print the settings the server would run with (from the command line, APPSERVER_* "
    "variables and --ini, every option with its effective value; --debug's overrides not "
    "applied) as a command line that can be pasted back, one option per line, and exit "
    "without starting.";

// Rules that apply to every option; shown under --help and in docs/cli.md.
constexpr std::string_view environment_rules =
    "Every option can also be set through its environment variable: APPSERVER_ followed by the "
    "option name in upper case with dashes turned into underscores (--blocking-threads is "
    "APPSERVER_BLOCKING_THREADS). A value given on the "
    "command line wins over the environment. An environment variable that is set but empty "
    "counts as unset. Boolean variables accept 1/0, true/false and yes/no (any case). "
    "The variable of a repeatable option (APPSERVER_ENV, APPSERVER_RELOAD_PATHS, "
    "APPSERVER_RELOAD_IGNORE_PATTERNS) holds several entries separated by spaces, tabs or "
    "newlines (so they cannot contain whitespace; use the option for those); the option on "
    "the command line replaces the variable entirely. Aliases and --bind have no environment "
    "variable of their own. A value given on the command line or in the environment wins over "
    "one from an --ini file. "
    "A variable that starts with APPSERVER_ but is no option's (a typo) is ignored with a "
    "warning in the log.";

constexpr std::string_view exit_status_rules =
    "--help, --version and --print-config exit with status 0 (1 when standard output cannot "
    "be written); an unknown option, a bad value, a missing or malformed TARGET, or an --ini "
    "file that cannot be read or asks for what appserver cannot honour prints one error line "
    "naming the option (and the environment variable or the file's line when the value came "
    "from there) and exits with status 2. An unknown option that gunicorn, uWSGI or Granian "
    "know gets appserver's equivalent in that line, a misspelt one the option it resembles.";

// Carries the reason a value was rejected; the caller adds the option and source.
class BadValue : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class Arity { flag, single, repeated };

// How the text of one option becomes a Config field.
struct Binding {
    Arity arity = Arity::single;
    std::string metavar;                          // value placeholder in --help and the docs
    void (*assign)(Config&, const std::string&);  // converts, validates, stores; throws BadValue
    std::string (*render)(const Config&);         // the field as text, to document the default
    std::string rule;                             // the accepted values in words
    // Arity::repeated: the entries one by one, for --print-config.
    std::vector<std::string> (*items)(const Config&) = nullptr;
};

struct OptionSpec {
    std::string_view name;                  // long flag without "--"; also names the env var
    std::vector<std::string_view> aliases;  // further long flags, without "--"
    std::string_view group;                 // section heading in --help
    Binding binding;
    std::string_view help;
    // A peer's spelling of other options (--bind for --host/--port): given at most once, no
    // environment variable, no default of its own, not shown by --print-config.
    bool shorthand = false;
};

template <auto member>
using field_t = std::remove_cvref_t<decltype(std::declval<Config&>().*member)>;

// ---- value conversions ------------------------------------------------------------------

// Bounds of an integer option. An explicit maximum is documented; an implicit one (the
// field type's) only guards against wrap-around.
struct IntRange {
    std::uint64_t min;
    std::uint64_t max;
    bool documented_max;

    std::string rule() const {
        if (documented_max) {
            return "Integer from " + std::to_string(min) + " to " + std::to_string(max) + ".";
        }
        return "Integer, at least " + std::to_string(min) + ".";
    }
};

std::uint64_t to_unsigned(const std::string& text, const IntRange& range) {
    std::uint64_t value = 0;
    const char* const first = text.data();
    const char* const last = first + text.size();
    // from_chars rejects a leading '-' for unsigned types; recognise negative integers to
    // report them as out of range instead of as non-numbers.
    const bool negative = !text.empty() && text.front() == '-';
    const auto [end, ec] = std::from_chars(negative ? first + 1 : first, last, value);
    if (text.empty() || end != last || ec == std::errc::invalid_argument) {
        throw BadValue("is not an integer");
    }
    const bool too_big = ec == std::errc::result_out_of_range || value > range.max;
    if (!negative && !too_big && value >= range.min) return value;
    if (range.documented_max) {
        throw BadValue("must be between " + std::to_string(range.min) + " and " +
                       std::to_string(range.max));
    }
    if (too_big && !negative) {
        throw BadValue("is too large (at most " + std::to_string(range.max) + ")");
    }
    throw BadValue("must be at least " + std::to_string(range.min));
}

// Shortest text that reads back as the same double: 5 -> "5", 0.25 -> "0.25".
std::string format_double(double value) {
    std::array<char, 32> buffer{};
    const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
    return ec == std::errc{} ? std::string(buffer.data(), end) : std::to_string(value);
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

bool to_bool(const std::string& text) {
    for (std::string_view yes : {"1", "true", "yes"}) {
        if (equals_ignoring_case(text, yes)) return true;
    }
    for (std::string_view no : {"0", "false", "no"}) {
        if (equals_ignoring_case(text, no)) return false;
    }
    throw BadValue("is not a boolean (use 1/0, true/false or yes/no)");
}

// ---- bindings ---------------------------------------------------------------------------

template <auto member, std::uint64_t min, std::uint64_t max, bool documented_max>
Binding integer(std::string metavar) {
    static_assert(std::is_integral_v<field_t<member>>);
    static_assert(max <= std::numeric_limits<field_t<member>>::max());
    return {
        Arity::single,
        std::move(metavar),
        [](Config& config, const std::string& text) {
            const auto value = to_unsigned(text, IntRange{min, max, documented_max});
            config.*member = static_cast<field_t<member>>(value);
        },
        [](const Config& config) { return std::to_string(config.*member); },
        IntRange{min, max, documented_max}.rule(),
    };
}

template <auto member, std::uint64_t min>
Binding at_least(std::string metavar) {
    constexpr std::uint64_t type_max = std::numeric_limits<field_t<member>>::max();
    return integer<member, min, type_max, false>(std::move(metavar));
}

template <auto member, std::uint64_t min, std::uint64_t max>
Binding between(std::string metavar) {
    return integer<member, min, max, true>(std::move(metavar));
}

// A size in bytes (unit 1) or MiB (unit mib), with an optional unit: --max-body-size 10M.
template <auto member, std::uint64_t unit, std::uint64_t min, std::uint64_t max,
          bool documented_max>
Binding size(std::string metavar) {
    static_assert(std::is_integral_v<field_t<member>>);
    static_assert(max <= std::numeric_limits<field_t<member>>::max());
    return {
        Arity::single,
        std::move(metavar),
        [](Config& config, const std::string& text) {
            const IntRange range{min, max, documented_max};
            const Size parsed = parse_size(text, unit);
            switch (parsed.error) {
            case SizeError::none:
                break;
            case SizeError::negative:
                // The same words as for a negative integer.
                to_unsigned("-1", range);
                break;
            case SizeError::too_large:
                to_unsigned("99999999999999999999999", range);
                break;
            default:
                throw BadValue(size_error_text(parsed.error, unit));
            }
            // Range words as for an integer: checked on the value in the option's unit.
            to_unsigned(std::to_string(parsed.value), range);
            config.*member = static_cast<field_t<member>>(parsed.value);
        },
        [](const Config& config) {
            const auto value = static_cast<std::uint64_t>(config.*member);
            return unit == 1 ? format_size(value) : std::to_string(value);
        },
        size_rule(unit) + " " +
            (documented_max ? "From " + format_size(min * unit) + " to " + format_size(max * unit)
                            : "At least " + std::to_string(min)) +
            ".",
    };
}

// A duration beyond a day is a misconfiguration, and the bound keeps the later conversion to
// a clock's integer ticks far from overflow.
constexpr double max_seconds = 86400;

double to_seconds(const std::string& text) {
    double value = 0;
    const char* const last = text.data() + text.size();
    const auto [end, ec] = std::from_chars(text.data(), last, value);
    if (text.empty() || ec != std::errc{} || end != last || !std::isfinite(value)) {
        throw BadValue("is not a number of seconds");
    }
    return value;
}

template <auto member>
Binding seconds() {
    return {
        Arity::single,
        "SECONDS",
        [](Config& config, const std::string& text) {
            const double value = to_seconds(text);
            if (value <= 0 || value > max_seconds) {
                throw BadValue("must be greater than 0 and at most " + format_double(max_seconds));
            }
            config.*member = value;
        },
        [](const Config& config) { return format_double(config.*member); },
        "Seconds (fractions allowed), greater than 0 and at most " + format_double(max_seconds) +
            ".",
    };
}

// A duration where 0 means "never" (recycling, the request timeout); up to a year, for a
// worker's lifetime.
template <auto member>
Binding seconds_or_never() {
    return {
        Arity::single,
        "SECONDS",
        [](Config& config, const std::string& text) {
            const double value = to_seconds(text);
            if (value < 0 || value > 365 * max_seconds) {
                throw BadValue("must be 0 (never) or a positive number of seconds up to " +
                               format_double(365 * max_seconds));
            }
            config.*member = value;
        },
        [](const Config& config) { return format_double(config.*member); },
        "Seconds (fractions allowed), 0 for never.",
    };
}

// --fd: a descriptor number; unset (-1) is shown as no default.
Binding descriptor() {
    return {
        Arity::single,
        "N",
        [](Config& config, const std::string& text) {
            constexpr auto max_fd = static_cast<std::uint64_t>(std::numeric_limits<int>::max());
            config.listen_fd = static_cast<int>(to_unsigned(text, IntRange{0, max_fd, false}));
        },
        [](const Config& config) {
            return config.listen_fd < 0 ? std::string() : std::to_string(config.listen_fd);
        },
        "Integer, at least 0; default: none.",
    };
}

std::string join(const auto& names, std::string_view separator) {
    std::string out;
    for (std::string_view name : names) {
        out += out.empty() ? "" : separator;
        out += name;
    }
    return out;
}

// The enum's values are 0..N-1 in the order of names.
template <auto member, const auto& names>
Binding choice() {
    using Enum = field_t<member>;
    return {
        Arity::single,
        "{" + join(names, ",") + "}",
        [](Config& config, const std::string& text) {
            // Case-insensitive because environment values are often written in upper case.
            for (std::size_t i = 0; i < names.size(); ++i) {
                if (equals_ignoring_case(text, names[i])) {
                    config.*member = static_cast<Enum>(i);
                    return;
                }
            }
            // A unique prefix of 4+ letters too: "warn" is how spdlog, Python's logging
            // and many configs spell "warning".
            std::size_t found = names.size();
            for (std::size_t i = 0; text.size() >= 4 && i < names.size(); ++i) {
                if (text.size() < names[i].size() &&
                    equals_ignoring_case(text, names[i].substr(0, text.size()))) {
                    found = found == names.size() ? i : names.size() + 1;
                }
            }
            if (found < names.size()) {
                config.*member = static_cast<Enum>(found);
                return;
            }
            throw BadValue("is not one of: " + join(names, ", "));
        },
        [](const Config& config) {
            return std::string(names.at(static_cast<std::size_t>(config.*member)));
        },
        "One of: " + join(names, ", ") + " (any case, or a unique prefix of 4 letters or more).",
    };
}

template <auto member>
Binding flag() {
    return {
        Arity::flag,
        "",
        [](Config& config, const std::string& text) { config.*member = to_bool(text); },
        [](const Config& config) { return std::string(config.*member ? "true" : "false"); },
        "Flag; the environment variable takes a boolean.",
    };
}

template <auto member, void (*check)(const std::string&)>
Binding text(std::string metavar, std::string rule) {
    return {
        Arity::single,
        std::move(metavar),
        [](Config& config, const std::string& value) {
            check(value);
            config.*member = value;
        },
        [](const Config& config) { return std::string(config.*member); },
        std::move(rule),
    };
}

void check_not_empty(const std::string& value) {
    if (value.empty()) throw BadValue("must not be empty");
}

void check_file_mode(const std::string& value) {
    // Octal permission bits, as chmod takes them: 660, 0660, 777.
    const bool octal = !value.empty() && value.size() <= 4 &&
                       value.find_first_not_of("01234567") == std::string::npos;
    if (!octal || std::stoul(value, nullptr, 8) > 0777) {
        throw BadValue("is not an octal file mode from 0 to 777 (e.g. 660)");
    }
}

void check_socket_path(const std::string& value) {
    // The path must fit sockaddr_un::sun_path with its terminating NUL; failing here beats
    // failing in bind() after the workers were forked.
    constexpr std::size_t limit = sizeof(sockaddr_un::sun_path) - 1;
    check_not_empty(value);
    if (value.size() > limit) {
        throw BadValue("is longer than " + std::to_string(limit) +
                       " bytes, the limit for a unix socket path");
    }
}

void check_directory(const std::string& value) {
    check_not_empty(value);
    std::error_code ec;  // unreadable or missing both mean "not usable"; no exception wanted
    if (!std::filesystem::is_directory(value, ec)) {
        throw BadValue("is not an existing directory");
    }
}

// A virtualenv made by `python -m venv` or virtualenv 20+: its pyvenv.cfg is what makes the
// embedded interpreter take the environment's site-packages (main.cpp).
void check_virtualenv(const std::string& value) {
    check_directory(value);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(std::filesystem::path(value) / "pyvenv.cfg", ec)) {
        throw BadValue("is not a virtualenv (it has no pyvenv.cfg)");
    }
}

void check_path_prefix(const std::string& value) {
    if (value.empty()) return;
    if (value.front() != '/' || value.back() == '/') {
        throw BadValue("must start with '/' and not end with '/' (or be empty)");
    }
}

// One --env entry, KEY=VAL; appended so that repeated entries keep their order.
void assign_env_entry(Config& config, const std::string& entry) {
    const auto equals = entry.find('=');
    if (equals == std::string::npos) throw BadValue("is not of the form KEY=VAL");
    if (equals == 0) throw BadValue("has an empty KEY");
    config.env.emplace_back(entry.substr(0, equals), entry.substr(equals + 1));
}

// --bind, gunicorn's spelling: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N. It replaces what
// the environment said about where to listen (the command line may not say it twice).
void assign_bind(Config& config, const std::string& text) {
    ListenAddress address;
    std::string error;
    if (!parse_bind_address(text, address, error)) throw BadValue(error);
    switch (address.kind) {
    case ListenAddress::Kind::tcp:
        check_not_empty(address.host);
        if (!address.port.empty()) {
            try {
                config.port =
                    static_cast<std::uint16_t>(to_unsigned(address.port, IntRange{1, 65535, true}));
            } catch (const BadValue& bad) {
                throw BadValue("has a port that " + std::string(bad.what()));
            }
        }
        config.host = address.host;
        config.uds.clear();
        config.listen_fd = -1;
        break;
    case ListenAddress::Kind::unix_socket:
        check_socket_path(address.path);
        config.uds = address.path;
        config.listen_fd = -1;
        break;
    case ListenAddress::Kind::fd:
        config.listen_fd = static_cast<int>(to_unsigned(
            address.fd,
            IntRange{0, static_cast<std::uint64_t>(std::numeric_limits<int>::max()), false}));
        config.uds.clear();
        break;
    }
}

void assign_reload_path(Config& config, const std::string& path) {
    check_directory(path);
    config.reload_paths.push_back(path);
}

void assign_reload_ignore(Config& config, const std::string& pattern) {
    check_not_empty(pattern);
    config.reload_ignore_patterns.push_back(pattern);
}

std::string render_list(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) {
        out += out.empty() ? "" : " ";
        out += item;
    }
    return out;
}

std::vector<std::string> env_items(const Config& config) {
    std::vector<std::string> items;
    for (const auto& [key, value] : config.env) items.push_back(key + "=" + value);
    return items;
}

std::string render_env(const Config& config) {
    std::string out;
    for (const auto& [key, value] : config.env) {
        out += out.empty() ? "" : " ";
        out += key + "=" + value;
    }
    return out;
}

void check_forwarded_allow_ips(const std::string& value) {
    std::string error;
    if (!net::TrustedProxies::parse(value, &error)) throw BadValue(error);
}

void check_health_path(const std::string& value) {
    if (value.empty()) return;
    if (value.front() != '/') throw BadValue("must start with '/'");
    for (const char c : value) {
        if (c == '?' || c == '#' || static_cast<unsigned char>(c) <= 0x20 ||
            static_cast<unsigned char>(c) >= 0x7f) {
            throw BadValue("must be a plain path: visible ASCII, no '?' or '#'");
        }
    }
}

void check_access_log_format(const std::string& value) {
    if (std::string error = log::check_access_log_format(value); !error.empty()) {
        throw BadValue(error);
    }
}

constexpr std::array<std::string_view, 1> interface_names{"wsgi"};
constexpr std::array<std::string_view, 5> log_level_names{"debug", "info", "warning", "error",
                                                          "critical"};
constexpr std::array<std::string_view, 2> log_format_names{"text", "json"};
constexpr std::array<std::string_view, 2> request_buffering_names{"off", "on"};

// ---- the option table -------------------------------------------------------------------

const std::vector<OptionSpec>& option_table() {
    static const std::vector<OptionSpec> table = {
        {"interface", {}, "Application", choice<&Config::interface, interface_names>(),
         "Application interface to serve."},
        {"factory", {}, "Application", flag<&Config::factory>(),
         "TARGET names a factory: call it with no arguments to get the application."},
        {"lazy-apps", {}, "Application", flag<&Config::lazy_apps>(),
         "Import TARGET in each worker after it is forked (what gunicorn and Granian do by "
         "default, uWSGI's lazy-apps) instead of once in the master before binding: for apps "
         "that open connections or start threads at import time. An import error then shows "
         "in the workers' log, and the master stops with status 1."},
        {"reload", {}, "Application", flag<&Config::reload>(),
         "Development: watch the application's source trees (--reload-paths) and reload "
         "when a file changes, as SIGHUP does (a rolling replacement of the workers; the "
         "master re-executes itself unless --lazy-apps). Hidden files, editor and Python "
         "caches, logs and SQLite databases are not watched (--reload-ignore-patterns adds "
         "more). Not for production."},
        {"reload-paths", {}, "Application",
         {Arity::repeated, "PATH", assign_reload_path,
          [](const Config& c) { return render_list(c.reload_paths); },
          "Repeatable; an existing directory. Default: --working-dir (or the current "
          "directory).",
          [](const Config& c) { return c.reload_paths; }},
         "A directory tree --reload watches."},
        {"reload-ignore-patterns", {}, "Application",
         {Arity::repeated, "GLOB", assign_reload_ignore,
          [](const Config& c) { return render_list(c.reload_ignore_patterns); },
          "Repeatable; a shell pattern (fnmatch) matched against file and directory names.",
          [](const Config& c) { return c.reload_ignore_patterns; }},
         "Names --reload does not watch, besides the defaults (.*, *~, #*#, *.swp, *.swx, "
         "*.pyc, *.pyo, __pycache__, *.log, *.sqlite3, *.sqlite3-journal, *.db, "
         "*.db-journal, node_modules, 4913)."},
        {"working-dir", {}, "Application",
         text<&Config::working_dir, check_directory>("PATH", "An existing directory."),
         "Change to this directory and put it first on sys.path before importing TARGET "
         "(default: the current directory)."},
        {"virtualenv", {}, "Application",
         text<&Config::virtualenv, check_virtualenv>("PATH",
                                                     "A virtualenv directory (with pyvenv.cfg)."),
         "Standalone executable: import from this virtualenv (its site-packages; its python "
         "becomes sys.executable), as uWSGI's home option does. Default: $VIRTUAL_ENV when it "
         "is set. It must be made with the Python appserver embeds (same major.minor "
         "version), else appserver exits 1. The Python front door (the appserver console "
         "script, python -m appserver) runs in the interpreter that started it: there a "
         "virtualenv other than that interpreter's own is refused (exit 2)."},
        {"env", {}, "Application",
         {Arity::repeated, "KEY=VAL", assign_env_entry, render_env,
          "Repeatable; KEY must not be empty.", env_items},
         "Set an environment variable before the application is imported."},
        {"url-path-prefix", {}, "Application",
         text<&Config::url_path_prefix, check_path_prefix>(
             "PREFIX", "Empty, or starts with '/' and does not end with '/'."),
         "Mount point of the application: becomes SCRIPT_NAME and is stripped from PATH_INFO "
         "when the request path starts with it."},

        {"host", {}, "Listening",
         text<&Config::host, check_not_empty>(
             "ADDRESS", "An IP address (IPv6 with or without brackets) or host name."),
         "Address to bind."},
        {"port", {}, "Listening", between<&Config::port, 1, 65535>("PORT"), "TCP port to bind."},
        {"uds", {}, "Listening",
         text<&Config::uds, check_socket_path>(
             "PATH", "At most " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes."),
         "Listen on a unix domain socket at this path instead of --host/--port."},
        {"uds-permissions", {}, "Listening",
         text<&Config::uds_permissions, check_file_mode>("MODE", "Octal, e.g. 660."),
         "Permissions of the --uds socket file (who may connect: a proxy running as another "
         "user needs write permission); default: as the process umask leaves them."},
        {"backlog", {}, "Listening", at_least<&Config::backlog, 1>("N"),
         "Backlog of the listening socket (pending connections not yet accepted); the "
         "kernel caps it at net.core.somaxconn."},
        {"fd", {}, "Listening", descriptor(),
         "Serve on this inherited, already listening socket (TCP or unix) instead of binding "
         "--host/--port, so a supervisor can keep the socket across restarts; it is taken as "
         "it is (--backlog does not apply) and never unlinked. systemd's socket activation "
         "(LISTEN_FDS/LISTEN_PID) is used the same way without this option. Refused with "
         "--uds or LISTEN_FDS (exit 2); a descriptor that is not a listening stream socket "
         "exits 1."},
        {"bind", {}, "Listening",
         {Arity::single, "ADDRESS", assign_bind, [](const Config&) { return std::string(); },
          "HOST:PORT, HOST (the port stays --port's), :PORT (every IPv4 interface), "
          "[IPv6]:PORT, unix:PATH or fd://N."},
         "Where to listen, as gunicorn spells it: sets --host and --port, or --uds "
         "(unix:PATH), or --fd (fd://N). Given once (appserver listens on one socket), and not "
         "together with those options on the command line.",
         true},

        {"forwarded-allow-ips", {}, "Proxies",
         text<&Config::forwarded_allow_ips, check_forwarded_allow_ips>(
             "ADDRESSES",
             "Comma-separated IPv4 and IPv6 addresses and CIDR ranges (10.0.0.0/8, fd00::/8), "
             "'*' for any peer, 'unix' for unix-socket peers; empty for none."),
         "Peers trusted to say who the client is (gunicorn's and uvicorn's option). From them, "
         "and only from them, X-Forwarded-For, -Proto, -Host, -Port and RFC 7239 Forwarded "
         "(which wins when both kinds are present) set REMOTE_ADDR and REMOTE_PORT, "
         "wsgi.url_scheme (http or https), HTTP_HOST, SERVER_NAME and SERVER_PORT, and the "
         "access log's client address; from any other peer they stay plain headers. The "
         "client is the rightmost address that is not itself a trusted proxy. A unix-socket "
         "peer is trusted with '*', 'unix', or when loopback is (the default). Also the "
         "peers allowed to send --proxy-protocol headers."},
        {"proxy-protocol", {}, "Proxies", flag<&Config::proxy_protocol>(),
         "Every connection must start with an HAProxy PROXY protocol header (version 1 or 2, "
         "read within --header-read-timeout), whose source address becomes REMOTE_ADDR and "
         "REMOTE_PORT (UNKNOWN and LOCAL keep the socket's). A connection from a peer not in "
         "--forwarded-allow-ips, or that does not start with a valid header, is closed "
         "without an answer."},

        {"workers", {}, "Processes and threads", at_least<&Config::workers, 1>("N"),
         "Worker processes forked by the master."},
        {"pid-file", {}, "Processes and threads",
         text<&Config::pid_file, check_not_empty>("PATH", "A file path."),
         "Write the master's pid to this file once it is listening, and remove the file when "
         "it exits. A relative path is taken from --working-dir. Refused (exit 1) while the "
         "file names a process that is still running; a stale one is replaced."},
        {"blocking-threads", {"threads"}, "Processes and threads",
         at_least<&Config::blocking_threads, 1>("N"),
         "Threads per worker that call the application; each may hold its own database "
         "connection."},
        {"request-queue-size", {}, "Processes and threads",
         at_least<&Config::request_queue_size, 1>("N"),
         "Per worker, how many parsed requests may wait for a free blocking thread. While the "
         "queue is full the worker accepts no new connections (they wait in the listen "
         "backlog or go to another worker), and a request arriving on an open connection gets "
         "503 with Retry-After."},

        {"max-requests", {}, "Recycling", at_least<&Config::max_requests, 0>("N"),
         "Replace a worker after it has served this many requests (gunicorn's option, for apps "
         "that leak): its successor is started and serving before it stops taking "
         "connections, and it finishes its requests in flight. 0 means never."},
        {"max-requests-jitter", {}, "Recycling", at_least<&Config::max_requests_jitter, 0>("N"),
         "Add a random number from 0 to this to each worker's --max-requests, so workers "
         "started together are not all replaced together."},
        {"workers-lifetime", {}, "Recycling", seconds_or_never<&Config::workers_lifetime>(),
         "Replace a worker after it has run this long (Granian's option), the same way; each "
         "worker's lifetime is shortened by a random amount of up to 10 % so they leave one by "
         "one. 0 means never."},
        {"workers-max-rss", {}, "Recycling",
         size<&Config::workers_max_rss, mib, 0, std::numeric_limits<std::uint64_t>::max() / mib,
              false>("MIB"),
         "Replace a worker whose resident memory exceeds this many MiB (checked every "
         "second), the same way. 0 means never."},

        {"keep-alive-timeout", {}, "Timeouts", seconds<&Config::keep_alive_timeout>(),
         "Close an idle keep-alive connection after this long."},
        {"header-read-timeout", {}, "Timeouts", seconds<&Config::header_read_timeout>(),
         "The request line and headers must arrive within this long."},
        {"read-timeout", {}, "Timeouts", seconds<&Config::read_timeout>(),
         "Request body bytes must keep arriving within this long: a wsgi.input read that "
         "waited this long raises OSError, a small body the server reads before calling the "
         "app gets 408; either way the connection is closed."},
        {"write-timeout", {}, "Timeouts", seconds<&Config::write_timeout>(),
         "Close the connection when the client takes no response bytes for this long (a "
         "client that keeps reading, however slowly, gets the whole response)."},
        {"request-queue-timeout", {}, "Timeouts", seconds<&Config::request_queue_timeout>(),
         "A request that waited this long in the request queue gets 503 instead of reaching "
         "the application (its client has most likely given up)."},
        {"request-timeout", {}, "Timeouts", seconds_or_never<&Config::request_timeout>(),
         "A request whose application has not started its response after this long gets 504 "
         "from the event loop at once; the thread's Python stack is logged with the request "
         "line and a RequestTimeout exception (a BaseException, like KeyboardInterrupt) is "
         "raised in it. A thread still stuck after as long again is written off: the worker "
         "stops taking connections, a replacement is started, and the worker leaves when its "
         "other requests are done or at --graceful-timeout. A response already under way is "
         "not cut (--write-timeout governs it). 0 means no limit."},
        {"graceful-timeout", {}, "Timeouts", seconds<&Config::graceful_timeout>(),
         "On shutdown, in-flight requests may finish within this long before a hard stop."},

        {"max-connections", {}, "Limits", at_least<&Config::max_connections, 0>("N"),
         "Most connections one worker holds open. At the limit it closes its idle keep-alive "
         "connections (those nearest their own timeout first) to make room for new ones, and "
         "with none idle it stops accepting: the kernel's listen queue holds the rest until a "
         "connection ends. 0 (the default) means the open-files limit (RLIMIT_NOFILE) less a "
         "reserve for the application's own files and sockets (an eighth of it, at least 64 "
         "and at most 1024)."},
        {"request-buffering", {}, "Limits",
         choice<&Config::request_buffering, request_buffering_names>(),
         "on: a chunked request body is read whole before the application is called (NGINX's "
         "behaviour, and its word for it), so the application sees CONTENT_LENGTH (Django and "
         "others read nothing without it) and no Transfer-Encoding, and a slow upload holds no "
         "blocking thread. Up to 64 KiB stays in memory, more goes to an unlinked temporary "
         "file in TMPDIR (default /tmp), up to --max-body-size, or 1 GiB when that is 0 "
         "(then 413). off: the body streams to the application as it arrives (wsgi.input "
         "reads until its end; wsgi.input_terminated is true). Bodies with a Content-Length "
         "stream either way."},
        {"max-header-size", {}, "Limits",
         size<&Config::max_header_size, 1, 1024, 1 << 20, true>("BYTES"),
         "Largest request line plus headers, in bytes; larger requests are rejected."},
        {"max-headers", {}, "Limits", at_least<&Config::max_headers, 1>("N"),
         "Most header fields in one request; requests with more are rejected."},
        {"max-body-size", {}, "Limits",
         size<&Config::max_body_size, 1, 0, std::numeric_limits<std::uint64_t>::max(), false>(
             "BYTES"),
         "Largest request body, in bytes; larger ones are rejected. 0 means unlimited (the body "
         "is streamed to the application)."},

        {"metrics", {}, "Observability", flag<&Config::metrics>(),
         "Serve Prometheus metrics (request queue depth and wait, event-loop saturation, "
         "threads, requests, connections, workers; docs/metrics.md) at "
         "http://METRICS-ADDRESS:METRICS-PORT/metrics, from the master process: a scrape "
         "answers while every blocking thread is busy and never slows requests down."},
        {"metrics-address", {}, "Observability",
         text<&Config::metrics_address, check_not_empty>("ADDRESS", "An IP address or host name."),
         "Address the metrics endpoint binds (keep it private: metrics are not for the "
         "public)."},
        {"metrics-port", {}, "Observability", between<&Config::metrics_port, 1, 65535>("PORT"),
         "TCP port of the metrics endpoint."},
        {"health-path", {}, "Observability",
         text<&Config::health_path, check_health_path>(
             "PATH", "Empty (no health endpoint), or a path starting with '/'."),
         "Answer GET/HEAD requests for exactly this path (e.g. /healthz; the query is "
         "ignored) in the worker's event loop, without Python and without queueing: 200 while "
         "the worker serves, 503 once it is stopping, so a load balancer stops sending "
         "before it goes."},
        {"access-log", {}, "Logging",
         text<&Config::access_log, check_not_empty>("PATH", "A file path, or - for stdout."),
         "Write one line per request (the server's own 4xx/5xx answers included) to this "
         "file, appended, or to standard output with '-'. Written by a thread of its own: "
         "when it cannot keep up, lines are dropped and counted "
         "(appserver_access_log_dropped_total), never waited for. SIGUSR1 to the master "
         "reopens the file (logrotate). Default: no access log."},
        {"access-log-format", {}, "Logging",
         text<&Config::access_log_format, check_access_log_format>(
             "FORMAT", "common, combined, json, or a format of %(x)s atoms."),
         "Format of the access log lines: common or combined (the Apache/NGINX formats), "
         "json (one object per line), or a custom format with gunicorn's atoms, e.g. "
         "'%(h)s %(r)s %(s)s %(b)s %(D)s %({x-forwarded-for}i)s', plus %(rid)s, the request "
         "id, and %(w)s, the worker (docs/behaviour.md lists them)."},
        {"log-level", {}, "Logging", choice<&Config::log_level, log_level_names>(),
         "Least severe level of the server's own lines that is logged (what the app writes "
         "to wsgi.errors is always logged)."},
        {"log-format", {}, "Logging", choice<&Config::log_format, log_format_names>(),
         "Format of the server's own log on standard error: text lines, or one JSON object "
         "per line (time, level, process, pid, message, request_id)."},

        {"debug", {}, "Development", flag<&Config::debug>(),
         "Debug in a terminal: one worker and one blocking thread (whatever --workers and "
         "--blocking-threads say), in the terminal's foreground with its standard input, so "
         "breakpoint() and pdb work in a view; debug log level, the worker's log written "
         "synchronously, no request timeout. Ctrl-C still stops the server. Not for "
         "production."},
    };
    return table;
}

std::string env_var_name(std::string_view option_name) {
    std::string name(env_prefix);
    for (char c : option_name) {
        name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return name;
}

std::string env_var_name(const OptionSpec& spec) {
    return env_var_name(spec.name);
}

std::string flag_name(std::string_view name) { return "--" + std::string(name); }

// What --help and the docs show after the flag: a placeholder, or the choices.
std::string value_text(const OptionSpec& spec) {
    return spec.binding.arity == Arity::flag ? "" : spec.binding.metavar;
}

std::string default_text(const OptionSpec& spec) { return spec.binding.render(Config{}); }

std::vector<std::string> split_on_whitespace(std::string_view text) {
    std::vector<std::string> words;
    std::string word;
    for (char c : text) {
        if (std::isspace(static_cast<unsigned char>(c))) {
            if (!word.empty()) words.push_back(std::move(word));
            word.clear();
        } else {
            word += c;
        }
    }
    if (!word.empty()) words.push_back(std::move(word));
    return words;
}

// CLI11 indents continuation lines but does not wrap, so descriptions are wrapped here.
std::string wrap(std::string_view text, std::size_t width) {
    std::string out;
    std::size_t line = 0;
    for (const auto& word : split_on_whitespace(text)) {
        if (line > 0 && line + 1 + word.size() > width) {
            out += '\n';
            line = 0;
        } else if (line > 0) {
            out += ' ';
            ++line;
        }
        out += word;
        line += word.size();
    }
    return out;
}

constexpr std::size_t help_name_column = 36;
constexpr std::size_t help_width = 100;

std::string help_description(const OptionSpec& spec) {
    std::string text = std::string(spec.help) + " " + spec.binding.rule;
    if (spec.shorthand) return wrap(text, help_width - help_name_column);
    std::string trailer = "[env: " + env_var_name(spec) + "]";
    if (const auto value = default_text(spec); !value.empty()) {
        trailer = "[default: " + value + "] " + trailer;
    }
    return wrap(text, help_width - help_name_column) + "\n" + trailer;
}

struct Registered {
    std::vector<CLI::Option*> options;  // parallel to option_table()
    CLI::Option* target = nullptr;
    CLI::Option* ini = nullptr;
    CLI::Option* print_config = nullptr;
};

Registered register_options(CLI::App& app) {
    Registered registered;
    app.get_formatter()->column_width(help_name_column);
    app.set_help_flag(join(help_flags, ","), std::string(help_flag_help));
    app.set_version_flag(std::string(version_flag), version_report,
                         wrap(version_flag_help, help_width - help_name_column));
    app.footer(wrap(environment_rules, help_width) + "\n\n" + wrap(exit_status_rules, help_width));
    for (const auto& spec : option_table()) {
        std::string names = flag_name(spec.name);
        for (auto alias : spec.aliases) names += "," + flag_name(alias);
        // No CLI11 variable or ->envname(): CLI11 would read the real environment itself, and
        // values must be converted the same way whether they come from argv or from env.
        CLI::Option* option = spec.binding.arity == Arity::flag ? app.add_flag(names)
                                                                : app.add_option(names);
        option->description(help_description(spec));
        option->group(std::string(spec.group));
        if (spec.binding.arity == Arity::flag) {
            option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
        } else {
            option->option_text(value_text(spec));
            option->expected(1);
            // A shorthand keeps every occurrence, so that a second one can be refused.
            option->multi_option_policy(spec.binding.arity == Arity::repeated || spec.shorthand
                                            ? CLI::MultiOptionPolicy::TakeAll
                                            : CLI::MultiOptionPolicy::TakeLast);
        }
        registered.options.push_back(option);
    }
    registered.ini = app.add_option(std::string(ini_flag));
    registered.ini->description(wrap(ini_flag_help, help_width - help_name_column));
    registered.ini->option_text(std::string(ini_metavar));
    registered.ini->expected(1);
    registered.ini->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    registered.print_config = app.add_flag(std::string(print_config_flag));
    registered.print_config->description(
        wrap(print_config_flag_help, help_width - help_name_column));
    // Not required here: an --ini file may name the application instead.
    registered.target = app.add_option(std::string(target_name));
    registered.target->description(wrap(target_help, help_width - help_name_column));
    return registered;
}

bool is_identifier(std::string_view part) {
    if (part.empty() || std::isdigit(static_cast<unsigned char>(part.front()))) return false;
    return std::all_of(part.begin(), part.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
}

bool is_dotted_path(std::string_view path) {
    while (true) {
        const auto dot = path.find('.');
        if (!is_identifier(path.substr(0, dot))) return false;
        if (dot == std::string_view::npos) return true;
        path.remove_prefix(dot + 1);
    }
}

bool is_valid_target(std::string_view target) {
    const auto colon = target.find(':');
    if (colon == std::string_view::npos) {
        return is_dotted_path(target); // module only: the attribute defaults
    }
    return is_dotted_path(target.substr(0, colon)) && is_dotted_path(target.substr(colon + 1));
}

// "--name=" (an empty value, e.g. from --name=$UNSET) as "--name" "": CLI11 would take the
// next argument as the value instead. Nothing after a "--" is an option.
std::vector<std::string> split_empty_assignments(const std::vector<std::string>& args) {
    std::vector<std::string> out;
    out.reserve(args.size());
    bool options_done = false;
    for (const auto& arg : args) {
        if (arg == "--") {
            options_done = true;
        }
        if (!options_done && arg.size() > 3 && arg.compare(0, 2, "--") == 0 &&
            arg.back() == '=' && arg.find('=') == arg.size() - 1) {
            out.push_back(arg.substr(0, arg.size() - 1));
            out.emplace_back();
            continue;
        }
        out.push_back(arg);
    }
    return out;
}

ParseOutcome usage_error(const std::string& message) {
    ParseOutcome outcome;
    outcome.kind = ParseOutcome::Kind::exit;
    outcome.exit_code = 2;
    // One line: it is what an operator sees in a container's log.
    outcome.output = std::string(program_name) + ": error: " + message +
                     std::string(usage_hint) + "\n";
    return outcome;
}

ParseOutcome finished(std::string output) {
    ParseOutcome outcome;
    outcome.kind = ParseOutcome::Kind::exit;
    outcome.exit_code = 0;
    outcome.output = std::move(output);
    if (!outcome.output.empty() && outcome.output.back() != '\n') outcome.output += '\n';
    return outcome;
}

// Every long flag appserver has, aliases and meta options included.
std::vector<std::string> all_flags() {
    std::vector<std::string> flags;
    for (const auto& spec : option_table()) {
        flags.push_back(flag_name(spec.name));
        for (auto alias : spec.aliases) flags.push_back(flag_name(alias));
    }
    for (std::string_view meta : {help_flags[1], version_flag, ini_flag, print_config_flag}) {
        flags.emplace_back(meta);
    }
    return flags;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] =
                std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// A misspelling of one of appserver's own options: "--worker", "--max_requests",
// "--max-body" (a unique prefix). Empty when nothing is close enough.
std::string typo_hint(std::string_view typed) {
    if (typed.size() < 3 || typed.substr(0, 2) != "--") return "";
    std::string normal(typed);
    std::transform(normal.begin(), normal.end(), normal.begin(), [](unsigned char c) {
        return c == '_' ? '-' : static_cast<char>(std::tolower(c));
    });
    const std::size_t limit = normal.size() - 2 <= 5 ? 1 : 2;
    std::string best;
    std::size_t best_distance = limit + 1;
    std::vector<std::string> prefixed;
    for (const auto& flag : all_flags()) {
        const std::size_t d = edit_distance(normal, flag);
        if (d < best_distance) {
            best = flag;
            best_distance = d;
        }
        if (normal.size() >= 6 && flag.compare(0, normal.size(), normal) == 0) {
            prefixed.push_back(flag);
        }
    }
    if (best.empty() && prefixed.size() == 1) best = prefixed.front();
    return best.empty() ? "" : "did you mean " + best + "?";
}

std::string extras_message(const std::vector<std::string>& extras) {
    if (extras.empty()) return "unexpected arguments";
    const auto& first = extras.front();
    if (first.size() > 1 && first.front() == '-') {
        const std::string name = first.substr(0, first.find('='));
        std::string hint = peer_hint(name);
        if (hint.empty()) hint = typo_hint(name);
        return "unknown option '" + name + "'" + (hint.empty() ? "" : "; " + hint);
    }
    return "unexpected argument '" + first + "' (only one TARGET is allowed)";
}

std::string escape_table_cell(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '|') out += '\\';
        out += c;
    }
    return out;
}

// For a shell: as it is when it is plain, else in single quotes.
std::string shell_quote(std::string_view text) {
    const bool plain = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               std::string_view("@%+=:,./-_").find(c) != std::string_view::npos;
    });
    if (plain) return std::string(text);
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') {
            out += "'\\''";
        } else {
            out += c;
        }
    }
    return out + "'";
}

// --print-config: a command line that runs the same configuration, one option per line.
std::string render_command_line(const Config& config) {
    std::vector<std::string> lines;
    std::vector<std::string> unset;
    for (const auto& spec : option_table()) {
        if (spec.shorthand) continue;
        const std::string flag = flag_name(spec.name);
        if (spec.binding.arity == Arity::repeated) {
            const auto items = spec.binding.items(config);
            for (const auto& item : items) lines.push_back(flag + "=" + shell_quote(item));
            if (items.empty()) unset.push_back(flag);
            continue;
        }
        const std::string value = spec.binding.render(config);
        if (value.empty()) {
            // An empty value that the option takes (--url-path-prefix='') is a value; one it
            // refuses (--pid-file) means "not set".
            Config scratch;
            try {
                spec.binding.assign(scratch, value);
            } catch (const BadValue&) {
                unset.push_back(flag);
                continue;
            }
        }
        lines.push_back(flag + "=" + shell_quote(value));
    }
    std::string out = "# " + std::string(program_name) + " " + APPSERVER_VERSION +
                      ": the settings from the command line, APPSERVER_* variables and --ini\n";
    if (!unset.empty()) out += "# not set: " + join(unset, " ") + "\n";
    out += std::string(program_name) + " \\\n";
    for (const auto& line : lines) out += "  " + line + " \\\n";
    out += "  " + shell_quote(config.target) + "\n";
    return out;
}

bool is_listening_option(std::string_view name) {
    return name == "host" || name == "port" || name == "uds" || name == "fd" || name == "bind";
}

} // namespace

ParseOutcome parse(const std::vector<std::string>& args, const EnvLookup& env) {
    const EnvLookup lookup =
        env ? env : EnvLookup([](const char* name) -> const char* { return std::getenv(name); });

    CLI::App app{std::string(app_description), std::string(program_name)};
    const Registered registered = register_options(app);

    // CLI11 consumes its arguments from the back and without the program name.
    const std::vector<std::string> split = split_empty_assignments(args);
    std::vector<std::string> reversed;
    if (!split.empty()) reversed.assign(split.rbegin(), std::prev(split.rend()));
    try {
        app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
        return finished(app.help());
    } catch (const CLI::CallForVersion& version) {
        return finished(version.what());
    } catch (const CLI::ExtrasError&) {
        return usage_error(extras_message(app.remaining()));
    } catch (const CLI::ArgumentMismatch& error) {
        // CLI11 words this "--workers: 1 required  missing"; keep its leading option name.
        const std::string what = error.what();
        const auto colon = what.find(": ");
        return usage_error(colon == std::string::npos ? what
                                                      : what.substr(0, colon) + ": missing value");
    } catch (const CLI::ParseError& error) {
        return usage_error(error.what());
    }

    const auto& table = option_table();
    const auto given_on_command_line = [&](std::string_view name) {
        for (std::size_t i = 0; i < table.size(); ++i) {
            if (table[i].name == name) return registered.options[i]->count() > 0;
        }
        return false;
    };
    const auto env_value = [&](const OptionSpec& spec) -> const char* {
        if (spec.shorthand) return nullptr;
        const char* raw = lookup(env_var_name(spec).c_str());
        return raw != nullptr && *raw != '\0' ? raw : nullptr;
    };

    // --bind is one address, and says what --host/--port/--uds/--fd say.
    for (std::size_t i = 0; i < table.size(); ++i) {
        if (!table[i].shorthand || registered.options[i]->count() == 0) continue;
        if (registered.options[i]->count() > 1) {
            return usage_error(flag_name(table[i].name) +
                               ": given more than once; appserver listens on one socket");
        }
        for (std::string_view other : {"host", "port", "uds", "fd"}) {
            if (given_on_command_line(other)) {
                return usage_error(flag_name(table[i].name) + " and " + flag_name(other) +
                                   " both say where to listen: give one of them");
            }
        }
    }

    IniSettings ini;
    if (registered.ini->count() > 0) {
        if (registered.ini->count() > 1) {
            return usage_error(std::string(ini_flag) + ": given more than once; one file is read");
        }
        try {
            ini = read_uwsgi_ini(registered.ini->results().back(), current_host(lookup));
        } catch (const IniError& error) {
            return usage_error(error.what());
        }
    }
    // Where to listen, said on the command line or in the environment, replaces the file's
    // unix socket (which would otherwise win over --host/--port).
    bool listening_given = false;
    for (std::size_t i = 0; i < table.size(); ++i) {
        if (is_listening_option(table[i].name) &&
            (registered.options[i]->count() > 0 || env_value(table[i]) != nullptr)) {
            listening_given = true;
        }
    }

    ParseOutcome outcome;
    for (std::size_t i = 0; i < table.size(); ++i) {
        const OptionSpec& spec = table[i];
        const CLI::Option& option = *registered.options[i];
        const std::string env_name = env_var_name(spec);

        // Each value with where it came from, for the error line: "" (the command line),
        // " (from APPSERVER_X)" or " (from uwsgi.ini line 4: processes)".
        std::vector<std::pair<std::string, std::string>> values;
        if (option.count() > 0) {
            for (const auto& value : option.results()) values.emplace_back(value, "");
        } else if (const char* raw = env_value(spec); raw != nullptr) {
            const std::string from = " (from " + env_name + ")";
            if (spec.binding.arity == Arity::repeated) {
                for (auto& value : split_on_whitespace(raw)) values.emplace_back(value, from);
            } else {
                values.emplace_back(raw, from);
            }
        } else {
            for (const auto& value : ini.values) {
                if (value.option != spec.name) continue;
                if (value.option == "uds" && listening_given) continue;
                values.emplace_back(value.text, " (from " + value.origin + ")");
            }
        }
        // Last one wins for single-valued options, as in most command-line tools.
        if (spec.binding.arity != Arity::repeated && values.size() > 1) {
            values.erase(values.begin(), std::prev(values.end()));
        }

        for (const auto& [value, from] : values) {
            try {
                spec.binding.assign(outcome.config, value);
            } catch (const BadValue& bad) {
                return usage_error(flag_name(spec.name) + ": value '" + value + "' " + bad.what() +
                                   from);
            }
        }
    }

    std::string target;
    std::string target_from;
    if (registered.target->count() > 0) {
        target = registered.target->results().back();
        // uWSGI takes a configuration file as its argument ("uwsgi app.ini"); here that
        // would read as the module "app.ini".
        std::error_code ec;
        if (target.size() > 4 && target.compare(target.size() - 4, 4, ".ini") == 0 &&
            std::filesystem::is_regular_file(target, ec)) {
            return usage_error(std::string(target_name) + ": value '" + target +
                               "' is a file; did you mean --ini " + target + "?");
        }
    } else if (ini.target) {
        target = ini.target->text;
        target_from = " (from " + ini.target->origin + ")";
    } else {
        return usage_error("missing " + std::string(target_name) + " (module:attribute)");
    }
    if (!is_valid_target(target)) {
        return usage_error(std::string(target_name) + ": value '" + target +
                           "' is not of the form module[.sub]*[:attribute[.attr]*]" + target_from);
    }
    outcome.config.target = target.find(':') == std::string::npos
                                ? target + ":" + std::string(default_attribute)
                                : target;
    outcome.warnings = std::move(ini.warnings);
    if (registered.print_config->count() > 0) {
        ParseOutcome printed = finished(render_command_line(outcome.config));
        printed.warnings = std::move(outcome.warnings);
        return printed;
    }
    return outcome;
}

std::vector<std::string> unknown_environment_variables(const std::vector<std::string>& names) {
    std::vector<std::string> warnings;
    const auto& table = option_table();
    for (const auto& name : names) {
        if (name.rfind(env_prefix, 0) != 0) {
            continue;
        }
        bool known = false;
        std::string hint;
        for (const auto& spec : table) {
            const std::string canonical = env_var_name(spec);
            if (spec.shorthand) {
                if (name == canonical) {
                    hint = " (" + flag_name(spec.name) +
                           " has no variable: use the variables of "
                           "the options it stands for)";
                }
                continue;
            }
            if (name == canonical) {
                known = true;
                break;
            }
            for (auto alias : spec.aliases) {
                if (name == env_var_name(alias)) {
                    hint = " (aliases have no variable: use " + canonical + ")";
                }
            }
        }
        if (!known) {
            warnings.push_back("environment variable " + name +
                               " is not an option's variable; ignored" + hint);
        }
    }
    return warnings;
}

std::string markdown_reference() {
    constexpr std::size_t markdown_width = 100;  // prose only; a table row stays on one line
    std::ostringstream out;
    out << "## Usage\n\n"
        << "    " << program_name << " [OPTIONS] " << target_name << "\n"
        << "    " << program_name << " --ini uwsgi.ini [OPTIONS] [" << target_name << "]\n\n"
        << wrap("`" + std::string(target_name) + "`: " + std::string(target_help), markdown_width)
        << "\n\n"
        << "## Options\n\n"
        << "| option | env var | default | description |\n"
        << "|---|---|---|---|\n";
    for (const auto& spec : option_table()) {
        const auto value = value_text(spec);
        const auto usage = [&](std::string_view name) {
            return "`" + flag_name(name) + (value.empty() ? "" : " " + value) + "`";
        };
        std::string names = usage(spec.name);
        for (auto alias : spec.aliases) names += "<br>" + usage(alias);
        const auto default_value = default_text(spec);
        const std::string shown_default = spec.shorthand          ? "(none)"
                                          : default_value.empty() ? "(empty)"
                                                                  : "`" + default_value + "`";
        const std::string shown_env = spec.shorthand ? "(none)" : "`" + env_var_name(spec) + "`";
        out << "| " << escape_table_cell(names) << " | " << shown_env << " | "
            << escape_table_cell(shown_default) << " | "
            << escape_table_cell(std::string(spec.help) + " " + spec.binding.rule) << " |\n";
    }
    out << "| `" << ini_flag << " " << ini_metavar << "` | | | " << escape_table_cell(ini_flag_help)
        << " |\n"
        << "| `" << print_config_flag << "` | | | " << print_config_flag_help << " |\n"
        << "| `" << join(help_flags, "`, `") << "` | | | " << help_flag_help << " |\n"
        << "| `" << version_flag << "` | | | " << version_flag_help << " |\n\n"
        << "## Environment\n\n"
        << wrap(environment_rules, markdown_width) << "\n\n"
        << "## Exit status\n\n"
        << wrap(exit_status_rules, markdown_width) << "\n";
    return out.str();
}

int print_and_exit_code(const ParseOutcome& outcome) {
    for (const auto& warning : outcome.warnings) {
        std::fprintf(stderr, "%s: warning: %s\n", std::string(program_name).c_str(),
                     warning.c_str());
    }
    std::FILE* out = outcome.exit_code == 0 ? stdout : stderr;
    std::fputs(outcome.output.c_str(), out);
    if (!outcome.output.empty() && outcome.output.back() != '\n') {
        std::fputc('\n', out);
    }
    // --help > /dev/full (or a closed pipe) must not report success: like coreutils,
    // a write error on stdout is a failure with a message.
    if (std::fflush(out) != 0 || std::ferror(out) != 0) {
        if (out == stdout) {
            std::fprintf(stderr, "appserver: error: cannot write to standard output: %s\n",
                         std::strerror(errno));
            return 1;
        }
    }
    return outcome.exit_code;
}

} // namespace appserver::cli
