// The server's top level, shared by every front door: config -> app -> socket ->
// master -> workers. Python-specific process hooks live here, at the seam.
#include <appserver/server.hpp>

#include "run.hpp"

#include "cli/options.hpp"
#include "log/line_writer.hpp"
#include "log/log.hpp"
#include "metrics/stats_page.hpp"
#include "net/listener.hpp"
#include "server/master.hpp"
#include "server/pid_file.hpp"
#include "server/reexec.hpp"
#include "server/worker.hpp"
#include "wsgi/app_loader.hpp"
#include "wsgi/handler.hpp"

#include <Python.h>

#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/stat.h>

#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace appserver {
namespace {

// Writes out what Python holds in sys.stdout/sys.stderr's buffers (block-buffered when
// they are a pipe or a file, as under a supervisor).
void flush_python_stdio() {
    for (const char* name : {"stdout", "stderr"}) {
        PyObject* stream = PySys_GetObject(name); // borrowed
        if (stream != nullptr && stream != Py_None) {
            PyObject* r = PyObject_CallMethod(stream, "flush", nullptr);
            Py_XDECREF(r);
            PyErr_Clear();
        }
    }
    std::fflush(stdout);
    std::fflush(stderr);
}

// The app is loaded once, in the master, and workers are forked from it: a thread the
// app started while loading (a scheduler, a metrics pusher) is not in any worker. gunicorn
// (without --preload) and Granian load the app in each worker, so apps moving from them
// may rely on such threads: say so once, at the first fork, naming them.
void warn_about_threads_lost_at_fork() {
    PyObject* modules = PySys_GetObject("modules"); // borrowed
    PyObject* threading = modules != nullptr ? PyDict_GetItemString(modules, "threading") : nullptr;
    if (threading == nullptr) {
        return; // never imported: no Python thread was started
    }
    Py_INCREF(threading);
    PyObject* threads = PyObject_CallMethod(threading, "enumerate", nullptr);
    PyObject* main_thread = PyObject_CallMethod(threading, "main_thread", nullptr);
    std::string names;
    std::size_t count = 0;
    if (threads != nullptr && main_thread != nullptr && PyList_Check(threads)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(threads); ++i) {
            PyObject* t = PyList_GET_ITEM(threads, i);
            if (t == main_thread) {
                continue;
            }
            PyObject* name = PyObject_GetAttrString(t, "name");
            const char* text = name != nullptr ? PyUnicode_AsUTF8(name) : nullptr;
            names += (count == 0 ? "" : ", ") + std::string(text != nullptr ? text : "?");
            ++count;
            Py_XDECREF(name);
        }
    }
    Py_XDECREF(threads);
    Py_XDECREF(main_thread);
    Py_DECREF(threading);
    PyErr_Clear();
    if (count > 0) {
        spdlog::warn("the application started {} thread(s) while loading ({}); the app is "
                     "loaded once in the master and workers are forked from it, so these "
                     "threads do not run in the workers unless they restart themselves after "
                     "a fork: start them in the worker instead (for example on the first "
                     "request, or with os.register_at_fork(after_in_child=...))",
                     count, names);
    }
}

// A worker killed by SIGSEGV/SIGABRT/SIGBUS/SIGFPE/SIGILL (a C extension's bug) leaves the
// Python stack of every thread in the log, not just "killed by signal": what the
// operator needs to find the request and the code. Python's own faulthandler, enabled
// before the app is imported (its import is covered too); it then lets the signal kill
// the process as before (core dumps unchanged).
void enable_faulthandler() {
    PyObject* module = PyImport_ImportModule("faulthandler");
    if (module != nullptr) {
        PyObject* enabled = PyObject_CallMethod(module, "is_enabled", nullptr);
        if (enabled != nullptr && enabled == Py_False) {
            PyObject* r = PyObject_CallMethod(module, "enable", nullptr);
            Py_XDECREF(r);
        }
        Py_XDECREF(enabled);
        Py_DECREF(module);
    }
    PyErr_Clear();
}

// CPython's rules around fork(), and dropping the GIL while the master sleeps.
class PythonProcessHooks final : public server::ProcessHooks {
public:
    // app_loaded: the app was imported in the master (threads it started are lost).
    explicit PythonProcessHooks(bool app_loaded) : first_fork_done_(!app_loaded) {}

    void before_fork() override {
        if (!first_fork_done_) {
            first_fork_done_ = true;
            warn_about_threads_lost_at_fork();
        }
        // Else each worker inherits (and one day writes) a copy of what the app printed
        // in the master, at import time for instance.
        flush_python_stdio();
        PyOS_BeforeFork();
    }
    void after_fork_parent() override { PyOS_AfterFork_Parent(); }
    void after_fork_child() override { PyOS_AfterFork_Child(); }
    void before_exec() override { flush_python_stdio(); }
    void enter_wait() override { saved_ = PyEval_SaveThread(); }
    void leave_wait() override { PyEval_RestoreThread(saved_); }
    std::string runtime_version() const override {
        const std::string_view full = Py_GetVersion(); // "3.11.7 (main, ...) [GCC ...]"
        return std::string(full.substr(0, full.find(' ')));
    }

private:
    PyThreadState* saved_ = nullptr;
    bool first_fork_done_;
};

int fail(const std::string& message) {
    std::fprintf(stderr, "appserver: error: %s\n", message.c_str());
    std::fflush(stderr);
    return 1;
}

// Same line as a command-line usage error (cli/options), for one found at start-up.
int usage_fail(const std::string& message) {
    std::fprintf(stderr, "appserver: error: %s (see 'appserver --help')\n", message.c_str());
    std::fflush(stderr);
    return 2;
}

// --debug: what a person at a terminal needs to stop in pdb. One process and one thread
// to debug (a second request waits in the queue, it does not start a second pdb on the
// same terminal), everything logged. The worker is forked without setsid/setpgid, so it
// stays in the terminal's foreground process group with stdin untouched; Ctrl-C reaches
// master and worker as a graceful stop, as without --debug. When a request timeout
// exists, it must not apply here: a request stopped at a breakpoint is not stuck.
Config effective_config(const Config& requested) {
    Config config = requested;
    if (config.debug) {
        config.workers = 1;
        config.blocking_threads = 1;
        config.log_level = LogLevel::debug;
        config.request_timeout = 0; // a request paused at a breakpoint is not stuck
    }
    return config;
}

void log_debug_mode(const Config& requested) {
    if (!requested.debug) {
        return;
    }
    spdlog::warn("debug mode (--debug): 1 worker, 1 blocking thread, standard input kept for "
                 "breakpoint()/pdb, debug log level; not for production");
    if (requested.workers != 1) {
        spdlog::warn("--debug: --workers {} ignored", requested.workers);
    }
    if (requested.blocking_threads != 1) {
        spdlog::warn("--debug: --blocking-threads {} ignored", requested.blocking_threads);
    }
    if (requested.request_timeout > 0) {
        spdlog::warn("--debug: --request-timeout {} ignored", requested.request_timeout);
    }
    if (::isatty(STDIN_FILENO) == 0) {
        spdlog::warn("--debug: standard input is not a terminal: pdb will have nothing to read");
    } else if (::tcgetpgrp(STDIN_FILENO) != ::getpgrp()) {
        spdlog::warn("--debug: not in the terminal's foreground (started with '&'?): pdb "
                     "reading the terminal would stop the worker");
    }
}

// A worker stopped while pdb (readline) had the terminal in its own mode would leave it
// without echo: the master puts back what it found (--debug only).
class TerminalModes {
public:
    explicit TerminalModes(bool enabled)
        : saved_(enabled && ::isatty(STDIN_FILENO) != 0 &&
                 ::tcgetattr(STDIN_FILENO, &modes_) == 0) {}
    TerminalModes(const TerminalModes&) = delete;
    TerminalModes& operator=(const TerminalModes&) = delete;
    ~TerminalModes() {
        // Only from the foreground: a background process would be stopped by SIGTTOU.
        if (saved_ && ::tcgetpgrp(STDIN_FILENO) == ::getpgrp()) {
            ::tcsetattr(STDIN_FILENO, TCSANOW, &modes_);
        }
    }

private:
    termios modes_{};
    bool saved_;
};

// systemd's LISTEN_* variables were removed from the C environment (net/listener); the app
// reads CPython's os.environ, a copy taken when the interpreter started.
void forget_socket_activation_variables() {
    PyObject* os = PyImport_ImportModule("os");
    PyObject* environ_map = os != nullptr ? PyObject_GetAttrString(os, "environ") : nullptr;
    for (const char* name : net::socket_activation_variables) {
        if (environ_map != nullptr) {
            PyObject* r = PyObject_CallMethod(environ_map, "pop", "sO", name, Py_None);
            Py_XDECREF(r);
        }
    }
    Py_XDECREF(environ_map);
    Py_XDECREF(os);
    PyErr_Clear();
}

// --virtualenv names the environment to import from. The standalone executable started
// its interpreter in it (main.cpp); the Python front door runs in whatever interpreter
// started it, which cannot switch: serving from another environment than the one asked
// for would import other packages, so that is refused. "" when all is well.
std::string check_virtualenv_in_use(const Config& config) {
    if (config.virtualenv.empty()) {
        return {};
    }
    std::string prefix;
    if (PyObject* value = PySys_GetObject("prefix"); value != nullptr && PyUnicode_Check(value)) {
        const char* text = PyUnicode_AsUTF8(value);
        prefix = text != nullptr ? text : "";
    }
    PyErr_Clear();
    std::error_code ec;
    if (!prefix.empty() && std::filesystem::equivalent(prefix, config.virtualenv, ec)) {
        return {};
    }
    return "--virtualenv " + config.virtualenv + ": this interpreter (sys.prefix " + prefix +
           ") is not in that virtualenv and cannot switch to it; run that virtualenv's "
           "appserver (" + config.virtualenv + "/bin/appserver) or the standalone executable";
}

// Runs atexit handlers registered by the app (the worker leaves with _exit).
void run_python_exit_handlers() {
    PyObject* atexit = PyImport_ImportModule("atexit");
    if (atexit != nullptr) {
        PyObject* r = PyObject_CallMethod(atexit, "_run_exitfuncs", nullptr);
        Py_XDECREF(r);
        Py_DECREF(atexit);
    }
    PyErr_Clear();
    flush_python_stdio(); // what the app print()ed, before the _exit
}

// --lazy-apps: the worker's own import, right after the fork. nullptr (logged) when the
// app cannot be loaded.
std::unique_ptr<wsgi::WsgiApplication> import_in_worker(const Config& config, unsigned index,
                                                        const std::string& server_name,
                                                        const std::string& server_port) {
    // The master's signal mask is still on (the worker lifts it once its handlers are
    // in): processes the import starts would inherit it and could not be stopped. Import
    // as a plain process would (signals at their defaults).
    sigset_t none;
    sigset_t inherited;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, &inherited);
    std::string error;
    PyObject* app = wsgi::load_app(config, error);
    ::pthread_sigmask(SIG_SETMASK, &inherited, nullptr);
    std::unique_ptr<wsgi::WsgiApplication> wsgi_app;
    try {
        if (app != nullptr) {
            wsgi_app = std::make_unique<wsgi::WsgiApplication>(config, app, server_name,
                                                               server_port);
        }
    } catch (const std::exception& e) {
        error = e.what();
    }
    if (wsgi_app == nullptr) {
        spdlog::error("worker {}: {}", index,
                      error.empty() ? "cannot load the application" : error);
        flush_python_stdio();
    }
    return wsgi_app;
}

} // namespace

namespace {
int serve(const Config& requested, const std::vector<std::string>& startup_warnings);
} // namespace

const char* version() {
    return APPSERVER_VERSION;
}

int run(const Config& requested) {
    return run(requested, {});
}

int run(const Config& requested, const std::vector<std::string>& startup_warnings) {
    // Blocked before anything of the app runs (threads it starts at import inherit the
    // mask), restored when the server is done (the Python front door goes on).
    const sigset_t signals = server::master_signal_set();
    sigset_t previous;
    ::pthread_sigmask(SIG_BLOCK, &signals, &previous);
    const int rc = serve(requested, startup_warnings);
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return rc;
}

namespace {

int serve(const Config& requested, const std::vector<std::string>& startup_warnings) {
    // Before anything changes the directory or the process title: a reload re-executes
    // this same command line.
    server::remember_command_line();
    const Config config = effective_config(requested);
    log::init(config.log_level, "master", config.log_format);
    if (std::string err = check_virtualenv_in_use(config); !err.empty()) {
        return usage_fail(err);
    }
    // Started by a reload (SIGHUP) of a master that imports the app itself: only check that
    // the new code imports (reexec.hpp).
    const bool import_check = std::getenv(server::import_check_variable) != nullptr;
    // Or this is that master's next image, taking over its socket, workers and counters.
    std::optional<server::Inheritance> inheritance;
    try {
        inheritance = server::take_inheritance();
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    log_debug_mode(requested);
    for (const auto& warning : startup_warnings) {
        spdlog::warn("{}", warning);
    }
    {
        std::vector<std::string> names;
        for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
            const std::string_view entry(*e);
            names.emplace_back(entry.substr(0, entry.find('=')));
        }
        for (const auto& warning : cli::unknown_environment_variables(names)) {
            spdlog::warn("{}", warning);
        }
    }
    // A socket handed over (--fd, systemd's LISTEN_FDS) replaces --host/--port; taken and
    // checked before the app is imported, which then does not see LISTEN_*.
    std::optional<net::ListenSocket> inherited;
    try {
        if (inheritance) {
            inherited = net::adopt_listener(inheritance->listen_fd, "the previous master");
            if (inheritance->listen_owned) {
                // Bound by this server (by its first image): still ours to remove at exit.
                inherited->origin.clear();
                struct stat st {};
                if (inherited->family == AF_UNIX && !inherited->uds_path.empty() &&
                    ::lstat(inherited->uds_path.c_str(), &st) == 0) {
                    inherited->uds_inode = st.st_ino;
                }
            }
        } else if (!import_check) {
            inherited = net::take_inherited_listener(config);
        }
    } catch (const net::UsageError& e) {
        return usage_fail(e.what());
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    forget_socket_activation_variables();
    if (std::string err = wsgi::prepare_process(config); !err.empty()) {
        return fail(err);
    }
    enable_faulthandler();
    if (!config.pid_file.empty() && !import_check) {
        if (std::string err = server::check_pid_file(config.pid_file); !err.empty()) {
            return fail(err);
        }
    }
    try {
        if (!inherited && !import_check) {
            net::check_address(config); // before a possibly slow (or failing) import
        }
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    if (!config.access_log.empty()) {
        // Each worker opens it for itself; a path that cannot be written is a start-up
        // error, not a line in every worker's log.
        std::string error;
        if (log::LineWriter::open_path(config.access_log, error) == nullptr) {
            return fail(error);
        }
    }
    // By default the app is imported here, once, before anything is bound (an import
    // error is one line and exit 1, with no port ever opened); with --lazy-apps each
    // worker imports it after the fork.
    PyObject* app = nullptr;
    if (!config.lazy_apps || import_check) {
        std::string error;
        app = wsgi::load_app(config, error);
        if (app == nullptr) {
            if (inheritance) {
                // The check passed, yet the code changed again meanwhile. The old workers
                // serve on; new ones will try the import themselves, like --lazy-apps.
                spdlog::error("reload: the new code does not import in the master ({}); the "
                              "workers keep serving the old code",
                              error);
            } else {
                return fail(error);
            }
        }
        if (import_check) {
            flush_python_stdio();
            return app != nullptr ? 0 : 1;
        }
    }
    net::ListenSocket listener;
    try {
        listener = inherited ? std::move(*inherited) : net::bind_listener(config);
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    // PEP 3333: SERVER_PORT is never empty; on a unix socket, the scheme's default.
    const std::string server_name = listener.family == AF_UNIX ? "localhost" : listener.host;
    const std::string server_port =
        listener.family == AF_UNIX ? "80" : std::to_string(listener.port);
    std::unique_ptr<wsgi::WsgiApplication> wsgi_app;
    if (app != nullptr) {
        try {
            wsgi_app = std::make_unique<wsgi::WsgiApplication>(config, app, server_name,
                                                               server_port);
        } catch (const std::exception& e) {
            net::close_listener(listener, true);
            return fail(e.what());
        }
    }
    const pid_t master_pid = ::getpid();
    if (!config.pid_file.empty()) {
        if (std::string err = server::write_pid_file(config.pid_file, master_pid); !err.empty()) {
            if (inheritance) {
                // A reload: the workers serve on; the file still names this pid anyway.
                spdlog::error("{}", err);
            } else {
                net::close_listener(listener, true);
                return fail(err);
            }
        }
    }
    const TerminalModes terminal(config.debug);
    PythonProcessHooks hooks(!config.lazy_apps);
    const int rc = server::run_master(config, listener, hooks, [&](unsigned index) {
        // The worker's hot threads never write a log line themselves: a thread of its own
        // does (log/line_writer.hpp). Except under --debug: written at once, its lines stay
        // in order with what pdb and the app print on the terminal.
        log::init(config.log_level, "worker." + std::to_string(index), config.log_format,
                  !config.debug);
        if (metrics::WorkerSlot* slot = server::own_stats_slot(); slot != nullptr) {
            log::set_dropped_counter(&slot->cumulative[metrics::idx::log_dropped]);
        }
        if (wsgi_app == nullptr) {
            wsgi_app = import_in_worker(config, index, server_name, server_port);
            if (wsgi_app == nullptr) {
                // A failure would repeat in every respawn: the status asks the master to
                // stop instead.
                return server::worker_boot_failure_status;
            }
        }
        int worker_rc = 1;
        {
            server::Worker worker(config, listener, *wsgi_app, index);
            PyThreadState* main_state = PyEval_SaveThread();
            worker_rc = worker.run();
            if (worker_rc != 0) {
                // Threads may still be inside the app (holding the GIL, or about to touch
                // the worker): leave now, without unwinding anything under them.
                log::flush();
                std::fflush(stderr);
                ::_exit(worker_rc);
            }
            PyEval_RestoreThread(main_state);
        }
        // Done serving: a stop signal that arrives now (the master forwarding one this
        // worker already got from its process group) must not cut the exit handlers short.
        for (int s : {SIGTERM, SIGINT, SIGQUIT}) {
            ::signal(s, SIG_IGN);
        }
        run_python_exit_handlers();
        return worker_rc;
    }, inheritance ? &*inheritance : nullptr);
    if (!config.pid_file.empty()) {
        server::remove_pid_file(config.pid_file, master_pid);
    }
    return rc;
}

} // namespace

int run_command_line(const std::vector<std::string>& args) {
    cli::ParseOutcome outcome = cli::parse(args);
    if (outcome.kind == cli::ParseOutcome::Kind::exit) {
        return cli::print_and_exit_code(outcome);
    }
    return run(outcome.config, outcome.warnings);
}

} // namespace appserver
