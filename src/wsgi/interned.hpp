// Python objects made once per process and shared by every request: environ keys,
// constant environ values, method names. Built with the GIL held before workers fork.
#pragma once

#include <Python.h>

#include <string_view>

namespace appserver::wsgi {

struct Interned {
    // environ keys
    PyObject* REQUEST_METHOD;
    PyObject* SCRIPT_NAME;
    PyObject* PATH_INFO;
    PyObject* QUERY_STRING;
    PyObject* REQUEST_URI;
    PyObject* RAW_URI;
    PyObject* HTTP_X_REQUEST_ID;
    PyObject* SERVER_SOFTWARE;
    PyObject* CONTENT_TYPE;
    PyObject* CONTENT_LENGTH;
    PyObject* SERVER_NAME;
    PyObject* SERVER_PORT;
    PyObject* SERVER_PROTOCOL;
    PyObject* REMOTE_ADDR;
    PyObject* REMOTE_PORT;
    PyObject* wsgi_version;
    PyObject* wsgi_url_scheme;
    PyObject* wsgi_input;
    PyObject* wsgi_errors;
    PyObject* wsgi_multithread;
    PyObject* wsgi_multiprocess;
    PyObject* wsgi_run_once;
    PyObject* wsgi_input_terminated;
    PyObject* wsgi_file_wrapper;
    // constant values
    PyObject* version_tuple; // (1, 0)
    PyObject* http;          // "http"
    PyObject* https;         // "https" (a trusted proxy said so)
    PyObject* empty;         // ""
    PyObject* http10;        // "HTTP/1.0"
    PyObject* http11;        // "HTTP/1.1"
    PyObject* close;         // "close" (attribute name)
    PyObject* read;          // "read"
    PyObject* fileno;        // "fileno"
    PyObject* tell;          // "tell"
    PyObject* server_software; // "appserver/<version>"
};

// Creates everything on first call (GIL held); the same object afterwards.
const Interned& interned();

// The request method as an interned str (cached per llhttp method id).
PyObject* method_string(unsigned method_id, std::string_view name);

// "HTTP_<NAME>" (or CONTENT_TYPE / CONTENT_LENGTH) for a request header name, new
// reference; nullptr when the header must not reach the app (a name with '_').
PyObject* environ_key_for_header(std::string_view name);

} // namespace appserver::wsgi
