// The WSGI application adapter: runs one exchange through a Python WSGI callable on a
// blocking thread, taking the GIL once per request.
#pragma once

#include "server/application.hpp"
#include "wsgi/environ.hpp"

#include <appserver/config.hpp>

#include <Python.h>

#include <atomic>

namespace appserver::wsgi {

class WsgiApplication final : public server::Application {
public:
    // app: the WSGI callable (a new reference is taken). GIL held. Throws
    // std::runtime_error if the per-process Python types cannot be created.
    WsgiApplication(const Config& config, PyObject* app, const std::string& server_name,
                    const std::string& server_port);
    ~WsgiApplication() override;

    void thread_started() override;
    void thread_stopping() override;
    void enter() override;  // takes the GIL
    void leave() override;  // drops it
    net::BlockingScope& blocking_scope() override;
    const std::atomic<int>* contention() const override { return &gil_waiters_; }
    void handle(server::Exchange& exchange) noexcept override; // GIL held
    // Logs the stuck thread's Python stack and raises RequestTimeout in it (takes the GIL).
    void interrupt(std::uint64_t thread, const std::string& what,
                   const std::function<bool()>& still_running) override;
    void clear_interrupt() override;

private:
    void run(server::Exchange& exchange);

    PyObject* app_;
    PyObject* request_timeout_ = nullptr; // appserver.RequestTimeout, a BaseException
    std::atomic<int> gil_waiters_{0};
    EnvironDefaults defaults_;
};

} // namespace appserver::wsgi
