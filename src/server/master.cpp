// Master process supervision (see master.hpp).
#include "server/master.hpp"

#include "log/log.hpp"
#include "metrics/metrics_server.hpp"
#include "metrics/stats_page.hpp"

#include <spdlog/spdlog.h>

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace appserver::server {
namespace {

using clock = std::chrono::steady_clock;

// What a worker tells the master without a message (its "ready" flag) and its counters
// live in one region shared by all processes (metrics/stats_page.hpp), one slot per worker.
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
metrics::StatsPage* stats_page = nullptr;
metrics::WorkerSlot* own_slot = nullptr; // in a worker: its entry
unsigned own_slot_index = 0;

// Worker CPU time from wait4's rusage, for appserver_worker_cpu_seconds_total.
std::uint64_t cpu_ns(const rusage& usage) {
    auto ns = [](const timeval& tv) {
        return static_cast<std::uint64_t>(tv.tv_sec) * 1000000000ULL +
               static_cast<std::uint64_t>(tv.tv_usec) * 1000ULL;
    };
    return ns(usage.ru_utime) + ns(usage.ru_stime);
}

struct Slot {
    pid_t pid = 0;
    clock::time_point respawn_at;
    unsigned quick_failures = 0;
};

sigset_t master_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM,
                  SIGTTIN, SIGTTOU}) {
        sigaddset(&set, s);
    }
    // Blocked here so that a worker starts with it blocked too, until its handler is in.
    sigaddset(&set, stop_now_signal());
    return set;
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) {
        return "exited with code " + std::to_string(WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        return std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
    }
    return "stopped";
}

} // namespace

void report_worker_ready() {
    if (own_slot != nullptr) {
        own_slot->ready.store(1, std::memory_order_release);
    }
}

metrics::WorkerSlot* own_stats_slot() {
    return own_slot;
}

metrics::StatsPage* shared_stats_page() {
    return stats_page;
}

unsigned own_stats_slot_index() {
    return own_slot_index;
}

int run_master(const Config& config, net::ListenSocket& listener, ProcessHooks& hooks,
               const std::function<int(unsigned)>& run_worker) {
    const sigset_t signals = master_signals();
    sigset_t previous;
    ::pthread_sigmask(SIG_BLOCK, &signals, &previous);
    ::signal(SIGPIPE, SIG_IGN);
    const pid_t master_pid = ::getpid();
    // Each connection is a descriptor: take the hard limit rather than the often tiny
    // default soft one (1024), so capacity is set by --workers/--backlog, not by accident.
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &files);
    }

    std::vector<Slot> slots(config.workers);
    // Room for twice the workers (and a few more): resizing and rolling replacement start a
    // worker before its predecessor leaves, each in a slot of its own.
    std::unique_ptr<metrics::StatsPage> page;
    try {
        page = std::make_unique<metrics::StatsPage>(config.workers * 2 + 4,
                                                    config.blocking_threads);
    } catch (const std::exception& e) {
        spdlog::error("cannot map the workers' shared counters: {}", e.what());
        return 1;
    }
    stats_page = page.get();
    // The metrics endpoint: a thread of the master's own, started before the first fork so
    // a port already in use is a clean start-up failure.
    std::unique_ptr<metrics::MetricsServer> metrics_server;
    if (config.metrics) {
        metrics::ScrapeSources sources;
        sources.page = page.get();
        sources.active_slots = config.workers;
        sources.listen_fd = listener.fd;
        sources.listen_tcp = listener.family != AF_UNIX;
        sources.version = APPSERVER_VERSION;
        sources.python_version = hooks.runtime_version();
        sources.master_pid = master_pid;
        std::string error;
        metrics_server = metrics::MetricsServer::start(config.metrics_address, config.metrics_port,
                                                       sources, error);
        if (metrics_server == nullptr) {
            spdlog::error("{}", error);
            stats_page = nullptr;
            return 1;
        }
        metrics_server->run();
        spdlog::info("metrics on http://{}/metrics", metrics_server->endpoint());
    }
    auto spawn = [&](unsigned index) {
        page->slot(index).ready.store(0, std::memory_order_relaxed);
        hooks.before_fork();
        if (metrics_server != nullptr) {
            metrics_server->before_fork();
        }
        const pid_t pid = ::fork();
        if (pid == 0) {
            own_slot = &page->slot(index);
            own_slot_index = index;
            if (metrics_server != nullptr) {
                metrics_server->after_fork_child();
            }
            hooks.after_fork_child();
            // A worker must not outlive its master (kill -9 of the master).
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (::getppid() != master_pid) {
                ::_exit(1);
            }
            int rc = run_worker(index);
            log::flush();
            ::_exit(rc);
        }
        if (metrics_server != nullptr) {
            metrics_server->after_fork_parent();
        }
        hooks.after_fork_parent();
        if (pid < 0) {
            spdlog::error("fork failed: {}", std::strerror(errno));
            slots[index].respawn_at = clock::now() + std::chrono::seconds(1);
            return;
        }
        slots[index].pid = pid;
        page->slot(index).pid.store(pid, std::memory_order_relaxed);
        spdlog::info("worker {} started (pid {})", index, pid);
    };

    spdlog::info("appserver master (pid {}) listening on {} with {} worker(s)", master_pid,
                 listener.url(), config.workers);
    for (unsigned i = 0; i < config.workers; ++i) {
        spawn(i);
    }

    bool stopping = false;
    bool killed = false;
    bool unclean = false;
    clock::time_point stop_deadline;
    // Stop accepting at once (new connections go nowhere rather than queue) and ask the
    // workers to finish within the grace period.
    auto begin_stop = [&] {
        stopping = true;
        stop_deadline = clock::now() + std::chrono::duration_cast<clock::duration>(
                                           std::chrono::duration<double>(
                                               config.graceful_timeout + 5.0));
        net::close_listener(listener, false);
    };
    for (;;) {
        // Sleep until a signal, the next respawn, or a periodic check.
        auto wait = std::chrono::milliseconds(1000);
        const auto now = clock::now();
        for (const auto& s : slots) {
            if (s.pid == 0 && !stopping) {
                const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(
                    s.respawn_at - now);
                wait = std::clamp(until, std::chrono::milliseconds(0), wait);
            }
        }
        timespec ts{static_cast<time_t>(wait.count() / 1000),
                    static_cast<long>((wait.count() % 1000) * 1000000)};
        siginfo_t info{};
        hooks.enter_wait();
        const int sig = ::sigtimedwait(&signals, &info, &ts);
        hooks.leave_wait();

        if (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT) {
            const bool second = stopping;
            if (!stopping) {
                spdlog::info("{} received: stopping workers gracefully (up to {}s)",
                             ::strsignal(sig), config.graceful_timeout);
                begin_stop();
            } else {
                spdlog::info("{} received again: asking workers to stop now", ::strsignal(sig));
            }
            const int to_workers = second ? stop_now_signal() : SIGTERM;
            for (const auto& s : slots) {
                if (s.pid > 0) {
                    ::kill(s.pid, to_workers);
                }
            }
        } else if (sig == SIGUSR1 && !config.access_log.empty()) {
            // logrotate's postrotate: each worker reopens the access log it writes.
            spdlog::info("SIGUSR1 received: workers reopen the access log {}", config.access_log);
            for (const auto& s : slots) {
                if (s.pid > 0) {
                    ::kill(s.pid, SIGUSR1);
                }
            }
        } else if (sig == SIGHUP) {
            spdlog::warn("SIGHUP: reload is not supported yet; ignored");
        } else if (sig > 0 && sig != SIGCHLD) {
            // What gunicorn and uWSGI operators send (USR1 from logrotate, TTIN/TTOU to
            // resize) must not stop the server: their default action would kill (or
            // suspend) the master. appserver logs to stderr, so there is nothing to reopen.
            spdlog::warn("{} (signal {}): nothing to do; ignored", ::strsignal(sig), sig);
        }

        // Reap whatever died, whatever woke us.
        int status = 0;
        pid_t pid;
        rusage usage{};
        while ((pid = ::wait4(-1, &status, WNOHANG, &usage)) > 0) {
            for (unsigned i = 0; i < slots.size(); ++i) {
                Slot& s = slots[i];
                if (s.pid != pid) {
                    continue;
                }
                s.pid = 0;
                // Read before retire() clears the slot for the successor.
                const bool was_ready =
                    page->slot(i).ready.load(std::memory_order_acquire) != 0;
                page->add_retired_cpu(i, cpu_ns(usage));
                page->retire(i);
                if (stopping) {
                    spdlog::info("worker {} (pid {}) {}", i, pid, describe_status(status));
                    // A worker handles SIGTERM/SIGINT while it serves; one can only die of
                    // them after it finished (its handlers gone), when the master's copy of
                    // a signal sent to the whole group arrives late. That is a clean stop.
                    const bool late_stop_signal =
                        WIFSIGNALED(status) &&
                        (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT);
                    if (!late_stop_signal && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
                        unclean = true; // forced past its grace period, or crashed
                    }
                    break;
                }
                if (config.lazy_apps && WIFEXITED(status) &&
                    WEXITSTATUS(status) == worker_boot_failure_status && !was_ready) {
                    spdlog::error("worker {} (pid {}) could not load the application (see "
                                  "above); stopping the server",
                                  i, pid);
                    unclean = true;
                    begin_stop();
                    for (const auto& other : slots) {
                        if (other.pid > 0) {
                            ::kill(other.pid, SIGTERM);
                        }
                    }
                    break;
                }
                // A worker that died after it was serving (a request crashed it) comes
                // back at once: one client repeating that request must not keep the
                // worker away for seconds. One that keeps dying before it is ready is
                // not helped by a tight fork loop: back off, up to 10 s.
                const bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                page->note_restart(clean_exit  ? metrics::RestartReason::exit
                                   : was_ready ? metrics::RestartReason::crash
                                               : metrics::RestartReason::boot_failure);
                if (clean_exit) {
                    spdlog::warn("worker {} (pid {}) exited by itself (code 0); respawning", i,
                                 pid);
                } else {
                    spdlog::error("worker {} (pid {}) {}{}; respawning", i, pid,
                                  describe_status(status),
                                  was_ready ? "" : " before it was ready");
                }
                s.quick_failures = was_ready ? 0 : s.quick_failures + 1;
                const auto delay = std::chrono::milliseconds(
                    s.quick_failures == 0 ? 0
                                          : std::min(10000, 100 << std::min(7u, s.quick_failures)));
                s.respawn_at = clock::now() + delay;
            }
        }

        if (stopping) {
            const bool all_gone =
                std::all_of(slots.begin(), slots.end(), [](const Slot& s) { return s.pid == 0; });
            if (all_gone) {
                break;
            }
            if (clock::now() >= stop_deadline) {
                for (const auto& s : slots) {
                    if (s.pid > 0) {
                        spdlog::error("worker pid {} did not stop in time; killing it", s.pid);
                        ::kill(s.pid, SIGKILL);
                        killed = true;
                    }
                }
                stop_deadline = clock::now() + std::chrono::seconds(5);
            }
            continue;
        }
        for (unsigned i = 0; i < slots.size(); ++i) {
            if (slots[i].pid == 0 && clock::now() >= slots[i].respawn_at) {
                spawn(i);
            }
        }
    }
    net::close_listener(listener, true);
    if (metrics_server != nullptr) {
        metrics_server->stop();
        metrics_server.reset();
    }
    stats_page = nullptr;
    page.reset();
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    spdlog::info("appserver master stopped");
    return killed || unclean ? 1 : 0;
}

} // namespace appserver::server
