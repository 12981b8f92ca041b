// Server configuration: the one value every front door (CLI, env vars, embedding code)
// fills in before starting the server. Defaults here are the documented defaults.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace appserver {

enum class Interface { wsgi };

enum class LogLevel { debug, info, warning, error, critical };

enum class LogFormat { text, json };
enum class RequestBuffering { off, on };

struct Config {
    // What to serve.
    Interface interface = Interface::wsgi;
    std::string target;             // "module:attribute" (or "module:factory" with factory)
    bool factory = false;           // call the attribute with no arguments to get the app
    std::string working_dir;        // chdir + sys.path[0] before importing; empty = cwd
    std::string virtualenv;         // standalone executable: use this venv; empty = $VIRTUAL_ENV
    std::vector<std::pair<std::string, std::string>> env; // set before importing the app
    std::string url_path_prefix;    // SCRIPT_NAME; stripped from PATH_INFO when it matches
    bool lazy_apps = false;         // import the app in each worker, not once in the master
    bool reload = false;            // development: reload when a source file changes
    std::vector<std::string> reload_paths;           // watched trees; empty = working dir
    std::vector<std::string> reload_ignore_patterns; // added to the default ignore list

    // Where to listen.
    std::string host = "127.0.0.1";
    std::uint16_t port = 8000;
    std::string uds;                // unix domain socket path; when set, host/port are unused
    std::string uds_permissions;    // octal mode for the socket file ("660"); empty = umask's
    int backlog = 1024;             // listen(2) backlog of the shared listening socket

    // Proxies in front (docs/behaviour.md, Proxies).
    std::string forwarded_allow_ips = "127.0.0.1,::1"; // peers whose forwarding headers are believed
    bool proxy_protocol = false;    // every connection starts with a PROXY protocol header
    int listen_fd = -1;             // an inherited listening socket (--fd); -1 = bind one

    // Processes and threads.
    unsigned workers = 1;           // worker processes forked by the master
    std::string pid_file;           // the master's pid is written here while it runs
    unsigned blocking_threads = 1;  // threads per worker that call the Python app
    std::size_t request_queue_size = 4096; // parsed requests waiting for a thread, per worker

    // Recycling: a worker is replaced (its successor started and serving first) after ...
    std::uint64_t max_requests = 0;        // ... this many requests (+ up to the jitter); 0 = never
    std::uint64_t max_requests_jitter = 0;
    double workers_lifetime = 0;           // ... this long (s, minus up to 10 %); 0 = never
    std::uint64_t workers_max_rss = 0;     // ... its resident memory passes this (MiB); 0 = never

    // Deadlines.
    double keep_alive_timeout = 5.0;   // idle keep-alive connection closed after this (s)
    double header_read_timeout = 10.0; // a request head must arrive within this (s)
    double read_timeout = 60.0;        // a request body read may stall this long (s)
    double write_timeout = 60.0;       // a client may refuse response bytes this long (s)
    double graceful_timeout = 30.0;    // in-flight work may finish within this on shutdown (s)
    double request_queue_timeout = 60.0; // a request queued longer than this gets 503 (s)
    double request_timeout = 0;        // 504 for a request whose app has not answered (s); 0 = off

    // Limits.
    std::size_t max_header_size = 64 * 1024; // request line + headers, bytes
    std::size_t max_headers = 100;           // header fields per request
    std::uint64_t max_body_size = 0;         // request body bytes; 0 = unlimited (streamed)
    std::size_t max_connections = 0;         // open connections per worker; 0 = from RLIMIT_NOFILE
    RequestBuffering request_buffering = RequestBuffering::on; // chunked bodies read whole first

    // Observability.
    bool metrics = false;                     // serve Prometheus metrics from the master
    std::string metrics_address = "127.0.0.1";
    std::uint16_t metrics_port = 9090;
    std::string access_log;                   // path, "-" for stdout; empty = no access log
    std::string access_log_format = "combined"; // common, combined, json or a custom format
    std::string health_path;                  // answered by the event loop; empty = none

    LogLevel log_level = LogLevel::info;
    LogFormat log_format = LogFormat::text;

    // Development: one worker, one blocking thread, the terminal's stdin kept for pdb,
    // debug log level, no request timeout (run() applies it; see --debug).
    bool debug = false;
};

} // namespace appserver
