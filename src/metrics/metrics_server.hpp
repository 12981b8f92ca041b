// The master's /metrics endpoint: its own socket and one Asio thread inside the master,
// outside the workers' request path. Never touches Python, never waits for a worker.
#pragma once

#include "metrics/exposition.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace appserver::metrics {

struct MetricsServerLimits {
    // Between requests on a kept-alive connection, and for a client to take a response.
    std::chrono::milliseconds idle_timeout{30000};
    // From the first byte of a request head to its end.
    std::chrono::milliseconds head_timeout{10000};
    // Connections beyond this many are closed as soon as they are accepted.
    std::size_t max_connections = 64;
};

class MetricsServer {
public:
    // Binds and listens (SO_REUSEADDR, close-on-exec) but serves nothing until run(). On
    // failure returns nullptr and sets error, e.g. "cannot listen for metrics on
    // 127.0.0.1:9090: Address already in use". Call it before forking the workers, so a
    // bad address is a clean startup failure.
    static std::unique_ptr<MetricsServer> start(const std::string& address, std::uint16_t port,
                                                ScrapeSources sources, std::string& error,
                                                const MetricsServerLimits& limits = {});
    ~MetricsServer(); // stop()
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // Starts the metrics thread (all signals blocked in it) and returns at once.
    void run();
    // Stops the io_context and joins the thread; closes the socket and connections.
    // Idempotent. Does nothing in a forked child.
    void stop();

    // Fork hooks for the master, around every fork() while the thread runs. before_fork
    // waits until the thread is idle (it holds a mutex while it runs any handler) and keeps
    // it idle until after_fork_parent, so the child starts with no user-space lock of that
    // thread held. after_fork_child closes the listening socket and every connection with
    // plain close() and leaks the rest (the io_context is never destroyed in the child), so
    // a worker does not hold the metrics port or a scraper's connection.
    void before_fork();
    void after_fork_parent();
    void after_fork_child();

    // The port actually bound (port 0 asks the kernel for one) and "address:port".
    std::uint16_t port() const { return port_; }
    const std::string& endpoint() const { return endpoint_; }

private:
    struct Impl;
    MetricsServer(std::unique_ptr<Impl> impl, std::uint16_t port, std::string endpoint);

    std::unique_ptr<Impl> impl_;
    std::uint16_t port_;
    std::string endpoint_;
};

} // namespace appserver::metrics
