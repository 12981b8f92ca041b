// start_response and write(): PEP 3333's response start, with its exc_info rules, as
// builtin functions bound to a small per-request state object (fast vectorcall path).
#include "wsgi/gil.hpp"
#include "wsgi/types.hpp"

#include "http/response.hpp"

#include <spdlog/spdlog.h>

namespace appserver::wsgi {

bool init_input_type();
bool init_errors_stream();
bool init_file_wrapper_type();

namespace {

PyTypeObject* state_type = nullptr;

void state_dealloc(PyObject* o) {
    auto* self = reinterpret_cast<StartResponseObject*>(o);
    PyTypeObject* tp = Py_TYPE(o);
    Py_CLEAR(self->status);
    Py_CLEAR(self->headers);
    PyObject_Free(o);
    Py_DECREF(tp);
}

PyType_Slot state_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(state_dealloc)},
    {Py_tp_doc, const_cast<char*>("Per-request response state.")},
    {0, nullptr},
};

PyType_Spec state_spec = {"appserver.ResponseState", sizeof(StartResponseObject), 0,
                          Py_TPFLAGS_DEFAULT, state_slots};

PyObject* write_impl(PyObject* state, PyObject* data);
PyObject* start_response_impl(PyObject* state, PyObject* const* args, Py_ssize_t nargs,
                              PyObject* kwnames);

PyMethodDef write_def = {"write", guarded<write_impl>, METH_O,
                         "write(data: bytes): send data now (PEP 3333 write callable)."};

PyMethodDef start_response_def = {
    "start_response",
    reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<start_response_impl>)),
    METH_FASTCALL | METH_KEYWORDS,
    "start_response(status, response_headers, exc_info=None) -> write"};

// Turns the status and headers just given to start_response into the exchange's response
// head. False with a Python exception set when they are not valid HTTP.
bool apply_head(StartResponseObject* sr) {
    server::Exchange& ex = *sr->exchange;
    std::string_view status;
    if (!latin1_view(sr->status, "status", status)) {
        return false;
    }
    int code = 0;
    if (!http::parse_status(status, code)) {
        PyErr_Format(PyExc_ValueError, "invalid status %R (want e.g. '200 OK')", sr->status);
        return false;
    }
    if (code < 200) {
        // RFC 9110 15.2: a 1xx is interim; the request would be left without an answer
        // (and 1.0 clients must never see one). WSGI has no way to send one before the
        // final response, so this is an app error (500), not something to pass on.
        PyErr_Format(PyExc_ValueError,
                     "status %R is informational (1xx); a WSGI response needs a final "
                     "status (200-599)",
                     sr->status);
        return false;
    }
    ex.begin_response(code, status);
    PyObject* seq = sr->headers;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject** items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* item = items[i];
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_Format(PyExc_TypeError, "response header must be a (name, value) tuple: %R",
                         item);
            return false;
        }
        std::string_view name, value;
        if (!latin1_view(PyTuple_GET_ITEM(item, 0), "header name", name) ||
            !latin1_view(PyTuple_GET_ITEM(item, 1), "header value", value)) {
            return false;
        }
        if (!ex.add_header(name, value)) {
            PyErr_Format(PyExc_ValueError,
                         "invalid response header %R (control characters or a bad name)",
                         item);
            return false;
        }
    }
    return true;
}

PyObject* start_response_impl(PyObject* state, PyObject* const* args, Py_ssize_t nargs,
                              PyObject* kwnames) {
    auto* self = reinterpret_cast<StartResponseObject*>(state);
    PyObject* status = nullptr;
    PyObject* headers = nullptr;
    PyObject* exc_info = Py_None;
    const Py_ssize_t nkw = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "start_response() takes at most 3 arguments");
        return nullptr;
    }
    if (nargs > 0) status = args[0];
    if (nargs > 1) headers = args[1];
    if (nargs > 2) exc_info = args[2];
    for (Py_ssize_t i = 0; i < nkw; ++i) {
        PyObject* name = PyTuple_GET_ITEM(kwnames, i);
        PyObject* value = args[nargs + i];
        if (PyUnicode_CompareWithASCIIString(name, "status") == 0 && status == nullptr) {
            status = value;
        } else if (PyUnicode_CompareWithASCIIString(name, "response_headers") == 0 &&
                   headers == nullptr) {
            headers = value;
        } else if (PyUnicode_CompareWithASCIIString(name, "exc_info") == 0 && nargs < 3) {
            exc_info = value;
        } else {
            PyErr_Format(PyExc_TypeError, "start_response() got an unexpected argument %R",
                         name);
            return nullptr;
        }
    }
    if (status == nullptr || headers == nullptr) {
        PyErr_SetString(PyExc_TypeError,
                        "start_response() requires status and response_headers");
        return nullptr;
    }
    if (self->exchange == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "start_response() called after the request ended");
        return nullptr;
    }
    if (exc_info != Py_None) {
        // Whatever happens next, exc_info must be what sys.exc_info() gives inside an
        // except block; anything else is an application bug, reported as one.
        PyObject *t = nullptr, *v = nullptr, *tb = nullptr;
        if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
            PyErr_SetString(PyExc_TypeError, "exc_info must be a 3-tuple");
            return nullptr;
        }
        t = PyTuple_GET_ITEM(exc_info, 0);
        v = PyTuple_GET_ITEM(exc_info, 1);
        tb = PyTuple_GET_ITEM(exc_info, 2);
        if (!PyExceptionClass_Check(t) ||
            (v != Py_None && !PyObject_TypeCheck(v, reinterpret_cast<PyTypeObject*>(t))) ||
            (tb != Py_None && !PyTraceBack_Check(tb))) {
            PyErr_SetString(PyExc_TypeError,
                            "exc_info must be (type, value, traceback) of an exception, "
                            "as sys.exc_info() returns inside an except block");
            return nullptr;
        }
        if (self->exchange->response_started()) {
            // PEP 3333: too late to change the response; re-raise the app's error.
            Py_INCREF(t);
            Py_INCREF(v);
            if (tb == Py_None) {
                tb = nullptr;
            } else {
                Py_INCREF(tb);
            }
            PyErr_Restore(t, v, tb);
            return nullptr;
        }
    } else if (self->status != nullptr) {
        PyErr_SetString(PyExc_AssertionError,
                        "start_response() called a second time without exc_info");
        return nullptr;
    }
    if (!PyUnicode_Check(status)) {
        PyErr_Format(PyExc_TypeError, "status must be str, not %s", Py_TYPE(status)->tp_name);
        return nullptr;
    }
    if (!PyList_Check(headers) && !PyTuple_Check(headers)) {
        PyErr_Format(PyExc_TypeError, "response_headers must be a list, not %s",
                     Py_TYPE(headers)->tp_name);
        return nullptr;
    }
    // PEP 3333: check the headers now, so a bad one raises here, inside the app, where
    // its traceback points at the culprit and the app can still answer otherwise. The
    // head is built once, here (later changes to the list are not seen, as in gunicorn
    // and uWSGI). On failure the call counts as not made: a head given earlier (this
    // call replacing it with exc_info) still stands.
    PyObject* previous_status = self->status;   // owned; nullptr on a first call
    PyObject* previous_headers = self->headers; // owned
    Py_INCREF(status);
    Py_INCREF(headers);
    self->status = status;
    self->headers = headers;
    bool applied = false;
    try {
        applied = apply_head(self);
    } catch (...) { // undone below like any other failure, not left half-applied
        raise_current_exception();
    }
    if (!applied) {
        Py_DECREF(self->status);
        Py_DECREF(self->headers);
        self->status = previous_status;
        self->headers = previous_headers;
        if (previous_status != nullptr) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            (void)apply_head(self); // it was valid when given
            PyErr_Clear();
            PyErr_Restore(type, value, tb);
        }
        return nullptr;
    }
    Py_XDECREF(previous_status);
    Py_XDECREF(previous_headers);
    return PyCFunction_NewEx(&write_def, state, nullptr);
}

PyObject* write_impl(PyObject* state, PyObject* data) {
    auto* self = reinterpret_cast<StartResponseObject*>(state);
    server::Exchange* ex = self->exchange;
    if (ex == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "write() called after the request ended");
        return nullptr;
    }
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "write() argument must be bytes, not %s",
                     Py_TYPE(data)->tp_name);
        return nullptr;
    }
    if (self->status == nullptr) {
        PyErr_SetString(PyExc_AssertionError, "write() called before start_response()");
        return nullptr;
    }
    if (self->writing != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "write() is already in progress on another thread; writes must not "
                        "overlap");
        return nullptr;
    }
    if (self->sending_result != 0 && PyThread_get_thread_ident() != self->owner) {
        PyErr_SetString(PyExc_RuntimeError,
                        "write() from another thread after the application returned");
        return nullptr;
    }
    const std::string_view part(PyBytes_AS_STRING(data),
                                static_cast<std::size_t>(PyBytes_GET_SIZE(data)));
    GilRelease gil;
    struct Writing { // cleared however send() ends
        int& flag;
        explicit Writing(int& f) : flag(f) { flag = 1; }
        ~Writing() { flag = 0; }
    };
    bool sent = false;
    {
        Writing writing(self->writing);
        sent = ex->send({&part, 1}, false, gil);
    }
    if (!sent) {
        if (ex->body_overflow()) {
            PyErr_SetString(PyExc_ValueError,
                            "write() went past the response's Content-Length; the response "
                            "ended at that length");
        } else {
            PyErr_SetString(PyExc_OSError, "client disconnected");
        }
        return nullptr;
    }
    Py_RETURN_NONE;
}

} // namespace

StartResponseObject* new_start_response(server::Exchange* exchange) {
    auto* self = PyObject_New(StartResponseObject, state_type);
    if (self != nullptr) {
        self->exchange = exchange;
        self->status = nullptr;
        self->headers = nullptr;
        self->writing = 0;
        self->sending_result = 0;
        self->owner = PyThread_get_thread_ident();
    }
    return self;
}

void begin_server_send(StartResponseObject* state) {
    // Only an app that calls write() from a thread of its own, still writing when the app
    // returned, gets into this loop; that write ends once the client takes its bytes or
    // stops reading for --write-timeout.
    wait_until_cleared(state->writing);
    state->sending_result = 1;
}

void end_server_send(StartResponseObject* state) {
    state->sending_result = 0;
}

PyObject* make_start_response_callable(StartResponseObject* state) {
    return PyCFunction_NewEx(&start_response_def, reinterpret_cast<PyObject*>(state), nullptr);
}

bool init_types() {
    state_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&state_spec));
    return state_type != nullptr && init_input_type() && init_errors_stream() &&
           init_file_wrapper_type();
}

} // namespace appserver::wsgi
