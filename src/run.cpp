// The server's top level, shared by every front door: config -> app -> socket ->
// master -> workers. Python-specific process hooks live here, at the seam.
#include <appserver/server.hpp>

#include "cli/options.hpp"
#include "log/log.hpp"
#include "net/listener.hpp"
#include "server/master.hpp"
#include "server/worker.hpp"
#include "wsgi/app_loader.hpp"
#include "wsgi/handler.hpp"

#include <Python.h>

#include <sys/socket.h>

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <stdexcept>

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

// CPython's rules around fork(), and dropping the GIL while the master sleeps.
class PythonProcessHooks final : public server::ProcessHooks {
public:
    void before_fork() override {
        // Else each worker inherits (and one day writes) a copy of what the app printed
        // in the master, at import time for instance.
        flush_python_stdio();
        PyOS_BeforeFork();
    }
    void after_fork_parent() override { PyOS_AfterFork_Parent(); }
    void after_fork_child() override { PyOS_AfterFork_Child(); }
    void enter_wait() override { saved_ = PyEval_SaveThread(); }
    void leave_wait() override { PyEval_RestoreThread(saved_); }

private:
    PyThreadState* saved_ = nullptr;
};

int fail(const std::string& message) {
    std::fprintf(stderr, "appserver: error: %s\n", message.c_str());
    std::fflush(stderr);
    return 1;
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

} // namespace

const char* version() {
    return APPSERVER_VERSION;
}

int run(const Config& config) {
    log::init(config.log_level, "master");
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
    if (std::string err = wsgi::prepare_process(config); !err.empty()) {
        return fail(err);
    }
    try {
        net::check_address(config); // before a possibly slow (or failing) import
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    std::string error;
    PyObject* app = wsgi::load_app(config, error);
    if (app == nullptr) {
        return fail(error);
    }
    net::ListenSocket listener;
    try {
        listener = net::bind_listener(config);
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    std::unique_ptr<wsgi::WsgiApplication> wsgi_app;
    try {
        wsgi_app = std::make_unique<wsgi::WsgiApplication>(
            config, app, listener.family == AF_UNIX ? "localhost" : listener.host,
            // PEP 3333: SERVER_PORT is never empty; on a unix socket, the scheme's default.
            listener.family == AF_UNIX ? "80" : std::to_string(listener.port));
    } catch (const std::exception& e) {
        net::close_listener(listener, true);
        return fail(e.what());
    }
    PythonProcessHooks hooks;
    return server::run_master(config, listener, hooks, [&](unsigned index) {
        log::init(config.log_level, "worker." + std::to_string(index));
        int rc = 1;
        {
            server::Worker worker(config, listener, *wsgi_app, index);
            PyThreadState* main_state = PyEval_SaveThread();
            rc = worker.run();
            if (rc != 0) {
                // Threads may still be inside the app (holding the GIL, or about to touch
                // the worker): leave now, without unwinding anything under them.
                spdlog::default_logger()->flush();
                std::fflush(stderr);
                ::_exit(rc);
            }
            PyEval_RestoreThread(main_state);
        }
        // Done serving: a stop signal that arrives now (the master forwarding one this
        // worker already got from its process group) must not cut the exit handlers short.
        for (int s : {SIGTERM, SIGINT, SIGQUIT}) {
            ::signal(s, SIG_IGN);
        }
        run_python_exit_handlers();
        return rc;
    });
}

int run_command_line(const std::vector<std::string>& args) {
    cli::ParseOutcome outcome = cli::parse(args);
    if (outcome.kind == cli::ParseOutcome::Kind::exit) {
        return cli::print_and_exit_code(outcome);
    }
    return run(outcome.config);
}

} // namespace appserver
