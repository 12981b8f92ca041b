// Unit tests for the PEP 3333 environ (src/wsgi/environ.hpp): target splitting, percent
// decoding and build_environ end to end over a real server::Exchange on a socketpair. The
// same fixture covers the Exchange's body reads and response framing, which is what the
// environ's wsgi.input and the app's start_response end up driving.
#include "wsgi/environ.hpp"

#include "alloc_failure.hpp"

#include "http/parser.hpp"
#include "http/response.hpp"
#include "server/exchange.hpp"
#include "wsgi/interned.hpp"
#include "wsgi/types.hpp"

#include <appserver/config.hpp>

#include <gtest/gtest.h>

#include <Python.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace http = appserver::http;
namespace server = appserver::server;
namespace net = appserver::net;
namespace wsgi = appserver::wsgi;
using appserver::Config;

// ---- split_target ----------------------------------------------------------------------

struct Split {
    std::string path;
    std::string query;
    bool operator==(const Split&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Split& s) {
    return os << "{path=\"" << s.path << "\", query=\"" << s.query << "\"}";
}

Split split(std::string_view target) {
    const wsgi::TargetParts p = wsgi::split_target(target);
    return {std::string(p.path), std::string(p.query)};
}

TEST(SplitTarget, OriginForm) {
    EXPECT_EQ(split("/"), (Split{"/", ""}));
    EXPECT_EQ(split("/a/b"), (Split{"/a/b", ""}));
    EXPECT_EQ(split("/a%20b/c"), (Split{"/a%20b/c", ""})); // still encoded
    EXPECT_EQ(split("//double"), (Split{"//double", ""}));
}

TEST(SplitTarget, Query) {
    EXPECT_EQ(split("/p?q=1"), (Split{"/p", "q=1"}));
    EXPECT_EQ(split("/p?a=1&b=2"), (Split{"/p", "a=1&b=2"}));
    EXPECT_EQ(split("/p?a=?b"), (Split{"/p", "a=?b"})); // only the first '?' splits
    EXPECT_EQ(split("/p?q=%41"), (Split{"/p", "q=%41"}));
}

TEST(SplitTarget, EmptyQuery) {
    EXPECT_EQ(split("/p?"), (Split{"/p", ""}));
    EXPECT_EQ(split("?"), (Split{"", ""}));
    EXPECT_EQ(split("/?"), (Split{"/", ""}));
}

TEST(SplitTarget, FragmentNeverReachesTheApp) {
    EXPECT_EQ(split("/p#frag"), (Split{"/p", ""}));
    EXPECT_EQ(split("/p?q=1#frag"), (Split{"/p", "q=1"}));
    EXPECT_EQ(split("/p#frag?notquery"), (Split{"/p", ""}));
}

TEST(SplitTarget, AbsoluteForm) {
    EXPECT_EQ(split("http://h/p?q"), (Split{"/p", "q"}));
    EXPECT_EQ(split("http://example.com:8080/a/b"), (Split{"/a/b", ""}));
    EXPECT_EQ(split("https://user@h/x?y=1#z"), (Split{"/x", "y=1"}));
    EXPECT_EQ(split("http://h"), (Split{"/", ""})); // empty path means "/"
}

TEST(SplitTarget, AbsoluteFormWithEmptyPathAndQuery) {
    // RFC 9110 4.2.3 / RFC 9112 3.2.1: an empty path is "/", with or without a query, as
    // split_target already does for "http://h".
    EXPECT_EQ(split("http://h?q=1"), (Split{"/", "q=1"}));
}

TEST(SplitTarget, AsteriskForm) {
    EXPECT_EQ(split("*"), (Split{"*", ""}));
}

// ---- percent_decode --------------------------------------------------------------------

TEST(PercentDecode, ValidEscapes) {
    EXPECT_EQ(wsgi::percent_decode(""), "");
    EXPECT_EQ(wsgi::percent_decode("/plain/path"), "/plain/path");
    EXPECT_EQ(wsgi::percent_decode("%41"), "A");
    EXPECT_EQ(wsgi::percent_decode("/a%20b"), "/a b");
    EXPECT_EQ(wsgi::percent_decode("%7e%7E"), "~~"); // either case
    EXPECT_EQ(wsgi::percent_decode("%25"), "%");
    EXPECT_EQ(wsgi::percent_decode("%2541"), "%41"); // decoded once, not twice
    EXPECT_EQ(wsgi::percent_decode("a+b"), "a+b");   // '+' is not a space in a path
}

TEST(PercentDecode, SlashIsDecoded) {
    EXPECT_EQ(wsgi::percent_decode("/a%2Fb"), "/a/b");
    EXPECT_EQ(wsgi::percent_decode("/a%2fb"), "/a/b");
}

TEST(PercentDecode, InvalidEscapesStayAsTheyAre) {
    EXPECT_EQ(wsgi::percent_decode("%zz"), "%zz");
    EXPECT_EQ(wsgi::percent_decode("/%g1/"), "/%g1/");
    EXPECT_EQ(wsgi::percent_decode("%4g"), "%4g");
    EXPECT_EQ(wsgi::percent_decode("%%41"), "%A");
}

TEST(PercentDecode, TruncatedEscapesStayAsTheyAre) {
    EXPECT_EQ(wsgi::percent_decode("%"), "%");
    EXPECT_EQ(wsgi::percent_decode("%4"), "%4");
    EXPECT_EQ(wsgi::percent_decode("/a%"), "/a%");
    EXPECT_EQ(wsgi::percent_decode("/a%4"), "/a%4");
    EXPECT_EQ(wsgi::percent_decode("/a%41"), "/aA"); // an escape right at the end
}

TEST(PercentDecode, BytesStayBytes) {
    EXPECT_EQ(wsgi::percent_decode("/caf%C3%A9"), "/caf\xc3\xa9"); // UTF-8, not decoded
    EXPECT_EQ(wsgi::percent_decode("%FF%fe"), "\xff\xfe");
    const std::string nul = wsgi::percent_decode("a%00b");
    EXPECT_EQ(nul, std::string("a\0b", 3));
}

// ---- a real Exchange on a socketpair ---------------------------------------------------

// Plays the connection's part: bytes land in the read buffer and the parser takes the
// head; what is left (body bytes, a pipelined request) stays for fill_body().
class TestExchange : public server::Exchange {
public:
    TestExchange(const Config& config, const server::ServerInfo& info,
                 const std::atomic<bool>& draining, int fd, std::string remote_addr,
                 std::uint16_t remote_port)
        : Exchange(config, info, draining, fd, std::move(remote_addr), remote_port,
                   64 * 1024) {}

    http::RequestParser::State receive(std::string_view bytes) {
        EXPECT_LE(rend_ + bytes.size(), rbuf_size_);
        if (!rbuf_) { // as the connection takes one from the worker's pool
            rbuf_.reset(new char[rbuf_size_]);
        }
        std::memcpy(rbuf_.get() + rend_, bytes.data(), bytes.size());
        rend_ += bytes.size();
        rbeg_ += parser_.feed(rbuf_.get() + rbeg_, rend_ - rbeg_);
        if (rbeg_ == rend_) {
            rbeg_ = rend_ = 0;
        }
        return parser_.state();
    }

    using Exchange::apply_forwarding; // what the connection does before queueing it
    using Exchange::set_peer;

    std::size_t unparsed() const { return rend_ - rbeg_; }
    http::RequestParser::State parser_state() const { return parser_.state(); }

    // What the connection does between two requests on a kept-alive connection.
    http::RequestParser::State next_request() {
        reset_exchange();
        parser_.next_message();
        rbeg_ += parser_.feed(rbuf_.get() + rbeg_, rend_ - rbeg_);
        if (rbeg_ == rend_) {
            rbeg_ = rend_ = 0;
        }
        return parser_.state();
    }
};

struct Response {
    std::string status_line;
    std::multimap<std::string, std::string> headers; // names lower-cased
    std::string body;                                // everything after the head
    bool complete_head = false;

    std::size_t count(const std::string& name) const { return headers.count(name); }
    std::string get(const std::string& name) const {
        const auto it = headers.find(name);
        return it == headers.end() ? "<absent>" : it->second;
    }
};

Response parse_response(const std::string& raw) {
    Response r;
    const auto end = raw.find("\r\n\r\n");
    if (end == std::string::npos) {
        r.body = raw;
        return r;
    }
    r.complete_head = true;
    r.body = raw.substr(end + 4);
    const std::string head = raw.substr(0, end + 2);
    std::size_t pos = head.find("\r\n");
    r.status_line = head.substr(0, pos);
    pos += 2;
    while (pos < head.size()) {
        const auto eol = head.find("\r\n", pos);
        const std::string line = head.substr(pos, eol - pos);
        const auto colon = line.find(':');
        std::string name = line.substr(0, colon);
        for (char& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') {
            value.erase(0, 1);
        }
        r.headers.emplace(name, value);
        pos = eol + 2;
    }
    return r;
}

class ExchangeTest : public ::testing::Test {
protected:
    void SetUp() override {
        int fds[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
        server_fd_ = fds[0];
        peer_fd_ = fds[1];
        // The worker's sockets are non-blocking; the exchange polls with deadlines.
        ::fcntl(server_fd_, F_SETFL, ::fcntl(server_fd_, F_GETFL) | O_NONBLOCK);
    }

    void TearDown() override {
        ex_.reset();
        if (server_fd_ >= 0) {
            ::close(server_fd_);
        }
        ::close(peer_fd_);
    }

    TestExchange& make(std::string remote_addr = "192.0.2.7", std::uint16_t port = 54321) {
        ex_ = std::make_unique<TestExchange>(config_, info_, draining_, server_fd_,
                                             std::move(remote_addr), port);
        return *ex_;
    }

    // A request head (and maybe some body) as the connection would have read it.
    TestExchange& request(std::string_view bytes) {
        TestExchange& ex = make();
        const auto state = ex.receive(bytes);
        EXPECT_TRUE(state == http::RequestParser::State::body ||
                    state == http::RequestParser::State::complete)
            << "request did not parse: " << bytes;
        return ex;
    }

    void peer_send(std::string_view bytes) {
        ASSERT_EQ(::send(peer_fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
                  static_cast<ssize_t>(bytes.size()));
    }

    void peer_close_write() { ::shutdown(peer_fd_, SHUT_WR); }

    // Everything the server has written so far (its writes are complete on return).
    std::string peer_received() {
        std::string out;
        char buf[65536];
        for (;;) {
            const ssize_t n = ::recv(peer_fd_, buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0) {
                break;
            }
            out.append(buf, static_cast<std::size_t>(n));
        }
        return out;
    }

    Config config_;
    server::ServerInfo info_;
    std::atomic<bool> draining_{false};
    net::NoLock no_lock_;
    int server_fd_ = -1;
    int peer_fd_ = -1;
    std::unique_ptr<TestExchange> ex_;
};

bool send_parts(server::Exchange& ex, std::vector<std::string_view> parts, bool last,
                net::BlockingScope& scope) {
    return ex.send(std::span<const std::string_view>(parts.data(), parts.size()), last, scope);
}

// ---- build_environ ---------------------------------------------------------------------

// The WSGI runtime types are made once per process, as the worker does before serving.
bool wsgi_runtime_ready() {
    static const bool ok = [] {
        (void)wsgi::interned();
        const bool made = wsgi::init_types();
        if (!made) {
            PyErr_Print();
        }
        return made;
    }();
    return ok;
}

class EnvironTest : public ExchangeTest {
protected:
    void SetUp() override {
        ExchangeTest::SetUp();
        ASSERT_TRUE(wsgi_runtime_ready());
        set_prefix("");
    }

    void TearDown() override {
        Py_XDECREF(env_);
        Py_XDECREF(input_);
        Py_XDECREF(defaults_.server_name);
        Py_XDECREF(defaults_.server_port);
        Py_XDECREF(defaults_.script_name);
        ExchangeTest::TearDown();
    }

    void set_prefix(const std::string& prefix) {
        Py_XDECREF(defaults_.server_name);
        Py_XDECREF(defaults_.server_port);
        Py_XDECREF(defaults_.script_name);
        defaults_.server_name = PyUnicode_FromString("srv.example");
        defaults_.server_port = PyUnicode_FromString("8123");
        defaults_.script_name = PyUnicode_DecodeLatin1(
            prefix.data(), static_cast<Py_ssize_t>(prefix.size()), nullptr);
        defaults_.url_prefix = prefix;
    }

    // Parses the request and builds its environ (kept in env_).
    PyObject* environ_for(std::string_view request_bytes) {
        TestExchange& ex = request(request_bytes);
        return build(ex);
    }

    PyObject* build(server::Exchange& ex) {
        Py_XDECREF(env_);
        Py_XDECREF(input_);
        input_ = reinterpret_cast<PyObject*>(wsgi::new_input(&ex));
        EXPECT_NE(input_, nullptr);
        env_ = wsgi::build_environ(ex, input_, defaults_);
        if (env_ == nullptr) {
            PyErr_Print();
        }
        EXPECT_NE(env_, nullptr);
        EXPECT_FALSE(PyErr_Occurred());
        return env_;
    }

    bool has(const char* key) const { return PyDict_GetItemString(env_, key) != nullptr; }

    // The value of a str key as its latin-1 bytes; markers for missing / not a str.
    std::string str(const char* key) const {
        PyObject* v = PyDict_GetItemString(env_, key);
        if (v == nullptr) {
            return "<missing>";
        }
        if (!PyUnicode_CheckExact(v)) {
            return "<not a str>";
        }
        PyObject* b = PyUnicode_AsLatin1String(v);
        if (b == nullptr) {
            PyErr_Clear();
            return "<not latin-1>";
        }
        std::string out(PyBytes_AS_STRING(b), static_cast<std::size_t>(PyBytes_GET_SIZE(b)));
        Py_DECREF(b);
        return out;
    }

    std::vector<std::string> keys_with_prefix(std::string_view prefix) const {
        std::vector<std::string> out;
        PyObject* key;
        PyObject* value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(env_, &pos, &key, &value)) {
            const char* k = PyUnicode_AsUTF8(key);
            if (k != nullptr && std::string_view(k).starts_with(prefix)) {
                out.emplace_back(k);
            }
        }
        return out;
    }

    wsgi::EnvironDefaults defaults_;
    PyObject* env_ = nullptr;
    PyObject* input_ = nullptr;
};

TEST_F(EnvironTest, EveryPep3333KeyWithTheRightType) {
    config_.blocking_threads = 1;
    defaults_.multiprocess = true;
    PyObject* env = environ_for("GET /p/a%20b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\n"
                                "User-Agent: unit\r\n\r\n");
    ASSERT_NE(env, nullptr);
    ASSERT_TRUE(PyDict_CheckExact(env));

    // CGI variables: native strings.
    EXPECT_EQ(str("REQUEST_METHOD"), "GET");
    EXPECT_EQ(str("SCRIPT_NAME"), "");
    EXPECT_EQ(str("PATH_INFO"), "/p/a b");
    EXPECT_EQ(str("QUERY_STRING"), "x=1&y=2");
    EXPECT_EQ(str("SERVER_NAME"), "srv.example");
    EXPECT_EQ(str("SERVER_PORT"), "8123");
    EXPECT_EQ(str("SERVER_PROTOCOL"), "HTTP/1.1");
    EXPECT_EQ(str("REMOTE_ADDR"), "192.0.2.7");
    EXPECT_EQ(str("REMOTE_PORT"), "54321");
    EXPECT_EQ(str("REQUEST_URI"), "/p/a%20b?x=1&y=2");
    EXPECT_EQ(str("RAW_URI"), "/p/a%20b?x=1&y=2"); // gunicorn's name for the same
    EXPECT_EQ(str("SERVER_SOFTWARE").rfind("appserver/", 0), 0U) << str("SERVER_SOFTWARE");
    EXPECT_EQ(str("HTTP_HOST"), "example.com");
    EXPECT_EQ(str("HTTP_USER_AGENT"), "unit");
    // No body: CONTENT_TYPE / CONTENT_LENGTH may be absent, or empty str.
    for (const char* key : {"CONTENT_TYPE", "CONTENT_LENGTH"}) {
        if (has(key)) {
            EXPECT_EQ(str(key), "") << key;
        }
    }

    // wsgi.* variables.
    PyObject* version = PyDict_GetItemString(env, "wsgi.version");
    ASSERT_NE(version, nullptr);
    ASSERT_TRUE(PyTuple_CheckExact(version));
    ASSERT_EQ(PyTuple_GET_SIZE(version), 2);
    EXPECT_EQ(PyLong_AsLong(PyTuple_GET_ITEM(version, 0)), 1);
    EXPECT_EQ(PyLong_AsLong(PyTuple_GET_ITEM(version, 1)), 0);
    EXPECT_EQ(str("wsgi.url_scheme"), "http");
    EXPECT_EQ(PyDict_GetItemString(env, "wsgi.input"), input_);
    EXPECT_TRUE(PyObject_HasAttrString(input_, "read"));
    EXPECT_TRUE(PyObject_HasAttrString(input_, "readline"));
    EXPECT_TRUE(PyObject_HasAttrString(input_, "readlines"));
    EXPECT_TRUE(PyObject_HasAttrString(input_, "__iter__"));
    PyObject* errors = PyDict_GetItemString(env, "wsgi.errors");
    ASSERT_NE(errors, nullptr);
    EXPECT_TRUE(PyObject_HasAttrString(errors, "write"));
    EXPECT_TRUE(PyObject_HasAttrString(errors, "writelines"));
    EXPECT_TRUE(PyObject_HasAttrString(errors, "flush"));
    EXPECT_EQ(PyDict_GetItemString(env, "wsgi.multithread"), Py_False);
    EXPECT_EQ(PyDict_GetItemString(env, "wsgi.multiprocess"), Py_True);
    EXPECT_EQ(PyDict_GetItemString(env, "wsgi.run_once"), Py_False);
    EXPECT_EQ(PyDict_GetItemString(env, "wsgi.input_terminated"), Py_True);
    PyObject* wrapper = PyDict_GetItemString(env, "wsgi.file_wrapper");
    ASSERT_NE(wrapper, nullptr);
    EXPECT_TRUE(PyCallable_Check(wrapper));

    // Every key is a str; every CGI-style value is a str.
    PyObject* key;
    PyObject* value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(env, &pos, &key, &value)) {
        ASSERT_TRUE(PyUnicode_CheckExact(key));
        const std::string k = PyUnicode_AsUTF8(key);
        if (k.rfind("wsgi.", 0) != 0) {
            EXPECT_TRUE(PyUnicode_CheckExact(value)) << k;
        }
    }
}

TEST_F(EnvironTest, MultithreadFollowsTheThreadCount) {
    config_.blocking_threads = 4;
    defaults_.multiprocess = false;
    PyObject* env = environ_for("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(PyDict_GetItemString(env, "wsgi.multithread"), Py_True);
    EXPECT_EQ(PyDict_GetItemString(env, "wsgi.multiprocess"), Py_False);
}

TEST_F(EnvironTest, ContentTypeAndLengthHaveNoHttpPrefix) {
    PyObject* env = environ_for("POST /form HTTP/1.1\r\nHost: a\r\n"
                                "Content-Type: application/x-www-form-urlencoded\r\n"
                                "content-length: 7\r\n\r\na=1&b=2");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("REQUEST_METHOD"), "POST");
    EXPECT_EQ(str("CONTENT_TYPE"), "application/x-www-form-urlencoded");
    EXPECT_EQ(str("CONTENT_LENGTH"), "7");
    EXPECT_FALSE(has("HTTP_CONTENT_TYPE"));
    EXPECT_FALSE(has("HTTP_CONTENT_LENGTH"));
}

TEST_F(EnvironTest, HeaderNamesBecomeHttpKeys) {
    PyObject* env = environ_for("GET / HTTP/1.1\r\nHost: a\r\nx-lower-case: 1\r\n"
                                "X-MiXeD-CaSe: 2\r\nAccept-Encoding: gzip\r\nDNT: 1\r\n\r\n");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("HTTP_X_LOWER_CASE"), "1");
    EXPECT_EQ(str("HTTP_X_MIXED_CASE"), "2");
    EXPECT_EQ(str("HTTP_ACCEPT_ENCODING"), "gzip");
    EXPECT_EQ(str("HTTP_DNT"), "1");
}

TEST_F(EnvironTest, HeaderNamesWithUnderscoreAreDropped) {
    PyObject* env = environ_for("GET / HTTP/1.1\r\nHost: a\r\n"
                                "X_Forwarded_For: 6.6.6.6\r\n"
                                "X-Forwarded-For: 10.0.0.1\r\n"
                                "Content_Type: text/evil\r\n"
                                "Under_Score: x\r\n\r\n");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("HTTP_X_FORWARDED_FOR"), "10.0.0.1"); // not spoofed, not joined
    EXPECT_FALSE(has("CONTENT_TYPE"));
    EXPECT_FALSE(has("HTTP_CONTENT_TYPE"));
    EXPECT_FALSE(has("HTTP_UNDER_SCORE"));
    const auto http_keys = keys_with_prefix("HTTP_");
    EXPECT_EQ(http_keys.size(), 2U); // HTTP_HOST and HTTP_X_FORWARDED_FOR
}

TEST_F(EnvironTest, RepeatedHeadersAreJoined) {
    PyObject* env = environ_for("GET / HTTP/1.1\r\nHost: a\r\n"
                                "Accept: text/html\r\n"
                                "X-Multi: 1\r\n"
                                "Accept: application/json\r\n"
                                "x-multi: 2\r\n"
                                "X-MULTI: 3\r\n"
                                "Cookie: a=1\r\n"
                                "Cookie: b=2\r\n\r\n");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("HTTP_ACCEPT"), "text/html, application/json");
    EXPECT_EQ(str("HTTP_X_MULTI"), "1, 2, 3");
    EXPECT_EQ(str("HTTP_COOKIE"), "a=1; b=2"); // a comma is not a cookie separator
}

TEST_F(EnvironTest, HeaderValuesAreLatin1) {
    PyObject* env = environ_for("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9\r\n\r\n");
    ASSERT_NE(env, nullptr);
    PyObject* v = PyDict_GetItemString(env, "HTTP_X_NAME");
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(PyUnicode_GetLength(v), 4);
    EXPECT_EQ(PyUnicode_ReadChar(v, 3), 0xe9U);
}

TEST_F(EnvironTest, PathInfoIsLatin1OfTheDecodedBytes) {
    PyObject* env = environ_for("GET /caf%C3%A9/a%2Fb/%zz?q=caf%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_NE(env, nullptr);
    PyObject* path = PyDict_GetItemString(env, "PATH_INFO");
    ASSERT_NE(path, nullptr);
    ASSERT_TRUE(PyUnicode_CheckExact(path));
    // "/caf" + U+00C3 U+00A9 (one code point per byte, as PEP 3333 asks) + "/a/b/%zz"
    EXPECT_EQ(str("PATH_INFO"), "/caf\xc3\xa9/a/b/%zz");
    EXPECT_EQ(PyUnicode_GetLength(path), 14);
    EXPECT_EQ(PyUnicode_ReadChar(path, 4), 0xc3U);
    EXPECT_EQ(PyUnicode_ReadChar(path, 5), 0xa9U);
    // The query string is passed on undecoded, the URI raw.
    EXPECT_EQ(str("QUERY_STRING"), "q=caf%C3%A9");
    EXPECT_EQ(str("REQUEST_URI"), "/caf%C3%A9/a%2Fb/%zz?q=caf%C3%A9");
}

TEST_F(EnvironTest, AbsoluteFormTarget) {
    PyObject* env = environ_for("GET http://example.com/p/q?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("PATH_INFO"), "/p/q");
    EXPECT_EQ(str("QUERY_STRING"), "x=1");
    EXPECT_EQ(str("HTTP_HOST"), "example.com");
}

TEST_F(EnvironTest, AbsoluteFormAuthorityReplacesHost) {
    // RFC 9112 3.2.2: the target's authority wins; the Host field is ignored.
    PyObject* env = environ_for(
        "GET http://target.example:8081/p HTTP/1.1\r\nHost: other.example\r\n\r\n");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("HTTP_HOST"), "target.example:8081");
    EXPECT_EQ(str("PATH_INFO"), "/p");
}

TEST_F(EnvironTest, AsteriskTarget) {
    PyObject* env = environ_for("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("REQUEST_METHOD"), "OPTIONS");
    EXPECT_EQ(str("PATH_INFO"), "*");
    EXPECT_EQ(str("QUERY_STRING"), "");
}

TEST_F(EnvironTest, Http10Protocol) {
    PyObject* env = environ_for("GET /old HTTP/1.0\r\n\r\n");
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("SERVER_PROTOCOL"), "HTTP/1.0");
    EXPECT_FALSE(has("HTTP_HOST"));
}

TEST_F(EnvironTest, UrlPrefixSplitsScriptNameAndPathInfo) {
    set_prefix("/app");
    struct Case {
        const char* target;
        const char* script_name;
        const char* path_info;
        const char* query;
    };
    const Case cases[] = {
        {"/app/x/y", "/app", "/x/y", ""},
        {"/app/", "/app", "/", ""},
        {"/app", "/app", "", ""},
        {"/app?q=1", "/app", "", "q=1"},
        {"/application", "", "/application", ""}, // a prefix of a segment is no match
        {"/other/app", "", "/other/app", ""},
        {"/", "", "/", ""},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.target);
        PyObject* env = environ_for(std::string("GET ") + c.target + " HTTP/1.1\r\nHost: a\r\n\r\n");
        ASSERT_NE(env, nullptr);
        EXPECT_EQ(str("SCRIPT_NAME"), c.script_name);
        EXPECT_EQ(str("PATH_INFO"), c.path_info);
        EXPECT_EQ(str("QUERY_STRING"), c.query);
        // Reassembling gives back the decoded path (PEP 3333 URL reconstruction).
        EXPECT_EQ(str("SCRIPT_NAME") + str("PATH_INFO"),
                  wsgi::percent_decode(wsgi::split_target(c.target).path));
        // The next iteration makes a new exchange on the same socket.
        ex_.reset();
    }
}

TEST_F(EnvironTest, NoRemoteAddressOnAUnixSocket) {
    TestExchange& ex = make("", 0);
    ex.receive("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    PyObject* env = build(ex);
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("REMOTE_ADDR"), "");
    EXPECT_FALSE(has("REMOTE_PORT"));
}

// ---- a trusted proxy's forwarding headers (net/proxy.hpp decides what they say) ----------

TEST_F(EnvironTest, ForwardingHeadersFromATrustedPeer) {
    const auto trusted = net::TrustedProxies::parse("127.0.0.1");
    ASSERT_TRUE(trusted);
    TestExchange& ex = make("127.0.0.1", 40000);
    ex.receive("GET /p HTTP/1.1\r\nHost: app.internal:8000\r\n"
               "X-Forwarded-For: 203.0.113.7, 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
               "X-Forwarded-Host: shop.example\r\n\r\n");
    ex.apply_forwarding(*trusted);
    EXPECT_EQ(ex.remote_addr(), "203.0.113.7");
    PyObject* env = build(ex);
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("REMOTE_ADDR"), "203.0.113.7");
    EXPECT_FALSE(has("REMOTE_PORT")); // not known: not the proxy's
    EXPECT_EQ(str("wsgi.url_scheme"), "https");
    EXPECT_EQ(str("HTTP_HOST"), "shop.example");
    EXPECT_EQ(str("SERVER_NAME"), "shop.example");
    EXPECT_EQ(str("SERVER_PORT"), "443");
    // The headers themselves stay.
    EXPECT_EQ(str("HTTP_X_FORWARDED_FOR"), "203.0.113.7, 127.0.0.1");
    EXPECT_EQ(str("HTTP_X_FORWARDED_PROTO"), "https");
}

TEST_F(EnvironTest, ForwardingHeadersFromAnUntrustedPeerArePlainHeaders) {
    const auto trusted = net::TrustedProxies::parse("10.0.0.0/8");
    ASSERT_TRUE(trusted);
    TestExchange& ex = make("127.0.0.1", 40000);
    ex.receive("GET /p HTTP/1.1\r\nHost: a\r\nForwarded: for=203.0.113.7;proto=https\r\n\r\n");
    ex.apply_forwarding(*trusted);
    PyObject* env = build(ex);
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("REMOTE_ADDR"), "127.0.0.1");
    EXPECT_EQ(str("REMOTE_PORT"), "40000");
    EXPECT_EQ(str("wsgi.url_scheme"), "http");
    EXPECT_EQ(str("HTTP_HOST"), "a");
    EXPECT_EQ(str("SERVER_NAME"), "srv.example");
    EXPECT_EQ(str("HTTP_FORWARDED"), "for=203.0.113.7;proto=https");
}

TEST_F(EnvironTest, ForwardedPortKeepsTheRequestsHost) {
    const auto trusted = net::TrustedProxies::parse("unix");
    ASSERT_TRUE(trusted);
    TestExchange& ex = make("", 0); // a unix-socket peer, trusted by "unix"
    ex.receive("GET http://abs.example:81/p HTTP/1.1\r\nHost: ignored\r\n"
               "X-Forwarded-Port: 8443\r\nX-Forwarded-For: [2001:db8::5]:4711\r\n\r\n");
    ex.apply_forwarding(*trusted);
    PyObject* env = build(ex);
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("REMOTE_ADDR"), "2001:db8::5");
    EXPECT_EQ(str("REMOTE_PORT"), "4711");
    EXPECT_EQ(str("HTTP_HOST"), "abs.example:8443"); // the absolute-form authority's host
    EXPECT_EQ(str("SERVER_NAME"), "srv.example");
    EXPECT_EQ(str("SERVER_PORT"), "8443");
}

TEST_F(EnvironTest, TheNextRequestOnTheConnectionStartsFromThePeer) {
    const auto trusted = net::TrustedProxies::parse("127.0.0.1");
    ASSERT_TRUE(trusted);
    TestExchange& ex = make("127.0.0.1", 40000);
    ex.receive("GET /1 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\r\n"
               "X-Forwarded-Proto: https\r\n\r\n"
               "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.apply_forwarding(*trusted);
    EXPECT_EQ(ex.remote_addr(), "203.0.113.7");
    EXPECT_TRUE(ex.forwarding().applied);
    ASSERT_EQ(ex.next_request(), http::RequestParser::State::complete);
    EXPECT_FALSE(ex.head().forwarding);
    EXPECT_EQ(ex.remote_addr(), "127.0.0.1");
    EXPECT_EQ(ex.remote_port(), 40000);
    EXPECT_FALSE(ex.forwarding().applied);
    PyObject* env = build(ex);
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("REMOTE_ADDR"), "127.0.0.1");
    EXPECT_EQ(str("wsgi.url_scheme"), "http");
}

TEST_F(EnvironTest, AProxyProtocolPeerIsCheckedOnItsOwn) {
    // The socket peer (127.0.0.1) sent a PROXY header naming 192.0.2.9: forwarding
    // headers are then believed only if 192.0.2.9 is trusted.
    const auto trusted = net::TrustedProxies::parse("127.0.0.1");
    ASSERT_TRUE(trusted);
    TestExchange& ex = make("127.0.0.1", 40000);
    ex.set_peer(*net::parse_ip("192.0.2.9"), 5555);
    ex.receive("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n");
    ex.apply_forwarding(*trusted);
    PyObject* env = build(ex);
    ASSERT_NE(env, nullptr);
    EXPECT_EQ(str("REMOTE_ADDR"), "192.0.2.9");
    EXPECT_EQ(str("REMOTE_PORT"), "5555");
}

TEST_F(EnvironTest, EachRequestGetsAFreshDict) {
    PyObject* first = environ_for("GET /one HTTP/1.1\r\nHost: a\r\nX-Only-Here: 1\r\n\r\n");
    ASSERT_NE(first, nullptr);
    Py_INCREF(first);
    ASSERT_EQ(PyDict_SetItemString(first, "app.mutation", Py_None), 0);
    ex_.reset();
    PyObject* second = environ_for("GET /two HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_NE(second, nullptr);
    EXPECT_NE(first, second);
    EXPECT_FALSE(has("app.mutation"));
    EXPECT_FALSE(has("HTTP_X_ONLY_HERE"));
    EXPECT_EQ(str("PATH_INFO"), "/two");
    Py_DECREF(first);
}

// ---- C++ exceptions stop at the CPython boundary -----------------------------------------

// What CPython calls must not let a C++ exception unwind through the interpreter's frames
// (wsgi/types.hpp, Guard): the app sees a MemoryError instead.
void expect_memory_error(PyObject* result) {
    EXPECT_EQ(result, nullptr);
    ASSERT_NE(PyErr_Occurred(), nullptr);
    EXPECT_TRUE(PyErr_ExceptionMatches(PyExc_MemoryError));
    PyErr_Clear();
    Py_XDECREF(result);
}

TEST_F(EnvironTest, AnExceptionInWsgiErrorsWriteBecomesAPythonException) {
    ASSERT_TRUE(wsgi_runtime_ready());
    PyObject* text = PyUnicode_FromString(std::string(1 << 20, 'e').c_str()); // no newline
    ASSERT_NE(text, nullptr);
    PyObject* r = nullptr;
    int refused = 0;
    {
        appserver::testing::FailAllocations fail;
        EXPECT_NO_THROW(r = PyObject_CallMethod(wsgi::errors_stream(), "write", "O", text));
        refused = fail.refused();
    }
    EXPECT_GT(refused, 0);
    expect_memory_error(r);
    Py_DECREF(text);
    wsgi::flush_errors_stream();
}

TEST_F(EnvironTest, AnExceptionInStartResponseBecomesAPythonException) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    auto* state = wsgi::new_start_response(&ex);
    ASSERT_NE(state, nullptr);
    PyObject* start_response = wsgi::make_start_response_callable(state);
    ASSERT_NE(start_response, nullptr);
    PyObject* headers = Py_BuildValue("[(ss)]", "X-Big", std::string(1 << 20, 'v').c_str());
    ASSERT_NE(headers, nullptr);
    PyObject* r = nullptr;
    int refused = 0;
    {
        appserver::testing::FailAllocations fail;
        EXPECT_NO_THROW(r = PyObject_CallFunction(start_response, "sO", "200 OK", headers));
        refused = fail.refused();
    }
    EXPECT_GT(refused, 0);
    expect_memory_error(r);
    // The failed call counts as not made: the app can still answer.
    PyObject* write = PyObject_CallFunction(start_response, "s[]", "500 Internal Server Error");
    EXPECT_NE(write, nullptr);
    if (write == nullptr) {
        PyErr_Print();
    }
    Py_XDECREF(write);
    state->exchange = nullptr;
    Py_DECREF(headers);
    Py_DECREF(start_response);
    Py_DECREF(reinterpret_cast<PyObject*>(state));
}

TEST_F(EnvironTest, AnExceptionInWsgiInputReadBecomesAPythonException) {
    // The read drops the GIL around the socket; the exception is raised with it held
    // again. What throws: the chunk-size line with whitespace before its extension is
    // collected in a string that must grow.
    TestExchange& ex = request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    PyObject* input = reinterpret_cast<PyObject*>(wsgi::new_input(&ex));
    ASSERT_NE(input, nullptr);
    peer_send("5 ; an-extension-long-enough-to-need-memory=1\r\nhello\r\n0\r\n\r\n");
    PyObject* r = nullptr;
    int refused = 0;
    {
        appserver::testing::FailAllocations fail;
        EXPECT_NO_THROW(r = PyObject_CallMethod(input, "read", nullptr));
        refused = fail.refused();
    }
    EXPECT_GT(refused, 0);
    if (r != nullptr || !PyErr_Occurred()) {
        Py_XDECREF(r);
        ADD_FAILURE() << "read() succeeded";
    } else {
        // The parser failed the request (500), which the read reports as an OSError; a
        // MemoryError is as good: either way a Python exception, not a C++ one.
        EXPECT_TRUE(PyErr_ExceptionMatches(PyExc_OSError) ||
                    PyErr_ExceptionMatches(PyExc_MemoryError));
        PyErr_Clear();
    }
    // Not left "being read": another read runs (and reports the failed body).
    PyObject* again = PyObject_CallMethod(input, "read", nullptr);
    EXPECT_TRUE(again != nullptr || !PyErr_ExceptionMatches(PyExc_RuntimeError));
    PyErr_Clear();
    Py_XDECREF(again);
    reinterpret_cast<wsgi::InputObject*>(input)->exchange = nullptr;
    Py_DECREF(input);
}

// ---- the Exchange's request body -------------------------------------------------------

TEST_F(ExchangeTest, BodyArrivingWithTheHeadIsStaged) {
    TestExchange& ex = request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT_EQ(ex.staged_body(), "hello");
    ASSERT_TRUE(ex.fill_body(no_lock_));
    EXPECT_EQ(ex.staged_body(), "hello");
    ex.consume_body(2);
    EXPECT_EQ(ex.staged_body(), "llo");
    ex.consume_body(3);
    EXPECT_TRUE(ex.body_done());
    EXPECT_FALSE(ex.fill_body(no_lock_));
    EXPECT_TRUE(ex.body_error().empty());
}

TEST_F(ExchangeTest, BodyIsReadFromTheSocketOnDemand) {
    TestExchange& ex = request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01");
    std::string got(ex.staged_body());
    ex.consume_body(got.size());
    peer_send("2345");
    while (ex.fill_body(no_lock_)) {
        got += ex.staged_body();
        ex.consume_body(ex.staged_body().size());
        if (got.size() == 6) {
            peer_send("6789");
        }
    }
    EXPECT_EQ(got, "0123456789");
    EXPECT_TRUE(ex.body_error().empty());
    EXPECT_TRUE(ex.body_done());
    EXPECT_EQ(peer_received(), ""); // no 100 Continue: nobody asked for one
}

TEST_F(ExchangeTest, ChunkedBodyIsDecoded) {
    TestExchange& ex =
        request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    peer_send("4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n");
    std::string got;
    while (ex.fill_body(no_lock_)) {
        got += ex.staged_body();
        ex.consume_body(ex.staged_body().size());
    }
    EXPECT_EQ(got, "abcdefg");
    EXPECT_TRUE(ex.body_error().empty());
    EXPECT_TRUE(ex.body_done());
}

TEST_F(ExchangeTest, ClientClosingMidBodyIsABodyError) {
    TestExchange& ex = request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    ex.consume_body(3);
    peer_close_write();
    EXPECT_FALSE(ex.fill_body(no_lock_));
    EXPECT_FALSE(ex.body_error().empty());
    EXPECT_TRUE(ex.client_gone());
    EXPECT_FALSE(ex.keep_alive());
    EXPECT_FALSE(ex.body_done());
}

TEST_F(ExchangeTest, MalformedChunkedBodyIsABodyError) {
    TestExchange& ex =
        request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    peer_send("zz\r\nnot hex\r\n");
    EXPECT_FALSE(ex.fill_body(no_lock_));
    EXPECT_FALSE(ex.body_error().empty());
    EXPECT_FALSE(ex.keep_alive());
}

// ---- 100-continue ----------------------------------------------------------------------

TEST_F(ExchangeTest, ContinueIsSentOnlyOnTheFirstBodyRead) {
    TestExchange& ex = request("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                               "Content-Length: 10\r\n\r\n");
    EXPECT_EQ(peer_received(), ""); // not before the app asks for the body
    peer_send("01234");
    ASSERT_TRUE(ex.fill_body(no_lock_));
    EXPECT_EQ(peer_received(), http::continue_100);
    std::string got(ex.staged_body());
    ex.consume_body(got.size());
    peer_send("56789");
    while (ex.fill_body(no_lock_)) {
        got += ex.staged_body();
        ex.consume_body(ex.staged_body().size());
    }
    EXPECT_EQ(got, "0123456789");
    EXPECT_EQ(peer_received(), ""); // exactly one 100 Continue

    ex.begin_response(201, "201 Created");
    ASSERT_TRUE(send_parts(ex, {"ok"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.status_line, "HTTP/1.1 201 Created");
    EXPECT_EQ(r.body, "ok");
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, NoContinueWhenTheBodyCameWithTheHead) {
    TestExchange& ex = request("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                               "Content-Length: 3\r\n\r\nabc");
    ASSERT_TRUE(ex.fill_body(no_lock_));
    EXPECT_EQ(ex.staged_body(), "abc");
    EXPECT_EQ(peer_received(), "");
}

TEST_F(ExchangeTest, NoContinueAfterTheResponseStarted) {
    TestExchange& ex = request("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                               "Content-Length: 3\r\n\r\n");
    ex.begin_response(413, "413 Content Too Large");
    ASSERT_TRUE(send_parts(ex, {"no"}, true, no_lock_));
    const std::string out = peer_received();
    EXPECT_EQ(out.find("100 Continue"), std::string::npos) << out;
    const Response r = parse_response(out);
    EXPECT_EQ(r.status_line, "HTTP/1.1 413 Content Too Large");
    // The body was never asked for: the connection cannot be reused.
    EXPECT_EQ(r.get("connection"), "close");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
    EXPECT_EQ(peer_received(), "");
}

TEST_F(ExchangeTest, NoContinueForHttp10) {
    TestExchange& ex = request("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\n"
                               "Content-Length: 3\r\n\r\n");
    peer_send("abc");
    ASSERT_TRUE(ex.fill_body(no_lock_));
    EXPECT_EQ(ex.staged_body(), "abc");
    EXPECT_EQ(peer_received(), "");
}

// ---- response framing ------------------------------------------------------------------

TEST_F(ExchangeTest, ListResponseGetsContentLength) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.add_header("Content-Type", "text/plain"));
    ASSERT_TRUE(send_parts(ex, {"hello", " ", "world"}, true, no_lock_));
    EXPECT_TRUE(ex.response_started());
    EXPECT_TRUE(ex.response_finished());
    const Response r = parse_response(peer_received());
    ASSERT_TRUE(r.complete_head);
    EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(r.get("content-length"), "11");
    EXPECT_EQ(r.count("content-length"), 1U);
    EXPECT_EQ(r.count("transfer-encoding"), 0U);
    EXPECT_EQ(r.get("content-type"), "text/plain");
    EXPECT_EQ(r.count("date"), 1U);
    EXPECT_EQ(r.count("connection"), 0U); // HTTP/1.1 persists by default
    EXPECT_EQ(r.body, "hello world");
    EXPECT_EQ(ex.body_bytes_sent(), 11U);
    EXPECT_EQ(ex.status_code(), 200);
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, EmptyListResponseHasZeroLength) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("content-length"), "0");
    EXPECT_EQ(r.body, "");
}

TEST_F(ExchangeTest, StreamedResponseWithoutLengthIsChunked) {
    TestExchange& ex = request("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"abc"}, false, no_lock_));
    ASSERT_TRUE(send_parts(ex, {""}, false, no_lock_)); // an empty part is no terminator
    ASSERT_TRUE(send_parts(ex, {"0123456789", "abcdef"}, false, no_lock_));
    ASSERT_TRUE(ex.finish(no_lock_));
    const Response r = parse_response(peer_received());
    ASSERT_TRUE(r.complete_head);
    EXPECT_EQ(r.get("transfer-encoding"), "chunked");
    EXPECT_EQ(r.count("content-length"), 0U);
    EXPECT_EQ(r.body, "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
    EXPECT_EQ(ex.body_bytes_sent(), 19U);
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, StreamedLastPartCarriesTheTerminatingChunk) {
    TestExchange& ex = request("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"ab"}, false, no_lock_));
    ASSERT_TRUE(send_parts(ex, {"cd"}, true, no_lock_));
    ASSERT_TRUE(ex.finish(no_lock_)); // already finished: nothing more
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.body, "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n");
}

TEST_F(ExchangeTest, StreamedResponseWithAppLengthIsNotChunked) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.add_header("Content-Length", "6"));
    ASSERT_TRUE(send_parts(ex, {"abc"}, false, no_lock_));
    ASSERT_TRUE(send_parts(ex, {"def"}, false, no_lock_));
    ASSERT_TRUE(ex.finish(no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("content-length"), "6");
    EXPECT_EQ(r.count("transfer-encoding"), 0U);
    EXPECT_EQ(r.body, "abcdef");
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, HeadResponseHasNoBody) {
    TestExchange& ex = request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"hello"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    ASSERT_TRUE(r.complete_head);
    EXPECT_EQ(r.get("content-length"), "5"); // what a GET would have had
    EXPECT_EQ(r.count("transfer-encoding"), 0U);
    EXPECT_EQ(r.body, "");
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, StreamedHeadResponseHasNoBodyAndSaysChunked) {
    // No body, but the framing field a GET would carry (RFC 9110 9.3.2), so that clients
    // do not take the response for close-delimited.
    TestExchange& ex = request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"hello"}, false, no_lock_));
    ASSERT_TRUE(send_parts(ex, {"world"}, false, no_lock_));
    ASSERT_TRUE(ex.finish(no_lock_));
    const Response r = parse_response(peer_received());
    ASSERT_TRUE(r.complete_head);
    EXPECT_EQ(r.get("transfer-encoding"), "chunked");
    EXPECT_EQ(r.count("content-length"), 0U);
    EXPECT_EQ(r.body, "");
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, StreamedHeadResponseOnHttp10HasNoFramingField) {
    TestExchange& ex = request("HEAD / HTTP/1.0\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"hello"}, false, no_lock_));
    ASSERT_TRUE(ex.finish(no_lock_));
    const Response r = parse_response(peer_received());
    ASSERT_TRUE(r.complete_head);
    EXPECT_EQ(r.count("transfer-encoding"), 0U);
    EXPECT_EQ(r.body, "");
}

TEST_F(ExchangeTest, NoContentHasNoBodyAndNoFraming) {
    TestExchange& ex = request("DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(204, "204 No Content");
    ASSERT_TRUE(ex.add_header("Content-Length", "4")); // not allowed on a 204: dropped
    ASSERT_TRUE(send_parts(ex, {"oops"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    ASSERT_TRUE(r.complete_head);
    EXPECT_EQ(r.status_line, "HTTP/1.1 204 No Content");
    EXPECT_EQ(r.count("content-length"), 0U);
    EXPECT_EQ(r.count("transfer-encoding"), 0U);
    EXPECT_EQ(r.body, "");
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, NotModifiedKeepsTheAppLengthButSendsNoBody) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n");
    ex.begin_response(304, "304 Not Modified");
    ASSERT_TRUE(ex.add_header("Content-Length", "1234"));
    ASSERT_TRUE(ex.add_header("ETag", "\"x\""));
    ASSERT_TRUE(send_parts(ex, {}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("content-length"), "1234");
    EXPECT_EQ(r.get("etag"), "\"x\"");
    EXPECT_EQ(r.count("transfer-encoding"), 0U);
    EXPECT_EQ(r.body, "");
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, AppLengthShorterThanDataTruncatesAndCloses) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.add_header("Content-Length", "3"));
    // false: the response ended at its length, so the app's iterable is not drained.
    EXPECT_FALSE(send_parts(ex, {"hello"}, true, no_lock_));
    EXPECT_TRUE(ex.body_overflow());
    EXPECT_TRUE(ex.response_finished());
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("content-length"), "3");
    EXPECT_EQ(r.body, "hel");
    EXPECT_EQ(ex.body_bytes_sent(), 3U);
    EXPECT_FALSE(ex.keep_alive());
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, AppLengthShorterThanStreamedDataTruncatesAndCloses) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.add_header("Content-Length", "4"));
    ASSERT_TRUE(send_parts(ex, {"abc"}, false, no_lock_));
    EXPECT_FALSE(send_parts(ex, {"def"}, false, no_lock_));
    EXPECT_FALSE(send_parts(ex, {"ghi"}, false, no_lock_)); // nothing more goes out
    ex.finish(no_lock_);
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.body, "abcd");
    EXPECT_EQ(ex.body_bytes_sent(), 4U);
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, AppLengthLongerThanDataCloses) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.add_header("Content-Length", "10"));
    ASSERT_TRUE(send_parts(ex, {"abc"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.body, "abc");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive()); // the client waits for 7 more bytes: only a close ends it
}

TEST_F(ExchangeTest, Http10StreamIsCloseDelimited) {
    TestExchange& ex = request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"abc"}, false, no_lock_));
    ASSERT_TRUE(send_parts(ex, {"def"}, false, no_lock_));
    ASSERT_TRUE(ex.finish(no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.count("transfer-encoding"), 0U); // no chunked coding for HTTP/1.0
    EXPECT_EQ(r.count("content-length"), 0U);
    EXPECT_EQ(r.get("connection"), "close");
    EXPECT_EQ(r.body, "abcdef");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, Http10KeepAliveIsAnnounced) {
    TestExchange& ex = request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"abc"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("connection"), "keep-alive");
    EXPECT_EQ(r.get("content-length"), "3");
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, Http10WithoutKeepAliveCloses) {
    TestExchange& ex = request("GET / HTTP/1.0\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"abc"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("connection"), "close");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, ClientConnectionCloseIsHonoured) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"abc"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("connection"), "close");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, DrainingWorkerCloses) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    draining_ = true;
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"abc"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("connection"), "close");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, AppConnectionCloseIsHonouredOnce) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.add_header("Connection", "keep-alive, Close"));
    ASSERT_TRUE(send_parts(ex, {"abc"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.count("connection"), 1U);
    EXPECT_EQ(r.get("connection"), "close");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, HopByHopAppHeadersAreDropped) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    EXPECT_TRUE(ex.add_header("Transfer-Encoding", "chunked"));
    EXPECT_TRUE(ex.add_header("Keep-Alive", "timeout=5"));
    EXPECT_TRUE(ex.add_header("Upgrade", "websocket"));
    EXPECT_TRUE(ex.add_header("Connection", "keep-alive"));
    EXPECT_TRUE(ex.add_header("X-Kept", "yes"));
    ASSERT_TRUE(send_parts(ex, {"abc"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.count("transfer-encoding"), 0U);
    EXPECT_EQ(r.count("keep-alive"), 0U);
    EXPECT_EQ(r.count("upgrade"), 0U);
    EXPECT_EQ(r.count("connection"), 0U);
    EXPECT_EQ(r.get("x-kept"), "yes");
    EXPECT_EQ(r.get("content-length"), "3");
    EXPECT_EQ(r.body, "abc");
}

TEST_F(ExchangeTest, InvalidAppHeadersAreRefused) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    EXPECT_FALSE(ex.add_header("Bad Name", "v"));
    EXPECT_FALSE(ex.add_header("", "v"));
    EXPECT_FALSE(ex.add_header("X-Split", "a\r\nSet-Cookie: injected=1"));
    EXPECT_FALSE(ex.add_header("X-Nul", std::string("a\0b", 3)));
    EXPECT_FALSE(ex.add_header("Content-Length", "abc"));
    EXPECT_FALSE(ex.add_header("Content-Length", ""));
    EXPECT_FALSE(ex.add_header("Content-Length", "-1"));
    EXPECT_FALSE(ex.add_header("Content-Length", "5 "));
    EXPECT_TRUE(ex.add_header("Content-Length", "3"));
    EXPECT_TRUE(ex.add_header("Content-Length", "3")); // the same length again is fine
    EXPECT_FALSE(ex.add_header("Content-Length", "4")); // two lengths: no valid framing
    ASSERT_TRUE(send_parts(ex, {"abc"}, true, no_lock_));
    const std::string out = peer_received();
    EXPECT_EQ(out.find("injected"), std::string::npos);
    EXPECT_EQ(out.find("Bad Name"), std::string::npos);
    const Response r = parse_response(out);
    EXPECT_EQ(r.count("content-length"), 1U);
    EXPECT_EQ(r.get("content-length"), "3");
    EXPECT_EQ(r.body, "abc");
}

TEST_F(ExchangeTest, AppDateReplacesTheServerDate) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.add_header("Date", "Sun, 06 Nov 1994 08:49:37 GMT"));
    ASSERT_TRUE(send_parts(ex, {}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.count("date"), 1U);
    EXPECT_EQ(r.get("date"), "Sun, 06 Nov 1994 08:49:37 GMT");
}

TEST_F(ExchangeTest, BeginResponseAgainRestartsTheHead) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.add_header("X-First", "1"));
    ASSERT_TRUE(ex.add_header("Content-Length", "99"));
    ex.begin_response(500, "500 Internal Server Error"); // exc_info restart, nothing sent yet
    ASSERT_TRUE(ex.add_header("X-Second", "2"));
    ASSERT_TRUE(send_parts(ex, {"err"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.status_line, "HTTP/1.1 500 Internal Server Error");
    EXPECT_EQ(r.count("x-first"), 0U);
    EXPECT_EQ(r.get("x-second"), "2");
    EXPECT_EQ(r.get("content-length"), "3");
    EXPECT_EQ(ex.status_code(), 500);
}

TEST_F(ExchangeTest, CompleteWithoutAResponseSends500) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.complete(no_lock_);
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.status_line, "HTTP/1.1 500 Internal Server Error");
    EXPECT_EQ(r.get("connection"), "close");
    EXPECT_EQ(r.get("content-length"), std::to_string(r.body.size()));
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, SendErrorOnlyBeforeAnythingWasSent) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_TRUE(ex.send_error(503, "busy", no_lock_));
    EXPECT_FALSE(ex.send_error(500, "again", no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.status_line, "HTTP/1.1 503 Service Unavailable");
    EXPECT_EQ(r.body, "busy\n");
    EXPECT_FALSE(ex.keep_alive());
    EXPECT_EQ(ex.status_code(), 503);
}

TEST_F(ExchangeTest, AbortedResponseClosesTheConnection) {
    TestExchange& ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"partial"}, false, no_lock_));
    ex.abort();
    EXPECT_FALSE(send_parts(ex, {"more"}, false, no_lock_));
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
    const Response r = parse_response(peer_received());
    // No terminating chunk: the client must see the response as incomplete.
    EXPECT_EQ(r.body, "7\r\npartial\r\n");
}

TEST_F(ExchangeTest, SendFileUsesTheKnownLength) {
    char path[] = "/tmp/appserver-exchange-test-XXXXXX";
    const int file_fd = ::mkstemp(path);
    ASSERT_GE(file_fd, 0);
    ::unlink(path);
    const std::string content = "0123456789abcdef";
    ASSERT_EQ(::write(file_fd, content.data(), content.size()),
              static_cast<ssize_t>(content.size()));
    TestExchange& ex = request("GET /file HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.send_file(file_fd, 4, 8, true, no_lock_));
    ::close(file_fd);
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("content-length"), "8");
    EXPECT_EQ(r.body, "456789ab");
    ex.complete(no_lock_);
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, SendFileInAChunkedStream) {
    char path[] = "/tmp/appserver-exchange-test-XXXXXX";
    const int file_fd = ::mkstemp(path);
    ASSERT_GE(file_fd, 0);
    ::unlink(path);
    ASSERT_EQ(::write(file_fd, "hello world", 11), 11);
    TestExchange& ex = request("GET /file HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(ex.send_file(file_fd, 0, 5, false, no_lock_));
    ASSERT_TRUE(ex.send_file(file_fd, 5, 6, true, no_lock_));
    ::close(file_fd);
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("transfer-encoding"), "chunked");
    EXPECT_EQ(r.body, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
}

// ---- keep-alive and the next request ---------------------------------------------------

TEST_F(ExchangeTest, UnreadSmallBodyIsDrainedAndThePipelinedRequestSurvives) {
    TestExchange& ex = request("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n012");
    // The rest of the body is already in the socket when the response starts.
    peer_send("3456789GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"ignored your body"}, true, no_lock_));
    EXPECT_EQ(parse_response(peer_received()).get("connection"), "<absent>");
    ex.complete(no_lock_); // reads and drops the rest of the body
    EXPECT_TRUE(ex.keep_alive());
    ASSERT_EQ(ex.parser_state(), http::RequestParser::State::complete);
    // The next request's bytes, read along with the body's end, wait in the read buffer.
    ASSERT_GT(ex.unparsed(), 0U);
    ASSERT_EQ(ex.next_request(), http::RequestParser::State::complete);
    EXPECT_EQ(ex.head().target_view(), "/b");
    EXPECT_FALSE(ex.response_started());
    EXPECT_TRUE(ex.keep_alive());
}

TEST_F(ExchangeTest, UnreadBodyStillOnItsWayCostsTheConnection) {
    // complete() never waits for a client: a body not yet here means close, announced.
    TestExchange& ex = request("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n012");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"ignored your body"}, true, no_lock_));
    EXPECT_EQ(parse_response(peer_received()).get("connection"), "close");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

TEST_F(ExchangeTest, LargeUnreadBodyCostsTheConnection) {
    TestExchange& ex = request("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n");
    ex.begin_response(200, "200 OK");
    ASSERT_TRUE(send_parts(ex, {"no"}, true, no_lock_));
    const Response r = parse_response(peer_received());
    EXPECT_EQ(r.get("connection"), "close");
    ex.complete(no_lock_);
    EXPECT_FALSE(ex.keep_alive());
}

} // namespace
