// Finding the application: process environment, working directory, import, factory.
#pragma once

#include <appserver/config.hpp>

#include <Python.h>

#include <string>

namespace appserver::wsgi {

// Applies --env, --working-dir (chdir and sys.path[0]). GIL held. Returns an error
// line, or an empty string on success.
std::string prepare_process(const Config& config);

// Imports "module:attr" (calling it when config.factory). GIL held. On failure returns
// nullptr, prints the traceback to stderr and fills error with one line.
PyObject* load_app(const Config& config, std::string& error);

} // namespace appserver::wsgi
