// The small C-level Python types a WSGI request touches on its hot path: wsgi.input,
// start_response (+ write), wsgi.errors and wsgi.file_wrapper. Built on the CPython API
// (vectorcall, no pybind11 dispatch) because each is called at least once per request.
#pragma once

#include "server/exchange.hpp"

#include <Python.h>

#include <string>

namespace appserver::wsgi {

// Creates the types (GIL held, once per process, before forking workers).
bool init_types();

// ---- wsgi.input ----------------------------------------------------------------------
struct InputObject {
    PyObject_HEAD
    server::Exchange* exchange; // nullptr once the request is over
    int reading;                // a read is in progress (it may have dropped the GIL)
    int abandoned;              // the request ended under that read: stop it
};
// At the end of a request: waits (GIL released) for a read an app thread still has in
// progress, so the exchange is not used by two threads at once.
void wait_for_input_readers(InputObject* input);
InputObject* new_input(server::Exchange* exchange);

// ---- start_response and write() -----------------------------------------------------
struct StartResponseObject {
    PyObject_HEAD
    server::Exchange* exchange; // nullptr once the request is over
    PyObject* status;           // str, or nullptr until start_response is called
    PyObject* headers;          // list of (str, str)
    // write() from app threads (all under the GIL): a write() in progress (it may wait
    // for the client with the GIL dropped), and the server sending the app's result, on
    // the thread that runs the request, whose id is owner.
    int writing;
    int sending_result;
    unsigned long owner;
};
StartResponseObject* new_start_response(server::Exchange* exchange);
// On the request's thread once the app has returned: waits (GIL released) for a write()
// another app thread still has in progress, then refuses further writes from other
// threads until end_server_send() (so two threads never write to one response at once).
void begin_server_send(StartResponseObject* state);
void end_server_send(StartResponseObject* state);
// The start_response callable handed to the app, bound to its state object.
PyObject* make_start_response_callable(StartResponseObject* state);

// ---- wsgi.errors ----------------------------------------------------------------------
// One shared, line-buffered stream into the server log.
PyObject* errors_stream();
// Logs what this thread wrote to wsgi.errors without a final newline (end of a request).
void flush_errors_stream();

// ---- wsgi.file_wrapper ----------------------------------------------------------------
struct FileWrapperObject {
    PyObject_HEAD
    PyObject* filelike;
    Py_ssize_t block_size;
};
PyTypeObject* file_wrapper_type();

// ---- the C++/CPython boundary ----------------------------------------------------------
// Only inside a catch handler (GIL held): the C++ exception being handled as the Python
// exception that fits (MemoryError for bad_alloc, else SystemError with its what()).
void raise_current_exception() noexcept;

// What CPython calls (methods, tp_new, tp_iternext) is Guard<&fn>::call: a C++ exception
// must not unwind through the interpreter's C frames (undefined behaviour: at best its
// state is left half-updated); it becomes a Python exception, and fn's caller sees NULL.
// Deallocators, traverse and clear call only the C API, which cannot throw.
template <auto Fn>
struct Guard;
template <typename... Args, PyObject* (*Fn)(Args...)>
struct Guard<Fn> {
    static PyObject* call(Args... args) noexcept {
        try {
            return Fn(args...);
        } catch (...) {
            raise_current_exception();
            return nullptr;
        }
    }
};
template <auto Fn>
inline constexpr auto guarded = &Guard<Fn>::call;

// Logs the pending Python exception with its traceback, then clears it.
void log_exception(const char* context);

// A str's latin-1 bytes without copying; false (TypeError set) when it is not a str or
// holds code points above U+00FF.
bool latin1_view(PyObject* str, const char* what, std::string_view& out);

} // namespace appserver::wsgi
