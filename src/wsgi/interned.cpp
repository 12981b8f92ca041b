// Interned environ keys and constants (see interned.hpp). Everything here is touched
// only with the GIL held, which is what makes the caches safe without locks.
#include "wsgi/interned.hpp"

#include <array>
#include <cstring>
#include <string>
#include <functional>
#include <unordered_map>

namespace appserver::wsgi {
namespace {

PyObject* intern(const char* s) {
    PyObject* o = PyUnicode_InternFromString(s);
    if (o == nullptr) {
        Py_FatalError("appserver: cannot create interned strings");
    }
    return o;
}

Interned make() {
    Interned i{};
    i.REQUEST_METHOD = intern("REQUEST_METHOD");
    i.SCRIPT_NAME = intern("SCRIPT_NAME");
    i.PATH_INFO = intern("PATH_INFO");
    i.QUERY_STRING = intern("QUERY_STRING");
    i.REQUEST_URI = intern("REQUEST_URI");
    i.RAW_URI = intern("RAW_URI");
    i.HTTP_X_REQUEST_ID = intern("HTTP_X_REQUEST_ID");
    i.SERVER_SOFTWARE = intern("SERVER_SOFTWARE");
    i.CONTENT_TYPE = intern("CONTENT_TYPE");
    i.CONTENT_LENGTH = intern("CONTENT_LENGTH");
    i.SERVER_NAME = intern("SERVER_NAME");
    i.SERVER_PORT = intern("SERVER_PORT");
    i.SERVER_PROTOCOL = intern("SERVER_PROTOCOL");
    i.REMOTE_ADDR = intern("REMOTE_ADDR");
    i.REMOTE_PORT = intern("REMOTE_PORT");
    i.wsgi_version = intern("wsgi.version");
    i.wsgi_url_scheme = intern("wsgi.url_scheme");
    i.wsgi_input = intern("wsgi.input");
    i.wsgi_errors = intern("wsgi.errors");
    i.wsgi_multithread = intern("wsgi.multithread");
    i.wsgi_multiprocess = intern("wsgi.multiprocess");
    i.wsgi_run_once = intern("wsgi.run_once");
    i.wsgi_input_terminated = intern("wsgi.input_terminated");
    i.wsgi_file_wrapper = intern("wsgi.file_wrapper");
    i.version_tuple = Py_BuildValue("(ii)", 1, 0);
    i.http = intern("http");
    i.https = intern("https");
    i.empty = intern("");
    i.http10 = intern("HTTP/1.0");
    i.http11 = intern("HTTP/1.1");
    i.close = intern("close");
    i.read = intern("read");
    i.fileno = intern("fileno");
    i.tell = intern("tell");
    i.server_software = intern((std::string("appserver/") + APPSERVER_VERSION).c_str());
    return i;
}

struct ViewHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

// Header names come from clients; cache only a bounded number of distinct ones.
constexpr std::size_t max_cached_header_keys = 512;

} // namespace

const Interned& interned() {
    static const Interned instance = make();
    return instance;
}

PyObject* method_string(unsigned method_id, std::string_view name) {
    static std::array<PyObject*, 64> cache{};
    if (method_id < cache.size()) {
        if (cache[method_id] == nullptr) {
            const std::string s(name);
            cache[method_id] = intern(s.c_str());
        }
        Py_INCREF(cache[method_id]);
        return cache[method_id];
    }
    return PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
}

PyObject* environ_key_for_header(std::string_view name) {
    static std::unordered_map<std::string, PyObject*, ViewHash, std::equal_to<>> cache;
    // One reused buffer per thread: no allocation once it has grown to the longest name.
    thread_local std::string buf;
    const std::size_t prefix = 5;
    buf.assign("HTTP_");
    for (const char c : name) {
        if (c == '_') {
            // "X_Forwarded_For" would land on the same key as "X-Forwarded-For": a client
            // could spoof a header a proxy sets. Such names never reach the app.
            return nullptr;
        }
        buf.push_back(c == '-' ? '_' : static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c));
    }
    std::string_view key(buf);
    if (key == "HTTP_CONTENT_TYPE") {
        key.remove_prefix(prefix);
    } else if (key == "HTTP_CONTENT_LENGTH") {
        key.remove_prefix(prefix);
    }
    auto it = cache.find(key);
    if (it != cache.end()) {
        Py_INCREF(it->second);
        return it->second;
    }
    PyObject* o = PyUnicode_DecodeLatin1(key.data(), static_cast<Py_ssize_t>(key.size()), nullptr);
    if (o != nullptr && cache.size() < max_cached_header_keys) {
        PyUnicode_InternInPlace(&o);
        Py_INCREF(o);
        cache.emplace(std::string(key), o);
    }
    return o;
}

} // namespace appserver::wsgi
