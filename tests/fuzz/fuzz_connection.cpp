// Fuzz target: the connection state machine (src/server/connection.*, exchange.*) fed from
// memory. One real Connection per input, on a socketpair, driven by a worker's own
// io_context from this thread: the input is written in pieces, the loop runs until nothing
// is left to do after each, the responses are read back and checked with llhttp's response
// parser. The application is a C++ stub that runs inline on the loop (as the benchmark
// ceiling route does), so no Python, no threads, and the run is deterministic: the
// blocking-thread hand-off (backlog, hand_back) is not covered here.
//
// Input: two control bytes, then the bytes a client sends.
//   byte 0, bits 0-1: server variant (defaults; --proxy-protocol; small limits with a
//                     health path and an untrusted peer; every peer trusted with
//                     --request-timeout and --request-buffering off)
//           bits 2-3: pieces (0 whole, 1 one byte at a time for the first 512 bytes,
//                     2-3 random sizes)
//           bit 4:    let every deadline pass once the input is written (408s, keep-alive
//                     timeouts, lingering closes cut short)
//           bit 5:    the client closes at once instead of half-closing first
//           bit 6:    a small socket send buffer: long responses meet a full socket
//                     (the end of a finished response is deferred to the loop, a
//                     response cut mid-way by --write-timeout 0 closes the connection)
//   byte 1: seed of the random pieces.
// The first character of a request's path picks what the stub application does (see
// StubApp::handle): echo the body, stream, lie about lengths, send bad headers...
//
// Checked on every input: the response stream is valid HTTP/1.1 for the requests sent (no
// bytes after a "Connection: close" response, no more responses than requests, bodies as
// framed; only the last response may be cut short by the close), the connection ends once
// its client has gone (nothing left holding it), and the worker's budgets come back whole.
#include "fuzz_support.hpp"

#include "http/parser.hpp"
#include "net/listener.hpp"
#include "net/proxy.hpp"
#include "net/socket_io.hpp"
#include "server/application.hpp"
#include "server/connection.hpp"
#include "server/exchange.hpp"
#include "server/worker.hpp"

#include <appserver/config.hpp>

#include <boost/asio/generic/stream_protocol.hpp>
#include <llhttp.h>
#include <spdlog/spdlog.h>

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace http = appserver::http;
namespace net = appserver::net;
namespace server = appserver::server;
namespace fuzz = appserver::fuzz;
using appserver::Config;

// ---- the application ---------------------------------------------------------------------

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// Percent-decoding, as an app gets PATH_INFO: how client bytes reach response headers.
std::string percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
            hex_value(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

bool has_control(std::string_view s) {
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && u != '\t') || u == 0x7f) {
            return true;
        }
    }
    return false;
}

// A file for send_file (sendfile(2) from a memfd).
int payload_file() {
    static const int fd = [] {
        const int f = ::memfd_create("fuzz-payload", MFD_CLOEXEC);
        const std::string bytes(256, 'f');
        if (f < 0 || ::write(f, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
            std::abort();
        }
        return f;
    }();
    return fd;
}

class StubApp final : public server::Application {
public:
    bool runs_inline() const override { return true; }

    void handle(server::Exchange& ex) noexcept override {
        net::NoLock nl;
        const http::RequestHead& head = ex.head();
        const std::string_view target = head.target_view();
        const char op = target.size() > 1 && target[0] == '/' ? target[1] : 'a';
        const std::string_view arg = target.size() > 2 ? target.substr(2) : std::string_view{};
        switch (op) {
        case 'e': { // echo the body as it arrives: chunked (1.1) or close-delimited (1.0)
            ex.begin_response(200, "200 OK");
            ex.add_header("Content-Type", "application/octet-stream");
            bool sent_any = false;
            while (ex.fill_body(nl)) {
                const std::string_view part = ex.staged_body();
                sent_any = true;
                if (!ex.send({&part, 1}, false, nl)) {
                    return;
                }
                ex.consume_body(part.size());
            }
            if (!ex.body_error().empty() && sent_any) {
                ex.abort(); // as an app whose input read raised mid-response
                return;
            }
            ex.finish(nl);
            return;
        }
        case 'l': { // a declared length, sent in pieces
            read_body(ex, nl);
            ex.begin_response(200, "200 OK");
            ex.add_header("Content-Length", "5");
            const std::string_view a = "he";
            const std::string_view b = "llo";
            ex.send({&a, 1}, false, nl) && ex.send({&b, 1}, false, nl);
            ex.finish(nl);
            return;
        }
        case 's': { // shorter than declared: the connection cannot go on
            read_body(ex, nl);
            ex.begin_response(200, "200 OK");
            ex.add_header("Content-Length", "10");
            const std::string_view a = "abc";
            ex.send({&a, 1}, true, nl);
            return;
        }
        case 'o': { // longer than declared: cut at the length
            read_body(ex, nl);
            ex.begin_response(200, "200 OK");
            ex.add_header("Content-Length", "2");
            const std::string_view a = "hello";
            const bool sent = ex.send({&a, 1}, false, nl);
            // A HEAD response (or one to a body-less status) carries no body to overflow.
            FUZZ_CHECK(!sent || head.method == HTTP_HEAD, "send() past Content-Length succeeded");
            return;
        }
        case 'n': // no response at all: the server answers 500
            return;
        case 'h': { // every request field copied into the response
            read_body(ex, nl);
            ex.begin_response(200, "200 OK");
            for (const auto& f : head.headers) {
                ex.add_header(head.view(f.name), head.view(f.value));
            }
            const std::string_view a = "h\n";
            ex.send({&a, 1}, true, nl);
            return;
        }
        case 'H': { // the decoded path as a header value and as a name
            read_body(ex, nl);
            const std::string decoded = percent_decode(arg);
            ex.begin_response(200, "200 OK");
            const bool value_ok = ex.add_header("X-Echo", decoded);
            FUZZ_CHECK(!value_ok || (decoded.find_first_of("\r\n") == std::string::npos &&
                                     decoded.find('\0') == std::string::npos),
                       "add_header took a value with CR, LF or NUL");
            const bool name_ok = ex.add_header(decoded, "v");
            FUZZ_CHECK(!name_ok || (!decoded.empty() && !has_control(decoded) &&
                                    decoded.find_first_of(" :") == std::string::npos),
                       "add_header took an invalid name");
            const std::string_view a = "H\n";
            ex.send({&a, 1}, true, nl);
            return;
        }
        case 'c': { // a status of the path's choosing: "/c204", "/c304b" (bare code)
            read_body(ex, nl);
            int code = 0;
            for (std::size_t i = 0; i < 3 && i < arg.size(); ++i) {
                code = arg[i] >= '0' && arg[i] <= '9' ? code * 10 + (arg[i] - '0') : -1000;
            }
            if (code < 100 || code > 599 || code == 101) {
                code = 200;
            }
            const std::string status =
                arg.size() > 3 && arg[3] == 'b' ? std::to_string(code)
                                                : std::to_string(code) + " Fuzzed";
            ex.begin_response(code, status);
            const std::string_view a = "c\n";
            ex.send({&a, 1}, true, nl);
            return;
        }
        case 'r': { // reads part of the body only
            if (ex.fill_body(nl)) {
                ex.consume_body(ex.staged_body().size() / 2);
            }
            ex.begin_response(200, "200 OK");
            const std::string_view a = "r\n";
            ex.send({&a, 1}, true, nl);
            return;
        }
        case 'w': { // the head goes out before the body is read (no 100 Continue then)
            ex.begin_response(200, "200 OK");
            const std::string_view a = "w1";
            ex.send({&a, 1}, false, nl);
            read_body(ex, nl);
            const std::string_view b = "w2";
            ex.send({&b, 1}, false, nl);
            ex.finish(nl);
            return;
        }
        case 'x': { // the app asks to close
            read_body(ex, nl);
            ex.begin_response(200, "200 OK");
            ex.add_header("Connection", "close");
            const std::string_view a = "x\n";
            ex.send({&a, 1}, true, nl);
            return;
        }
        case 'f': // a file, whole or shorter than declared
        case 'F': {
            read_body(ex, nl);
            ex.begin_response(200, "200 OK");
            if (op == 'F') {
                ex.add_header("Content-Length", "100");
            }
            ex.send_file(payload_file(), 0, 64, true, nl);
            return;
        }
        case 'B': { // a long body in one write: "/B64" is 64 KiB (at most 1 MiB)
            read_body(ex, nl);
            std::size_t kib = 0;
            for (std::size_t i = 0; i < arg.size() && i < 4 && arg[i] >= '0' && arg[i] <= '9';
                 ++i) {
                kib = kib * 10 + static_cast<std::size_t>(arg[i] - '0');
            }
            const std::string body(std::min<std::size_t>(kib == 0 ? 64 : kib, 1024) * 1024, 'B');
            const std::string_view part = body;
            ex.begin_response(200, "200 OK");
            ex.send({&part, 1}, true, nl);
            return;
        }
        case 'S': { // a long body streamed in pieces of unknown total length
            read_body(ex, nl);
            const std::string piece(4096, 'S');
            const std::string_view part = piece;
            ex.begin_response(200, "200 OK");
            for (int i = 0; i < 8 && ex.send({&part, 1}, false, nl); ++i) {
            }
            ex.finish(nl);
            return;
        }
        case 'E': // an error answered by the server's canned response
            read_body(ex, nl);
            ex.send_error(503, "Service Unavailable", nl, "Retry-After: 1\r\n");
            return;
        case 'b': { // a response restarted before anything was sent
            read_body(ex, nl);
            ex.begin_response(500, "500 Internal Server Error");
            ex.add_header("X-First", "1");
            ex.begin_response(200, "200 OK");
            const std::string_view a = "b\n";
            ex.send({&a, 1}, true, nl);
            return;
        }
        default: { // read the body, answer with a known length
            const bool ok = read_body(ex, nl);
            if (!ok && ex.body_error_status() != 0) {
                ex.send_error(ex.body_error_status(), "Bad Request Body", nl);
                return;
            }
            ex.begin_response(200, "200 OK");
            ex.add_header("Content-Type", "text/plain");
            const std::string_view a = "ok\n";
            ex.send({&a, 1}, true, nl);
            return;
        }
        }
    }

private:
    // The whole body, as far as it has arrived (body reads never wait: --read-timeout 0).
    static bool read_body(server::Exchange& ex, net::BlockingScope& nl) {
        const http::RequestHead& head = ex.head();
        std::uint64_t total = 0;
        while (ex.fill_body(nl)) {
            const std::size_t n = ex.staged_body().size();
            FUZZ_CHECK(n > 0, "fill_body() true with nothing staged");
            total += n;
            ex.consume_body(n);
        }
        FUZZ_CHECK(head.chunked || total <= head.content_length,
                   "%llu body bytes for a Content-Length of %llu",
                   static_cast<unsigned long long>(total),
                   static_cast<unsigned long long>(head.content_length));
        return ex.body_error().empty();
    }
};

// ---- the server side -----------------------------------------------------------------------

struct Variant {
    Config config;
    std::string remote_addr;
    std::unique_ptr<server::Worker> worker;
};

Config base_config() {
    Config c;
    // Body reads and response writes never wait: this thread is also the client.
    c.read_timeout = 0;
    c.write_timeout = 0;
    return c;
}

StubApp& app() {
    static StubApp a;
    return a;
}

Variant& variant(unsigned index) {
    static Variant variants[4];
    Variant& v = variants[index];
    if (v.worker != nullptr) {
        return v;
    }
    v.config = base_config();
    switch (index) {
    case 0: // defaults; a unix-socket peer (trusted by the default list)
        break;
    case 1: // behind a proxy that speaks the PROXY protocol
        v.config.proxy_protocol = true;
        v.remote_addr = "127.0.0.1";
        break;
    case 2: // small limits, a health path, a peer nobody trusts
        v.config.max_header_size = 300;
        v.config.max_headers = 8;
        v.config.max_body_size = 64;
        v.config.health_path = "/healthz";
        v.remote_addr = "203.0.113.9";
        break;
    case 3: // every peer trusted; --request-timeout on (targets copied at dispatch);
            // chunked bodies streamed to the app, not read whole first
        v.config.forwarded_allow_ips = "*";
        v.config.request_timeout = 30;
        v.config.request_buffering = appserver::RequestBuffering::off;
        v.remote_addr = "10.0.0.1";
        break;
    }
    // The worker never accepts (run() is not called): its listening socket is a stand-in.
    net::ListenSocket listener;
    listener.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    listener.family = AF_UNIX;
    FUZZ_CHECK(listener.fd >= 0, "socket: %d", errno);
    v.worker = std::make_unique<server::Worker>(v.config, listener, app(), index);
    return v;
}

// ---- the client side -----------------------------------------------------------------------

// Reads the server's bytes and checks them as a client would: llhttp in response mode,
// told which responses answer a HEAD request (those have no body whatever they declare).
class ResponseChecker {
public:
    explicit ResponseChecker(std::deque<bool> head_requests)
        : head_requests_(std::move(head_requests)) {
        llhttp_settings_init(&settings_);
        settings_.on_headers_complete = [](llhttp_t* p) -> int {
            auto* self = static_cast<ResponseChecker*>(p->data);
            if (p->status_code >= 100 && p->status_code < 200) {
                return 0; // interim (100 Continue): the final response follows
            }
            FUZZ_CHECK(!self->head_requests_.empty(),
                       "response %zu has no request to answer: %s", self->finals_ + 1,
                       self->seen_.c_str());
            const bool head = self->head_requests_.front();
            self->head_requests_.pop_front();
            ++self->finals_;
            return head ? 1 : 0; // 1: no body follows
        };
        llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
        parser_.data = this;
    }
    ResponseChecker(const ResponseChecker&) = delete; // llhttp holds pointers into it
    ResponseChecker& operator=(const ResponseChecker&) = delete;

    const std::string& seen() const { return seen_; }

    void feed(const char* data, std::size_t len) {
        seen_.append(data, len);
        if (upgraded_) {
            return;
        }
        const llhttp_errno_t err = llhttp_execute(&parser_, data, len);
        if (err == HPE_PAUSED_UPGRADE) {
            upgraded_ = true; // not sent by this server, but not the checker's business
            return;
        }
        FUZZ_CHECK(err == HPE_OK, "invalid response stream: %s (%s) in:\n%s",
                   llhttp_errno_name(err), llhttp_get_error_reason(&parser_), seen_.c_str());
    }

    // The server closed: only the last response may end here unfinished (an aborted or
    // short response is closed on, that is how the client learns of it).
    void end() {
        if (!upgraded_) {
            const llhttp_errno_t err = llhttp_finish(&parser_);
            FUZZ_CHECK(err == HPE_OK || err == HPE_INVALID_EOF_STATE,
                       "response stream ends badly: %s in:\n%s", llhttp_errno_name(err),
                       seen_.c_str());
        }
    }

private:
    std::deque<bool> head_requests_; // per request, in order: was it HEAD?
    std::size_t finals_ = 0;
    bool upgraded_ = false;
    std::string seen_;
    llhttp_settings_t settings_{};
    llhttp_t parser_{};
};

// Which of the requests in stream are HEAD requests, as the server's parser reads them
// (its verdicts do not depend on how the bytes arrive; fuzz_parser checks that). A request
// cut short counts too: it may still get an answer (408).
std::deque<bool> head_requests(std::string_view stream, const Config& config) {
    std::deque<bool> out;
    http::RequestParser p(
        http::ParserLimits{config.max_header_size, config.max_headers, config.max_body_size});
    while (!stream.empty()) {
        const std::size_t n = p.feed(stream.data(), stream.size());
        stream.remove_prefix(n);
        p.body().clear();
        if (p.state() == http::RequestParser::State::complete) {
            out.push_back(p.head().method == HTTP_HEAD);
            p.next_message();
        } else if (p.state() == http::RequestParser::State::error) {
            out.push_back(p.head_method());
            return out;
        } else if (n == 0) {
            break;
        }
    }
    if (!p.idle()) {
        out.push_back(p.head_method());
    }
    return out;
}

struct Client {
    int fd = -1;
    bool eof = false; // the server closed (or shut down) its side
    ResponseChecker checker;

    // Takes what the server wrote; true if there was anything.
    bool drain() {
        bool any = false;
        char buf[65536];
        while (!eof) {
            const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                checker.feed(buf, static_cast<std::size_t>(n));
                any = true;
                continue;
            }
            if (n == 0 || (n < 0 && errno == ECONNRESET)) {
                eof = true;
                checker.end();
                any = true;
                break;
            }
            FUZZ_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR, "recv: %d",
                       errno);
            if (errno != EINTR) {
                break;
            }
        }
        return any;
    }
};

// Runs the loop and reads the responses until neither has anything left to do.
void settle(boost::asio::io_context& io, Client& client) {
    for (int round = 0; round < 100000; ++round) {
        io.restart();
        const std::size_t handlers = io.poll();
        const bool read = client.drain();
        if (handlers == 0 && !read) {
            return;
        }
    }
    FUZZ_CHECK(false, "the connection never settles");
}

void send_all(boost::asio::io_context& io, Client& client, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(client.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return; // the server closed: the rest goes nowhere, as for a real client
        }
        FUZZ_CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR),
                   "send: %d", errno);
        // The server is not reading (a request in flight): let it run, then retry; if it
        // still takes nothing, it waits for something else (a deadline), so stop sending.
        const std::size_t before = bytes.size();
        settle(io, client);
        const ssize_t again =
            ::send(client.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (again > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(again));
        } else if (bytes.size() == before) {
            return;
        }
    }
}

void set_buffer(int fd, int option_force, int option, int bytes) {
    if (::setsockopt(fd, SOL_SOCKET, option_force, &bytes, sizeof bytes) != 0) {
        ::setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof bytes);
    }
}

} // namespace

// FUZZ_VERBOSE=1: print what the server wrote, and its log (to replay one input).
static bool verbose = false;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    verbose = std::getenv("FUZZ_VERBOSE") != nullptr;
    spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) {
        return 0;
    }
    const std::uint8_t flags = data[0];
    fuzz::Splitter splitter(data[1]);
    const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);
    Variant& v = variant(flags & 3);
    const unsigned pieces = (flags >> 2) & 3;
    const bool expire = (flags & 0x10) != 0;
    const bool abrupt = (flags & 0x20) != 0;
    const bool small_buffer = (flags & 0x40) != 0;

    // Which responses to expect: the requests after the PROXY header, if there is one.
    std::string_view requests = stream;
    if (v.config.proxy_protocol) {
        const net::ProxyHeader h = net::parse_proxy_header(stream);
        requests = h.status == net::ProxyHeader::Status::done ? stream.substr(h.size)
                                                              : std::string_view{};
    }

    int sv[2];
    FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
               "socketpair: %d", errno);
    // Room for every response to the pipelined requests of one input: a write that found
    // the socket full would not wait for this thread to read (--write-timeout 0), so
    // responses are cut short only when bit 6 asks for it.
    for (const int fd : sv) {
        set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, 4 << 20);
        set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, 4 << 20);
    }
    if (small_buffer) {
        const int bytes = 4096; // the kernel's minimum is about this (doubled)
        ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    }
    Client client{sv[0], false, ResponseChecker(head_requests(requests, v.config))};

    server::Worker& worker = *v.worker;
    boost::asio::io_context& io = worker.io();
    std::weak_ptr<server::Connection> alive;
    {
        server::Connection::socket_type socket(io);
        socket.assign(boost::asio::generic::stream_protocol(AF_UNIX, 0), sv[1]);
        auto conn = std::make_shared<server::Connection>(worker, std::move(socket),
                                                         v.remote_addr, 40000);
        alive = conn;
        conn->start();
    }
    settle(io, client);

    std::size_t pos = 0;
    while (pos < stream.size() && !client.eof) {
        std::size_t n = stream.size() - pos;
        if (pieces == 1) {
            n = pos < 512 ? 1 : splitter.piece(n);
        } else if (pieces >= 2) {
            n = splitter.piece(n);
        }
        send_all(io, client, stream.substr(pos, n));
        pos += n;
        settle(io, client);
    }

    const auto later = std::chrono::steady_clock::now() + std::chrono::hours(1);
    if (expire) {
        if (auto conn = alive.lock()) {
            conn->check_deadline(later);
        }
        settle(io, client);
    }
    if (!abrupt) {
        ::shutdown(client.fd, SHUT_WR);
        settle(io, client);
    }
    ::close(client.fd);
    client.fd = -1;
    io.restart();
    io.poll();
    if (auto conn = alive.lock()) {
        // Lingering or writing to a client that is gone: its deadline ends it.
        conn->check_deadline(later);
        conn.reset();
        io.restart();
        io.poll();
    }
    FUZZ_CHECK(alive.expired(), "the connection outlived its client (phase %d)",
               alive.lock() ? static_cast<int>(alive.lock()->phase()) : -1);
    if (!client.eof) {
        client.checker.end();
    }
    if (verbose) {
        std::fprintf(stderr, "---- the server wrote (variant %u, pieces %u):\n%s\n----\n",
                     flags & 3, pieces, client.checker.seen().c_str());
    }

    // Whatever the connection reserved of the worker's budgets, it gave back.
    FUZZ_CHECK(worker.reserve_prebuffer(server::Worker::prebuffer_bytes_per_worker),
               "the request-body prebuffer budget leaked");
    worker.release_prebuffer(server::Worker::prebuffer_bytes_per_worker);
    FUZZ_CHECK(worker.deferred_budget().load() == server::Worker::deferred_bytes_per_worker,
               "the deferred-write budget is off by %lld",
               static_cast<long long>(server::Worker::deferred_bytes_per_worker -
                                      worker.deferred_budget().load()));
    return 0;
}
