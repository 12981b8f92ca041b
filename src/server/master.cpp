// Master process supervision (see master.hpp).
#include "server/master.hpp"

#include <spdlog/spdlog.h>

#include <sys/mman.h>
#include <sys/prctl.h>
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
#include <new>
#include <vector>

namespace appserver::server {
namespace {

using clock = std::chrono::steady_clock;

// What a worker tells the master without a message: a page shared by all processes,
// one entry per worker slot (MAP_SHARED, so it survives the fork). The seam for
// per-worker counters the master will aggregate later.
struct SharedSlot {
    std::atomic<std::uint32_t> ready{0}; // the worker's event loop is serving
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
SharedSlot* shared_slots = nullptr;
SharedSlot* own_slot = nullptr; // in a worker: its entry

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
    void* page = ::mmap(nullptr, sizeof(SharedSlot) * config.workers, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        spdlog::error("cannot map the workers' shared page: {}", std::strerror(errno));
        return 1;
    }
    shared_slots = new (page) SharedSlot[config.workers];
    auto spawn = [&](unsigned index) {
        shared_slots[index].ready.store(0, std::memory_order_relaxed);
        hooks.before_fork();
        const pid_t pid = ::fork();
        if (pid == 0) {
            own_slot = &shared_slots[index];
            hooks.after_fork_child();
            // A worker must not outlive its master (kill -9 of the master).
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (::getppid() != master_pid) {
                ::_exit(1);
            }
            int rc = run_worker(index);
            spdlog::default_logger()->flush();
            ::_exit(rc);
        }
        hooks.after_fork_parent();
        if (pid < 0) {
            spdlog::error("fork failed: {}", std::strerror(errno));
            slots[index].respawn_at = clock::now() + std::chrono::seconds(1);
            return;
        }
        slots[index].pid = pid;
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
        while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
            for (unsigned i = 0; i < slots.size(); ++i) {
                Slot& s = slots[i];
                if (s.pid != pid) {
                    continue;
                }
                s.pid = 0;
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
                    WEXITSTATUS(status) == worker_boot_failure_status &&
                    shared_slots[i].ready.load(std::memory_order_acquire) == 0) {
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
                const bool was_ready = shared_slots[i].ready.load(std::memory_order_acquire) != 0;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
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
    ::munmap(page, sizeof(SharedSlot) * config.workers);
    shared_slots = nullptr;
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    spdlog::info("appserver master stopped");
    return killed || unclean ? 1 : 0;
}

} // namespace appserver::server
