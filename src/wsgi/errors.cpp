// wsgi.errors (a line-buffered text stream into the server log) and the logging of
// Python exceptions with their tracebacks.
#include "wsgi/types.hpp"

#include "log/log.hpp"

#include <spdlog/spdlog.h>

#include <exception>
#include <new>
#include <string>

namespace appserver::wsgi {
namespace {

struct ErrorsObject {
    PyObject_HEAD
};

// A line not yet ended by '\n', per thread: requests on one blocking thread come one at a
// time, so lines of concurrent requests are never spliced together, and the rest of a
// request's last line is logged when the request ends (flush_errors_stream()).
thread_local std::string pending_line;

PyObject* the_stream = nullptr;

void emit_lines(std::string& pending, bool flush_all) {
    std::size_t start = 0;
    for (;;) {
        const auto nl = pending.find('\n', start);
        if (nl == std::string::npos) {
            break;
        }
        log::app_output().info("{}", std::string_view(pending).substr(start, nl - start));
        start = nl + 1;
    }
    pending.erase(0, start);
    if (flush_all && !pending.empty()) {
        log::app_output().info("{}", pending);
        pending.clear();
    }
}

bool append_text(PyObject* s) {
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "wsgi.errors.write() argument must be str, not %s",
                     Py_TYPE(s)->tp_name);
        return false;
    }
    Py_ssize_t n = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(s, &n);
    if (utf8 == nullptr) {
        return false;
    }
    pending_line.append(utf8, static_cast<std::size_t>(n));
    return true;
}

PyObject* errors_write(PyObject*, PyObject* arg) {
    if (!append_text(arg)) {
        return nullptr;
    }
    emit_lines(pending_line, false);
    return PyLong_FromSsize_t(PyUnicode_GetLength(arg));
}

PyObject* errors_writelines(PyObject*, PyObject* seq) {
    PyObject* it = PyObject_GetIter(seq);
    if (it == nullptr) {
        return nullptr;
    }
    PyObject* item;
    while ((item = PyIter_Next(it)) != nullptr) {
        const bool ok = append_text(item);
        Py_DECREF(item);
        if (!ok) {
            Py_DECREF(it);
            return nullptr;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return nullptr;
    }
    emit_lines(pending_line, false);
    Py_RETURN_NONE;
}

PyObject* errors_flush(PyObject*, PyObject*) {
    emit_lines(pending_line, true);
    Py_RETURN_NONE;
}

PyMethodDef errors_methods[] = {
    {"write", guarded<errors_write>, METH_O, "write(str): log the text (one log line per line)."},
    {"writelines", guarded<errors_writelines>, METH_O, "writelines(iterable of str)."},
    {"flush", guarded<errors_flush>, METH_NOARGS, "Log a pending partial line."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot errors_slots[] = {
    {Py_tp_methods, errors_methods},
    {Py_tp_doc, const_cast<char*>("wsgi.errors: writes go to the server log.")},
    {0, nullptr},
};

PyType_Spec errors_spec = {"appserver.ErrorStream", sizeof(ErrorsObject), 0,
                           Py_TPFLAGS_DEFAULT, errors_slots};

} // namespace

bool init_errors_stream() {
    auto* type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&errors_spec));
    if (type == nullptr) {
        return false;
    }
    auto* self = PyObject_New(ErrorsObject, type);
    if (self == nullptr) {
        return false;
    }
    the_stream = reinterpret_cast<PyObject*>(self);
    return true;
}

PyObject* errors_stream() {
    return the_stream;
}

void flush_errors_stream() {
    if (!pending_line.empty()) {
        emit_lines(pending_line, true);
    }
}

void raise_current_exception() noexcept {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_Format(PyExc_SystemError, "appserver internal error: %s", e.what());
    } catch (...) {
        PyErr_SetString(PyExc_SystemError, "appserver internal error (unknown exception)");
    }
}

void log_exception(const char* context) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (type == nullptr) {
        spdlog::error("{}: unknown error", context);
        return;
    }
    if (tb != nullptr && value != nullptr) {
        PyException_SetTraceback(value, tb);
    }
    std::string text;
    PyObject* mod = PyImport_ImportModule("traceback");
    PyObject* lines = mod != nullptr
                          ? PyObject_CallMethod(mod, "format_exception", "OOO", type,
                                                value ? value : Py_None, tb ? tb : Py_None)
                          : nullptr;
    if (lines != nullptr) {
        PyObject* sep = PyUnicode_FromString("");
        PyObject* joined = sep != nullptr ? PyUnicode_Join(sep, lines) : nullptr;
        Py_XDECREF(sep);
        if (joined != nullptr) {
            const char* s = PyUnicode_AsUTF8(joined);
            if (s != nullptr) {
                text = s;
            }
            Py_DECREF(joined);
        }
        Py_DECREF(lines);
    }
    Py_XDECREF(mod);
    PyErr_Clear();
    while (!text.empty() && text.back() == '\n') {
        text.pop_back();
    }
    spdlog::error("{}:\n{}", context, text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

bool latin1_view(PyObject* str, const char* what, std::string_view& out) {
    if (!PyUnicode_Check(str)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %s", what, Py_TYPE(str)->tp_name);
        return false;
    }
    if (PyUnicode_READY(str) < 0) {
        return false;
    }
    if (PyUnicode_KIND(str) != PyUnicode_1BYTE_KIND) {
        PyErr_Format(PyExc_ValueError, "%s must be latin-1 text: %R", what, str);
        return false;
    }
    out = std::string_view(reinterpret_cast<const char*>(PyUnicode_1BYTE_DATA(str)),
                           static_cast<std::size_t>(PyUnicode_GET_LENGTH(str)));
    return true;
}

} // namespace appserver::wsgi
