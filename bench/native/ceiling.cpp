// The HTTP ceiling: the same master, worker loop, parser and response writer as
// appserver, answering every request with a fixed 1 KiB body from C++ on the event-loop
// thread. No Python, no hand-off: the upper bound the WSGI path is measured against.
#include "net/listener.hpp"
#include "server/application.hpp"
#include "server/exchange.hpp"
#include "server/master.hpp"
#include "server/worker.hpp"
#include "log/log.hpp"

#include <CLI/CLI.hpp>

#include <array>
#include <cstdio>
#include <string>

namespace {

class FixedResponse final : public appserver::server::Application {
public:
    FixedResponse() : body_(1024, 'x') {}
    bool runs_inline() const override { return true; }
    void handle(appserver::server::Exchange& ex) noexcept override {
        appserver::net::NoLock no_lock;
        ex.begin_response(200, "200 OK");
        ex.add_header("Content-Type", "text/plain");
        const std::string_view part = body_;
        ex.send({&part, 1}, true, no_lock);
    }

private:
    std::string body_;
};

} // namespace

int main(int argc, char** argv) {
    appserver::Config config;
    CLI::App cli{"appserver HTTP ceiling: fixed 1 KiB responses from C++"};
    cli.add_option("--host", config.host);
    cli.add_option("--port", config.port);
    cli.add_option("--workers", config.workers);
    cli.add_option("--backlog", config.backlog);
    CLI11_PARSE(cli, argc, argv);
    config.log_level = appserver::LogLevel::warning;
    appserver::log::init(config.log_level, "ceiling");
    appserver::net::ListenSocket listener;
    try {
        listener = appserver::net::bind_listener(config);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "appserver-bench-ceiling: error: %s\n", e.what());
        return 1;
    }
    FixedResponse app;
    appserver::server::ProcessHooks hooks;
    return appserver::server::run_master(config, listener, hooks, [&](unsigned index) {
        appserver::server::Worker worker(config, listener, app, index);
        return worker.run();
    });
}
