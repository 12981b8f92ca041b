// The /metrics endpoint (see metrics_server.hpp): binding, the accept loop, a small
// HTTP/1.1 keep-alive server over RequestParser, deadlines, and the fork hooks.
#include "metrics/metrics_server.hpp"

#include "http/field_list.hpp"
#include "http/parser.hpp"
#include "http/response.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <future>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

namespace appserver::metrics {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using clock = std::chrono::steady_clock;
using boost::system::error_code;

// A scrape request is a request line and a few fields; anything larger is not one.
constexpr std::size_t max_head_bytes = 8 * 1024;
constexpr std::size_t max_head_fields = 64;
// Each accept wake-up takes at most this many connections, so a flood cannot keep the
// thread in one handler (and a fork waiting for it) for long.
constexpr int accepts_per_wakeup = 16;
// After an error response: how long to read and drop what the client still sends, so
// closing does not reset the connection before it has read the answer.
constexpr std::chrono::milliseconds linger_time{2000};

std::string display_address(const std::string& address, std::uint16_t port) {
    const bool ipv6_literal = address.find(':') != std::string::npos && address.front() != '[';
    return (ipv6_literal ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

// Binds and listens; returns the descriptor (non-blocking, close-on-exec) or -1 with error.
int bind_listener(const std::string& address, std::uint16_t port, int& family,
                  std::uint16_t& bound_port, std::string& error) {
    const std::string where = "cannot listen for metrics on " + display_address(address, port);
    std::string host = address;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    if (const int gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(),
                                      &hints, &res);
        gai != 0) {
        error = where + ": " + ::gai_strerror(gai);
        return -1;
    }
    int last_err = EADDRNOTAVAIL;
    int fd = -1;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last_err = errno;
            continue;
        }
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6) {
            ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        }
        if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
            family = ai->ai_family;
            break;
        }
        last_err = errno;
        ::close(fd);
        fd = -1;
    }
    ::freeaddrinfo(res);
    if (fd < 0) {
        error = where + ": " + std::strerror(last_err);
        return -1;
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    bound_port = port;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
        bound_port = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    }
    return fd;
}

// The path of a request target: origin-form up to the query, or the path of an
// absolute-form target ("http://host:9090/metrics?x" -> "/metrics").
std::string_view request_path(std::string_view target) {
    if (!target.empty() && target.front() != '/') {
        const std::size_t scheme = target.find("://");
        if (scheme == std::string_view::npos) {
            return target; // "*" (OPTIONS) or an authority (CONNECT): not a path we serve
        }
        const std::size_t slash = target.find('/', scheme + 3);
        target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
    return target.substr(0, target.find('?'));
}

class Connection;

// Everything the thread owns. Each completion handler runs under handler_mutex (see
// guarded()), and no handler runs outside it, so a fork() between before_fork and
// after_fork_parent finds the thread in epoll_wait or waiting for that mutex (once it has
// started: MetricsServer::run() returns only then).
class Core {
public:
    Core(int fd, int family, ScrapeSources sources, const MetricsServerLimits& limits)
        : acceptor_(io_), sweep_(io_), accept_retry_(io_), sources_(std::move(sources)),
          limits_(limits), protocol_(family == AF_INET6 ? tcp::v6() : tcp::v4()) {
        acceptor_.assign(protocol_, fd);
    }

    template <class Handler>
    auto guarded(Handler handler) {
        return [this, handler = std::move(handler)](auto&&... args) mutable {
            std::lock_guard lock(handler_mutex_);
            handler(std::forward<decltype(args)>(args)...);
        };
    }

    void begin() {
        wait_accept();
        arm_sweep();
    }

    void loop() {
        for (;;) {
            try {
                io_.run();
                return;
            } catch (...) {
                // A connection's handler threw (an allocation failed): that connection is
                // closed by the sweep at its deadline; the endpoint goes on serving.
            }
        }
    }

    void stop_io() { io_.stop(); }
    net::io_context& io() { return io_; }
    void close_all();            // with the thread stopped
    void close_fds_after_fork(); // in the child: plain close(), nothing else

    std::mutex& handler_mutex() { return handler_mutex_; }
    std::thread& thread() { return thread_; }
    const ScrapeSources& sources() const { return sources_; }
    const MetricsServerLimits& limits() const { return limits_; }
    void remove(const Connection* c);

private:
    void wait_accept();
    void on_acceptable(const error_code& ec);
    void arm_sweep();
    void on_sweep();

    net::io_context io_{1};
    tcp::acceptor acceptor_;
    net::steady_timer sweep_;
    net::steady_timer accept_retry_;
    ScrapeSources sources_;
    MetricsServerLimits limits_;
    tcp protocol_;
    std::mutex handler_mutex_;
    std::vector<std::shared_ptr<Connection>> connections_;
    std::thread thread_;
};

// One client connection: read a head, answer it, and again (keep-alive, pipelining).
// At most one read or write is outstanding; every handler holds a shared_ptr to it.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(Core& core, tcp::socket socket)
        : core_(core), socket_(std::move(socket)),
          parser_(http::ParserLimits{max_head_bytes, max_head_fields, 0}) {}

    void start() {
        deadline_ = clock::now() + core_.limits().idle_timeout;
        read();
    }

    // Closes the socket (an outstanding operation then completes with an error and
    // finds closed_) and leaves the server's list.
    void close() {
        if (closed_) {
            return;
        }
        closed_ = true;
        error_code ec;
        socket_.close(ec);
        core_.remove(this);
    }

    bool expired(clock::time_point now) const { return deadline_ <= now; }
    int fd() { return socket_.is_open() ? socket_.native_handle() : -1; }

private:
    void read() {
        if (end_ == buf_.size()) { // only pipelined bytes can fill it: make room
            std::memmove(buf_.data(), buf_.data() + beg_, end_ - beg_);
            end_ -= beg_;
            beg_ = 0;
            if (end_ == buf_.size()) {
                close();
                return;
            }
        }
        socket_.async_read_some(
            net::buffer(buf_.data() + end_, buf_.size() - end_),
            core_.guarded([self = shared_from_this()](const error_code& ec, std::size_t n) {
                self->on_read(ec, n);
            }));
    }

    void on_read(const error_code& ec, std::size_t n) {
        if (closed_) {
            return;
        }
        if (ec) {
            // End of stream or an error: an unfinished head has no one to answer to.
            close();
            return;
        }
        if (lingering_) {
            beg_ = end_ = 0;
            read();
            return;
        }
        end_ += n;
        process();
    }

    void process() {
        const bool was_idle = parser_.idle();
        beg_ += parser_.feed(buf_.data() + beg_, end_ - beg_);
        if (beg_ == end_) {
            beg_ = end_ = 0;
        }
        switch (parser_.state()) {
        case http::RequestParser::State::error:
            respond(http::canned_response(parser_.error_status(), parser_.error_reason(), true,
                                          {}, !parser_.head_method()),
                    true);
            return;
        case http::RequestParser::State::body:
        case http::RequestParser::State::complete:
            if (parser_.head().has_body()) {
                respond(http::canned_response(413, "the metrics endpoint takes no request body",
                                              true, {}, !parser_.head_method()),
                        true);
                return;
            }
            answer();
            return;
        case http::RequestParser::State::head:
            if (was_idle && !parser_.idle()) {
                deadline_ = clock::now() + core_.limits().head_timeout;
            }
            read();
            return;
        }
    }

    void answer() {
        const http::RequestHead& h = parser_.head();
        bool keep_alive = h.keep_alive;
        const bool head = h.method == HTTP_HEAD;
        const bool get_or_head = head || h.method == HTTP_GET;
        // An HTTP/1.0 client keeps the connection only when told so.
        const std::string_view keep_alive_field =
            keep_alive && h.version_major == 1 && h.version_minor == 0
                ? "Connection: keep-alive\r\n"
                : "";
        const std::string_view path = request_path(h.target_view());
        std::string response;
        if (path != "/metrics" && path != "/") {
            response = http::canned_response(404, "not found; the metrics are at /metrics",
                                             !keep_alive, keep_alive_field, !head);
        } else if (!get_or_head) {
            response = http::canned_response(405, "method not allowed; use GET or HEAD",
                                             !keep_alive,
                                             std::string(keep_alive_field) +
                                                 "Allow: GET, HEAD\r\n",
                                             !head);
        } else if (path == "/") {
            response = ok("text/plain; charset=utf-8", "appserver: the metrics are at /metrics\n",
                          keep_alive, keep_alive_field, head);
        } else {
            try {
                std::string accept;
                for (const auto& f : h.headers) {
                    if (http::iequals(h.view(f.name), "accept")) {
                        if (!accept.empty()) {
                            accept += ',';
                        }
                        accept += h.view(f.value);
                    }
                }
                const ExpositionFormat format = negotiate(accept);
                response = ok(content_type(format), serialize(collect(core_.sources()), format),
                              keep_alive, keep_alive_field, head);
            } catch (const std::exception&) {
                keep_alive = false;
                response = http::canned_response(500, "the metrics could not be collected", true,
                                                 {}, !head);
            }
        }
        respond(std::move(response), !keep_alive);
    }

    static std::string ok(std::string_view type, const std::string& body, bool keep_alive,
                          std::string_view extra, bool head) {
        std::string out;
        out.reserve(200 + (head ? 0 : body.size()));
        out.append("HTTP/1.1 200 OK\r\n");
        out.append(http::date_line());
        out.append("Content-Type: ").append(type).append("\r\n");
        out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
        out.append("Cache-Control: no-store\r\n");
        out.append(extra);
        if (!keep_alive) {
            out.append("Connection: close\r\n");
        }
        out.append("\r\n");
        if (!head) {
            out.append(body);
        }
        return out;
    }

    void respond(std::string response, bool close_after) {
        out_ = std::move(response);
        close_after_ = close_after;
        deadline_ = clock::now() + core_.limits().idle_timeout;
        net::async_write(socket_, net::buffer(out_),
                         core_.guarded([self = shared_from_this()](const error_code& ec,
                                                                   std::size_t) {
                             self->on_written(ec);
                         }));
    }

    void on_written(const error_code& ec) {
        if (closed_) {
            return;
        }
        if (ec) {
            close();
            return;
        }
        std::string().swap(out_); // a scrape's text is not kept while the connection idles
        if (close_after_) {
            linger();
            return;
        }
        parser_.next_message();
        deadline_ = clock::now() + core_.limits().idle_timeout;
        if (beg_ < end_) {
            process(); // a pipelined request
        } else {
            read();
        }
    }

    // Half-close and drop what still comes until the client closes (or linger_time):
    // closing with unread bytes would reset the connection, and the client could lose
    // the answer it has not read yet.
    void linger() {
        error_code ec;
        socket_.shutdown(tcp::socket::shutdown_send, ec);
        lingering_ = true;
        deadline_ = clock::now() + std::min<clock::duration>(linger_time,
                                                             core_.limits().idle_timeout);
        beg_ = end_ = 0;
        read();
    }

    Core& core_;
    tcp::socket socket_;
    http::RequestParser parser_;
    std::array<char, max_head_bytes> buf_{};
    std::size_t beg_ = 0; // unparsed bytes are buf_[beg_, end_)
    std::size_t end_ = 0;
    std::string out_;
    clock::time_point deadline_;
    bool close_after_ = false;
    bool lingering_ = false;
    bool closed_ = false;
};

void Core::remove(const Connection* c) {
    const auto it = std::find_if(connections_.begin(), connections_.end(),
                                 [c](const auto& p) { return p.get() == c; });
    if (it != connections_.end()) {
        std::swap(*it, connections_.back());
        connections_.pop_back();
    }
}

void Core::wait_accept() {
    acceptor_.async_wait(tcp::acceptor::wait_read,
                         guarded([this](const error_code& ec) { on_acceptable(ec); }));
}

void Core::on_acceptable(const error_code& ec) {
    if (ec == net::error::operation_aborted) {
        return;
    }
    for (int i = 0; !ec && i < accepts_per_wakeup; ++i) {
        // accept4 here, under handler_mutex, rather than Asio's async_accept: a
        // connection's descriptor then never exists without being in connections_, where
        // after_fork_child finds it.
        const int fd =
            ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            // Out of descriptors or memory: the socket stays readable, so waiting on it
            // again would spin. Try again a little later.
            accept_retry_.expires_after(std::chrono::milliseconds(100));
            accept_retry_.async_wait(guarded([this](const error_code& e) {
                if (!e) {
                    wait_accept();
                }
            }));
            return;
        }
        if (connections_.size() >= limits_.max_connections) {
            ::close(fd);
            continue;
        }
        tcp::socket socket(io_);
        error_code assign_ec;
        socket.assign(protocol_, fd, assign_ec);
        if (assign_ec) {
            ::close(fd);
            continue;
        }
        socket.set_option(tcp::no_delay(true), assign_ec);
        try {
            auto c = std::make_shared<Connection>(*this, std::move(socket));
            connections_.push_back(c);
            c->start();
        } catch (const std::bad_alloc&) {
            // The socket closes with its object; accepting must go on (re-armed below).
        }
    }
    if (ec) {
        accept_retry_.expires_after(std::chrono::milliseconds(100));
        accept_retry_.async_wait(guarded([this](const error_code& e) {
            if (!e) {
                wait_accept();
            }
        }));
        return;
    }
    wait_accept();
}

void Core::arm_sweep() {
    // Often enough that a deadline is late by at most a quarter of the shortest timeout.
    const auto shortest = std::min(limits_.idle_timeout, limits_.head_timeout);
    const auto period = std::clamp<std::chrono::milliseconds>(
        shortest / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    sweep_.expires_after(period);
    sweep_.async_wait(guarded([this](const error_code& ec) {
        if (!ec) {
            on_sweep();
        }
    }));
}

void Core::on_sweep() {
    const auto now = clock::now();
    // Backwards, because close() moves the last entry into the closed one's place (an
    // entry already looked at), and without allocating: the sweep must always re-arm.
    for (std::size_t i = connections_.size(); i > 0; --i) {
        if (connections_[i - 1]->expired(now)) {
            const std::shared_ptr<Connection> c = connections_[i - 1];
            c->close();
        }
    }
    arm_sweep();
}

void Core::close_all() {
    std::vector<std::shared_ptr<Connection>> all;
    all.swap(connections_);
    for (const auto& c : all) {
        c->close();
    }
    error_code ec;
    acceptor_.close(ec);
    sweep_.cancel();
    accept_retry_.cancel();
}

void Core::close_fds_after_fork() {
    ::close(acceptor_.native_handle());
    for (const auto& c : connections_) {
        if (const int fd = c->fd(); fd >= 0) {
            ::close(fd);
        }
    }
}

} // namespace

struct MetricsServer::Impl {
    Core core;
    bool stopped = false;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, std::uint16_t port, std::string endpoint)
    : impl_(std::move(impl)), port_(port), endpoint_(std::move(endpoint)) {}

MetricsServer::~MetricsServer() {
    stop();
}

std::unique_ptr<MetricsServer> MetricsServer::start(const std::string& address,
                                                    std::uint16_t port, ScrapeSources sources,
                                                    std::string& error,
                                                    const MetricsServerLimits& limits) {
    int family = AF_INET;
    std::uint16_t bound_port = port;
    const int fd = bind_listener(address, port, family, bound_port, error);
    if (fd < 0) {
        return nullptr;
    }
    std::unique_ptr<Impl> impl;
    try {
        impl.reset(new Impl{Core(fd, family, std::move(sources), limits)});
    } catch (const std::exception& e) {
        ::close(fd);
        error = "cannot serve metrics on " + display_address(address, bound_port) + ": " + e.what();
        return nullptr;
    }
    return std::unique_ptr<MetricsServer>(
        new MetricsServer(std::move(impl), bound_port, display_address(address, bound_port)));
}

void MetricsServer::run() {
    if (!impl_ || impl_->stopped || impl_->core.thread().joinable()) {
        return;
    }
    Core& core = impl_->core;
    core.begin();
    // The master takes its signals with sigtimedwait on its main thread: this thread must
    // never be the one a process-directed signal is delivered to. Faults stay unblocked so
    // that a crash in this thread still reaches whatever handler the process installed.
    sigset_t all;
    sigset_t previous;
    sigfillset(&all);
    for (const int fault : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) {
        sigdelset(&all, fault);
    }
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    try {
        core.thread() = std::thread([&core] {
            ::pthread_setname_np(::pthread_self(), "metrics");
            core.loop();
        });
    } catch (...) {
        ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        throw;
    }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    // Return only once the thread runs its event loop: until then it is starting up
    // (allocating, outside any handler), and a fork() then could copy a lock it holds into
    // the child, which before_fork() does not cover. A handler of its own says so.
    std::promise<void> running;
    std::future<void> started = running.get_future();
    net::post(core.io(), core.guarded([&running] { running.set_value(); }));
    started.wait();
}

void MetricsServer::stop() {
    if (!impl_ || impl_->stopped) {
        return;
    }
    impl_->stopped = true;
    Core& core = impl_->core;
    core.stop_io();
    if (core.thread().joinable()) {
        core.thread().join();
    }
    core.close_all();
}

void MetricsServer::before_fork() {
    if (impl_) {
        impl_->core.handler_mutex().lock();
    }
}

void MetricsServer::after_fork_parent() {
    if (impl_) {
        impl_->core.handler_mutex().unlock();
    }
}

void MetricsServer::after_fork_child() {
    if (!impl_) {
        return;
    }
    impl_->core.close_fds_after_fork();
    // Deliberately leaked: the io_context, its epoll registrations and the thread object
    // belong to the parent; destroying them here would act on the parent's state.
    (void)impl_.release();
}

} // namespace appserver::metrics
