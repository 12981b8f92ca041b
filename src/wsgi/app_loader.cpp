// Loading the WSGI callable (see app_loader.hpp). Setup code, run once: pybind11 keeps
// it short.
#include "wsgi/app_loader.hpp"

#include "server/reexec.hpp"

#include <pybind11/pybind11.h>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

namespace py = pybind11;

namespace appserver::wsgi {
namespace {

// Prints the pending Python error's traceback and returns "". Except for SystemExit (which
// PyErr_Print would turn into a silent exit of the whole server) and KeyboardInterrupt:
// those are described in the returned line instead, without a traceback.
std::string print_error(const std::string& what) {
    if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        std::string code = "None";
        if (value != nullptr) {
            if (PyObject* c = PyObject_GetAttrString(value, "code"); c != nullptr) {
                if (PyObject* r = PyObject_Repr(c); r != nullptr) {
                    if (const char* text = PyUnicode_AsUTF8(r); text != nullptr) {
                        code = text;
                    }
                    Py_DECREF(r);
                }
                Py_DECREF(c);
            }
        }
        PyErr_Clear();
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return what + " called sys.exit(" + code + ")";
    }
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        PyErr_Clear();
        return what + " was interrupted (KeyboardInterrupt)";
    }
    PyErr_Print();
    return {};
}

// "Python 3.11.7 (sys.executable ..., sys.prefix ...) searched sys.path = [...]": what an
// ImportError needs to be understood, when the app was looked for in the wrong environment
// (no virtualenv, another one, another Python than the one appserver embeds).
std::string describe_interpreter() {
    std::string out = "Python ";
    const std::string_view version = Py_GetVersion(); // "3.11.7 (main, ...) [GCC ...]"
    out += version.substr(0, version.find(' '));
    try {
        py::module_ sys = py::module_::import("sys");
        out += " (sys.executable " + py::str(sys.attr("executable")).cast<std::string>() +
               ", sys.prefix " + py::str(sys.attr("prefix")).cast<std::string>() +
               ") searched sys.path = " + py::repr(sys.attr("path")).cast<std::string>();
    } catch (py::error_already_set&) {
        PyErr_Clear();
    }
    return out;
}

} // namespace

std::string prepare_process(const Config& config) {
    for (const auto& [key, value] : config.env) {
        if (::setenv(key.c_str(), value.c_str(), 1) != 0) {
            return "--env: cannot set " + key + ": " + std::strerror(errno);
        }
        // os.environ was copied at interpreter start; keep it in step.
        try {
            py::module_::import("os").attr("environ")[py::str(key)] = py::str(value);
        } catch (py::error_already_set& e) {
            return "--env: cannot set " + key + ": " + e.what();
        }
    }
    // sys.path[0] keeps the directory as it was named, symbolic links included: with a
    // deploy that switches /srv/app/current to a new release, a reload (new workers, or
    // the master started again) imports from the release the link points to by then.
    std::string base = server::logical_current_directory();
    if (base.empty()) {
        return std::string("cannot read the current directory: ") + std::strerror(errno);
    }
    std::string dir = config.working_dir;
    if (!dir.empty()) {
        if (::chdir(dir.c_str()) != 0) {
            return "--working-dir: cannot change to " + dir + ": " + std::strerror(errno);
        }
        base = (std::filesystem::path(base) / dir).lexically_normal().string();
        if (base.size() > 1 && base.back() == '/') {
            base.pop_back();
        }
        ::setenv("PWD", base.c_str(), 1); // what a shell would say after `cd dir`
        // A ".." after a symbolic link names another directory than chdir reached: then
        // the physical one is the truth.
        base = server::logical_current_directory();
    }
    const std::string cwd = base;
    try {
        py::list path = py::module_::import("sys").attr("path");
        path.insert(0, py::str(cwd));
    } catch (py::error_already_set& e) {
        return std::string("cannot update sys.path: ") + e.what();
    }
    return {};
}

PyObject* load_app(const Config& config, std::string& error) {
    const auto colon = config.target.find(':');
    const std::string module_name = config.target.substr(0, colon);
    const std::string attr_path =
        colon == std::string::npos ? "application" : config.target.substr(colon + 1);
    try {
        py::object obj;
        try {
            obj = py::module_::import(module_name.c_str());
        } catch (py::error_already_set& e) {
            const bool not_found = e.matches(PyExc_ImportError); // ModuleNotFoundError too
            e.restore();
            error = print_error("importing module '" + module_name + "'");
            if (error.empty()) {
                error = "cannot import module '" + module_name + "' (traceback above)";
                if (not_found) {
                    error += "; " + describe_interpreter();
                }
            }
            return nullptr;
        }
        std::size_t start = 0;
        while (start <= attr_path.size()) {
            auto dot = attr_path.find('.', start);
            if (dot == std::string::npos) {
                dot = attr_path.size();
            }
            const std::string name = attr_path.substr(start, dot - start);
            if (!py::hasattr(obj, name.c_str())) {
                error = "module '" + module_name + "' has no attribute '" + attr_path + "'";
                return nullptr;
            }
            obj = obj.attr(name.c_str());
            start = dot + 1;
        }
        if (config.factory) {
            try {
                obj = obj();
            } catch (py::error_already_set& e) {
                e.restore();
                error = print_error("the application factory '" + config.target + "'");
                if (error.empty()) {
                    error = "the application factory '" + config.target + "' raised (traceback above)";
                }
                return nullptr;
            }
        }
        if (!PyCallable_Check(obj.ptr())) {
            const std::string type = Py_TYPE(obj.ptr())->tp_name;
            error = config.factory
                        ? "the application factory '" + config.target + "' returned an object of type " +
                              type + ", not a WSGI callable"
                        : "'" + config.target + "' is not callable (its type is " + type + ")";
            return nullptr;
        }
        return obj.release().ptr();
    } catch (py::error_already_set& e) {
        error = std::string("cannot load the application: ") + e.what();
        return nullptr;
    }
}

} // namespace appserver::wsgi
