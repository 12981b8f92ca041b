// What a worker runs requests through. The transport (connection, worker) knows only
// this interface; WSGI is one implementation, the C++ benchmark route another, ASGI
// will be a third.
#pragma once

namespace appserver::server {

class Exchange;

class Application {
public:
    virtual ~Application() = default;
    // On each blocking thread, before its first request and after its last.
    virtual void thread_started() {}
    virtual void thread_stopping() {}
    // Runs one exchange to completion on a blocking thread. Must not throw: failures
    // become error responses (or an aborted response once bytes were sent).
    virtual void handle(Exchange& exchange) noexcept = 0;
    // True for an application that never blocks (pure C++, e.g. the benchmark ceiling
    // route): the worker then runs it on the event-loop thread, with no hand-off.
    virtual bool runs_inline() const { return false; }
};

} // namespace appserver::server
