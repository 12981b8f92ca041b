// The master process: forks the workers, respawns one that dies, and on SIGINT/SIGTERM
// stops them gracefully. The listening socket is bound before and inherited by workers.
#pragma once

#include "net/listener.hpp"
#include "server/reexec.hpp"

#include <appserver/config.hpp>

#include <csignal>
#include <functional>
#include <string>

namespace appserver::metrics {
class StatsPage;
struct WorkerSlot;
} // namespace appserver::metrics

namespace appserver::server {

// What the master sends a worker to make it stop now (a second SIGINT/SIGTERM reached the
// master). SIGTERM asks for a graceful stop, and a worker may get one straight from a
// signal to the whole process group (Ctrl-C in a terminal, systemd's stop) besides the
// master's own: a real-time signal cannot be mistaken for such a duplicate.
inline int stop_now_signal() {
    return SIGRTMIN;
}

// A worker's exit status saying it could not load the app (--lazy-apps only): respawning
// it would fail the same way, so the master stops the server (exit status 1). gunicorn's
// value for the same case.
inline constexpr int worker_boot_failure_status = 4;

// A worker's exit status when a C++ exception left its code (EX_SOFTWARE); respawned like
// a crash.
inline constexpr int worker_exception_status = 70;

// Only inside a catch handler, in a worker: logs what was thrown and where, then _exit()s
// with worker_exception_status. Unwinding further would run the master's frames in the
// child (or, under `python -m appserver`, return into Python: interpreter shutdown and
// the app's atexit handlers), with threads still using what the unwinding frees.
[[noreturn]] void exit_worker_on_exception(unsigned worker, const char* where) noexcept;

// What the embedding runtime must do around fork and around the master's waits
// (for CPython: PyOS_*Fork* and releasing the GIL while asleep).
class ProcessHooks {
public:
    virtual ~ProcessHooks() = default;
    virtual void before_fork() {}
    virtual void after_fork_parent() {}
    virtual void after_fork_child() {}
    virtual void enter_wait() {}
    virtual void leave_wait() {}
    // The runtime's version for appserver_build_info ("3.11.7"); empty when none.
    virtual std::string runtime_version() const { return {}; }
    // Before the master re-executes itself (a reload): write out what is buffered.
    virtual void before_exec() {}
};

// The signals the master handles itself (sigtimedwait). The front doors block them before
// anything of the app runs: a thread the app starts at import inherits the mask, so a
// signal meant for the master is never delivered to it, where the default action would
// kill or suspend the master.
sigset_t master_signal_set();

// In a worker: tell the master this worker is serving (its event loop runs). A worker
// that dies before that is respawned with a growing delay; one that dies after, at once.
void report_worker_ready();

// In a worker: its slot in the counters shared with the master's metrics endpoint, and
// the page holding it (for the blocking threads' lines); null outside a worker.
metrics::WorkerSlot* own_stats_slot();
metrics::StatsPage* shared_stats_page();
unsigned own_stats_slot_index();

// Runs until the workers are stopped; returns the master's exit code. run_worker runs in
// each forked child (with SIGINT/SIGTERM/SIGQUIT/SIGCHLD/SIGHUP still blocked; the worker
// unblocks them once its handlers are in place) and its result is the child's exit code.
// inherited: what a previous image of this master handed over (a reload by re-exec); its
// workers go on serving and are replaced one at a time. Null when started afresh.
int run_master(const Config& config, net::ListenSocket& listener, ProcessHooks& hooks,
               const std::function<int(unsigned index)>& run_worker,
               const Inheritance* inherited = nullptr);

} // namespace appserver::server
