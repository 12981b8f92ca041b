// wsgi.file_wrapper: iterates a file-like object in blocks; the handler recognises it
// and uses sendfile(2) when the object has a real file descriptor.
#include "wsgi/types.hpp"

namespace appserver::wsgi {
namespace {

PyTypeObject* wrapper_type = nullptr;

PyObject* wrapper_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"filelike", "blksize", nullptr};
    PyObject* filelike = nullptr;
    Py_ssize_t block_size = 8192;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n:file_wrapper",
                                     const_cast<char**>(keywords), &filelike, &block_size)) {
        return nullptr;
    }
    if (block_size <= 0) {
        PyErr_SetString(PyExc_ValueError, "blksize must be positive");
        return nullptr;
    }
    auto* self = reinterpret_cast<FileWrapperObject*>(type->tp_alloc(type, 0));
    if (self == nullptr) {
        return nullptr;
    }
    Py_INCREF(filelike);
    self->filelike = filelike;
    self->block_size = block_size;
    return reinterpret_cast<PyObject*>(self);
}

PyObject* wrapper_iternext(PyObject* o) {
    auto* self = reinterpret_cast<FileWrapperObject*>(o);
    PyObject* data = PyObject_CallMethod(self->filelike, "read", "n", self->block_size);
    if (data == nullptr) {
        return nullptr;
    }
    const Py_ssize_t n = PyObject_Length(data);
    if (n < 0) {
        // No length (read() gave an int, None...): say so, rather than return the object
        // with the TypeError still set (a SystemError, or a misleading message, later).
        PyErr_Format(PyExc_TypeError,
                     "wsgi.file_wrapper: the file's read() returned %s, which has no length "
                     "(bytes expected)",
                     Py_TYPE(data)->tp_name);
        Py_DECREF(data);
        return nullptr;
    }
    if (n == 0) {
        Py_DECREF(data);
        return nullptr; // StopIteration
    }
    return data;
}

PyObject* wrapper_close(PyObject* o, PyObject*) {
    auto* self = reinterpret_cast<FileWrapperObject*>(o);
    if (PyObject_HasAttrString(self->filelike, "close")) {
        PyObject* r = PyObject_CallMethod(self->filelike, "close", nullptr);
        if (r == nullptr) {
            return nullptr;
        }
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

int wrapper_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(reinterpret_cast<FileWrapperObject*>(o)->filelike);
    Py_VISIT(Py_TYPE(o));
    return 0;
}

int wrapper_clear(PyObject* o) {
    Py_CLEAR(reinterpret_cast<FileWrapperObject*>(o)->filelike);
    return 0;
}

void wrapper_dealloc(PyObject* o) {
    PyTypeObject* tp = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    wrapper_clear(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyMethodDef wrapper_methods[] = {
    {"close", guarded<wrapper_close>, METH_NOARGS, "Close the wrapped file."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot wrapper_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(guarded<wrapper_new>)},
    {Py_tp_dealloc, reinterpret_cast<void*>(wrapper_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(wrapper_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(wrapper_clear)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(guarded<wrapper_iternext>)},
    {Py_tp_methods, wrapper_methods},
    {Py_tp_doc, const_cast<char*>("wsgi.file_wrapper(filelike, blksize=8192)")},
    {0, nullptr},
};

PyType_Spec wrapper_spec = {"appserver.FileWrapper", sizeof(FileWrapperObject), 0,
                            Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, wrapper_slots};

} // namespace

bool init_file_wrapper_type() {
    wrapper_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&wrapper_spec));
    return wrapper_type != nullptr;
}

PyTypeObject* file_wrapper_type() {
    return wrapper_type;
}

} // namespace appserver::wsgi
