// environ construction (see environ.hpp). Keys are interned once; constant values are
// shared; header values are decoded as latin-1 straight from the parser's buffer.
#include "wsgi/environ.hpp"

#include "http/field_list.hpp"
#include "net/proxy.hpp"
#include "wsgi/interned.hpp"
#include "wsgi/types.hpp"

#include <strings.h>

namespace appserver::wsgi {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

PyObject* latin1(std::string_view s) {
    return PyUnicode_DecodeLatin1(s.data(), static_cast<Py_ssize_t>(s.size()), nullptr);
}

// Sets d[key] = value and drops the reference to value; false on error.
bool set_steal(PyObject* d, PyObject* key, PyObject* value) {
    if (value == nullptr) {
        return false;
    }
    const int rc = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    return rc == 0;
}

// HTTP_HOST, SERVER_NAME and SERVER_PORT as a trusted proxy's forwarding headers say
// (docs/behaviour.md, Proxies). authority: an absolute-form target's, else empty.
bool set_forwarded_server(PyObject* env, const net::Forwarding& fwd, const http::RequestHead& head,
                          std::string_view authority) {
    std::string_view request_host = authority;
    if (request_host.empty()) {
        for (const http::HeaderField& field : head.headers) {
            if (http::iequals(head.view(field.name), "host")) {
                request_host = head.view(field.value);
                break;
            }
        }
    }
    const net::ForwardedServer server = net::forwarded_server(fwd, request_host);
    const Interned& k = interned();
    if (!server.http_host.empty()) {
        PyObject* host_key = environ_key_for_header("host");
        const bool ok = host_key != nullptr && set_steal(env, host_key, latin1(server.http_host));
        Py_XDECREF(host_key);
        if (!ok) {
            return false;
        }
    }
    if (!server.server_name.empty() &&
        !set_steal(env, k.SERVER_NAME, latin1(server.server_name))) {
        return false;
    }
    return server.server_port == 0 ||
           set_steal(env, k.SERVER_PORT, PyUnicode_FromFormat("%u", server.server_port));
}

} // namespace

TargetParts split_target(std::string_view target) {
    if (const auto hash = target.find('#'); hash != std::string_view::npos) {
        target = target.substr(0, hash);
    }
    std::string_view authority;
    if (!target.empty() && target.front() != '/' && target != "*") {
        // absolute-form: scheme "://" authority path-abempty [ "?" query ]
        const auto scheme_end = target.find("://");
        if (scheme_end != std::string_view::npos) {
            const auto path_start = target.find_first_of("/?", scheme_end + 3);
            authority = target.substr(scheme_end + 3, path_start == std::string_view::npos
                                                          ? std::string_view::npos
                                                          : path_start - scheme_end - 3);
            if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
                authority.remove_prefix(at + 1); // userinfo is not part of the host
            }
            target = path_start == std::string_view::npos ? std::string_view("/")
                                                          : target.substr(path_start);
            if (target.front() == '?') {
                // "http://host?q": the path is empty, which means "/" (RFC 9110 4.2.3).
                TargetParts parts;
                parts.path = "/";
                parts.query = target.substr(1);
                parts.authority = authority;
                return parts;
            }
        }
    }
    TargetParts parts;
    parts.authority = authority;
    const auto q = target.find('?');
    if (q == std::string_view::npos) {
        parts.path = target;
    } else {
        parts.path = target.substr(0, q);
        parts.query = target.substr(q + 1);
    }
    if (!parts.path.empty() && parts.path.front() == '?') {
        parts.path = {};
    }
    return parts;
}

std::string percent_decode(std::string_view path) {
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        const char c = path[i];
        if (c == '%' && i + 2 < path.size()) {
            const int hi = hex_value(path[i + 1]);
            const int lo = hex_value(path[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
                continue;
            }
        }
        out.push_back(c);
    }
    return out;
}

PyObject* build_environ(server::Exchange& ex, PyObject* input, const EnvironDefaults& defaults) {
    const Interned& k = interned();
    const http::RequestHead& head = ex.head();
    PyObject* env = _PyDict_NewPresized(24 + static_cast<Py_ssize_t>(head.headers.size()));
    if (env == nullptr) {
        return nullptr;
    }
    auto fail = [env]() -> PyObject* {
        Py_DECREF(env);
        return nullptr;
    };

    const std::string_view target = head.target_view();
    const TargetParts parts = split_target(target);
    std::string path = percent_decode(parts.path);
    std::string_view path_info = path;
    PyObject* script_name = k.empty;
    if (!defaults.url_prefix.empty() && path_info.starts_with(defaults.url_prefix) &&
        (path_info.size() == defaults.url_prefix.size() ||
         path_info[defaults.url_prefix.size()] == '/')) {
        path_info.remove_prefix(defaults.url_prefix.size());
        script_name = defaults.script_name;
    }

    if (!set_steal(env, k.REQUEST_METHOD, method_string(head.method, head.method_name())) ||
        PyDict_SetItem(env, k.SCRIPT_NAME, script_name) < 0 ||
        !set_steal(env, k.PATH_INFO, latin1(path_info)) ||
        !set_steal(env, k.QUERY_STRING, latin1(parts.query)) ||
        PyDict_SetItem(env, k.SERVER_NAME, defaults.server_name) < 0 ||
        PyDict_SetItem(env, k.SERVER_PORT, defaults.server_port) < 0 ||
        PyDict_SetItem(env, k.SERVER_PROTOCOL,
                       head.version_minor >= 1 ? k.http11 : k.http10) < 0) {
        return fail();
    }
    // The raw request-target under uWSGI's name and gunicorn's, one object for both; and
    // SERVER_SOFTWARE, which CGI (RFC 3875 4.1.17) asks for and apps print.
    PyObject* raw_target = latin1(target);
    if (raw_target == nullptr) {
        return fail();
    }
    const bool named = PyDict_SetItem(env, k.REQUEST_URI, raw_target) == 0 &&
                       PyDict_SetItem(env, k.RAW_URI, raw_target) == 0 &&
                       PyDict_SetItem(env, k.SERVER_SOFTWARE, k.server_software) == 0;
    Py_DECREF(raw_target);
    if (!named) {
        return fail();
    }
    if (!ex.remote_addr().empty()) {
        // No REMOTE_PORT when it is not known (a forwarded client address without one).
        if (!set_steal(env, k.REMOTE_ADDR, latin1(ex.remote_addr())) ||
            (ex.remote_port() != 0 &&
             !set_steal(env, k.REMOTE_PORT, PyUnicode_FromFormat("%u", ex.remote_port())))) {
            return fail();
        }
    } else if (PyDict_SetItem(env, k.REMOTE_ADDR, k.empty) < 0) {
        return fail();
    }

    for (const http::HeaderField& field : head.headers) {
        const std::string_view name = head.view(field.name);
        PyObject* key = environ_key_for_header(name);
        if (key == nullptr) {
            if (PyErr_Occurred()) {
                return fail();
            }
            continue; // a name with '_': dropped
        }
        const std::string_view value = head.view(field.value);
        PyObject* existing = PyDict_GetItemWithError(env, key);
        PyObject* v;
        if (existing != nullptr) {
            // Repeated field lines combine into one list (RFC 9110 5.3); cookies use
            // "; " because a comma is not a cookie separator.
            const bool cookie = name.size() == 6 && ::strncasecmp(name.data(), "cookie", 6) == 0;
            PyObject* addition = latin1(value);
            PyObject* sep = PyUnicode_FromString(cookie ? "; " : ", ");
            PyObject* first = (sep && addition) ? PyUnicode_Concat(existing, sep) : nullptr;
            v = first ? PyUnicode_Concat(first, addition) : nullptr;
            Py_XDECREF(first);
            Py_XDECREF(sep);
            Py_XDECREF(addition);
        } else if (PyErr_Occurred()) {
            Py_DECREF(key);
            return fail();
        } else {
            v = latin1(value);
        }
        const bool ok = set_steal(env, key, v);
        Py_DECREF(key);
        if (!ok) {
            return fail();
        }
    }

    if (ex.body_buffered()) {
        // --request-buffering: the whole chunked body is here, so the app sees it as NGINX
        // passes a buffered body upstream: with its length, without Transfer-Encoding.
        if (PyDict_DelItemString(env, "HTTP_TRANSFER_ENCODING") < 0) {
            PyErr_Clear();
        }
        if (!set_steal(env, k.CONTENT_LENGTH,
                       PyUnicode_FromFormat("%llu", static_cast<unsigned long long>(
                                                        ex.buffered_body_length())))) {
            return fail();
        }
    }

    // The request's id, as the access log and the server's log lines show it: the client's
    // X-Request-ID when usable, else the server's own, as a proxy in front would add it
    // (what request-id middleware in Django and Flask apps reads).
    if (!ex.request_id().empty() &&
        !set_steal(env, k.HTTP_X_REQUEST_ID, latin1(ex.request_id()))) {
        return fail();
    }

    if (!parts.authority.empty()) {
        // RFC 9112 3.2.2: with an absolute-form target the origin server uses the target's
        // host and ignores the Host field.
        PyObject* host_key = environ_key_for_header("host");
        const bool ok = host_key != nullptr && set_steal(env, host_key, latin1(parts.authority));
        Py_XDECREF(host_key);
        if (!ok) {
            return fail();
        }
    }

    const net::Forwarding& fwd = ex.forwarding();
    if (fwd.applied && !set_forwarded_server(env, fwd, head, parts.authority)) {
        return fail();
    }

    if (PyDict_SetItem(env, k.wsgi_version, k.version_tuple) < 0 ||
        PyDict_SetItem(env, k.wsgi_url_scheme,
                       fwd.scheme == net::Scheme::https ? k.https : k.http) < 0 ||
        PyDict_SetItem(env, k.wsgi_input, input) < 0 ||
        PyDict_SetItem(env, k.wsgi_errors, errors_stream()) < 0 ||
        PyDict_SetItem(env, k.wsgi_multithread,
                       ex.config().blocking_threads > 1 ? Py_True : Py_False) < 0 ||
        PyDict_SetItem(env, k.wsgi_multiprocess, defaults.multiprocess ? Py_True : Py_False) <
            0 ||
        PyDict_SetItem(env, k.wsgi_run_once, Py_False) < 0 ||
        PyDict_SetItem(env, k.wsgi_input_terminated, Py_True) < 0 ||
        PyDict_SetItem(env, k.wsgi_file_wrapper,
                       reinterpret_cast<PyObject*>(file_wrapper_type())) < 0) {
        return fail();
    }
    return env;
}

} // namespace appserver::wsgi
