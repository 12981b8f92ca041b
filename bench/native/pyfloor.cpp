// The Python floor: the cost of one complete WSGI call (environ construction, the call,
// iterating the response, close()) measured in-process in a tight loop. Response bytes
// are framed exactly as in the server but not written (--write-to-socket writes them to a
// socketpair drained between iterations), so the figure is the Python side alone: the
// socket cost belongs to the HTTP ceiling.
#include "log/log.hpp"
#include "server/exchange.hpp"
#include "wsgi/app_loader.hpp"
#include "wsgi/handler.hpp"

#include <CLI/CLI.hpp>
#include <pybind11/embed.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

using appserver::server::Exchange;

// Loads a fixed request into the exchange, as the event loop would after parsing it.
class BenchExchange final : public Exchange {
public:
    using Exchange::Exchange;
    using Exchange::discard_output;
    bool load(const std::string& request) {
        reset_exchange();
        parser_.next_message();
        rbeg_ = rend_ = 0;
        parser_.feed(request.data(), request.size());
        return parser_.head_done();
    }
};

} // namespace

int main(int argc, char** argv) {
    appserver::Config config;
    std::string method = "GET";
    std::string path = "/";
    std::size_t body_size = 0;
    long iterations = 20000;
    bool write_to_socket = false;
    CLI::App cli{"appserver Python floor: ns per in-process WSGI call"};
    cli.add_option("target", config.target, "module:attribute")->required();
    cli.add_option("--working-dir", config.working_dir);
    cli.add_option("--iterations", iterations);
    cli.add_option("--method", method);
    cli.add_option("--path", path);
    cli.add_option("--body-size", body_size);
    cli.add_flag("--write-to-socket", write_to_socket, "include the response write syscalls");
    CLI11_PARSE(cli, argc, argv);
    config.log_level = appserver::LogLevel::warning;
    appserver::log::init(config.log_level, "pyfloor");

    std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                          "User-Agent: pyfloor\r\nAccept: */*\r\n";
    if (body_size > 0) {
        request += "Content-Type: application/octet-stream\r\nContent-Length: " +
                   std::to_string(body_size) + "\r\n\r\n" + std::string(body_size, 'b');
    } else {
        request += "\r\n";
    }

    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
        std::perror("socketpair");
        return 1;
    }
    const int room = 8 << 20;
    ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    ::setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &room, sizeof room);
    ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
    std::vector<char> sink(1 << 20);
    auto drain = [&] {
        while (::read(fds[1], sink.data(), sink.size()) > 0) {
        }
    };

    pybind11::scoped_interpreter interpreter;
    if (auto err = appserver::wsgi::prepare_process(config); !err.empty()) {
        std::fprintf(stderr, "pyfloor: %s\n", err.c_str());
        return 1;
    }
    std::string error;
    PyObject* app_object = appserver::wsgi::load_app(config, error);
    if (app_object == nullptr) {
        std::fprintf(stderr, "pyfloor: %s\n", error.c_str());
        return 1;
    }
    appserver::wsgi::WsgiApplication app(config, app_object, "127.0.0.1", "8000");
    appserver::server::ServerInfo info;
    std::atomic<bool> draining{false};
    BenchExchange ex(config, info, draining, fds[0], "127.0.0.1", 40000, 16 * 1024);
    ex.discard_output(!write_to_socket);

    PyThreadState* main_state = PyEval_SaveThread();
    app.thread_started();
    app.enter();
    appserver::net::BlockingScope& scope = app.blocking_scope();
    std::vector<double> samples;
    samples.reserve(static_cast<std::size_t>(iterations));
    const long warmup = std::max(100L, iterations / 10);
    for (long i = 0; i < warmup + iterations; ++i) {
        if (!ex.load(request)) {
            std::fprintf(stderr, "pyfloor: request did not parse\n");
            return 1;
        }
        const auto t0 = std::chrono::steady_clock::now();
        app.handle(ex);
        ex.complete(scope);
        const auto t1 = std::chrono::steady_clock::now();
        if (i >= warmup) {
            samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
        }
        drain();
    }
    app.leave();
    app.thread_stopping();
    PyEval_RestoreThread(main_state);

    double total = 0;
    for (double s : samples) {
        total += s;
    }
    std::sort(samples.begin(), samples.end());
    std::printf("{\"ns_per_call\": %.1f, \"median_ns\": %.1f, \"iterations\": %ld, "
                "\"status\": %d}\n",
                total / static_cast<double>(samples.size()), samples[samples.size() / 2],
                iterations, ex.status_code());
    return 0;
}
