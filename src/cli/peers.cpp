// gunicorn's and Granian's option names next to appserver's. A test checks that every
// appserver flag named here exists, and the migration guides' tables are generated from here.
#include "cli/peers.hpp"

#include "cli/uwsgi_ini.hpp"

#include <cctype>
#include <sstream>

namespace appserver::cli {
namespace {

constexpr std::string_view no_tls = "no TLS yet: terminate it in front (a load balancer, an "
                                    "ingress, NGINX)";

std::string_view peer_name(Peer peer) {
    return peer == Peer::gunicorn ? "gunicorn" : "Granian";
}

struct Match {
    std::string_view peer;
    std::string_view ours;
    std::string_view note;
};

} // namespace

const std::vector<PeerOption>& peer_options() {
    using P = Peer;
    static const std::vector<PeerOption> table = {
        // gunicorn
        {P::gunicorn, "-c --config", "",
         "appserver has no configuration file of its own (gunicorn's is Python): put the "
         "settings on the command line or in APPSERVER_* variables; --ini reads a uWSGI file"},
        {P::gunicorn, "-b --bind", "--bind",
         "one address: HOST:PORT, [IPv6]:PORT, unix:PATH (--uds) or fd://N (--fd)"},
        {P::gunicorn, "--backlog", "--backlog", ""},
        {P::gunicorn, "-w --workers", "--workers", ""},
        {P::gunicorn, "-k --worker-class", "",
         "every worker is a process with an event loop and --blocking-threads threads (like "
         "gthread); there are no gevent, eventlet or ASGI workers"},
        {P::gunicorn, "--threads", "--threads",
         "an alias of --blocking-threads; the default is 1 in both"},
        {P::gunicorn, "--worker-connections", "--max-connections",
         "per worker; at the limit idle keep-alive connections are closed first (default: "
         "from the open-files limit)"},
        {P::gunicorn, "--max-requests", "--max-requests", ""},
        {P::gunicorn, "--max-requests-jitter", "--max-requests-jitter", ""},
        {P::gunicorn, "-t --timeout", "--request-timeout",
         "gunicorn restarts a worker silent that long (default 30); appserver answers 504 for "
         "the request and replaces the worker only when the thread stays stuck (default: off)"},
        {P::gunicorn, "--graceful-timeout", "--graceful-timeout", ""},
        {P::gunicorn, "--keep-alive", "--keep-alive-timeout",
         "seconds; gunicorn's default is 2, appserver's 5"},
        {P::gunicorn, "--limit-request-line --limit-request-field_size", "--max-header-size",
         "one limit for the request line and headers together (431 past it)"},
        {P::gunicorn, "--limit-request-fields", "--max-headers", ""},
        {P::gunicorn, "--reload", "--reload", ""},
        {P::gunicorn, "--reload-extra-file", "--reload-paths", "directories, not files"},
        {P::gunicorn, "--reload-engine", "", "appserver watches with inotify"},
        {P::gunicorn, "--check-config", "--print-config",
         "prints the settings and exits without importing the application"},
        {P::gunicorn, "--print-config", "--print-config", ""},
        {P::gunicorn, "--preload", "",
         "that is appserver's default: the app is imported once in the master (--lazy-apps "
         "imports it in each worker, as gunicorn does by default)"},
        {P::gunicorn, "--chdir", "--working-dir", "also put first on sys.path"},
        {P::gunicorn, "-D --daemon", "",
         "appserver stays in the foreground: run it under a supervisor (systemd, a container)"},
        {P::gunicorn, "-e --env", "--env", ""},
        {P::gunicorn, "-p --pid", "--pid-file", ""},
        {P::gunicorn, "-u --user -g --group --initgroups", "",
         "appserver does not switch users: start it as that user"},
        {P::gunicorn, "-m --umask", "", "set it in the shell or the systemd unit"},
        {P::gunicorn, "--worker-tmp-dir", "", "appserver's workers need no heartbeat file"},
        {P::gunicorn, "--forwarded-allow-ips", "--forwarded-allow-ips",
         "also sets REMOTE_ADDR from X-Forwarded-For, and reads RFC 7239 Forwarded"},
        {P::gunicorn, "--proxy-protocol", "--proxy-protocol", ""},
        {P::gunicorn, "--proxy-allow-from", "--forwarded-allow-ips",
         "one list for forwarding headers and PROXY headers"},
        {P::gunicorn, "--access-logfile", "--access-log", "'-' is standard output in both"},
        {P::gunicorn, "--access-logformat", "--access-log-format",
         "gunicorn's atoms, or common, combined, json"},
        {P::gunicorn, "--error-logfile --log-file", "", "the server's log goes to standard error"},
        {P::gunicorn, "--log-level", "--log-level", ""},
        {P::gunicorn, "--capture-output", "",
         "what the app prints goes to appserver's standard output and error as it is"},
        {P::gunicorn,
         "--logger-class --log-config --log-config-json --log-syslog --log-syslog-to "
         "--log-syslog-prefix --log-syslog-facility",
         "--log-format", "text or json on standard error; no syslog"},
        {P::gunicorn, "--statsd-host --statsd-prefix --dogstatsd-tags --enable-backlog-metric",
         "--metrics", "Prometheus metrics served by the master, not StatsD"},
        {P::gunicorn, "-n --name", "",
         "process titles are appserver: master [module:attribute] and appserver: worker N [module:attribute]"},
        {P::gunicorn, "--pythonpath", "",
         "--working-dir is put first on sys.path; set PYTHONPATH for more"},
        {P::gunicorn, "--paste --paster --paste-global", "", "TARGET is a module:callable"},
        {P::gunicorn, "--root-path", "--url-path-prefix", ""},
        {P::gunicorn,
         "--keyfile --certfile --ssl-version --cert-reqs --ca-certs --ciphers "
         "--do-handshake-on-connect --suppress-ragged-eofs",
         "", no_tls},
        {P::gunicorn, "--reuse-port", "",
         "the master binds one socket and every worker accepts on it"},
        {P::gunicorn, "--no-sendfile", "",
         "wsgi.file_wrapper over a plain binary file is sent with sendfile (docs/behaviour.md)"},
        {P::gunicorn, "--spew -R --enable-stdio-inheritance", "", "no meaning for appserver"},
        {P::gunicorn, "--strip-header-spaces --permit-obsolete-folding", "",
         "appserver has no leniency switches: such requests get 400 (docs/behaviour.md)"},
        {P::gunicorn, "--permit-unconventional-http-method", "",
         "any token is a method already: it reaches the application as sent"},
        {P::gunicorn, "--casefold-http-method", "",
         "methods reach the application exactly as sent (they are case-sensitive)"},
        {P::gunicorn, "--permit-unconventional-http-version", "",
         "HTTP/1.2 to HTTP/1.9 are read as HTTP/1.1, other versions get 505"},

        // Granian
        {P::granian, "--host", "--host", ""},
        {P::granian, "--port", "--port", ""},
        {P::granian, "--uds", "--uds", ""},
        {P::granian, "--uds-permissions", "--uds-permissions", "octal, as in Granian"},
        {P::granian, "--interface", "--interface", "wsgi only"},
        {P::granian, "--http", "", "appserver speaks HTTP/1.1 only for now"},
        {P::granian, "--ws --no-ws", "", "no WebSockets (they need ASGI)"},
        {P::granian, "--workers", "--workers", ""},
        {P::granian, "--blocking-threads", "--blocking-threads", ""},
        {P::granian, "--blocking-threads-idle-timeout", "",
         "blocking threads live as long as their worker"},
        {P::granian, "--runtime-threads --runtime-blocking-threads --runtime-mode", "",
         "each worker has one event-loop thread"},
        {P::granian, "--loop --task-impl", "", "for ASGI and RSGI; appserver serves WSGI"},
        {P::granian, "--backlog", "--backlog", ""},
        {P::granian, "--backpressure", "--request-queue-size",
         "appserver bounds the requests waiting for a thread, per worker; while the queue is "
         "full it stops accepting"},
        {P::granian, "--http1-buffer-size", "--max-header-size", "the request head's limit"},
        {P::granian, "--http1-header-read-timeout", "--header-read-timeout",
         "seconds, not milliseconds"},
        {P::granian, "--http1-keep-alive --no-http1-keep-alive", "--keep-alive-timeout",
         "keep-alive is always on; this is its idle timeout"},
        {P::granian, "--http1-pipeline-flush --no-http1-pipeline-flush", "",
         "appserver answers pipelined requests in order by itself"},
        {P::granian, "--http2-*", "", "no HTTP/2 yet"},
        {P::granian, "--log --no-log", "--log-level", "critical is the quietest"},
        {P::granian, "--log-level", "--log-level", ""},
        {P::granian, "--log-config", "--log-format", "text or json on standard error"},
        {P::granian, "--access-log", "--access-log",
         "takes a path ('-' for standard output); Granian's is a switch"},
        {P::granian, "--no-access-log", "", "there is no access log unless --access-log"},
        {P::granian, "--access-log-fmt", "--access-log-format",
         "gunicorn's %(x)s atoms, or common, combined, json"},
        {P::granian,
         "--ssl-certificate --ssl-keyfile --ssl-keyfile-password --ssl-protocol-min --ssl-ca "
         "--ssl-crl --ssl-client-verify --no-ssl-client-verify",
         "", no_tls},
        {P::granian, "--url-path-prefix", "--url-path-prefix", ""},
        {P::granian, "--respawn-failed-workers --no-respawn-failed-workers --respawn-interval", "",
         "a worker that dies is always respawned (with a growing delay while it cannot "
         "start)"},
        {P::granian, "--rss-sample-interval --rss-samples", "",
         "--workers-max-rss is checked every second"},
        {P::granian, "--workers-lifetime", "--workers-lifetime",
         "seconds only (no '1h'); any value, not 60 at least"},
        {P::granian, "--workers-max-rss", "--workers-max-rss", "MiB, or a size such as 2G"},
        {P::granian, "--workers-kill-timeout", "--graceful-timeout",
         "a worker still there 5 s after --graceful-timeout is killed"},
        {P::granian, "--factory --no-factory", "--factory", ""},
        {P::granian, "--working-dir", "--working-dir", ""},
        {P::granian, "--env-files", "--env", "one KEY=VAL per --env, no .env files"},
        {P::granian,
         "--static-path-route --static-path-mount --static-path-dir-to-file "
         "--static-path-expires",
         "", "no static files yet: serve them in front or from the app (WhiteNoise)"},
        {P::granian, "--metrics --no-metrics", "--metrics",
         "appserver's metric names differ (docs/metrics.md)"},
        {P::granian, "--metrics-scrape-interval", "",
         "appserver's metrics are read when Prometheus scrapes them"},
        {P::granian, "--metrics-address", "--metrics-address", ""},
        {P::granian, "--metrics-port", "--metrics-port", ""},
        {P::granian, "--reload --no-reload", "--reload", ""},
        {P::granian, "--reload-paths", "--reload-paths", "directories"},
        {P::granian, "--reload-ignore-patterns", "--reload-ignore-patterns",
         "shell patterns (fnmatch), not regular expressions"},
        {P::granian, "--reload-ignore-dirs --reload-ignore-paths", "--reload-ignore-patterns",
         "names matched with shell patterns"},
        {P::granian,
         "--reload-tick --reload-ignore-worker-failure "
         "--no-reload-ignore-worker-failure",
         "", "no meaning for appserver"},
        {P::granian, "--process-name", "",
         "process titles are appserver: master [module:attribute] and appserver: worker N [module:attribute]"},
        {P::granian, "--pid-file", "--pid-file", ""},
    };
    return table;
}

std::string code_flags(std::string_view text) {
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        const bool flag = text.substr(i, 2) == "--" && i + 2 < text.size() &&
                          std::isalpha(static_cast<unsigned char>(text[i + 2]));
        const bool target = text.substr(i, 6) == "TARGET";
        if (!flag && !target) {
            out += text[i++];
            continue;
        }
        auto end = target ? i + 6 : i + 2;
        while (flag && end < text.size() &&
               (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '-' ||
                text[end] == '_' || text[end] == '*')) {
            ++end;
        }
        out += "`" + std::string(text.substr(i, end - i)) + "`";
        i = end;
    }
    return out;
}

std::string peer_hint(std::string_view option) {
    std::vector<Match> matches;
    for (const auto& entry : peer_options()) {
        for (std::string_view name : split_names(entry.names)) {
            const bool prefix = name.back() == '*';
            const auto stem = prefix ? name.substr(0, name.size() - 1) : name;
            if (prefix ? option.substr(0, stem.size()) == stem : option == name) {
                matches.push_back({peer_name(entry.peer), entry.appserver, entry.note});
            }
        }
    }
    // uWSGI's command-line flags are its ini keys.
    if (option.substr(0, 2) == "--") {
        if (const auto hint = uwsgi_option_hint(option.substr(2))) {
            matches.push_back({"uWSGI", hint->appserver, hint->note});
        }
    }
    // "did you mean --workers? (gunicorn's -w; ...)", one per equivalent, the peers that share
    // it together; then "Granian's --http has no equivalent: ..." for each peer without one.
    const auto theirs = [&](const Match& m) {
        return std::string(m.peer) + "'s " + std::string(option) +
               (m.note.empty() ? "" : "; " + std::string(m.note));
    };
    std::vector<std::string> clauses;
    std::vector<bool> done(matches.size(), false);
    for (std::size_t i = 0; i < matches.size(); ++i) {
        if (done[i] || matches[i].ours.empty()) continue;
        std::string peers = theirs(matches[i]);
        for (std::size_t j = i + 1; j < matches.size(); ++j) {
            if (!done[j] && matches[j].ours == matches[i].ours) {
                peers += "; " + theirs(matches[j]);
                done[j] = true;
            }
        }
        clauses.push_back("did you mean " + std::string(matches[i].ours) + "? (" + peers + ")");
    }
    for (const auto& m : matches) {
        if (!m.ours.empty()) continue;
        clauses.push_back(std::string(m.peer) + "'s " + std::string(option) + " has no equivalent" +
                          (m.note.empty() ? "" : ": " + std::string(m.note)));
    }
    std::string out;
    for (const auto& c : clauses) out += (out.empty() ? "" : "; ") + c;
    return out;
}

std::string markdown_peer_options(Peer peer) {
    std::ostringstream out;
    out << "| " << peer_name(peer) << " | appserver | notes |\n|---|---|---|\n";
    for (const auto& entry : peer_options()) {
        if (entry.peer != peer) continue;
        std::string names;
        for (std::string_view name : split_names(entry.names)) {
            names += (names.empty() ? "" : ", ") + ("`" + std::string(name) + "`");
        }
        const std::string ours = entry.appserver.empty() ? "none" : code_flags(entry.appserver);
        std::string note = code_flags(entry.note);
        std::string escaped;
        for (char c : note) {
            if (c == '|') escaped += '\\';
            escaped += c;
        }
        out << "| " << names << " | " << ours << " | " << escaped << " |\n";
    }
    return out.str();
}

} // namespace appserver::cli
