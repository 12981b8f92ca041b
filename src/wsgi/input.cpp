// wsgi.input: a read-only stream over the request body that reads the socket only when
// the app asks (so 100-continue goes out lazily and a large upload never sits in memory),
// never past the end of the body, for Content-Length and chunked framing alike.
#include "wsgi/gil.hpp"
#include "wsgi/types.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace appserver::wsgi {
namespace {

PyTypeObject* input_type = nullptr;

constexpr Py_ssize_t initial_capacity = 64 * 1024;

server::Exchange* live_exchange(InputObject* self) {
    if (self->exchange == nullptr) {
        PyErr_SetString(PyExc_ValueError, "wsgi.input used after the request ended");
    }
    return self->exchange;
}

// One read at a time: a read drops the GIL while it waits for the client, and a second
// Python thread reading meanwhile would use the body parser concurrently. Checked and
// set under the GIL.
class ReadSection {
public:
    explicit ReadSection(InputObject* self) : self_(self) {
        if (self_->reading != 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "wsgi.input is being read by another thread; reads must not overlap");
            self_ = nullptr;
            return;
        }
        self_->reading = 1;
    }
    ~ReadSection() {
        if (self_ != nullptr) {
            self_->reading = 0;
        }
    }
    ReadSection(const ReadSection&) = delete;
    ReadSection& operator=(const ReadSection&) = delete;
    bool entered() const { return self_ != nullptr; }

private:
    InputObject* self_;
};

// Ends a read: an exception if the body could not be read, else what was gathered.
bool body_failed(server::Exchange& ex) {
    if (!ex.body_error().empty()) {
        PyErr_SetString(PyExc_OSError, ex.body_error().c_str());
        return true;
    }
    return false;
}

// A read the app left running after it returned must end: the request is over.
bool abandoned(InputObject* in) {
    if (in->abandoned != 0) {
        PyErr_SetString(PyExc_OSError, "the request ended while wsgi.input was being read");
        return true;
    }
    return false;
}

// Reads up to limit bytes (limit < 0: no limit), stopping after a '\n' when line.
PyObject* read_impl(InputObject* in, server::Exchange& ex, Py_ssize_t limit, bool line) {
    if (abandoned(in)) {
        return nullptr;
    }
    GilRelease gil;
    if (limit == 0) {
        return PyBytes_FromStringAndSize("", 0);
    }
    const auto want = limit < 0 ? std::numeric_limits<std::size_t>::max()
                                : static_cast<std::size_t>(limit);
    if (!ex.fill_body(gil, &in->abandoned)) {
        return body_failed(ex) ? nullptr : PyBytes_FromStringAndSize("", 0);
    }
    // Common case: what is already staged answers the whole call, one copy.
    std::string_view st = ex.staged_body();
    std::size_t take = std::min(st.size(), want);
    bool done = take == want;
    if (line) {
        const auto nl = st.find('\n');
        if (nl != std::string_view::npos && nl < take) {
            take = nl + 1;
            done = true;
        }
    }
    if (done) {
        PyObject* out = PyBytes_FromStringAndSize(st.data(), static_cast<Py_ssize_t>(take));
        ex.consume_body(take);
        return out;
    }

    // Gather across socket reads into one bytes object that grows as needed (starting at
    // most at 1 MiB, whatever Content-Length claims, until the bytes actually arrive).
    std::size_t hint = initial_capacity;
    const auto& head = ex.head();
    if (head.has_content_length) {
        hint = std::max<std::size_t>(hint, std::min<std::uint64_t>(head.content_length, 1u << 20));
    }
    Py_ssize_t cap = static_cast<Py_ssize_t>(std::min(want, hint));
    PyObject* out = PyBytes_FromStringAndSize(nullptr, cap);
    if (out == nullptr) {
        return nullptr;
    }
    Py_ssize_t size = 0;
    for (;;) {
        st = ex.staged_body();
        take = std::min(st.size(), want - static_cast<std::size_t>(size));
        done = false;
        if (line) {
            const auto nl = st.find('\n');
            if (nl != std::string_view::npos && nl < take) {
                take = nl + 1;
                done = true;
            }
        }
        if (size + static_cast<Py_ssize_t>(take) > cap) {
            const auto grown = std::max<std::size_t>(static_cast<std::size_t>(cap) * 2,
                                                     static_cast<std::size_t>(size) + take);
            cap = static_cast<Py_ssize_t>(std::min(want, grown));
            if (_PyBytes_Resize(&out, cap) < 0) {
                return nullptr;
            }
        }
        std::memcpy(PyBytes_AS_STRING(out) + size, st.data(), take);
        size += static_cast<Py_ssize_t>(take);
        ex.consume_body(take);
        if (done || static_cast<std::size_t>(size) >= want) {
            break;
        }
        if (!ex.fill_body(gil, &in->abandoned)) {
            if (body_failed(ex)) {
                Py_DECREF(out);
                return nullptr;
            }
            break;
        }
        if (abandoned(in)) {
            Py_DECREF(out);
            return nullptr;
        }
    }
    if (size != cap && _PyBytes_Resize(&out, size) < 0) {
        return nullptr;
    }
    return out;
}

bool size_arg(PyObject* const* args, Py_ssize_t nargs, const char* fname, Py_ssize_t& size) {
    size = -1;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument (%zd given)", fname, nargs);
        return false;
    }
    if (nargs == 1 && args[0] != Py_None) {
        size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
        if (size == -1 && PyErr_Occurred()) {
            return false;
        }
    }
    return true;
}

// read(size) and readline(size).
PyObject* sized_read(PyObject* self, PyObject* const* args, Py_ssize_t nargs, const char* name,
                     bool line) {
    Py_ssize_t size;
    if (!size_arg(args, nargs, name, size)) {
        return nullptr;
    }
    auto* in = reinterpret_cast<InputObject*>(self);
    auto* ex = live_exchange(in);
    if (ex == nullptr) {
        return nullptr;
    }
    ReadSection section(in);
    return section.entered() ? read_impl(in, *ex, size, line) : nullptr;
}

PyObject* input_read(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return sized_read(self, args, nargs, "read", false);
}

PyObject* input_readline(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return sized_read(self, args, nargs, "readline", true);
}

PyObject* input_readlines(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    Py_ssize_t hint;
    if (!size_arg(args, nargs, "readlines", hint)) {
        return nullptr;
    }
    auto* in = reinterpret_cast<InputObject*>(self);
    auto* ex = live_exchange(in);
    if (ex == nullptr) {
        return nullptr;
    }
    ReadSection section(in);
    if (!section.entered()) {
        return nullptr;
    }
    PyObject* lines = PyList_New(0);
    if (lines == nullptr) {
        return nullptr;
    }
    Py_ssize_t total = 0;
    for (;;) {
        PyObject* line = read_impl(in, *ex, -1, true);
        if (line == nullptr) {
            Py_DECREF(lines);
            return nullptr;
        }
        const Py_ssize_t n = PyBytes_GET_SIZE(line);
        if (n == 0) {
            Py_DECREF(line);
            break;
        }
        const int rc = PyList_Append(lines, line);
        Py_DECREF(line);
        if (rc < 0) {
            Py_DECREF(lines);
            return nullptr;
        }
        total += n;
        if (hint > 0 && total >= hint) {
            break;
        }
    }
    return lines;
}

PyObject* input_iternext(PyObject* self) {
    auto* in = reinterpret_cast<InputObject*>(self);
    auto* ex = live_exchange(in);
    if (ex == nullptr) {
        return nullptr;
    }
    ReadSection section(in);
    if (!section.entered()) {
        return nullptr;
    }
    PyObject* line = read_impl(in, *ex, -1, true);
    if (line != nullptr && PyBytes_GET_SIZE(line) == 0) {
        Py_DECREF(line);
        return nullptr; // StopIteration
    }
    return line;
}

PyObject* input_close(PyObject*, PyObject*) {
    Py_RETURN_NONE; // the server owns the body's lifetime
}

void input_dealloc(PyObject* self) {
    PyTypeObject* tp = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(tp);
}

PyMethodDef input_methods[] = {
    {"read", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<input_read>)),
     METH_FASTCALL, "read(size=-1) -> bytes: up to size bytes of the body; b'' at the end."},
    {"readline", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<input_readline>)),
     METH_FASTCALL, "readline(size=-1) -> bytes: one line, including its b'\\n'."},
    {"readlines", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<input_readlines>)),
     METH_FASTCALL, "readlines(hint=-1) -> list of lines."},
    {"close", input_close, METH_NOARGS, "No-op: the server closes the body."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot input_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(input_dealloc)},
    {Py_tp_methods, input_methods},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(guarded<input_iternext>)},
    {Py_tp_doc, const_cast<char*>("The request body (wsgi.input).")},
    {0, nullptr},
};

PyType_Spec input_spec = {"appserver.Input", sizeof(InputObject), 0, Py_TPFLAGS_DEFAULT,
                          input_slots};

} // namespace

bool init_input_type() {
    input_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&input_spec));
    return input_type != nullptr;
}

InputObject* new_input(server::Exchange* exchange) {
    auto* self = PyObject_New(InputObject, input_type);
    if (self != nullptr) {
        self->exchange = exchange;
        self->reading = 0;
        self->abandoned = 0;
    }
    return self;
}

void wait_for_input_readers(InputObject* input) {
    // Only an app that reads wsgi.input from a thread of its own after returning gets
    // here. The read stops at its next step (abandoned), so this waits at most one
    // socket read: --read-timeout.
    if (input->reading == 0) {
        return;
    }
    input->abandoned = 1;
    wait_until_cleared(input->reading);
    input->abandoned = 0;
}

} // namespace appserver::wsgi
