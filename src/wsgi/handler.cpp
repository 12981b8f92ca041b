// One WSGI request, end to end (see handler.hpp): environ, the call, iterating the
// response, close(). The worker holds the GIL across a burst of requests (enter/leave).
#include "wsgi/handler.hpp"

#include "wsgi/gil.hpp"
#include "wsgi/interned.hpp"
#include "wsgi/types.hpp"

#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <initializer_list>
#include <stdexcept>
#include <vector>

namespace appserver::wsgi {
namespace {

struct ThreadGil {
    PyGILState_STATE gil_state{};
    PyThreadState* state = nullptr;
};
thread_local ThreadGil thread_gil;

// The per-request objects the app sees (wsgi.input, start_response and its state) are
// reused by the next request on the same thread when the app kept no reference to them;
// otherwise fresh ones are made, so a kept object never sees another request.
struct ThreadObjects {
    InputObject* input = nullptr;
    StartResponseObject* state = nullptr;
    PyObject* start_response = nullptr; // holds a reference to state
};
thread_local ThreadObjects thread_objects;

bool acquire_objects(server::Exchange& ex) {
    ThreadObjects& o = thread_objects;
    if (o.input != nullptr && Py_REFCNT(o.input) == 1) {
        o.input->exchange = &ex;
    } else {
        Py_XDECREF(reinterpret_cast<PyObject*>(o.input));
        o.input = new_input(&ex);
        if (o.input == nullptr) {
            return false;
        }
    }
    if (o.start_response != nullptr && Py_REFCNT(o.start_response) == 1 &&
        Py_REFCNT(o.state) == 2) {
        o.state->exchange = &ex;
    } else {
        Py_XDECREF(o.start_response);
        Py_XDECREF(reinterpret_cast<PyObject*>(o.state));
        o.start_response = nullptr;
        o.state = new_start_response(&ex);
        if (o.state == nullptr) {
            return false;
        }
        o.start_response = make_start_response_callable(o.state);
        if (o.start_response == nullptr) {
            return false;
        }
    }
    return true;
}

void release_objects() {
    ThreadObjects& o = thread_objects;
    if (o.input != nullptr) {
        wait_for_input_readers(o.input);
        o.input->exchange = nullptr;
    }
    if (o.state != nullptr) {
        begin_server_send(o.state); // a write() another thread started is over
        o.state->exchange = nullptr;
        end_server_send(o.state);
        Py_CLEAR(o.state->status);
        Py_CLEAR(o.state->headers);
    }
}

// The app failed: 500 if nothing was sent yet, else cut the response short. When the
// failure came from a request body the client got wrong (wsgi.input raised), the client
// gets the 4xx that says so rather than a 500.
void fail(server::Exchange& ex, net::BlockingScope& scope, const char* context) {
    // Which request failed, so the traceback can be tied to it (and to the client's report).
    const auto& head = ex.head();
    std::string_view target = head.target_view();
    constexpr std::size_t max_target = 200;
    std::string where = std::string(context) + " (" + std::string(head.method_name()) + " " +
                        std::string(target.substr(0, max_target)) +
                        (target.size() > max_target ? "..." : "") + " from " + ex.remote_addr() +
                        ")";
    log_exception(where.c_str());
    if (!ex.response_started()) {
        if (const int status = ex.body_error_status(); status != 0) {
            ex.send_error(status, ex.body_error(), scope);
            return;
        }
        ex.send_error(500, "Internal Server Error", scope);
    } else {
        ex.abort();
    }
}

void fail_message(server::Exchange& ex, net::BlockingScope& scope, const char* message) {
    PyErr_SetString(PyExc_RuntimeError, message);
    fail(ex, scope, "WSGI application error");
}

// Calls result.close() if it has one; errors are logged, never raised.
void close_result(PyObject* result) {
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        return; // no close(); skip the failed attribute lookup and its exception
    }
    PyObject* close = PyObject_GetAttr(result, interned().close);
    if (close == nullptr) {
        PyErr_Clear();
        return;
    }
    PyObject* r = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (r == nullptr) {
        log_exception("exception in the response iterable's close()");
    } else {
        Py_DECREF(r);
    }
}

// Whether f's reads return its file's bytes as they are: an io.FileIO (open(path, "rb",
// buffering=0)), or a BufferedReader/BufferedRandom over one (open(path, "rb"), a
// TemporaryFile), subclasses included as long as they do not override a read method.
// PEP 3333 defines a file_wrapper response as iter(f.read, b""), so anything else with a
// fileno() (gzip.open, a subclass whose read() transforms) must be read, not sendfile'd.
bool reads_plain_file(PyObject* f) {
    static PyObject* const io = PyImport_ImportModule("io"); // kept for the process
    if (io == nullptr) {
        PyErr_Clear();
        return false;
    }
    static PyObject* const file_io = PyObject_GetAttrString(io, "FileIO");
    static PyObject* const buffered_reader = PyObject_GetAttrString(io, "BufferedReader");
    static PyObject* const buffered_random = PyObject_GetAttrString(io, "BufferedRandom");
    if (file_io == nullptr || buffered_reader == nullptr || buffered_random == nullptr) {
        PyErr_Clear();
        return false;
    }
    // type(obj) is base or a subclass, and each named method is still base's own.
    const auto keeps_reads = [](PyObject* obj, PyObject* base, std::initializer_list<const char*> methods) {
        auto* type = reinterpret_cast<PyObject*>(Py_TYPE(obj));
        if (PyObject_IsSubclass(type, base) != 1) {
            PyErr_Clear();
            return false;
        }
        for (const char* name : methods) {
            PyObject* mine = PyObject_GetAttrString(type, name);
            PyObject* theirs = PyObject_GetAttrString(base, name);
            const bool same = mine != nullptr && mine == theirs;
            Py_XDECREF(mine);
            Py_XDECREF(theirs);
            if (!same) {
                PyErr_Clear();
                return false;
            }
        }
        return true;
    };
    if (keeps_reads(f, file_io, {"read", "readinto", "readall"})) {
        return true;
    }
    for (PyObject* buffered : {buffered_reader, buffered_random}) {
        if (keeps_reads(f, buffered, {"read", "read1", "readinto", "readinto1"})) {
            PyObject* raw = PyObject_GetAttrString(f, "raw");
            if (raw == nullptr) {
                PyErr_Clear();
                return false;
            }
            const bool plain = keeps_reads(raw, file_io, {"read", "readinto", "readall"});
            Py_DECREF(raw);
            return plain;
        }
    }
    return false;
}

// wsgi.file_wrapper over a real file: sendfile. False when it is not one (iterate).
bool try_sendfile(server::Exchange& ex, StartResponseObject* sr, PyObject* wrapper,
                  GilRelease& gil) {
    auto* fw = reinterpret_cast<FileWrapperObject*>(wrapper);
    if (sr->status == nullptr || !reads_plain_file(fw->filelike)) {
        return false;
    }
    PyObject* fileno = PyObject_CallMethodNoArgs(fw->filelike, interned().fileno);
    if (fileno == nullptr) {
        PyErr_Clear();
        return false;
    }
    const long fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    struct stat st{};
    // st_size 0 may be a lie (procfs, sysfs generate their bytes on read): read those.
    if (fd < 0 || PyErr_Occurred() || ::fstat(static_cast<int>(fd), &st) != 0 ||
        !S_ISREG(st.st_mode) || st.st_size == 0) {
        PyErr_Clear();
        return false;
    }
    // The Python file object may have read ahead; its tell() is the logical position.
    off_t offset = -1;
    if (PyObject* pos = PyObject_CallMethodNoArgs(fw->filelike, interned().tell)) {
        offset = static_cast<off_t>(PyLong_AsLongLong(pos));
        Py_DECREF(pos);
    }
    if (offset < 0 || PyErr_Occurred()) {
        PyErr_Clear();
        offset = ::lseek(static_cast<int>(fd), 0, SEEK_CUR);
        if (offset < 0) {
            return false;
        }
    }
    const std::uint64_t count =
        st.st_size > offset ? static_cast<std::uint64_t>(st.st_size - offset) : 0;
    ex.send_file(static_cast<int>(fd), offset, count, true, gil);
    return true;
}

void send_list(server::Exchange& ex, StartResponseObject* sr, PyObject* seq, GilRelease& gil) {
    thread_local std::vector<std::string_view> parts;
    parts.clear();
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject** items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; ++i) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %s",
                         Py_TYPE(items[i])->tp_name);
            fail(ex, gil, "invalid response from the WSGI application");
            return;
        }
        parts.emplace_back(PyBytes_AS_STRING(items[i]),
                           static_cast<std::size_t>(PyBytes_GET_SIZE(items[i])));
    }
    if (sr->status == nullptr) {
        if (!ex.response_started()) {
            fail_message(ex, gil, "the application returned without calling start_response()");
        }
        return;
    }
    // Status line, headers and every part in one gather write. A list can be changed by
    // another thread while the GIL is dropped: hold the parts themselves, not the list.
    const bool mutable_seq = PyList_Check(seq);
    if (mutable_seq) {
        for (Py_ssize_t i = 0; i < n; ++i) {
            Py_INCREF(items[i]);
        }
    }
    thread_local std::vector<PyObject*> held;
    held.assign(items, items + (mutable_seq ? n : 0));
    ex.send(parts, true, gil);
    for (PyObject* o : held) {
        Py_DECREF(o);
    }
    held.clear();
}

void send_iterable(server::Exchange& ex, StartResponseObject* sr, PyObject* result,
                   GilRelease& gil) {
    PyObject* it = PyObject_GetIter(result);
    if (it == nullptr) {
        fail(ex, gil, "the WSGI application returned a non-iterable");
        return;
    }
    const bool head_request = ex.head().method == HTTP_HEAD;
    PyObject* item;
    while ((item = PyIter_Next(it)) != nullptr) {
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %s",
                         Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            break;
        }
        const Py_ssize_t size = PyBytes_GET_SIZE(item);
        if (size == 0) {
            Py_DECREF(item); // headers wait for the first non-empty chunk (PEP 3333)
            continue;
        }
        if (sr->status == nullptr) {
            Py_DECREF(item);
            PyErr_SetString(PyExc_RuntimeError,
                            "the application yielded body data before calling start_response()");
            break;
        }
        const std::string_view part(PyBytes_AS_STRING(item), static_cast<std::size_t>(size));
        const bool sent = ex.send({&part, 1}, false, gil);
        Py_DECREF(item);
        if (!sent || head_request) {
            break; // client gone, or HEAD: the body would be dropped anyway
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        fail(ex, gil, "exception while iterating the WSGI response");
        return;
    }
    if (ex.client_gone() || ex.response_finished()) {
        return;
    }
    if (!ex.response_started()) {
        if (sr->status == nullptr) {
            fail_message(ex, gil, "the application returned without calling start_response()");
            return;
        }
    }
    ex.finish(gil);
}

} // namespace

WsgiApplication::WsgiApplication(const Config& config, PyObject* app,
                                 const std::string& server_name, const std::string& server_port)
    : app_(app) {
    Py_INCREF(app_);
    (void)interned();
    if (!init_types()) {
        PyErr_Clear();
        throw std::runtime_error("cannot create the WSGI runtime types");
    }
    defaults_.server_name = PyUnicode_FromString(server_name.c_str());
    defaults_.server_port = PyUnicode_FromString(server_port.c_str());
    defaults_.script_name = PyUnicode_DecodeLatin1(
        config.url_path_prefix.data(), static_cast<Py_ssize_t>(config.url_path_prefix.size()),
        nullptr);
    defaults_.url_prefix = config.url_path_prefix;
    defaults_.multiprocess = config.workers > 1;
    if (config.request_timeout > 0) {
        request_timeout_ = PyErr_NewExceptionWithDoc(
            "appserver.RequestTimeout",
            "Raised in a request's thread when it ran past --request-timeout (the client "
            "already got 504).",
            PyExc_BaseException, nullptr);
        PyErr_Clear();
        // Reachable by name (`from appserver import RequestTimeout`): on the package under
        // the Python front door, on a module of that name under the standalone executable.
        PyObject* module = PyImport_ImportModule("appserver");
        if (module == nullptr) {
            PyErr_Clear();
            module = PyImport_AddModule("appserver"); // borrowed
            Py_XINCREF(module);
        }
        if (module != nullptr && request_timeout_ != nullptr) {
            PyObject_SetAttrString(module, "RequestTimeout", request_timeout_);
        }
        Py_XDECREF(module);
        PyErr_Clear();
    }
}

WsgiApplication::~WsgiApplication() {
    // Process teardown happens with _exit; these references are left to it.
}

void WsgiApplication::thread_started() {
    thread_gil.gil_state = PyGILState_Ensure();
    thread_gil.state = PyEval_SaveThread();
}

void WsgiApplication::thread_stopping() {
    PyEval_RestoreThread(thread_gil.state);
    PyGILState_Release(thread_gil.gil_state);
}

void WsgiApplication::enter() {
    gil_waiters_.fetch_add(1, std::memory_order_relaxed);
    PyEval_RestoreThread(thread_gil.state);
    gil_waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void WsgiApplication::leave() {
    thread_gil.state = PyEval_SaveThread();
}

net::BlockingScope& WsgiApplication::blocking_scope() {
    static thread_local GilRelease release;
    return release;
}

// --request-timeout. The exception is a BaseException (as KeyboardInterrupt is), so the
// app's `except Exception:` blocks do not swallow it; CPython raises it in the thread at
// its next bytecode (a thread stuck in C code stays stuck, and is written off later).
void WsgiApplication::interrupt(std::uint64_t thread, const std::string& what,
                                const std::function<bool()>& still_running) {
    const PyGILState_STATE gil = PyGILState_Ensure();
    // The thread changes requests only while it holds the GIL, which this thread holds now.
    if (!still_running()) {
        spdlog::info("request {} finished right after its timeout; nothing to interrupt", what);
        PyGILState_Release(gil);
        return;
    }
    std::string stack;
    PyObject* sys = PyImport_ImportModule("sys");
    PyObject* frames = sys != nullptr ? PyObject_CallMethod(sys, "_current_frames", nullptr)
                                      : nullptr; // {thread ident: frame}
    Py_XDECREF(sys);
    PyObject* ident = PyLong_FromUnsignedLongLong(thread);
    PyObject* frame = frames != nullptr && ident != nullptr ? PyDict_GetItem(frames, ident)
                                                           : nullptr; // borrowed
    PyObject* traceback = frame != nullptr ? PyImport_ImportModule("traceback") : nullptr;
    PyObject* lines =
        traceback != nullptr ? PyObject_CallMethod(traceback, "format_stack", "O", frame) : nullptr;
    if (lines != nullptr && PyList_Check(lines)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); ++i) {
            if (const char* line = PyUnicode_AsUTF8(PyList_GET_ITEM(lines, i)); line != nullptr) {
                stack += line;
            }
        }
    }
    Py_XDECREF(lines);
    Py_XDECREF(traceback);
    Py_XDECREF(frames);
    PyErr_Clear();
    spdlog::error("stuck request {}: the application is here:\n{}", what,
                  stack.empty() ? "(no Python frame: the thread is in C code)\n" : stack);
    if (request_timeout_ != nullptr && ident != nullptr) {
        PyThreadState_SetAsyncExc(PyLong_AsUnsignedLong(ident), request_timeout_);
    }
    Py_XDECREF(ident);
    PyErr_Clear();
    PyGILState_Release(gil);
}

void WsgiApplication::clear_interrupt() {
    PyThreadState_SetAsyncExc(PyThread_get_thread_ident(), nullptr);
    PyErr_Clear();
}

void WsgiApplication::handle(server::Exchange& exchange) noexcept {
    run(exchange);
}

void WsgiApplication::run(server::Exchange& ex) {
    GilRelease gil;
    PyObject* env = nullptr;
    if (acquire_objects(ex)) {
        env = build_environ(ex, reinterpret_cast<PyObject*>(thread_objects.input), defaults_);
    }
    if (env == nullptr) {
        fail(ex, gil, "cannot build the WSGI environ");
    } else {
        StartResponseObject* sr = thread_objects.state;
        PyObject* args[3] = {nullptr, env, thread_objects.start_response};
        PyObject* result = PyObject_Vectorcall(
            app_, args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
        begin_server_send(sr);
        if (result == nullptr) {
            fail(ex, gil, "exception in the WSGI application");
        } else {
            if (Py_IS_TYPE(result, file_wrapper_type()) && try_sendfile(ex, sr, result, gil)) {
                // sent with sendfile(2)
            } else if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
                send_list(ex, sr, result, gil);
            } else {
                send_iterable(ex, sr, result, gil);
            }
            close_result(result); // always, also after errors and disconnects (PEP 3333)
            Py_DECREF(result);
        }
        // sending_result stays set until release_objects() has detached the exchange.
    }
    if (ex.client_gone()) {
        spdlog::debug("client {} disconnected before the response was complete",
                      ex.remote_addr());
    }
    // The request is over: objects the app kept must not reach a reused exchange.
    Py_XDECREF(env);
    flush_errors_stream();
    release_objects();
}

} // namespace appserver::wsgi
