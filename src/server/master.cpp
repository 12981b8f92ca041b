// Master process supervision (see master.hpp).
#include "server/master.hpp"

#include "log/log.hpp"
#include "metrics/metrics_server.hpp"
#include "metrics/stats_page.hpp"
#include "server/file_watcher.hpp"
#include "server/process_title.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
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
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
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

using metrics::RestartReason;

// A worker process. It serves in a position (the worker number, the `worker` label) and
// counts into a slot of the shared stats page of its own.
struct Process {
    pid_t pid = 0;
    unsigned position = 0;
    unsigned stats_slot = 0;
    clock::time_point started;
    clock::time_point retire_at = clock::time_point::max(); // --workers-lifetime
    bool draining = false; // asked to stop (replaced, or removed by SIGTTOU)
    clock::time_point drain_deadline = clock::time_point::max();
    // A successor must be serving by then, else it is given up (killed): a hung import
    // must not block a worker's replacement, or every later reload, forever.
    clock::time_point ready_deadline = clock::time_point::max();
};

// One worker number: the process serving it, and the one replacing it if any.
struct Position {
    pid_t serving = 0;   // 0: none (waiting for a respawn)
    pid_t successor = 0; // started to replace `serving`; takes over once ready
    RestartReason successor_reason = RestartReason::crash;
    clock::time_point respawn_at;
    clock::time_point retry_replace_at; // after a successor failed to start
    unsigned quick_failures = 0;
};

const char* recycle_words(RestartReason r) {
    switch (r) {
    case RestartReason::max_requests: return "it served --max-requests requests";
    case RestartReason::lifetime: return "it reached --workers-lifetime";
    case RestartReason::max_rss: return "its memory passed --workers-max-rss";
    case RestartReason::reload: return "of a reload (SIGHUP)";
    case RestartReason::request_timeout: return "a thread is stuck past --request-timeout";
    default: return "it ended";
    }
}

// Resident memory of a process in MiB (/proc/PID/statm), 0 if unknown.
std::uint64_t resident_mib(pid_t pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
    FILE* f = std::fopen(path, "re");
    if (f == nullptr) {
        return 0;
    }
    unsigned long size = 0;
    unsigned long resident = 0;
    const int n = std::fscanf(f, "%lu %lu", &size, &resident);
    std::fclose(f);
    if (n != 2) {
        return 0;
    }
    return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)) /
           (1024 * 1024);
}

} // namespace

sigset_t master_signal_set() {
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

namespace {

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

void exit_worker_on_exception(unsigned worker, const char* where) noexcept {
    const char* what = "an exception of unknown type";
    try {
        throw;
    } catch (const std::exception& e) {
        what = e.what();
    } catch (...) {
    }
    try {
        spdlog::critical("worker {}: {}: {}; exiting", worker, where, what);
        log::flush();
    } catch (...) {
        // The logger itself failed (out of memory?): the bare reason on stderr then.
        ::dprintf(STDERR_FILENO, "worker %u: %s: %s; exiting\n", worker, where, what);
    }
    ::_exit(worker_exception_status);
}

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
               const std::function<int(unsigned)>& run_worker, const Inheritance* inherited) {
    const sigset_t signals = master_signal_set();
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

    // Stats slots: a replacement runs beside its predecessor, and SIGTTIN adds workers, so
    // there are more slots than --workers. SIGTTIN stops at the slot count.
    const std::size_t slot_count = std::max<std::size_t>(64, config.workers * 4 + 8);
    const std::size_t max_positions = slot_count / 2;
    std::unique_ptr<metrics::StatsPage> page;
    if (inherited != nullptr) {
        try {
            page = std::make_unique<metrics::StatsPage>(inherited->stats_fd);
        } catch (const std::exception& e) {
            // Another build's layout (appserver upgraded between reloads): start the
            // counters afresh rather than misread them; the workers are kept by pid.
            spdlog::warn("reload: the previous counters cannot be read ({}); metrics start "
                         "from zero",
                         e.what());
            ::close(inherited->stats_fd);
        }
    }
    try {
        if (page == nullptr) {
            page = std::make_unique<metrics::StatsPage>(slot_count, config.blocking_threads);
        }
    } catch (const std::exception& e) {
        spdlog::error("cannot map the workers' shared counters: {}", e.what());
        return 1;
    }
    stats_page = page.get();
    const std::size_t initial_positions = inherited != nullptr ? inherited->positions : config.workers;
    page->set_positions(initial_positions);
    // The metrics endpoint: a thread of the master's own, started before the first fork so
    // a port already in use is a clean start-up failure.
    std::unique_ptr<metrics::MetricsServer> metrics_server;
    auto start_metrics = [&]() -> bool {
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
            return false;
        }
        metrics_server->run();
        spdlog::info("metrics on http://{}/metrics", metrics_server->endpoint());
        return true;
    };
    if (config.metrics && !start_metrics() && inherited == nullptr) {
        stats_page = nullptr;
        return 1; // at start-up, a clean failure; after a reload the workers serve on
    }
    // --reload: a thread of the master's own that turns a file change into a SIGHUP.
    std::unique_ptr<FileWatcher> watcher;
    if (config.reload) {
        std::vector<std::string> paths = config.reload_paths;
        if (paths.empty()) {
            char* cwd = ::getcwd(nullptr, 0); // --working-dir, already entered
            paths.emplace_back(cwd != nullptr ? cwd : ".");
            std::free(cwd);
        }
        std::string error;
        watcher = FileWatcher::start(paths, config.reload_ignore_patterns, error);
        if (watcher == nullptr) {
            spdlog::error("{}", error);
            if (inherited == nullptr) {
                stats_page = nullptr;
                return 1;
            }
        }
        std::string joined;
        for (const auto& p : paths) {
            joined += (joined.empty() ? "" : ", ") + p;
        }
        if (watcher != nullptr) {
            spdlog::info("--reload: watching {} director(ies) under {} for changes "
                         "(development only)",
                         watcher->watched_directories(), joined);
        }
    }

    std::vector<Position> positions(initial_positions);
    std::vector<Process> processes; // every live worker, serving, starting or draining
    std::mt19937_64 random(std::random_device{}());
    // At most one worker has ever been ready: a --lazy-apps import failure then stops the
    // server (it would fail in every worker), later it only keeps the old workers.
    bool any_ready = false;
    const auto graceful =
        std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(config.graceful_timeout));

    // How long a successor may take to be ready, or an import check to finish.
    const auto ready_timeout = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(std::max(60.0, config.graceful_timeout)));
    auto find = [&](pid_t pid) -> Process* {
        for (auto& p : processes) {
            if (p.pid == pid) {
                return &p;
            }
        }
        return nullptr;
    };
    auto free_slot = [&]() -> int {
        for (std::size_t i = 0; i < slot_count; ++i) {
            if (page->slot(i).pid.load(std::memory_order_relaxed) == 0 &&
                std::none_of(processes.begin(), processes.end(),
                             [i](const Process& p) { return p.stats_slot == i; })) {
                return static_cast<int>(i);
            }
        }
        return -1;
    };
    // Forks a worker for a position; its pid, or 0 when it could not be started.
    auto spawn = [&](unsigned position) -> pid_t {
        const int slot = free_slot();
        if (slot < 0) {
            spdlog::error("worker {}: no free statistics slot; not started", position);
            return 0;
        }
        metrics::WorkerSlot& stats = page->slot(static_cast<std::size_t>(slot));
        stats.ready.store(0, std::memory_order_relaxed);
        stats.recycle.store(0, std::memory_order_relaxed);
        stats.position.store(position, std::memory_order_relaxed);
        hooks.before_fork();
        if (metrics_server != nullptr) {
            metrics_server->before_fork();
        }
        const pid_t pid = ::fork();
        if (pid == 0) {
            // Whatever is thrown in the child ends here, never in the master's frames.
            try {
                own_slot = &stats;
                own_slot_index = static_cast<unsigned>(slot);
                if (metrics_server != nullptr) {
                    metrics_server->after_fork_child();
                }
                if (watcher != nullptr) {
                    watcher->after_fork_child();
                }
                hooks.after_fork_child();
                set_process_title("appserver: worker " + std::to_string(position) + " [" +
                                      config.target + "]",
                                  "appserver w" + std::to_string(position));
                // A worker must not outlive its master (kill -9 of the master).
                ::prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (::getppid() != master_pid) {
                    ::_exit(1);
                }
                int rc = run_worker(position);
                log::flush();
                ::_exit(rc);
            } catch (...) {
                exit_worker_on_exception(position, "while starting or stopping");
            }
        }
        if (metrics_server != nullptr) {
            metrics_server->after_fork_parent();
        }
        hooks.after_fork_parent();
        if (pid < 0) {
            spdlog::error("fork failed: {}", std::strerror(errno));
            return 0;
        }
        stats.pid.store(pid, std::memory_order_relaxed);
        Process p;
        p.pid = pid;
        p.position = position;
        p.stats_slot = static_cast<unsigned>(slot);
        p.started = clock::now();
        if (config.workers_lifetime > 0) {
            // Up to 10 % shorter, at random, so workers started together leave one by one.
            const double life = config.workers_lifetime *
                                std::uniform_real_distribution<double>(0.9, 1.0)(random);
            p.retire_at = p.started + std::chrono::duration_cast<clock::duration>(
                                          std::chrono::duration<double>(life));
        }
        processes.push_back(p);
        spdlog::info("worker {} started (pid {})", position, pid);
        return pid;
    };
    auto start_position = [&](unsigned position) {
        Position& pos = positions[position];
        pos.serving = spawn(position);
        if (pos.serving == 0) {
            pos.respawn_at = clock::now() + std::chrono::seconds(1);
        }
    };
    // Asks a worker to finish its requests and leave (it stops accepting at once).
    auto drain = [&](Process& p) {
        if (!p.draining) {
            p.draining = true;
            p.drain_deadline = clock::now() + graceful + std::chrono::seconds(5);
            ::kill(p.pid, SIGTERM);
        }
    };
    // Starts the successor of a position's worker; the old one drains once it is ready.
    auto replace = [&](unsigned position, RestartReason reason) {
        Position& pos = positions[position];
        if (pos.successor != 0 || pos.serving == 0 || clock::now() < pos.retry_replace_at) {
            return;
        }
        spdlog::info("worker {} (pid {}) is being replaced because {}", position, pos.serving,
                     recycle_words(reason));
        pos.successor = spawn(position);
        pos.successor_reason = reason;
        if (pos.successor == 0) {
            pos.retry_replace_at = clock::now() + std::chrono::seconds(1);
        } else if (Process* p = find(pos.successor); p != nullptr) {
            p->ready_deadline = clock::now() + ready_timeout;
        }
    };

    set_process_title("appserver: master [" + config.target + "]", "appserver");
    // A rolling reload: positions still to replace, one at a time.
    std::vector<unsigned> reload_queue;
    if (inherited != nullptr) {
        // The previous image's workers serve on (old code) until each successor is ready.
        const auto now = clock::now();
        for (const auto& w : inherited->workers) {
            Process p;
            p.pid = w.pid;
            p.position = w.position;
            p.stats_slot = w.slot;
            p.started = now;
            p.draining = w.draining || w.position >= positions.size();
            if (p.draining) {
                p.drain_deadline = now + graceful + std::chrono::seconds(5);
            } else {
                positions[w.position].serving = w.pid;
            }
            processes.push_back(p);
        }
        any_ready = true;
        spdlog::info("appserver master (pid {}) runs the new code; replacing the {} worker(s) "
                     "one at a time, listening on {}",
                     master_pid, positions.size(), listener.url());
        for (unsigned i = 0; i < positions.size(); ++i) {
            reload_queue.push_back(i);
        }
    } else {
        spdlog::info("appserver master (pid {}) listening on {} with {} worker(s)", master_pid,
                     listener.url(), config.workers);
    }
    for (unsigned i = 0; i < positions.size(); ++i) {
        if (positions[i].serving == 0) {
            start_position(i);
        }
    }

    bool stopping = false;
    bool killed = false;
    bool unclean = false;
    clock::time_point stop_deadline;
    // A reload with the app imported here: a child run checks that the new code imports,
    // then this process re-executes itself (reexec.hpp).
    pid_t import_check = 0;
    clock::time_point import_check_deadline;
    bool exec_pending = false;
    bool reload_again = false; // a SIGHUP (a --reload change) came during a reload
    clock::time_point next_rss_check = clock::now();
    // Stop accepting at once (new connections go nowhere rather than queue) and ask the
    // workers to finish within the grace period.
    auto begin_stop = [&] {
        stopping = true;
        reload_queue.clear();
        if (import_check != 0) {
            ::kill(import_check, SIGKILL);
        }
        stop_deadline = clock::now() + graceful + std::chrono::seconds(5);
        net::close_listener(listener, false);
    };
    for (;;) {
        // Sleep until a signal, the next respawn, or a periodic check; every 100 ms while
        // a successor is getting ready (the old worker drains as soon as it is).
        auto wait = std::chrono::milliseconds(1000);
        const auto now = clock::now();
        for (const auto& pos : positions) {
            if (pos.serving == 0 && !stopping) {
                const auto until =
                    std::chrono::duration_cast<std::chrono::milliseconds>(pos.respawn_at - now);
                wait = std::clamp(until, std::chrono::milliseconds(0), wait);
            }
            if (pos.successor != 0) {
                wait = std::min(wait, std::chrono::milliseconds(100));
            }
        }
        if (!stopping &&
            (config.max_requests > 0 || config.request_timeout > 0 || !reload_queue.empty())) {
            wait = std::min(wait, std::chrono::milliseconds(250));
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
            for (auto& p : processes) {
                p.draining = true;
                ::kill(p.pid, to_workers);
            }
        } else if (sig == SIGUSR1 && !config.access_log.empty()) {
            // logrotate's postrotate: each worker reopens the access log it writes.
            spdlog::info("SIGUSR1 received: workers reopen the access log {}", config.access_log);
            for (const auto& p : processes) {
                ::kill(p.pid, SIGUSR1);
            }
        } else if (sig == SIGHUP && !stopping) {
            if (watcher != nullptr) {
                if (const std::string changed = watcher->take_changed(); !changed.empty()) {
                    spdlog::info("{} changed: reloading (--reload)", changed);
                }
            }
            if (!reload_queue.empty() || import_check != 0 || exec_pending) {
                spdlog::info("SIGHUP received: a reload is under way; another follows it");
                reload_again = true;
            } else if (!config.lazy_apps) {
                if (!can_reexec()) {
                    spdlog::error("SIGHUP received: cannot reload: the command line this "
                                  "process started with is unknown");
                } else {
                    spdlog::info("SIGHUP received: checking that the new code imports");
                    import_check = start_import_check();
                    if (import_check < 0) {
                        import_check = 0;
                    }
                    import_check_deadline = clock::now() + ready_timeout;
                }
            } else {
                spdlog::info("SIGHUP received: replacing the {} worker(s) one at a time with "
                             "ones that import the application again",
                             positions.size());
                for (unsigned i = 0; i < positions.size(); ++i) {
                    reload_queue.push_back(i);
                    positions[i].retry_replace_at = {}; // an operator's retry is not delayed
                }
            }
        } else if (sig == SIGTTIN && !stopping) {
            if (positions.size() >= max_positions) {
                spdlog::warn("SIGTTIN received: already at the most workers this master can "
                             "run ({}); ignored",
                             max_positions);
            } else {
                positions.emplace_back();
                page->set_positions(positions.size());
                spdlog::info("SIGTTIN received: adding a worker ({} now)", positions.size());
                start_position(static_cast<unsigned>(positions.size() - 1));
            }
        } else if (sig == SIGTTOU && !stopping) {
            if (positions.size() <= 1) {
                spdlog::warn("SIGTTOU received: one worker is the fewest; ignored");
            } else {
                const Position last = positions.back();
                positions.pop_back();
                page->set_positions(positions.size());
                reload_queue.erase(std::remove(reload_queue.begin(), reload_queue.end(),
                                               static_cast<unsigned>(positions.size())),
                                   reload_queue.end());
                spdlog::info("SIGTTOU received: removing worker {} ({} left); it finishes its "
                             "requests first",
                             positions.size(), positions.size());
                for (const pid_t pid : {last.serving, last.successor}) {
                    if (Process* p = pid != 0 ? find(pid) : nullptr) {
                        drain(*p);
                    }
                }
            }
        } else if (sig > 0 && sig != SIGCHLD) {
            // What gunicorn and uWSGI operators send must not stop the server: the default
            // action would kill (or suspend) the master.
            spdlog::warn("{} (signal {}): nothing to do; ignored", ::strsignal(sig), sig);
        }

        if (import_check != 0) {
            int status = 0;
            if (clock::now() >= import_check_deadline && !stopping) {
                spdlog::error("reload: the import check (pid {}) did not finish in {}s; killing "
                              "it",
                              import_check,
                              std::chrono::duration_cast<std::chrono::seconds>(ready_timeout)
                                  .count());
                ::kill(import_check, SIGKILL);
                import_check_deadline = clock::time_point::max();
            }
            if (::waitpid(import_check, &status, WNOHANG) == import_check) {
                import_check = 0;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !stopping) {
                    exec_pending = true;
                } else if (!stopping) {
                    spdlog::error("reload abandoned: the new code does not import (see above); "
                                  "the workers keep serving the old code");
                    if (reload_again) {
                        reload_again = false;
                        ::kill(master_pid, SIGHUP); // a later change may have fixed it
                    }
                }
            }
        }

        // Reap whatever died, whatever woke us. Only workers: wait for each by pid, so
        // children the app started in the master are left to it.
        for (std::size_t k = 0; k < processes.size();) {
            int status = 0;
            rusage usage{};
            const pid_t pid = ::wait4(processes[k].pid, &status, WNOHANG, &usage);
            if (pid <= 0) {
                ++k;
                continue;
            }
            const Process gone = processes[k];
            processes.erase(processes.begin() + static_cast<std::ptrdiff_t>(k));
            // Read before retire() clears the slot for its next user.
            const bool was_ready =
                page->slot(gone.stats_slot).ready.load(std::memory_order_acquire) != 0;
            any_ready = any_ready || was_ready;
            page->add_retired_cpu(gone.stats_slot, cpu_ns(usage));
            page->retire(gone.stats_slot);
            Position* pos = gone.position < positions.size() ? &positions[gone.position] : nullptr;
            const bool serving = pos != nullptr && pos->serving == pid;
            const bool successor = pos != nullptr && pos->successor == pid;
            if (stopping || (!serving && !successor)) {
                // Asked to leave (a stop, a replacement, SIGTTOU).
                spdlog::info("worker {} (pid {}) {}", gone.position, pid, describe_status(status));
                if (stopping) {
                    // A worker handles SIGTERM/SIGINT while it serves; one can only die of
                    // them after it finished (its handlers gone), when the master's copy of
                    // a signal sent to the whole group arrives late. That is a clean stop.
                    const bool late_stop_signal =
                        WIFSIGNALED(status) &&
                        (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT);
                    if (!late_stop_signal && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
                        unclean = true; // forced past its grace period, or crashed
                    }
                }
                continue;
            }
            const bool boot_failure = config.lazy_apps && WIFEXITED(status) &&
                                      WEXITSTATUS(status) == worker_boot_failure_status &&
                                      !was_ready;
            if (successor) {
                // The replacement never got ready: the old worker goes on serving.
                pos->successor = 0;
                pos->retry_replace_at = clock::now() + std::chrono::seconds(boot_failure ? 30 : 5);
                page->note_restart(RestartReason::boot_failure);
                if (pos->successor_reason == RestartReason::reload) {
                    spdlog::error("reload abandoned: the new worker {} (pid {}) {} before it was "
                                  "ready{}; the old workers keep serving",
                                  gone.position, pid, describe_status(status),
                                  boot_failure ? " (it could not load the application, see "
                                                 "above)"
                                               : "");
                    reload_queue.clear();
                    if (reload_again) {
                        reload_again = false;
                        ::kill(master_pid, SIGHUP); // a later change may have fixed it
                    }
                } else {
                    spdlog::error("the replacement of worker {} (pid {}) {} before it was "
                                  "ready; the old one keeps serving",
                                  gone.position, pid, describe_status(status));
                }
                continue;
            }
            pos->serving = 0;
            if (boot_failure && !any_ready) {
                spdlog::error("worker {} (pid {}) could not load the application (see "
                              "above); stopping the server",
                              gone.position, pid);
                unclean = true;
                begin_stop();
                for (auto& other : processes) {
                    drain(other);
                }
                continue;
            }
            // A worker that died after it was serving (a request crashed it) comes back
            // at once: one client repeating that request must not keep the worker away
            // for seconds. One that keeps dying before it is ready is not helped by a
            // tight fork loop: back off, up to 10 s.
            const bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            page->note_restart(clean_exit  ? RestartReason::exit
                               : was_ready ? RestartReason::crash
                                           : RestartReason::boot_failure);
            if (clean_exit) {
                spdlog::warn("worker {} (pid {}) exited by itself (code 0); respawning",
                             gone.position, pid);
            } else {
                spdlog::error("worker {} (pid {}) {}{}; respawning", gone.position, pid,
                              describe_status(status), was_ready ? "" : " before it was ready");
            }
            pos->quick_failures = was_ready ? 0 : pos->quick_failures + 1;
            const auto delay = std::chrono::milliseconds(
                pos->quick_failures == 0 ? 0
                                         : std::min(10000, 100 << std::min(7u, pos->quick_failures)));
            pos->respawn_at = clock::now() + delay;
            if (pos->successor != 0) {
                // Its replacement was already on its way: it simply takes over when ready.
                pos->serving = pos->successor;
                pos->successor = 0;
            }
        }

        if (stopping) {
            if (processes.empty()) {
                break;
            }
            if (clock::now() >= stop_deadline) {
                for (const auto& p : processes) {
                    spdlog::error("worker pid {} did not stop in time; killing it", p.pid);
                    ::kill(p.pid, SIGKILL);
                    killed = true;
                }
                stop_deadline = clock::now() + std::chrono::seconds(5);
            }
            continue;
        }

        if (exec_pending &&
            std::none_of(positions.begin(), positions.end(),
                         [](const Position& p) { return p.successor != 0; })) {
            // Hand everything to the next image of this process: same pid, same socket,
            // same workers (they go on serving), same counters.
            exec_pending = false;
            Inheritance state;
            state.listen_fd = listener.fd;
            state.listen_owned = !listener.inherited();
            state.stats_fd = page->fd();
            state.positions = positions.size();
            for (const auto& p : processes) {
                state.workers.push_back({p.pid, p.stats_slot, p.position, p.draining});
            }
            spdlog::info("reloading: the master (pid {}) starts over with the new code; the "
                         "workers serve on meanwhile",
                         master_pid);
            if (metrics_server != nullptr) {
                metrics_server->stop();
                metrics_server.reset();
            }
            hooks.before_exec();
            for (const int fd : {listener.fd, page->fd()}) {
                ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) & ~FD_CLOEXEC);
            }
            const std::string error = reexec(state);
            for (const int fd : {listener.fd, page->fd()}) {
                ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
            }
            spdlog::error("reload abandoned: {}; the workers keep serving the old code", error);
            if (config.metrics) {
                start_metrics();
            }
        }

        const auto now2 = clock::now();
        const bool check_rss = config.workers_max_rss > 0 && now2 >= next_rss_check;
        if (check_rss) {
            next_rss_check = now2 + std::chrono::seconds(1);
        }
        for (unsigned i = 0; i < positions.size(); ++i) {
            Position& pos = positions[i];
            if (pos.serving == 0) {
                if (now2 >= pos.respawn_at) {
                    start_position(i);
                }
                continue;
            }
            Process* serving = find(pos.serving);
            if (serving != nullptr &&
                page->slot(serving->stats_slot).ready.load(std::memory_order_acquire) != 0) {
                any_ready = true;
            }
            if (pos.successor != 0) {
                Process* next = find(pos.successor);
                if (next != nullptr && now2 >= next->ready_deadline &&
                    page->slot(next->stats_slot).ready.load(std::memory_order_acquire) == 0) {
                    spdlog::error("worker {}: its replacement (pid {}) was not ready after {}s; "
                                  "killing it",
                                  i, next->pid,
                                  std::chrono::duration_cast<std::chrono::seconds>(ready_timeout)
                                      .count());
                    ::kill(next->pid, SIGKILL); // reaped as a failed successor
                    next->ready_deadline = clock::time_point::max();
                    continue;
                }
                if (next != nullptr &&
                    page->slot(next->stats_slot).ready.load(std::memory_order_acquire) != 0) {
                    // The successor serves: the old worker stops accepting and drains.
                    page->note_restart(pos.successor_reason);
                    spdlog::info("worker {}: pid {} now serves; pid {} finishes its requests "
                                 "and leaves",
                                 i, next->pid, pos.serving);
                    if (serving != nullptr) {
                        drain(*serving);
                    }
                    pos.serving = pos.successor;
                    pos.successor = 0;
                    // Only a successor started by the reload runs the new code (with
                    // --lazy-apps, one recycled before the SIGHUP may have imported the old).
                    if (!reload_queue.empty() && reload_queue.front() == i &&
                        pos.successor_reason == RestartReason::reload) {
                        reload_queue.erase(reload_queue.begin());
                        if (reload_queue.empty()) {
                            spdlog::info("reload complete: every worker runs the new code");
                            if (reload_again) {
                                reload_again = false;
                                ::kill(master_pid, SIGHUP); // the change that came meanwhile
                            }
                        }
                    }
                }
                continue;
            }
            if (serving == nullptr) {
                continue;
            }
            if (exec_pending) {
                continue; // the re-exec waits for no successor; start none meanwhile
            }
            const metrics::WorkerSlot& stats = page->slot(serving->stats_slot);
            if (const auto recycle = stats.recycle.load(std::memory_order_acquire); recycle != 0) {
                replace(i, recycle == 2 ? RestartReason::request_timeout
                                        : RestartReason::max_requests);
            } else if (now2 >= serving->retire_at) {
                replace(i, RestartReason::lifetime);
            } else if (check_rss && resident_mib(serving->pid) > config.workers_max_rss) {
                replace(i, RestartReason::max_rss);
            } else if (!reload_queue.empty() && reload_queue.front() == i) {
                replace(i, RestartReason::reload);
            }
        }
        // A replaced worker leaves by itself within --graceful-timeout; one that cannot
        // (its event loop stuck in C code) is forced out a little later.
        for (auto& p : processes) {
            if (p.draining && now2 >= p.drain_deadline) {
                spdlog::error("worker {} (pid {}) did not finish within --graceful-timeout "
                              "after it was replaced; killing it",
                              p.position, p.pid);
                ::kill(p.pid, SIGKILL);
                p.drain_deadline = clock::time_point::max();
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
