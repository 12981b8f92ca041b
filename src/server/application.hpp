// What a worker runs requests through. The transport (connection, worker) knows only
// this interface; WSGI is one implementation, the C++ benchmark route another, ASGI
// will be a third.
#pragma once

#include "net/socket_io.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace appserver::server {

class Exchange;

class Application {
public:
    virtual ~Application() = default;
    // On each blocking thread, before its first request and after its last.
    virtual void thread_started() {}
    virtual void thread_stopping() {}
    // Around each request on a blocking thread: enter(), handle(), leave(). For WSGI,
    // enter/leave take and drop the GIL.
    virtual void enter() {}
    virtual void leave() {}
    // Between enter() and leave(): wraps every wait that may block on a client, so what
    // enter() took is dropped meanwhile.
    virtual net::BlockingScope& blocking_scope() {
        static thread_local net::NoLock no_lock;
        return no_lock;
    }
    // Threads currently blocked inside enter() (waiting for the GIL), or nullptr. The
    // worker uses it to avoid waking a thread that could only wait too.
    virtual const std::atomic<int>* contention() const { return nullptr; }
    // Runs one exchange to completion on a blocking thread, between enter() and leave().
    // Must not throw: failures become error responses (or an aborted response once bytes
    // were sent).
    virtual void handle(Exchange& exchange) noexcept = 0;
    // --request-timeout: the request on the blocking thread `thread` (its pthread_self())
    // got its 504 and may still run. Called on a watchdog thread of the worker, never on
    // the event loop (it may wait for the GIL). Under whatever enter() takes, and only if
    // still_running() says the thread is still in that request: log what the thread is
    // doing, with `what`, and interrupt it where the runtime allows.
    virtual void interrupt(std::uint64_t thread, const std::string& what,
                           const std::function<bool()>& still_running) {
        (void)thread;
        (void)what;
        (void)still_running;
    }
    // On the blocking thread, between enter() and leave(), after a request that timed out:
    // drop an interruption that was aimed at it and not delivered (it must not hit the
    // thread's next request).
    virtual void clear_interrupt() {}
    // True for an application that never blocks (pure C++, e.g. the benchmark ceiling
    // route): the worker then runs it on the event-loop thread, with no hand-off.
    virtual bool runs_inline() const { return false; }
};

} // namespace appserver::server
