// Unit tests for the command-line and environment parser (src/cli/options.hpp), including the
// check that docs/cli.md matches the reference generated from the option table.
#include "cli/options.hpp"

#include "cli/version.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using appserver::Config;
using appserver::Interface;
using appserver::LogLevel;
using appserver::cli::ParseOutcome;
using Env = std::map<std::string, std::string>;
using Args = std::vector<std::string>;

constexpr const char* target = "app:application";

ParseOutcome parse_with(Args args, const Env& env = {}) {
    args.insert(args.begin(), "appserver");
    return appserver::cli::parse(args, [&env](const char* name) -> const char* {
        const auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    });
}

Config parse_ok(Args args, const Env& env = {}) {
    const ParseOutcome outcome = parse_with(std::move(args), env);
    EXPECT_EQ(outcome.kind, ParseOutcome::Kind::run) << outcome.output;
    return outcome.config;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// Checks the usage-error contract (status 2, one error line, optional hint) and returns the
// error line.
std::string parse_error(Args args, const Env& env = {}) {
    const ParseOutcome outcome = parse_with(std::move(args), env);
    EXPECT_EQ(outcome.kind, ParseOutcome::Kind::exit);
    EXPECT_EQ(outcome.exit_code, 2);
    const auto lines = lines_of(outcome.output);
    if (lines.empty()) {
        ADD_FAILURE() << "no error output";
        return "";
    }
    EXPECT_EQ(lines.size(), 1U) << outcome.output;
    EXPECT_EQ(lines[0].rfind("appserver: error: ", 0), 0U) << lines[0];
    // Every usage error ends with the same pointer to --help; compare what precedes it.
    const std::string hint = " (see 'appserver --help')";
    std::string line = lines[0];
    EXPECT_TRUE(line.size() >= hint.size() &&
                line.compare(line.size() - hint.size(), hint.size(), hint) == 0)
        << line;
    if (line.size() >= hint.size() &&
        line.compare(line.size() - hint.size(), hint.size(), hint) == 0) {
        line.resize(line.size() - hint.size());
    }
    return line;
}

std::set<std::string> long_flags_in(const std::string& text) {
    static const std::regex flag(R"(--[a-z][a-z0-9-]*)");
    std::set<std::string> flags;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), flag);
         it != std::sregex_iterator(); ++it) {
        flags.insert(it->str());
    }
    return flags;
}

std::string help_text() {
    const ParseOutcome outcome = parse_with({"--help"});
    EXPECT_EQ(outcome.kind, ParseOutcome::Kind::exit);
    EXPECT_EQ(outcome.exit_code, 0);
    return outcome.output;
}

const std::string existing_dir = std::filesystem::temp_directory_path().string();

// A directory that passes for a virtualenv: it has a pyvenv.cfg (what --virtualenv checks).
std::string fake_virtualenv() {
    const auto dir = std::filesystem::temp_directory_path() / "appserver-options-test-venv";
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "pyvenv.cfg") << "home = /usr/bin\nversion = 3.11.2\n";
    return dir.string();
}

// One non-default value per option, the same text for the flag and its environment variable.
struct OptionCase {
    std::string flag;  // "--workers"
    std::string env;   // "APPSERVER_WORKERS"; "" for a shorthand (--bind), which has none
    std::string value; // "" for a flag given without a value
    std::function<void(const Config&)> check;
};

std::vector<OptionCase> option_cases() {
    return {
        {"--interface", "APPSERVER_INTERFACE", "wsgi",
         [](const Config& c) { EXPECT_EQ(c.interface, Interface::wsgi); }},
        {"--factory", "APPSERVER_FACTORY", "", [](const Config& c) { EXPECT_TRUE(c.factory); }},
        {"--lazy-apps", "APPSERVER_LAZY_APPS", "",
         [](const Config& c) { EXPECT_TRUE(c.lazy_apps); }},
        {"--working-dir", "APPSERVER_WORKING_DIR", existing_dir,
         [](const Config& c) { EXPECT_EQ(c.working_dir, existing_dir); }},
        {"--virtualenv", "APPSERVER_VIRTUALENV", fake_virtualenv(),
         [](const Config& c) { EXPECT_EQ(c.virtualenv, fake_virtualenv()); }},
        {"--env", "APPSERVER_ENV", "DJANGO_SETTINGS_MODULE=mysite.settings",
         [](const Config& c) {
             ASSERT_EQ(c.env.size(), 1U);
             EXPECT_EQ(c.env[0].first, "DJANGO_SETTINGS_MODULE");
             EXPECT_EQ(c.env[0].second, "mysite.settings");
         }},
        {"--url-path-prefix", "APPSERVER_URL_PATH_PREFIX", "/shop/api",
         [](const Config& c) { EXPECT_EQ(c.url_path_prefix, "/shop/api"); }},
        {"--host", "APPSERVER_HOST", "::1", [](const Config& c) { EXPECT_EQ(c.host, "::1"); }},
        {"--port", "APPSERVER_PORT", "65535", [](const Config& c) { EXPECT_EQ(c.port, 65535); }},
        {"--uds", "APPSERVER_UDS", "/run/app.sock",
         [](const Config& c) { EXPECT_EQ(c.uds, "/run/app.sock"); }},
        {"--uds-permissions", "APPSERVER_UDS_PERMISSIONS", "660",
         [](const Config& c) { EXPECT_EQ(c.uds_permissions, "660"); }},
        {"--backlog", "APPSERVER_BACKLOG", "2048",
         [](const Config& c) { EXPECT_EQ(c.backlog, 2048); }},
        {"--fd", "APPSERVER_FD", "3", [](const Config& c) { EXPECT_EQ(c.listen_fd, 3); }},
        {"--bind", "", "[::1]:9000",
         [](const Config& c) {
             EXPECT_EQ(c.host, "::1");
             EXPECT_EQ(c.port, 9000);
         }},
        {"--debug", "APPSERVER_DEBUG", "", [](const Config& c) { EXPECT_TRUE(c.debug); }},
        {"--forwarded-allow-ips", "APPSERVER_FORWARDED_ALLOW_IPS", "10.0.0.0/8, fd00::/8,unix",
         [](const Config& c) { EXPECT_EQ(c.forwarded_allow_ips, "10.0.0.0/8, fd00::/8,unix"); }},
        {"--proxy-protocol", "APPSERVER_PROXY_PROTOCOL", "",
         [](const Config& c) { EXPECT_TRUE(c.proxy_protocol); }},
        {"--workers", "APPSERVER_WORKERS", "8", [](const Config& c) { EXPECT_EQ(c.workers, 8U); }},
        {"--pid-file", "APPSERVER_PID_FILE", "/run/app.pid",
         [](const Config& c) { EXPECT_EQ(c.pid_file, "/run/app.pid"); }},
        {"--blocking-threads", "APPSERVER_BLOCKING_THREADS", "4",
         [](const Config& c) { EXPECT_EQ(c.blocking_threads, 4U); }},
        {"--request-queue-size", "APPSERVER_REQUEST_QUEUE_SIZE", "64",
         [](const Config& c) { EXPECT_EQ(c.request_queue_size, 64U); }},
        {"--keep-alive-timeout", "APPSERVER_KEEP_ALIVE_TIMEOUT", "0.5",
         [](const Config& c) { EXPECT_DOUBLE_EQ(c.keep_alive_timeout, 0.5); }},
        {"--header-read-timeout", "APPSERVER_HEADER_READ_TIMEOUT", "2.25",
         [](const Config& c) { EXPECT_DOUBLE_EQ(c.header_read_timeout, 2.25); }},
        {"--read-timeout", "APPSERVER_READ_TIMEOUT", "120",
         [](const Config& c) { EXPECT_DOUBLE_EQ(c.read_timeout, 120.0); }},
        {"--write-timeout", "APPSERVER_WRITE_TIMEOUT", "86400",
         [](const Config& c) { EXPECT_DOUBLE_EQ(c.write_timeout, 86400.0); }},
        {"--request-queue-timeout", "APPSERVER_REQUEST_QUEUE_TIMEOUT", "2.5",
         [](const Config& c) { EXPECT_DOUBLE_EQ(c.request_queue_timeout, 2.5); }},
        {"--graceful-timeout", "APPSERVER_GRACEFUL_TIMEOUT", "1e1",
         [](const Config& c) { EXPECT_DOUBLE_EQ(c.graceful_timeout, 10.0); }},
        {"--max-header-size", "APPSERVER_MAX_HEADER_SIZE", "1024",
         [](const Config& c) { EXPECT_EQ(c.max_header_size, 1024U); }},
        {"--max-headers", "APPSERVER_MAX_HEADERS", "7",
         [](const Config& c) { EXPECT_EQ(c.max_headers, 7U); }},
        {"--request-buffering", "APPSERVER_REQUEST_BUFFERING", "off",
         [](const Config& c) { EXPECT_EQ(c.request_buffering, appserver::RequestBuffering::off); }},
        {"--max-connections", "APPSERVER_MAX_CONNECTIONS", "250",
         [](const Config& c) { EXPECT_EQ(c.max_connections, 250U); }},
        {"--max-body-size", "APPSERVER_MAX_BODY_SIZE", "10M",
         [](const Config& c) { EXPECT_EQ(c.max_body_size, 10U * 1024 * 1024); }},
        {"--log-level", "APPSERVER_LOG_LEVEL", "warning",
         [](const Config& c) { EXPECT_EQ(c.log_level, LogLevel::warning); }},
        {"--request-timeout", "APPSERVER_REQUEST_TIMEOUT", "2.5",
         [](const Config& c) { EXPECT_EQ(c.request_timeout, 2.5); }},
        {"--reload", "APPSERVER_RELOAD", "", [](const Config& c) { EXPECT_TRUE(c.reload); }},
        {"--reload-paths", "APPSERVER_RELOAD_PATHS", existing_dir,
         [](const Config& c) { EXPECT_EQ(c.reload_paths, std::vector<std::string>{existing_dir}); }},
        {"--reload-ignore-patterns", "APPSERVER_RELOAD_IGNORE_PATTERNS", "*.tmp",
         [](const Config& c) {
             EXPECT_EQ(c.reload_ignore_patterns, std::vector<std::string>{"*.tmp"});
         }},
        {"--max-requests", "APPSERVER_MAX_REQUESTS", "1000",
         [](const Config& c) { EXPECT_EQ(c.max_requests, 1000U); }},
        {"--max-requests-jitter", "APPSERVER_MAX_REQUESTS_JITTER", "50",
         [](const Config& c) { EXPECT_EQ(c.max_requests_jitter, 50U); }},
        {"--workers-lifetime", "APPSERVER_WORKERS_LIFETIME", "3600",
         [](const Config& c) { EXPECT_EQ(c.workers_lifetime, 3600.0); }},
        {"--workers-max-rss", "APPSERVER_WORKERS_MAX_RSS", "2G",
         [](const Config& c) { EXPECT_EQ(c.workers_max_rss, 2048U); }},
        {"--log-format", "APPSERVER_LOG_FORMAT", "json",
         [](const Config& c) { EXPECT_EQ(c.log_format, appserver::LogFormat::json); }},
        {"--metrics", "APPSERVER_METRICS", "", [](const Config& c) { EXPECT_TRUE(c.metrics); }},
        {"--metrics-address", "APPSERVER_METRICS_ADDRESS", "0.0.0.0",
         [](const Config& c) { EXPECT_EQ(c.metrics_address, "0.0.0.0"); }},
        {"--metrics-port", "APPSERVER_METRICS_PORT", "9100",
         [](const Config& c) { EXPECT_EQ(c.metrics_port, 9100); }},
        {"--health-path", "APPSERVER_HEALTH_PATH", "/healthz",
         [](const Config& c) { EXPECT_EQ(c.health_path, "/healthz"); }},
        {"--access-log", "APPSERVER_ACCESS_LOG", "-",
         [](const Config& c) { EXPECT_EQ(c.access_log, "-"); }},
        {"--access-log-format", "APPSERVER_ACCESS_LOG_FORMAT", "%(h)s %(r)s %({x-id}i)s",
         [](const Config& c) { EXPECT_EQ(c.access_log_format, "%(h)s %(r)s %({x-id}i)s"); }},
    };
}

void expect_same_config(const Config& a, const Config& b) {
    EXPECT_EQ(a.interface, b.interface);
    EXPECT_EQ(a.factory, b.factory);
    EXPECT_EQ(a.lazy_apps, b.lazy_apps);
    EXPECT_EQ(a.pid_file, b.pid_file);
    EXPECT_EQ(a.working_dir, b.working_dir);
    EXPECT_EQ(a.virtualenv, b.virtualenv);
    EXPECT_EQ(a.env, b.env);
    EXPECT_EQ(a.url_path_prefix, b.url_path_prefix);
    EXPECT_EQ(a.host, b.host);
    EXPECT_EQ(a.port, b.port);
    EXPECT_EQ(a.uds, b.uds);
    EXPECT_EQ(a.uds_permissions, b.uds_permissions);
    EXPECT_EQ(a.backlog, b.backlog);
    EXPECT_EQ(a.forwarded_allow_ips, b.forwarded_allow_ips);
    EXPECT_EQ(a.proxy_protocol, b.proxy_protocol);
    EXPECT_EQ(a.listen_fd, b.listen_fd);
    EXPECT_EQ(a.debug, b.debug);
    EXPECT_EQ(a.workers, b.workers);
    EXPECT_EQ(a.blocking_threads, b.blocking_threads);
    EXPECT_EQ(a.request_queue_size, b.request_queue_size);
    EXPECT_EQ(a.keep_alive_timeout, b.keep_alive_timeout);
    EXPECT_EQ(a.header_read_timeout, b.header_read_timeout);
    EXPECT_EQ(a.read_timeout, b.read_timeout);
    EXPECT_EQ(a.write_timeout, b.write_timeout);
    EXPECT_EQ(a.graceful_timeout, b.graceful_timeout);
    EXPECT_EQ(a.request_queue_timeout, b.request_queue_timeout);
    EXPECT_EQ(a.max_header_size, b.max_header_size);
    EXPECT_EQ(a.max_headers, b.max_headers);
    EXPECT_EQ(a.max_body_size, b.max_body_size);
    EXPECT_EQ(a.max_connections, b.max_connections);
    EXPECT_EQ(a.request_buffering, b.request_buffering);
    EXPECT_EQ(a.log_level, b.log_level);
    EXPECT_EQ(a.log_format, b.log_format);
    EXPECT_EQ(a.max_requests, b.max_requests);
    EXPECT_EQ(a.request_timeout, b.request_timeout);
    EXPECT_EQ(a.reload, b.reload);
    EXPECT_EQ(a.reload_paths, b.reload_paths);
    EXPECT_EQ(a.reload_ignore_patterns, b.reload_ignore_patterns);
    EXPECT_EQ(a.max_requests_jitter, b.max_requests_jitter);
    EXPECT_EQ(a.workers_lifetime, b.workers_lifetime);
    EXPECT_EQ(a.workers_max_rss, b.workers_max_rss);
    EXPECT_EQ(a.metrics, b.metrics);
    EXPECT_EQ(a.metrics_address, b.metrics_address);
    EXPECT_EQ(a.metrics_port, b.metrics_port);
    EXPECT_EQ(a.health_path, b.health_path);
    EXPECT_EQ(a.access_log, b.access_log);
    EXPECT_EQ(a.access_log_format, b.access_log_format);
}

// ---- values that parse ------------------------------------------------------------------

TEST(Options, TargetAloneGivesTheDefaults) {
    const Config config = parse_ok({target});
    EXPECT_EQ(config.target, target);
    expect_same_config(config, Config{});
}

TEST(Options, EveryOptionIsCovered) {
    // Guards option_cases(): an option added to the table without a test case fails here.
    std::set<std::string> covered;
    for (const auto& option : option_cases()) covered.insert(option.flag);
    std::set<std::string> documented = long_flags_in(appserver::cli::markdown_reference());
    for (const char* meta : {"--help", "--version", "--threads", "--ini", "--print-config"}) {
        documented.erase(meta);
    }
    EXPECT_EQ(covered, documented);
}

TEST(Options, AnEmptyForwardedAllowIpsTrustsNobody) {
    EXPECT_EQ(parse_ok({"--forwarded-allow-ips=", target}).forwarded_allow_ips, "");
    EXPECT_EQ(parse_ok({"--forwarded-allow-ips", "*", target}).forwarded_allow_ips, "*");
}

TEST(Options, EveryOptionParsesFromTheCommandLine) {
    for (const auto& option : option_cases()) {
        SCOPED_TRACE(option.flag);
        Args separate{option.flag};
        if (!option.value.empty()) separate.push_back(option.value);
        separate.push_back(target);
        option.check(parse_ok(separate));
        if (!option.value.empty()) {
            option.check(parse_ok({option.flag + "=" + option.value, target}));
        }
    }
}

TEST(Options, EveryOptionParsesFromItsEnvironmentVariable) {
    for (const auto& option : option_cases()) {
        if (option.env.empty()) continue;
        SCOPED_TRACE(option.env);
        const std::string value = option.value.empty() ? "true" : option.value;
        option.check(parse_ok({target}, {{option.env, value}}));
    }
}

TEST(Options, AllOptionsTogether) {
    Args args;
    for (const auto& option : option_cases()) {
        if (option.env.empty()) continue; // --bind may not come with --host and --port
        args.push_back(option.flag);
        if (!option.value.empty()) args.push_back(option.value);
    }
    args.push_back(target);
    const Config config = parse_ok(args);
    for (const auto& option : option_cases()) {
        if (option.env.empty()) continue;
        SCOPED_TRACE(option.flag);
        option.check(config);
    }
}

TEST(Options, TargetMayComeBeforeOrBetweenOptions) {
    const Config config = parse_ok({"--workers", "2", "mysite.wsgi:application", "--port", "9"});
    EXPECT_EQ(config.target, "mysite.wsgi:application");
    EXPECT_EQ(config.workers, 2U);
    EXPECT_EQ(config.port, 9);
}

TEST(Options, ThreadsIsAnAliasOfBlockingThreads) {
    EXPECT_EQ(parse_ok({"--threads", "6", target}).blocking_threads, 6U);
    EXPECT_EQ(parse_ok({"--threads=3", target}).blocking_threads, 3U);
    // An alias has no environment variable of its own.
    EXPECT_EQ(parse_ok({target}, {{"APPSERVER_THREADS", "9"}}).blocking_threads, 1U);
}

TEST(Options, LastOccurrenceWins) {
    EXPECT_EQ(parse_ok({"--workers", "2", "--workers", "3", target}).workers, 3U);
    EXPECT_EQ(parse_ok({"--threads", "2", "--blocking-threads", "5", target}).blocking_threads,
              5U);
}

TEST(Options, EnvIsRepeatableAndKeepsOrder) {
    const Config config = parse_ok({"--env", "A=1", "--env=B=x=y", "--env", "GREETING=hello world",
                                    "--env", "EMPTY=", target});
    const std::vector<std::pair<std::string, std::string>> expected{
        {"A", "1"}, {"B", "x=y"}, {"GREETING", "hello world"}, {"EMPTY", ""}};
    EXPECT_EQ(config.env, expected);
}

TEST(Options, EnvVariableHoldsEntriesSeparatedByWhitespace) {
    const Config config = parse_ok({target}, {{"APPSERVER_ENV", " A=1  B=2\n\tC=x=y\n"}});
    const std::vector<std::pair<std::string, std::string>> expected{
        {"A", "1"}, {"B", "2"}, {"C", "x=y"}};
    EXPECT_EQ(config.env, expected);
}

TEST(Options, CommandLineEnvReplacesEnvVariable) {
    const Config config = parse_ok({"--env", "B=2", target}, {{"APPSERVER_ENV", "A=1"}});
    const std::vector<std::pair<std::string, std::string>> expected{{"B", "2"}};
    EXPECT_EQ(config.env, expected);
}

TEST(Options, CommandLineWinsOverEnvironment) {
    const Env env{{"APPSERVER_WORKERS", "3"}, {"APPSERVER_HOST", "0.0.0.0"}};
    const Config config = parse_ok({"--workers", "5", target}, env);
    EXPECT_EQ(config.workers, 5U);
    EXPECT_EQ(config.host, "0.0.0.0");
    // The environment value is not even validated when the flag is given.
    EXPECT_EQ(parse_ok({"--workers", "5", target}, {{"APPSERVER_WORKERS", "abc"}}).workers, 5U);
}

TEST(Options, EmptyEnvironmentVariableCountsAsUnset) {
    const Config config =
        parse_ok({target}, {{"APPSERVER_HOST", ""}, {"APPSERVER_WORKERS", ""}});
    EXPECT_EQ(config.host, Config{}.host);
    EXPECT_EQ(config.workers, Config{}.workers);
}

TEST(Options, BooleanEnvironmentValues) {
    for (const char* yes : {"1", "true", "yes", "TRUE", "Yes"}) {
        SCOPED_TRACE(yes);
        EXPECT_TRUE(parse_ok({target}, {{"APPSERVER_FACTORY", yes}}).factory);
    }
    for (const char* no : {"0", "false", "no", "FALSE", "No"}) {
        SCOPED_TRACE(no);
        EXPECT_FALSE(parse_ok({target}, {{"APPSERVER_FACTORY", no}}).factory);
    }
    // The command line can switch off what the environment switched on.
    EXPECT_FALSE(parse_ok({"--factory=no", target}, {{"APPSERVER_FACTORY", "1"}}).factory);
}

TEST(Options, ChoicesIgnoreCase) {
    EXPECT_EQ(parse_ok({target}, {{"APPSERVER_LOG_LEVEL", "DEBUG"}}).log_level, LogLevel::debug);
    EXPECT_EQ(parse_ok({"--log-level", "Critical", target}).log_level, LogLevel::critical);
}

TEST(Options, EmptyUrlPathPrefixIsAccepted) {
    EXPECT_EQ(parse_ok({"--url-path-prefix", "", target}).url_path_prefix, "");
}

TEST(Options, InjectedEnvironmentIsTheOnlySource) {
    ASSERT_EQ(::setenv("APPSERVER_WORKERS", "7", 1), 0);
    EXPECT_EQ(parse_ok({target}, {}).workers, 1U);
    // Without an injected lookup the process environment is read.
    const ParseOutcome outcome = appserver::cli::parse({"appserver", target});
    ::unsetenv("APPSERVER_WORKERS");
    ASSERT_EQ(outcome.kind, ParseOutcome::Kind::run) << outcome.output;
    EXPECT_EQ(outcome.config.workers, 7U);
}

// ---- values that do not parse -----------------------------------------------------------

struct BadCase {
    std::string flag;
    std::string value;
    std::string reason;    // expected at the end of the error line
    bool attached = false; // a flag takes a value only as --flag=value
};

std::vector<BadCase> bad_cases() {
    const std::string long_path = "/tmp/" + std::string(200, 's') + ".sock";
    const std::string file = std::filesystem::path(APPSERVER_SOURCE_DIR) / "docs" / "cli.md";
    return {
        {"--interface", "asgi", "is not one of: wsgi"},
        {"--factory", "maybe", "is not a boolean (use 1/0, true/false or yes/no)", true},
        {"--working-dir", "/nonexistent/appserver-test", "is not an existing directory"},
        {"--working-dir", file, "is not an existing directory"},
        {"--virtualenv", "/nonexistent/appserver-test", "is not an existing directory"},
        {"--virtualenv", existing_dir, "is not a virtualenv (it has no pyvenv.cfg)"},
        {"--env", "NOEQUALS", "is not of the form KEY=VAL"},
        {"--env", "=value", "has an empty KEY"},
        {"--url-path-prefix", "shop", "must start with '/' and not end with '/' (or be empty)"},
        {"--url-path-prefix", "/shop/", "must start with '/' and not end with '/' (or be empty)"},
        {"--url-path-prefix", "/", "must start with '/' and not end with '/' (or be empty)"},
        {"--host", "", "must not be empty"},
        {"--port", "0", "must be between 1 and 65535"},
        {"--port", "65536", "must be between 1 and 65535"},
        {"--port", "-80", "must be between 1 and 65535"},
        {"--port", "http", "is not an integer"},
        {"--uds", "", "must not be empty"},
        {"--uds", long_path, "is longer than 107 bytes, the limit for a unix socket path"},
        {"--uds-permissions", "rw", "is not an octal file mode from 0 to 777 (e.g. 660)"},
        {"--uds-permissions", "880", "is not an octal file mode from 0 to 777 (e.g. 660)"},
        {"--uds-permissions", "1777", "is not an octal file mode from 0 to 777 (e.g. 660)"},
        {"--uds-permissions", "", "is not an octal file mode from 0 to 777 (e.g. 660)"},
        {"--forwarded-allow-ips", "10.0.0.1/8",
         "has an entry '10.0.0.1/8' with bits set after the /8 prefix (the range starts at "
         "10.0.0.0/8)"},
        {"--forwarded-allow-ips", "127.0.0.1,nginx",
         "has an entry 'nginx' that is not an IP address, a CIDR range (10.0.0.0/8), '*' or "
         "'unix'"},
        {"--forwarded-allow-ips", "::/200", "has an entry '::/200' whose prefix length is not 0 to 128"},
        {"--backlog", "0", "must be at least 1"},
        {"--backlog", "2147483648", "is too large (at most 2147483647)"},
        {"--fd", "-1", "must be at least 0"},
        {"--fd", "3x", "is not an integer"},
        {"--fd", "2147483648", "is too large (at most 2147483647)"},
        {"--workers", "abc", "is not an integer"},
        {"--workers", "0", "must be at least 1"},
        {"--workers", "-1", "must be at least 1"},
        {"--workers", "1.5", "is not an integer"},
        {"--workers", "+2", "is not an integer"},
        {"--workers", " 2", "is not an integer"},
        {"--workers", "", "is not an integer"},
        {"--workers", "4294967296", "is too large (at most 4294967295)"},
        {"--workers", "99999999999999999999999", "is too large (at most 4294967295)"},
        {"--blocking-threads", "0", "must be at least 1"},
        {"--request-queue-size", "0", "must be at least 1"},
        {"--keep-alive-timeout", "0", "must be greater than 0 and at most 86400"},
        {"--header-read-timeout", "-1", "must be greater than 0 and at most 86400"},
        {"--read-timeout", "86401", "must be greater than 0 and at most 86400"},
        {"--write-timeout", "abc", "is not a number of seconds"},
        {"--graceful-timeout", "inf", "is not a number of seconds"},
        {"--graceful-timeout", "nan", "is not a number of seconds"},
        {"--graceful-timeout", "5s", "is not a number of seconds"},
        {"--max-header-size", "1023", "must be between 1024 and 1048576"},
        {"--max-header-size", "1048577", "must be between 1024 and 1048576"},
        {"--max-header-size", "2M", "must be between 1024 and 1048576"},
        {"--max-header-size", "big",
         "is not a size (a whole number, optionally followed by K, M or G)"},
        {"--max-headers", "0", "must be at least 1"},
        {"--max-body-size", "-1", "must be at least 0"},
        {"--max-connections", "-5", "must be at least 0"},
        {"--request-buffering", "maybe", "is not one of: off, on"},
        {"--max-body-size", "-1M", "must be at least 0"},
        {"--max-body-size", "18446744073709551616", "is too large (at most 18446744073709551615)"},
        {"--max-body-size", "17179869184G", "is too large (at most 18446744073709551615)"},
        {"--max-body-size", "10MB",
         "has an ambiguous unit: write K, M, G (or KiB, MiB, GiB), powers of 1024"},
        {"--max-body-size", "1.5M",
         "is not a size (a whole number, optionally followed by K, M or G)"},
        {"--max-body-size", "10 M",
         "is not a size (a whole number, optionally followed by K, M or G)"},
        {"--max-body-size", "M",
         "is not a size (a whole number, optionally followed by K, M or G)"},
        {"--workers-max-rss", "100K", "is not a whole number of MiB"},
        {"--workers-max-rss", "512X",
         "is not a size (a whole number, optionally followed by K, M or G)"},
        {"--bind", "::1:8000", "looks like an IPv6 address: put it in brackets, e.g. [::1]:8000"},
        {"--bind", "localhost:http", "has a port that is not a number"},
        {"--bind", "localhost:0", "has a port that must be between 1 and 65535"},
        {"--bind", "localhost:65536", "has a port that must be between 1 and 65535"},
        {"--bind", "[::1", "has a '[' without its ']'"},
        {"--bind", "unix:", "has no socket path after 'unix:'"},
        {"--bind", "fd://x", "has a descriptor that is not a number after 'fd://'"},
        {"--bind", "", "must not be empty"},
        {"--log-level", "verbose", "is not one of: debug, info, warning, error, critical"},
        {"--log-format", "xml", "is not one of: text, json"},
        {"--max-requests", "-5", "must be at least 0"},
        {"--workers-lifetime", "-1", "must be 0 (never) or a positive number of seconds up to 31536000"},
        {"--workers-lifetime", "1h", "is not a number of seconds"},
        {"--metrics-port", "0", "must be between 1 and 65535"},
        {"--health-path", "healthz", "must start with '/'"},
        {"--health-path", "/health?x", "must be a plain path: visible ASCII, no '?' or '#'"},
        {"--access-log-format", "%(nope)s", "invalid access log format: unknown atom %(nope)s (known: h l u t r m U q H s B b f a "
         "T M D L p rid w, {Header}i, {Header}o)"},
    };
}

std::string env_name_of(const std::string& flag) {
    std::string name = "APPSERVER_";
    for (char c : flag.substr(2)) {
        name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return name;
}

TEST(OptionErrors, BadValuesOnTheCommandLine) {
    for (const auto& bad : bad_cases()) {
        SCOPED_TRACE(bad.flag + " " + bad.value);
        // Value as its own argument: CLI11 reads "--host=" as "--host" with the value to follow.
        const Args args = bad.attached ? Args{bad.flag + "=" + bad.value, target}
                                       : Args{bad.flag, bad.value, target};
        EXPECT_EQ(parse_error(args),
                  "appserver: error: " + bad.flag + ": value '" + bad.value + "' " + bad.reason);
    }
}

TEST(OptionErrors, BadValuesInTheEnvironmentNameTheVariable) {
    for (const auto& bad : bad_cases()) {
        if (bad.value.empty()) continue;  // an empty variable counts as unset
        if (bad.flag == "--bind") continue; // a shorthand has no variable
        SCOPED_TRACE(bad.flag + " " + bad.value);
        const std::string env = env_name_of(bad.flag);
        EXPECT_EQ(parse_error({target}, {{env, bad.value}}),
                  "appserver: error: " + bad.flag + ": value '" + bad.value + "' " + bad.reason +
                      " (from " + env + ")");
    }
}

TEST(OptionErrors, ExampleFromTheErrorContract) {
    EXPECT_EQ(parse_error({target}, {{"APPSERVER_WORKERS", "abc"}}),
              "appserver: error: --workers: value 'abc' is not an integer (from "
              "APPSERVER_WORKERS)");
}

TEST(OptionErrors, BadEntryInEnvVariable) {
    EXPECT_EQ(parse_error({target}, {{"APPSERVER_ENV", "A=1 oops"}}),
              "appserver: error: --env: value 'oops' is not of the form KEY=VAL (from "
              "APPSERVER_ENV)");
}

TEST(OptionErrors, UnknownOption) {
    EXPECT_EQ(parse_error({"--bogus", target}), "appserver: error: unknown option '--bogus'");
    EXPECT_EQ(parse_error({"--bogus=1", target}), "appserver: error: unknown option '--bogus'");
    EXPECT_EQ(parse_error({"-x", target}), "appserver: error: unknown option '-x'");
    // Reported as unknown even when TARGET is missing too.
    EXPECT_EQ(parse_error({"--bogus"}), "appserver: error: unknown option '--bogus'");
}

TEST(OptionErrors, MissingValue) {
    EXPECT_EQ(parse_error({target, "--workers"}), "appserver: error: --workers: missing value");
    EXPECT_EQ(parse_error({target, "--env"}), "appserver: error: --env: missing value");
}

TEST(OptionErrors, SecondPositional) {
    EXPECT_EQ(parse_error({target, "other:app"}),
              "appserver: error: unexpected argument 'other:app' (only one TARGET is allowed)");
}

TEST(OptionErrors, MissingTarget) {
    EXPECT_EQ(parse_error({}), "appserver: error: missing TARGET (module:attribute)");
    EXPECT_EQ(parse_error({"--workers", "2"}),
              "appserver: error: missing TARGET (module:attribute)");
}

TEST(OptionErrors, MalformedTarget) {
    for (const char* bad : {"app:", ":application", "app:application:x", "1app:x", "1app",
                            "app:1x", "my-app:x", "my-app", "app.:x", ".app:x", "app..sub:x",
                            "app:x.", "app.", "app:x()", "app: x", "app/sub:x", "app:x-y"}) {
        SCOPED_TRACE(bad);
        EXPECT_EQ(parse_error({bad}), std::string("appserver: error: TARGET: value '") + bad +
                                          "' is not of the form module[.sub]*[:attribute[.attr]*]");
    }
}

TEST(Options, WellFormedTargets) {
    for (const char* good : {"app:application", "mysite.wsgi:application", "_a._b:_c",
                             "pkg.sub2.mod:obj.attr.app", "A:B"}) {
        SCOPED_TRACE(good);
        EXPECT_EQ(parse_ok({good}).target, good);
    }
}

TEST(Options, ModuleOnlyTargetMeansItsApplication) {
    // As in gunicorn: "mysite.wsgi" is "mysite.wsgi:application".
    EXPECT_EQ(parse_ok({"mysite.wsgi"}).target, "mysite.wsgi:application");
    EXPECT_EQ(parse_ok({"app"}).target, "app:application");
}

TEST(Options, EmptyAssignedValueIsAValueNotTheNextArgument) {
    // --opt= (say --url-path-prefix=$UNSET) sets the empty value; it must not swallow TARGET.
    const Config c = parse_ok({"--url-path-prefix=", "app:application"});
    EXPECT_EQ(c.url_path_prefix, "");
    EXPECT_EQ(c.target, "app:application");
    const std::string port_error = parse_error({"--port=", "app:application"});
    EXPECT_EQ(port_error.rfind("appserver: error: --port: value ''", 0), 0U) << port_error;
    // After "--" nothing is an option.
    EXPECT_EQ(parse_error({"--", "--port="}).find("--port: value"), std::string::npos);
}

TEST(Options, LogLevelTakesAUniquePrefix) {
    EXPECT_EQ(parse_ok({"--log-level", "warn", "app:application"}).log_level,
              parse_ok({"--log-level", "warning", "app:application"}).log_level);
    EXPECT_EQ(parse_ok({"--log-level", "CRIT", "app:application"}).log_level,
              parse_ok({"--log-level", "critical", "app:application"}).log_level);
    EXPECT_NE(parse_error({"--log-level", "war", "app:application"}), ""); // too short
    EXPECT_NE(parse_error({"--log-level", "warnings", "app:application"}), "");
}

// ---- --help, --version and the docs -----------------------------------------------------

TEST(OptionsHelp, HelpExitsZeroAndDescribesEveryOption) {
    const std::string help = help_text();
    EXPECT_NE(help.find("Usage: appserver [OPTIONS] [TARGET]"), std::string::npos) << help;
    for (const auto& option : option_cases()) {
        EXPECT_NE(help.find(option.flag), std::string::npos) << option.flag;
        if (option.env.empty()) continue;
        EXPECT_NE(help.find("[env: " + option.env + "]"), std::string::npos) << option.env;
    }
    for (const char* meta : {"--ini FILE[:SECTION]", "--print-config", "--version"}) {
        EXPECT_NE(help.find(meta), std::string::npos) << meta;
    }
    EXPECT_NE(help.find("--threads"), std::string::npos);
    EXPECT_NE(help.find("[default: 127.0.0.1]"), std::string::npos);
    EXPECT_NE(help.find("holds several entries separated by spaces"), std::string::npos);
}

TEST(OptionsHelp, HelpAndDocsListTheSameOptions) {
    EXPECT_EQ(long_flags_in(help_text()), long_flags_in(appserver::cli::markdown_reference()));
}

TEST(OptionsHelp, HelpWinsOverOtherArguments) {
    for (const Args& args : {Args{"-h"}, Args{"--bogus", "--help"}, Args{"--workers=0", "-h"},
                             Args{target, "--help"}}) {
        const ParseOutcome outcome = parse_with(args);
        EXPECT_EQ(outcome.kind, ParseOutcome::Kind::exit);
        EXPECT_EQ(outcome.exit_code, 0);
        EXPECT_EQ(outcome.output, help_text());
    }
}

TEST(OptionsHelp, VersionPrintsTheVersionReport) {
    for (const Args& args :
         {Args{"--version"}, Args{target, "--version"}, Args{"--bogus", "--version"}}) {
        const ParseOutcome outcome = parse_with(args);
        EXPECT_EQ(outcome.kind, ParseOutcome::Kind::exit);
        EXPECT_EQ(outcome.exit_code, 0);
        EXPECT_EQ(outcome.output, appserver::cli::version_report());
        EXPECT_EQ(outcome.output.rfind("appserver ", 0), 0U) << outcome.output;
    }
}

// docs/cli.md is this header followed by markdown_reference().
constexpr const char* docs_header =
    "<!-- Generated from the option table in src/cli/options.cpp: do not edit by hand.\n"
    "     The unit test OptionsDocs.CliReferenceIsUpToDate fails when this file is stale.\n"
    "     Regenerate it after changing an option (from the repository root):\n"
    "       APPSERVER_REGENERATE_DOCS=1 build/dev/tests/unit/appserver_unit_tests \\\n"
    "         --gtest_filter='OptionsDocs.*'\n"
    "-->\n"
    "# Command-line reference\n"
    "\n"
    "`appserver` is configured by command-line options and by `APPSERVER_*` environment\n"
    "variables; both are described below.\n"
    "\n";

TEST(OptionsDocs, CliReferenceIsUpToDate) {
    const std::filesystem::path path =
        std::filesystem::path(APPSERVER_SOURCE_DIR) / "docs" / "cli.md";
    const std::string expected = docs_header + appserver::cli::markdown_reference();

    const char* regenerate = std::getenv("APPSERVER_REGENERATE_DOCS");
    if (regenerate != nullptr && std::string(regenerate) == "1") {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << expected;
        ASSERT_TRUE(out.good()) << "could not write " << path;
        std::cout << "[ rewrote  ] " << path.string() << "\n";
        return;
    }

    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in.good()) << "missing " << path;
    std::ostringstream actual;
    actual << in.rdbuf();
    EXPECT_EQ(actual.str(), expected)
        << path << " is out of date; rerun this test with APPSERVER_REGENERATE_DOCS=1";
}

} // namespace

TEST(OptionsEnvironment, UnknownAppserverVariablesAreReported) {
    const auto warnings = appserver::cli::unknown_environment_variables(
        {"PATH", "APPSERVER_WORKERS", "APPSERVER_WORKER", "APPSERVER_THREADS", "APPSERVERX"});
    ASSERT_EQ(warnings.size(), 2U);
    EXPECT_EQ(warnings[0], "environment variable APPSERVER_WORKER is not an option's variable; ignored");
    EXPECT_EQ(warnings[1],
              "environment variable APPSERVER_THREADS is not an option's variable; ignored "
              "(aliases have no variable: use APPSERVER_BLOCKING_THREADS)");
}

// ---- sizes, --bind, did you mean --------------------------------------------------------------

namespace {

TEST(OptionSizes, UnitsArePowersOf1024) {
    EXPECT_EQ(parse_ok({"--max-body-size", "10M", target}).max_body_size, 10U << 20);
    EXPECT_EQ(parse_ok({"--max-body-size", "10MiB", target}).max_body_size, 10U << 20);
    EXPECT_EQ(parse_ok({"--max-body-size", "64k", target}).max_body_size, 64U << 10);
    EXPECT_EQ(parse_ok({"--max-body-size", "1g", target}).max_body_size, 1U << 30);
    EXPECT_EQ(parse_ok({"--max-body-size", "1000", target}).max_body_size, 1000U);
    EXPECT_EQ(parse_ok({"--max-header-size", "16KiB", target}).max_header_size, 16U << 10);
    EXPECT_EQ(parse_ok({"--max-header-size", "1M", target}).max_header_size, 1U << 20);
    // Counted in MiB: a bare number is MiB, a unit converts.
    EXPECT_EQ(parse_ok({"--workers-max-rss", "512", target}).workers_max_rss, 512U);
    EXPECT_EQ(parse_ok({"--workers-max-rss", "512M", target}).workers_max_rss, 512U);
    EXPECT_EQ(parse_ok({"--workers-max-rss", "1048576K", target}).workers_max_rss, 1024U);
    EXPECT_EQ(parse_ok({target}, {{"APPSERVER_MAX_BODY_SIZE", "2G"}}).max_body_size, 2ULL << 30);
}

TEST(OptionSizes, DocumentedWithTheirUnit) {
    const std::string docs = appserver::cli::markdown_reference();
    EXPECT_NE(docs.find("| `--max-header-size BYTES` | `APPSERVER_MAX_HEADER_SIZE` | `64K` |"),
              std::string::npos);
    EXPECT_NE(docs.find("powers of 1024, so 1M is 1048576 bytes"), std::string::npos);
}

TEST(OptionBind, GunicornsSpellings) {
    Config c = parse_ok({"--bind", "0.0.0.0:8080", target});
    EXPECT_EQ(c.host, "0.0.0.0");
    EXPECT_EQ(c.port, 8080);
    c = parse_ok({"--bind", "example.org", target}); // the port stays --port's
    EXPECT_EQ(c.host, "example.org");
    EXPECT_EQ(c.port, 8000);
    c = parse_ok({"--bind=:9001", target});
    EXPECT_EQ(c.host, "0.0.0.0");
    EXPECT_EQ(c.port, 9001);
    c = parse_ok({"--bind", "tcp://127.0.0.1:7000", target});
    EXPECT_EQ(c.host, "127.0.0.1");
    EXPECT_EQ(c.port, 7000);
    c = parse_ok({"--bind", "[::]:80", target});
    EXPECT_EQ(c.host, "::");
    EXPECT_EQ(c.port, 80);
    EXPECT_EQ(parse_ok({"--bind", "unix:/run/app.sock", target}).uds, "/run/app.sock");
    EXPECT_EQ(parse_ok({"--bind", "unix:///run/app.sock", target}).uds, "/run/app.sock");
    EXPECT_EQ(parse_ok({"--bind", "fd://3", target}).listen_fd, 3);
}

TEST(OptionBind, ReplacesWhatTheEnvironmentSaysAboutListening) {
    const Config c =
        parse_ok({"--bind", "127.0.0.2:81", target}, {{"APPSERVER_HOST", "0.0.0.0"},
                                                      {"APPSERVER_PORT", "9"},
                                                      {"APPSERVER_UDS", "/run/env.sock"}});
    EXPECT_EQ(c.host, "127.0.0.2");
    EXPECT_EQ(c.port, 81);
    EXPECT_EQ(c.uds, "");
    // It has no variable of its own.
    EXPECT_EQ(parse_ok({target}, {{"APPSERVER_BIND", "0.0.0.0:1"}}).port, 8000);
}

TEST(OptionBind, OnceAndAlone) {
    EXPECT_EQ(parse_error({"--bind", ":1", "--bind", ":2", target}),
              "appserver: error: --bind: given more than once; appserver listens on one socket");
    EXPECT_EQ(parse_error({"--bind", ":1", "--port", "2", target}),
              "appserver: error: --bind and --port both say where to listen: give one of them");
    EXPECT_EQ(parse_error({"--uds", "/a.sock", "--bind", "unix:/b.sock", target}),
              "appserver: error: --bind and --uds both say where to listen: give one of them");
}

TEST(OptionsEnvironment, BindHasNoVariable) {
    const auto warnings = appserver::cli::unknown_environment_variables({"APPSERVER_BIND"});
    ASSERT_EQ(warnings.size(), 1U);
    EXPECT_EQ(warnings[0], "environment variable APPSERVER_BIND is not an option's variable; "
                           "ignored (--bind has no variable: use the variables of the options "
                           "it stands for)");
}

TEST(OptionErrors, PeersOptionsGetAppserversName) {
    EXPECT_EQ(parse_error({"--processes", "4", target}),
              "appserver: error: unknown option '--processes'; did you mean --workers? (uWSGI's "
              "--processes)");
    EXPECT_EQ(parse_error({"-w", "4", target}),
              "appserver: error: unknown option '-w'; did you mean --workers? (gunicorn's -w)");
    EXPECT_EQ(parse_error({"--pid=/run/x.pid", target}),
              "appserver: error: unknown option '--pid'; did you mean --pid-file? (gunicorn's "
              "--pid)");
    const std::string timeout = parse_error({"--timeout", "30", target});
    EXPECT_EQ(timeout.rfind("appserver: error: unknown option '--timeout'; did you mean "
                            "--request-timeout? (gunicorn's --timeout; ",
                            0),
              0U)
        << timeout;
    const std::string harakiri = parse_error({"--harakiri", "30", target});
    EXPECT_NE(harakiri.find("did you mean --request-timeout? (uWSGI's --harakiri"),
              std::string::npos)
        << harakiri;
    const std::string backpressure = parse_error({"--backpressure", "8", target});
    EXPECT_NE(backpressure.find("did you mean --request-queue-size? (Granian's --backpressure"),
              std::string::npos)
        << backpressure;
    const std::string worker_class = parse_error({"-k", "gevent", target});
    EXPECT_NE(worker_class.find("gunicorn's -k has no equivalent: "), std::string::npos)
        << worker_class;
    // Two peers, two meanings.
    const std::string http = parse_error({"--http", ":8000", target});
    EXPECT_NE(http.find("Granian's --http has no equivalent"), std::string::npos) << http;
    EXPECT_NE(http.find("did you mean --bind? (uWSGI's --http"), std::string::npos) << http;
    // A prefix family.
    const std::string h2 = parse_error({"--http2-max-frame-size", "1", target});
    EXPECT_NE(h2.find("Granian's --http2-max-frame-size has no equivalent: no HTTP/2 yet"),
              std::string::npos)
        << h2;
}

TEST(OptionErrors, MisspeltOptionsGetTheClosestName) {
    EXPECT_EQ(parse_error({"--worker", "2", target}),
              "appserver: error: unknown option '--worker'; did you mean --workers?");
    EXPECT_EQ(parse_error({"--max_requests", "2", target}),
              "appserver: error: unknown option '--max_requests'; did you mean --max-requests?");
    EXPECT_EQ(parse_error({"--max-body", "2", target}),
              "appserver: error: unknown option '--max-body'; did you mean --max-body-size?");
    EXPECT_EQ(parse_error({"--print-conifg", target}),
              "appserver: error: unknown option '--print-conifg'; did you mean --print-config?");
    // Nothing close: no guess.
    EXPECT_EQ(parse_error({"--bogus", target}), "appserver: error: unknown option '--bogus'");
    EXPECT_EQ(parse_error({"--max", target}), "appserver: error: unknown option '--max'");
}

// ---- --print-config -------------------------------------------------------------------------

std::vector<std::string> print_config_lines(Args args, const Env& env = {}) {
    args.push_back("--print-config");
    const ParseOutcome outcome = parse_with(std::move(args), env);
    EXPECT_EQ(outcome.kind, ParseOutcome::Kind::exit);
    EXPECT_EQ(outcome.exit_code, 0) << outcome.output;
    return lines_of(outcome.output);
}

// The printed command line back into arguments, as a shell would read it (enough for the
// quoting --print-config uses: plain words, single quotes, and \' between them).
Args shell_words(const std::vector<std::string>& lines) {
    Args words;
    for (std::string line : lines) {
        if (line.empty() || line[0] == '#') continue;
        if (line.size() >= 2 && line.compare(line.size() - 2, 2, " \\") == 0) {
            line.resize(line.size() - 2);
        }
        std::string word;
        bool quoted = false;
        bool any = false;
        for (std::size_t i = 0; i < line.size(); ++i) {
            const char c = line[i];
            if (c == '\'') {
                quoted = !quoted;
                any = true;
            } else if (c == '\\' && !quoted && i + 1 < line.size()) {
                word += line[++i];
            } else if (c == ' ' && !quoted) {
                if (any || !word.empty()) words.push_back(word);
                word.clear();
                any = false;
            } else {
                word += c;
            }
        }
        if (any || !word.empty()) words.push_back(word);
    }
    return words;
}

TEST(OptionsPrintConfig, EveryOptionOnALineThatReadsBack) {
    Args args;
    for (const auto& option : option_cases()) {
        if (option.env.empty()) continue;
        args.push_back(option.flag);
        if (!option.value.empty()) args.push_back(option.value);
    }
    args.insert(args.end(), {"--env", "GREETING=it's a 'test'", "mysite.wsgi"});
    const auto lines = print_config_lines(args);
    ASSERT_GE(lines.size(), 3U);
    EXPECT_EQ(lines.back(), "  mysite.wsgi:application");
    EXPECT_NE(std::find(lines.begin(), lines.end(), "  --workers=8 \\"), lines.end());
    EXPECT_NE(std::find(lines.begin(), lines.end(), "  --max-body-size=10M \\"), lines.end());
    EXPECT_NE(std::find(lines.begin(), lines.end(), "  --factory=true \\"), lines.end());

    Args words = shell_words(lines);
    ASSERT_EQ(words.front(), "appserver");
    words.erase(words.begin());
    const Config original = parse_ok(args);
    const Config again = parse_ok(words);
    expect_same_config(again, original);
    EXPECT_EQ(again.target, original.target);
}

TEST(OptionsPrintConfig, DefaultsAndUnsetOptions) {
    const auto lines = print_config_lines({target});
    ASSERT_GE(lines.size(), 3U);
    EXPECT_EQ(lines[0].rfind("# appserver ", 0), 0U);
    EXPECT_EQ(lines[1], "# not set: --reload-paths --reload-ignore-patterns --working-dir "
                        "--virtualenv --env --uds --uds-permissions --fd --pid-file --access-log");
    EXPECT_EQ(lines[2], "appserver \\");
    // Every option of the table but --bind (a shorthand) is on a line or listed as not set.
    const std::string text = [&] {
        std::string all;
        for (const auto& line : lines) all += line + "\n";
        return all;
    }();
    for (const auto& option : option_cases()) {
        if (option.env.empty()) continue;
        EXPECT_NE(text.find(option.flag), std::string::npos) << option.flag;
    }
    EXPECT_EQ(text.find("--bind"), std::string::npos);
    EXPECT_NE(text.find("  --url-path-prefix='' \\\n"), std::string::npos);
    const Config again = parse_ok([&] {
        Args words = shell_words(lines);
        words.erase(words.begin());
        return words;
    }());
    expect_same_config(again, Config{});
}

TEST(OptionsPrintConfig, StillNeedsAValidConfiguration) {
    EXPECT_EQ(parse_error({"--print-config"}),
              "appserver: error: missing TARGET (module:attribute)");
    EXPECT_EQ(parse_error({"--workers", "0", "--print-config", target}),
              "appserver: error: --workers: value '0' must be at least 1");
}

// ---- --ini ----------------------------------------------------------------------------------

class IniOptions : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("appserver-ini-test-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string write(const std::string& name, const std::string& text) {
        const auto path = dir_ / name;
        std::ofstream(path) << text;
        return path.string();
    }

    std::filesystem::path dir_;
};

TEST_F(IniOptions, FileCommandLineAndEnvironment) {
    const std::string ini = write("app.ini", "[uwsgi]\n"
                                             "module = mysite.wsgi:application\n"
                                             "processes = 4\n"
                                             "threads = 8\n"
                                             "http-socket = 0.0.0.0:8080\n"
                                             "harakiri = 30\n"
                                             "env = A=1\n"
                                             "env = B=2\n"
                                             "buffer-size = 32768\n");
    Config c = parse_ok({"--ini", ini});
    EXPECT_EQ(c.target, "mysite.wsgi:application");
    EXPECT_EQ(c.workers, 4U);
    EXPECT_EQ(c.blocking_threads, 8U);
    EXPECT_EQ(c.host, "0.0.0.0");
    EXPECT_EQ(c.port, 8080);
    EXPECT_EQ(c.request_timeout, 30.0);
    EXPECT_EQ(c.max_header_size, 32768U);
    const std::vector<std::pair<std::string, std::string>> env{{"A", "1"}, {"B", "2"}};
    EXPECT_EQ(c.env, env);

    // The environment wins over the file, the command line over both.
    c = parse_ok({"--ini", ini, "--workers", "2", "other:app"},
                 {{"APPSERVER_WORKERS", "3"}, {"APPSERVER_BLOCKING_THREADS", "5"}});
    EXPECT_EQ(c.workers, 2U);
    EXPECT_EQ(c.blocking_threads, 5U);
    EXPECT_EQ(c.target, "other:app");
    EXPECT_EQ(c.port, 8080);
    // A repeatable option from the command line replaces the file's entries.
    EXPECT_EQ(parse_ok({"--ini", ini, "--env", "C=3"}).env.size(), 1U);
}

TEST_F(IniOptions, BadValuesNameTheFileAndLine) {
    const std::string ini = write("bad.ini", "[uwsgi]\nmodule = app\nprocesses = many\n");
    EXPECT_EQ(parse_error({"--ini", ini}),
              "appserver: error: --workers: value 'many' is not an integer (from " + ini +
                  " line 3: processes)");
    const std::string target_ini = write("target.ini", "[uwsgi]\nmodule = my-app\n");
    EXPECT_EQ(parse_error({"--ini", target_ini}),
              "appserver: error: TARGET: value 'my-app:application' is not of the form "
              "module[.sub]*[:attribute[.attr]*] (from " +
                  target_ini + " line 2: module)");
}

TEST_F(IniOptions, RefusedOptionsAndUnreadableFiles) {
    const std::string ini = write("socket.ini", "[uwsgi]\nmodule = app\nsocket = /tmp/app.sock\n");
    const std::string error = parse_error({"--ini", ini});
    EXPECT_EQ(error.rfind("appserver: error: " + ini + " line 3: socket = /tmp/app.sock: ", 0), 0U)
        << error;
    EXPECT_EQ(parse_error({"--ini", (dir_ / "missing.ini").string()}),
              "appserver: error: --ini: cannot read '" + (dir_ / "missing.ini").string() +
                  "': No such file or directory");
    EXPECT_EQ(parse_error({"--ini", ini, "--ini", ini}),
              "appserver: error: --ini: given more than once; one file is read");
}

TEST_F(IniOptions, IgnoredOptionsAreWarnings) {
    const std::string ini =
        write("warn.ini", "[uwsgi]\nmodule = app\nthunder-lock = true\nthunder-lock = true\n");
    const ParseOutcome outcome = parse_with({"--ini", ini});
    ASSERT_EQ(outcome.kind, ParseOutcome::Kind::run) << outcome.output;
    ASSERT_EQ(outcome.warnings.size(), 1U);
    EXPECT_EQ(outcome.warnings[0].rfind(ini + " line 3: thunder-lock = true: ", 0), 0U)
        << outcome.warnings[0];
    // --print-config carries them too (printed to stderr).
    const ParseOutcome printed = parse_with({"--ini", ini, "--print-config"});
    EXPECT_EQ(printed.warnings, outcome.warnings);
}

TEST_F(IniOptions, AnIniFileAsTargetIsMeantForIni) {
    const std::string ini = write("app.ini", "[uwsgi]\nmodule = app\n");
    EXPECT_EQ(parse_error({ini}),
              "appserver: error: TARGET: value '" + ini + "' is a file; did you mean --ini " + ini +
                  "?");
    // Without such a file it is a module path like any other.
    EXPECT_EQ(parse_ok({"settings.ini"}).target, "settings.ini:application");
}

TEST_F(IniOptions, SectionAfterAColon) {
    const std::string ini = write("two.ini", "[uwsgi]\nmodule = first\n[prod]\nmodule = second\n");
    EXPECT_EQ(parse_ok({"--ini", ini}).target, "first:application");
    EXPECT_EQ(parse_ok({"--ini", ini + ":prod"}).target, "second:application");
    const std::string error = parse_error({"--ini", ini + ":staging"});
    EXPECT_EQ(error, "appserver: error: " + ini + ": no [staging] section with options");
}

TEST_F(IniOptions, ListeningOnTheCommandLineReplacesTheFilesSocket) {
    const std::string ini =
        write("uds.ini", "[uwsgi]\nmodule = app\nhttp-socket = /run/app.sock\n");
    EXPECT_EQ(parse_ok({"--ini", ini}).uds, "/run/app.sock");
    const Config c = parse_ok({"--ini", ini, "--port", "9000"});
    EXPECT_EQ(c.uds, "");
    EXPECT_EQ(c.port, 9000);
    EXPECT_EQ(parse_ok({"--ini", ini}, {{"APPSERVER_HOST", "0.0.0.0"}}).uds, "");
    EXPECT_EQ(parse_ok({"--ini", ini, "--bind", ":81"}).uds, "");
}

} // namespace
