// Event-loop side of a client connection (see connection.hpp).
#include "server/connection.hpp"

#include "http/field_list.hpp"
#include "log/access_log.hpp"
#include "net/proxy.hpp"
#include "log/log.hpp"
#include "log/throttle.hpp"
#include "server/application.hpp"
#include "server/worker.hpp"

#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace appserver::server {
namespace {

std::chrono::steady_clock::duration seconds(double s) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(s));
}

// How long and how much a closing connection reads and drops before the final close,
// so a response is not destroyed by a reset caused by unread request bytes. Large enough
// for the upload a client is still sending when an early answer (401, 413) reaches it:
// with 1 MiB, Go, Node and Java clients lost the answer to a 4-10 MiB upload to EPIPE
// about a third of the time. Bounded in time too, so a client that never stops sending
// costs the loop at most this much reading.
constexpr double linger_seconds = 5.0;
constexpr std::size_t linger_max_bytes = 32 * 1024 * 1024;

using metrics::CloseReason;

// A client's X-Request-ID is taken as is when it is 1-128 visible ASCII characters:
// anything else could forge or break log lines, so the server makes its own instead.
bool usable_request_id(std::string_view id) {
    if (id.empty() || id.size() > 128) {
        return false;
    }
    for (const char c : id) {
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

// --forwarded-allow-ips, parsed once per event-loop thread (the option was validated when
// it was read; a list that still does not parse trusts nobody). Keyed by the text, so a
// test that runs workers with other configs in one process gets its own.
const net::TrustedProxies& trusted_proxies(const Config& config) {
    struct Cache {
        bool ready = false;
        std::string source;
        net::TrustedProxies trusted;
    };
    thread_local Cache cache;
    if (!cache.ready || cache.source != config.forwarded_allow_ips) {
        std::string error;
        auto parsed = net::TrustedProxies::parse(config.forwarded_allow_ips, &error);
        if (!parsed) {
            spdlog::error("--forwarded-allow-ips: value '{}' {}; no peer is trusted",
                          config.forwarded_allow_ips, error);
        }
        cache.trusted = parsed.value_or(net::TrustedProxies{});
        cache.source = config.forwarded_allow_ips;
        cache.ready = true;
    }
    return cache.trusted;
}

std::optional<std::string_view> request_field(const void* context, std::string_view name) {
    const auto& head = *static_cast<const http::RequestHead*>(context);
    for (const auto& field : head.headers) {
        if (http::iequals(head.view(field.name), name)) {
            return head.view(field.value);
        }
    }
    return std::nullopt;
}

} // namespace

Connection::Connection(Worker& worker, socket_type socket, std::string remote_addr,
                       std::uint16_t remote_port)
    : Exchange(worker.config(), worker.server_info(), worker.draining_flag(),
               socket.native_handle(), std::move(remote_addr), remote_port,
               Worker::read_buffer_size),
      worker_(worker), socket_(std::move(socket)) {
    set_deferred_budget(&worker.deferred_budget());
}

void Connection::start() {
    if (!server_.unix_socket) {
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    socket_.non_blocking(true);
    deadline_ = clock::now() + seconds(config_.header_read_timeout);
    if (config_.proxy_protocol) {
        // The header says who the client is: only a trusted proxy may say that.
        if (!peer_trusted(trusted_proxies(config_))) {
            if (log::client_events().allow()) {
                spdlog::info("connection from {} closed: --proxy-protocol headers are accepted "
                             "only from --forwarded-allow-ips",
                             remote_addr_.empty() ? "a unix socket" : remote_addr_);
            }
            close(CloseReason::bad_request);
            return;
        }
        awaiting_proxy_header_ = true;
    }
    do_read();
}

// The PROXY header is read here, on the loop, within the header-read deadline, before any
// byte goes to the HTTP parser. Anything else at the start of the connection closes it
// with no answer: an HTTP answer would tell whoever sent it nothing they may rely on.
bool Connection::take_proxy_header() {
    const net::ProxyHeader h =
        net::parse_proxy_header(std::string_view(rbuf_.get() + rbeg_, rend_ - rbeg_));
    switch (h.status) {
    case net::ProxyHeader::Status::incomplete:
        do_read();
        return false;
    case net::ProxyHeader::Status::invalid:
        if (log::client_events().allow()) {
            spdlog::info("connection from {} closed: {}",
                         remote_addr_.empty() ? "a unix socket" : remote_addr_, h.error);
        }
        close(CloseReason::bad_request);
        return false;
    case net::ProxyHeader::Status::done:
        break;
    }
    awaiting_proxy_header_ = false;
    rbeg_ += h.size;
    if (h.has_source) {
        set_peer(h.source, h.source_port);
    }
    if (rbeg_ == rend_) {
        rbeg_ = rend_ = 0;
        do_read();
        return false;
    }
    return true;
}

void Connection::do_read() {
    phase_ = Phase::reading;
    if (rbeg_ == rend_ && parser_.idle()) {
        // Nothing to parse and no request begun: wait for the client without a buffer
        // (an idle keep-alive connection costs no read buffer), take one when bytes come.
        rbeg_ = rend_ = 0;
        if (rbuf_) {
            worker_.buffers().give(std::move(rbuf_));
        }
        worker_.note_idle_connection();
        socket_.async_wait(socket_type::wait_read,
                           [self = shared_from_this()](const boost::system::error_code& ec) {
                               self->on_readable(ec);
                           });
        return;
    }
    if (!rbuf_) {
        rbuf_ = worker_.buffers().take();
    }
    socket_.async_read_some(
        boost::asio::buffer(rbuf_.get() + rend_, rbuf_size_ - rend_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
            self->on_read(ec, n);
        });
}

void Connection::on_readable(const boost::system::error_code& ec) {
    if (phase_ != Phase::reading) {
        return;
    }
    if (ec) {
        on_read(ec, 0);
        return;
    }
    rbuf_ = worker_.buffers().take();
    boost::system::error_code rec;
    const std::size_t n = socket_.read_some(boost::asio::buffer(rbuf_.get(), rbuf_size_), rec);
    if (rec == boost::asio::error::would_block || rec == boost::asio::error::try_again) {
        do_read(); // woken for nothing (another reader's event): wait again
        return;
    }
    on_read(rec, n);
}

bool Connection::idle_between_requests() const {
    return kept_alive_ && phase_ == Phase::reading && rbeg_ == rend_ && parser_.idle();
}

void Connection::close_idle_for_room() {
    if (idle_between_requests()) {
        close(CloseReason::connection_limit);
    }
}

void Connection::on_read(const boost::system::error_code& ec, std::size_t n) {
    if (phase_ != Phase::reading) {
        return;
    }
    if (ec) {
        // End of stream or reset: between requests that is a normal goodbye; inside a
        // request there is nobody left to answer.
        if (ec != boost::asio::error::eof && ec != boost::asio::error::operation_aborted) {
            spdlog::debug("read from {}: {}", remote_addr_, ec.message());
        }
        close(CloseReason::client);
        return;
    }
    rend_ += n;
    if (awaiting_proxy_header_ && !take_proxy_header()) {
        return;
    }
    process_buffer();
}

void Connection::process_buffer() {
    const bool was_idle = parser_.idle();
    rbeg_ += parser_.feed(rbuf_.get() + rbeg_, rend_ - rbeg_);
    if (was_idle && !parser_.idle()) {
        request_start_ = clock::now();
        request_recorded_ = false;
    }
    if (rbeg_ == rend_) {
        rbeg_ = rend_ = 0;
    }
    switch (parser_.state()) {
    case http::RequestParser::State::error: {
        ensure_request_id();
        if (log::client_events().allow()) {
            log::RequestIdScope id(request_id_);
            spdlog::info("bad request from {}: {} ({})", remote_addr_, parser_.error_status(),
                         parser_.error_reason());
        }
        reply_and_close(parser_.error_status(), parser_.error_reason(), CloseReason::bad_request);
        return;
    }
    case http::RequestParser::State::body:
        if (buffers_whole_body()) {
            if (!spool_body()) {
                return; // answered
            }
            deadline_ = clock::now() + seconds(config_.read_timeout);
            do_read();
            return;
        }
        if (prebuffer_body()) {
            // The body's bytes must keep coming: each read renews the deadline.
            deadline_ = clock::now() + seconds(config_.read_timeout);
            do_read();
            return;
        }
        dispatch();
        return;
    case http::RequestParser::State::complete:
        if (buffers_whole_body()) {
            if (spool_ && !spool_body()) {
                return;
            }
            body_buffered_ = true;
            buffered_length_ = (spool_ ? spool_->size() : 0) + parser_.body().size();
        }
        dispatch();
        return;
    case http::RequestParser::State::head:
        if (was_idle && !parser_.idle()) {
            // While stopping, the grace the idle connection got is also all its new head
            // gets (else 408).
            const auto header_deadline = clock::now() + seconds(config_.header_read_timeout);
            deadline_ = worker_.draining() ? std::min(deadline_, header_deadline) : header_deadline;
        }
        do_read();
        return;
    }
}

// A small body (at most Worker::prebuffer_body_limit bytes: by its Content-Length, or
// a chunked one until that much has arrived) is read here, on the loop, before the
// request is queued: a client that sends it slowly then holds no blocking thread, which
// the app would otherwise block in wsgi.input.read() (what a buffering NGINX did in front
// of uWSGI). Not when the client waits for "100 Continue": that is sent when the app reads.
bool Connection::prebuffer_body() {
    const http::RequestHead& h = parser_.head();
    if (h.expect_continue) {
        return false;
    }
    std::size_t need = 0;
    if (h.has_content_length) {
        if (h.content_length > Worker::prebuffer_body_limit) {
            return false;
        }
        need = static_cast<std::size_t>(h.content_length);
    } else {
        if (parser_.body_received() >= Worker::prebuffer_body_limit) {
            return false; // a large chunked body: the app streams the rest
        }
        need = Worker::prebuffer_body_limit;
    }
    if (prebuffer_reserved_ == 0) {
        if (!worker_.reserve_prebuffer(need)) {
            return false; // the worker's budget is spent: the thread reads it
        }
        prebuffer_reserved_ = need;
    }
    return true;
}

// --request-buffering on: a chunked body is read whole here, before the request is
// queued: the app then gets its length (CONTENT_LENGTH), and a slow upload holds no
// blocking thread. Bodies with a Content-Length stream as before.
bool Connection::buffers_whole_body() const {
    return parser_.head().chunked && config_.request_buffering == RequestBuffering::on;
}

// Keeps the body read so far: in memory while small (the worker's prebuffer budget
// allowing), else in the spool file. False when the request was answered instead.
bool Connection::spool_body() {
    net::NoLock no_wait; // 25 bytes to a socket with nothing else pending
    if (!send_continue(no_wait)) {
        close(CloseReason::client);
        return false;
    }
    std::string& staged = parser_.body();
    if (!spool_) {
        if (!parser_.head().expect_continue && staged.size() < Worker::prebuffer_body_limit &&
            prebuffer_body()) {
            return true;
        }
        end_prebuffer();
        spool_ = std::make_unique<BodySpool>();
    }
    if (!spool_->append(staged)) {
        spdlog::error("request from {}: {}", remote_addr_, spool_->error());
        reply_and_close(500, "Internal Server Error: the request body could not be buffered",
                        CloseReason::error);
        return false;
    }
    staged.clear();
    const std::uint64_t limit =
        config_.max_body_size != 0 ? config_.max_body_size : max_buffered_body;
    if (spool_->size() > limit) { // the parser enforces --max-body-size; this, the default
        ensure_request_id();
        if (log::client_events().allow()) {
            log::RequestIdScope id(request_id_);
            spdlog::info("request body from {} over {} bytes: 413 (--request-buffering)",
                         remote_addr_, limit);
        }
        reply_and_close(413, "request body larger than the configured limit",
                        CloseReason::bad_request);
        return false;
    }
    return true;
}

void Connection::end_prebuffer() {
    if (prebuffer_reserved_ != 0) {
        worker_.release_prebuffer(prebuffer_reserved_);
        prebuffer_reserved_ = 0;
    }
}

void Connection::ensure_request_id() {
    if (!request_id_.empty()) {
        return;
    }
    if (parser_.head_done()) {
        if (auto sent = request_field(&head(), "x-request-id"); sent && usable_request_id(*sent)) {
            request_id_.assign(*sent);
            return;
        }
    }
    worker_.make_request_id(request_id_);
}

bool Connection::is_health_request() const {
    const std::string& path = config_.health_path;
    if (path.empty()) {
        return false;
    }
    std::string_view target = head().target_view();
    target = target.substr(0, target.find('?'));
    return target == path;
}

// For load balancers and orchestrators: 200 while this worker serves, 503 once it is
// draining (so they stop sending before it goes). No Python, no queue: it answers while
// every blocking thread is busy, and says nothing about the app's own health.
void Connection::serve_health() {
    net::NoLock no_wait; // a few hundred bytes; what the socket refuses goes to the loop
    const auto method = head().method;
    if (method != HTTP_GET && method != HTTP_HEAD) {
        begin_response(405, "405 Method Not Allowed");
        add_header("Allow", "GET, HEAD");
        add_header("Content-Type", "text/plain; charset=utf-8");
        const std::string_view body = "Method Not Allowed\n";
        send({&body, 1}, true, no_wait);
    } else {
        const bool draining = worker_.draining();
        begin_response(draining ? 503 : 200, draining ? "503 Service Unavailable" : "200 OK");
        add_header("Content-Type", "text/plain; charset=utf-8");
        add_header("Cache-Control", "no-store");
        const std::string_view body = draining ? "draining\n" : "ok\n";
        send({&body, 1}, true, no_wait);
    }
    complete(no_wait);
    on_exchange_done();
}

void Connection::dispatch() {
    end_prebuffer();
    if (head().forwarding) {
        // Only requests that carry one of the five fields (the parser noticed) get here.
        apply_forwarding(trusted_proxies(config_));
    }
    phase_ = Phase::queued;
    queued_at_ = clock::now();
    ensure_request_id();
    if (config_.request_timeout > 0) {
        // For a 504 while the thread has the exchange (and so the head): copied now.
        request_target_.assign(head().target_view());
        request_version_ =
            static_cast<std::uint8_t>(head().version_major * 10 + head().version_minor);
    }
    auto self = shared_from_this();
    if (is_health_request()) {
        serve_health();
        return;
    }
    if (worker_.inline_app() != nullptr) {
        net::NoLock no_lock;
        worker_.inline_app()->handle(*this);
        complete(no_lock);
        on_exchange_done();
        return;
    }
    if (!worker_.enqueue(self)) {
        worker_.note_rejected(remote_addr_);
        reply_and_close(503, "Service Unavailable: the server is at capacity",
                        CloseReason::overload, "Retry-After: 1\r\n");
        return;
    }
}

void Connection::record_request(int status, std::uint64_t response_bytes, bool body_known) {
    if (request_recorded_) {
        return;
    }
    request_recorded_ = true;
    worker_.note_request_done();
    const auto duration = request_start_ == clock::time_point{} ? clock::duration::zero()
                                                                : clock::now() - request_start_;
    metrics::WorkerSlot& stats = worker_.stats();
    const std::string_view method = parser_.method_name();
    metrics::bump(stats.cumulative[metrics::idx::requests +
                                   metrics::method_index(method) * metrics::code_labels.size() +
                                   metrics::code_index(status)]);
    metrics::observe(stats, metrics::idx::request_duration, metrics::request_duration_bounds,
                     metrics::to_ns(duration));
    // Not while a blocking thread may still be reading the body (a 504 from the loop): the
    // parser is the thread's then, and so are the head's bytes (trailers grow them); the
    // request line was copied aside at dispatch for that case.
    const std::uint64_t body_bytes = body_known ? parser_.body_received() : 0;
    metrics::bump(stats.cumulative[metrics::idx::request_body_bytes], body_bytes);
    metrics::bump(stats.cumulative[metrics::idx::response_body_bytes], response_bytes);
    if (log::AccessLog* access = worker_.access_log(); access != nullptr) {
        log::AccessRecord r;
        r.remote_addr = remote_addr_;
        r.remote_port = remote_port_;
        r.method = method;
        r.target = body_known ? head().target_view() : std::string_view(request_target_);
        r.version_major = body_known ? head().version_major : request_version_ / 10;
        r.version_minor = body_known ? head().version_minor : request_version_ % 10;
        r.status = status;
        r.request_body_bytes = body_bytes;
        r.response_body_bytes = response_bytes;
        r.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(duration);
        r.start = std::chrono::system_clock::now() -
                  std::chrono::duration_cast<std::chrono::system_clock::duration>(duration);
        r.request_id = request_id_.view();
        r.worker = worker_.index();
        r.context = this;
        if (body_known) {
            r.request_header = [](const void* c, std::string_view name) {
                return request_field(&static_cast<const Connection*>(c)->head(), name);
            };
        }
        r.response_header = [](const void* c, std::string_view name) {
            return static_cast<const Connection*>(c)->response_header(name);
        };
        access->write(r);
    }
}

void Connection::record_exchange() {
    metrics::WorkerSlot& stats = worker_.stats();
    if (queue_wait_ns_ >= 0) {
        // Also for a request the loop already answered (504): it did wait in the queue.
        metrics::observe(stats, metrics::idx::queue_wait, metrics::queue_wait_bounds,
                         static_cast<std::uint64_t>(queue_wait_ns_));
        queue_wait_ns_ = -1;
    }
    if (request_recorded_) {
        return;
    }
    if (abandoned_) {
        // Its client left while it waited: no response, so not a request in
        // appserver_requests_total; counted as abandoned.
        request_recorded_ = true;
        metrics::bump(stats.cumulative[metrics::idx::queue_abandoned]);
        return;
    }
    if (expired_) {
        metrics::bump(stats.cumulative[metrics::idx::queue_expired]);
    }
    if (response_started()) {
        record_request(status_code(), body_bytes_sent());
    } else {
        request_recorded_ = true; // the client left before any response
    }
}

bool Connection::abandoned(clock::time_point now) const {
    // End of stream behind a keep-alive request that waited a while means an overloaded
    // server's client gave up: running the app for it would only deepen the overload.
    // One taken sooner is served: scripts and test tools often half-close right after
    // sending their request (shutdown(SHUT_WR), nc -N) and read the answer; and a
    // request that does not ask for keep-alive is always served.
    return head().keep_alive && now - queued_at_ >= abandon_after && net::peer_closed(fd_);
}

void Connection::on_exchange_done() {
    if (phase_ == Phase::closed) {
        release_deferred_tail();
        record_exchange();
        return;
    }
    if (!deferred_tail_.empty()) {
        write_deferred_tail(); // comes back here when the client has taken it
        return;
    }
    record_exchange();
    if (timed_out()) {
        // Answered 504 by the loop (the write side is shut): drain what the client still
        // sends before closing, so a reset does not destroy the 504 on its way.
        linger_reason_ = CloseReason::response;
        lingering_close();
        return;
    }
    // keep_alive() is what the response told the client. One that said keep-alive
    // (sent before a graceful stop began) is followed by the client's next request at
    // once: closing now would lose it, so it is read (for drain_grace() at most) and
    // answered with Connection: close.
    if (!keep_alive()) {
        const CloseReason reason = expired_                ? CloseReason::overload
                                   : worker_.draining()    ? CloseReason::shutdown
                                                           : CloseReason::response;
        if (close_with_reset()) {
            boost::system::error_code ignored;
            socket_.set_option(boost::asio::socket_base::linger(true, 0), ignored);
            close(reason);
        } else if (client_gone()) {
            close(CloseReason::client);
        } else {
            linger_reason_ = reason;
            lingering_close();
        }
        return;
    }
    reset_exchange();
    parser_.next_message();
    kept_alive_ = true;
    deadline_ = clock::now() + seconds(config_.keep_alive_timeout);
    if (worker_.draining()) {
        deadline_ = std::min(deadline_, clock::now() + worker_.drain_grace());
    }
    phase_ = Phase::reading;
    if (rbeg_ < rend_) {
        process_buffer(); // a pipelined request is already here
    } else {
        do_read();
    }
}

// One write_some at a time, so that every bit of progress moves the deadline: a client
// that keeps reading, however slowly, gets the whole tail; one that stops reading for
// --write-timeout is dropped.
void Connection::write_deferred_tail() {
    if (phase_ != Phase::writing) {
        phase_ = Phase::writing;
        tail_sent_ = 0;
    }
    deadline_ = clock::now() + seconds(config_.write_timeout);
    socket_.async_write_some(
        boost::asio::buffer(deferred_tail_.data() + tail_sent_, deferred_tail_.size() - tail_sent_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
            if (ec || self->phase_ != Phase::writing) {
                self->release_deferred_tail();
                spdlog::debug("response write to {} failed: {}", self->remote_addr_,
                              ec ? ec.message() : "connection closed");
                self->record_exchange();
                self->close(CloseReason::client);
                return;
            }
            self->tail_sent_ += n;
            if (self->tail_sent_ < self->deferred_tail_.size()) {
                self->write_deferred_tail();
                return;
            }
            self->release_deferred_tail();
            self->on_exchange_done();
        });
}

void Connection::reply_and_close(int code, std::string_view message, CloseReason reason,
                                 std::string_view extra) {
    phase_ = Phase::closing;
    deadline_ = clock::now() + seconds(config_.write_timeout);
    const bool with_body = !parser_.head_method();
    auto out = std::make_shared<std::string>(
        http::canned_response(code, message, true, extra, with_body));
    ensure_request_id();
    // The canned body is the message and a newline (http::canned_response).
    record_request(code, with_body ? message.size() + 1 : 0);
    linger_reason_ = reason;
    boost::asio::async_write(
        socket_, boost::asio::buffer(*out),
        [self = shared_from_this(), out, reason](const boost::system::error_code& ec,
                                                 std::size_t) {
            if (ec) {
                self->close(reason);
            } else {
                self->lingering_close();
            }
        });
}

void Connection::lingering_close() {
    if (phase_ == Phase::closed) {
        return;
    }
    if (phase_ != Phase::closing || !lingering_) {
        // The deadline is set once: a client that keeps sending does not extend it.
        phase_ = Phase::closing;
        lingering_ = true;
        linger_dropped_ = 0;
        deadline_ = clock::now() + seconds(linger_seconds);
        if (worker_.draining()) {
            deadline_ = std::min(deadline_, clock::now() + worker_.drain_grace());
        }
        boost::system::error_code ignored;
        socket_.shutdown(socket_type::shutdown_send, ignored);
    }
    rbeg_ = rend_ = 0;
    socket_.async_read_some(
        boost::asio::buffer(worker_.discard_buffer().data(), worker_.discard_buffer().size()),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
            if (self->phase_ != Phase::closing) {
                return;
            }
            self->linger_dropped_ += n;
            if (ec || self->linger_dropped_ > linger_max_bytes) {
                self->close(self->linger_reason_);
            } else {
                self->lingering_close(); // keep dropping until EOF, the cap or the deadline
            }
        });
}

void Connection::check_deadline(clock::time_point now) {
    if (phase_ == Phase::queued) {
        if (config_.request_timeout > 0) {
            check_request_timeout(now);
        }
        return;
    }
    if (now < deadline_) {
        return;
    }
    if (phase_ == Phase::reading) {
        if (awaiting_proxy_header_) {
            if (rend_ > rbeg_ && log::client_events().allow()) {
                spdlog::info("connection from {} closed: its PROXY protocol header did not "
                             "arrive in time",
                             remote_addr_.empty() ? "a unix socket" : remote_addr_);
            }
            close(worker_.draining() ? CloseReason::shutdown : CloseReason::read_timeout);
            return;
        }
        if (parser_.head_done()) {
            ensure_request_id();
            if (log::client_events().allow()) {
                log::RequestIdScope id(request_id_);
                spdlog::info("request body from {} timed out", remote_addr_);
            }
            end_prebuffer();
            reply_and_close(408, "Request Timeout: the request body stopped arriving",
                            CloseReason::read_timeout);
            deadline_ = now + seconds(1.0);
            return;
        }
        if (!parser_.idle()) {
            if (log::client_events().allow()) {
                spdlog::info("request head from {} timed out", remote_addr_);
            }
            reply_and_close(408, "Request Timeout: the request head did not arrive in time",
                            CloseReason::read_timeout);
            deadline_ = now + seconds(1.0);
            return;
        }
        close(worker_.draining() ? CloseReason::shutdown : CloseReason::keep_alive_timeout);
    } else if (phase_ == Phase::writing) {
        if (log::client_events().allow()) {
            log::RequestIdScope id(request_id_);
            spdlog::info("response to {} cut off: the client took nothing for {}s "
                         "(--write-timeout)",
                         remote_addr_, config_.write_timeout);
        }
        record_exchange();
        close(CloseReason::write_timeout); // the pending write is aborted; its handler
                                           // releases the tail
    } else if (phase_ == Phase::closing) {
        close(linger_reason_);
    }
}

void Connection::shutdown_if_idle() {
    // An idle keep-alive client may be sending its next request right now (it cannot know
    // we stop): closing at once would lose that request. It gets drain_grace() to
    // arrive, and is served with Connection: close; a silent connection is then closed
    // by the sweep (check_deadline). A request head already begun gets the same time to
    // end (else 408), not the whole --header-read-timeout: a client that trickles its
    // head must not hold the stop.
    if (phase_ == Phase::reading && !parser_.head_done()) {
        deadline_ = std::min(deadline_, clock::now() + worker_.drain_grace());
    }
}

// --request-timeout: the app has not started its response in time. The loop answers 504
// itself (the client is not left waiting for the thread), shuts the write side so nothing
// the app sends later reaches the client, and has the thread's stack logged and the thread
// interrupted. The thread keeps the exchange until it lets go; one that does not within
// another request timeout is written off (the worker is replaced around it).
void Connection::check_request_timeout(clock::time_point now) {
    const std::int64_t started = app_started_ns();
    if (started == 0) {
        return; // still queued (--request-queue-timeout's business), or back from the app
    }
    const auto limit = seconds(config_.request_timeout);
    const auto running = now.time_since_epoch() - std::chrono::nanoseconds(started);
    if (timed_out()) {
        if (!written_off_ && running >= 2 * limit) {
            written_off_ = true;
            worker_.write_off_thread(app_thread(), describe_request());
        }
        return;
    }
    if (running < limit || !claim_timeout()) {
        return; // in time, or the app's response is already under way
    }
    const bool with_body = !parser_.head_method();
    const std::string_view message = "Gateway Timeout: the application did not answer in time";
    const std::string out = http::canned_response(504, message, true, {}, with_body);
    // Nothing was written on this exchange yet and the answer is small: the socket takes
    // it at once (what it does not take is lost with the connection anyway).
    (void)::send(fd_, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    ::shutdown(fd_, SHUT_WR);
    record_request(504, with_body ? message.size() + 1 : 0, false);
    const std::string what = describe_request();
    {
        log::RequestIdScope id(request_id_);
        spdlog::error("request timed out after {}s in the application (--request-timeout); "
                      "answered 504: {}",
                      config_.request_timeout, what);
    }
    worker_.report_timeout(app_thread(), app_thread_index(), started, what);
}

std::string Connection::describe_request() const {
    std::string out(parser_.method_name());
    out.append(" ").append(request_target_).append(" from ").append(remote_addr_);
    out.append(" (request id ").append(request_id_.view()).append(")");
    return out;
}

void Connection::answer_expired() {
    reply_and_close(503, expired_message, CloseReason::overload, "Retry-After: 1\r\n");
}

void Connection::close(CloseReason reason) {
    if (phase_ == Phase::closed) {
        return;
    }
    phase_ = Phase::closed;
    metrics::bump(worker_.stats().cumulative[metrics::idx::connections_closed +
                                             static_cast<std::size_t>(reason)]);
    end_prebuffer();
    boost::system::error_code ignored;
    socket_.close(ignored);
    worker_.remove(this);
}

} // namespace appserver::server
