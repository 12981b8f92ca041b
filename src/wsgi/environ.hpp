// Building the PEP 3333 environ dict from a parsed request.
#pragma once

#include "server/exchange.hpp"

#include <Python.h>

#include <string>
#include <string_view>

namespace appserver::wsgi {

// Per-worker values shared by every environ (made once, GIL held).
struct EnvironDefaults {
    PyObject* server_name = nullptr; // str
    PyObject* server_port = nullptr; // str
    PyObject* script_name = nullptr; // str: --url-path-prefix
    std::string url_prefix;          // the same, as bytes, for matching
    bool multiprocess = false;
};

// The request-target split per RFC 9112 3.2: origin-form, absolute-form (authority
// dropped), asterisk-form. Fragments never reach the app.
struct TargetParts {
    std::string_view path;      // raw, still percent-encoded
    std::string_view query;     // raw, without '?'
    std::string_view authority; // absolute-form only: host[:port] of the target
};
TargetParts split_target(std::string_view target);

// Decodes %XX escapes into bytes; malformed escapes are kept as they are.
std::string percent_decode(std::string_view path);

// A new environ dict, or nullptr with a Python exception set.
PyObject* build_environ(server::Exchange& ex, PyObject* input, const EnvironDefaults& defaults);

} // namespace appserver::wsgi
