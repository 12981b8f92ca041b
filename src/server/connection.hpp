// One client connection on a worker's event loop: reads and parses request heads, hands
// each parsed request to the backlog, and takes the connection back when the blocking
// thread is done with it (keep-alive, pipelining, or close).
#pragma once

#include "metrics/stats_page.hpp"
#include "server/exchange.hpp"

#include <boost/asio/generic/stream_protocol.hpp>

#include <chrono>
#include <memory>

namespace appserver::server {

class Worker;

class Connection : public Exchange, public std::enable_shared_from_this<Connection> {
public:
    using socket_type = boost::asio::generic::stream_protocol::socket;
    using clock = std::chrono::steady_clock;

    // queued covers the whole time a blocking thread owns the exchange (in the queue and
    // in the app): the loop touches nothing of the connection until it is handed back.
    // writing: the loop writes the deferred tail of a response the app already finished.
    enum class Phase { reading, queued, writing, closing, closed };

    Connection(Worker& worker, socket_type socket, std::string remote_addr,
               std::uint16_t remote_port);

    // ---- event-loop thread only -------------------------------------------------------
    void start();
    // Blocking thread finished the exchange (posted to the loop).
    void on_exchange_done();
    // Periodic deadline check; closes the connection when its read deadline passed.
    void check_deadline(clock::time_point now);
    // Graceful shutdown: an idle connection may bring one more request within
    // Worker::drain_grace() (served with Connection: close); a busy one finishes first.
    void shutdown_if_idle();
    void close(metrics::CloseReason reason);
    Phase phase() const { return phase_; }
    // Kept alive after a response, waiting for the client's next request with nothing of
    // it read yet.
    bool idle_between_requests() const;
    clock::time_point deadline() const { return deadline_; }
    // --max-connections: the worker needs room; an idle connection is closed.
    void close_idle_for_room();
    // Taken back from the queue after waiting past --request-queue-timeout: answer 503
    // (with Retry-After) and close.
    void answer_expired();
    static constexpr std::string_view expired_message =
        "Service Unavailable: the request waited too long in the queue";

    // ---- blocking thread, right after taking it from the backlog -------------------------
    // A request whose client left while it waited in the queue (at least abandon_after)
    // never reaches the app.
    bool abandoned(clock::time_point now) const;
    static constexpr std::chrono::seconds abandon_after{1};
    // When the request entered the queue (set by the loop before the push).
    clock::time_point queued_at() const { return queued_at_; }

private:
    void do_read();
    void on_readable(const boost::system::error_code& ec);
    void on_read(const boost::system::error_code& ec, std::size_t n);
    // --proxy-protocol: consumes the PROXY header at the start of the buffer; false when
    // the connection must wait for more bytes or was closed (not a valid header).
    bool take_proxy_header();
    void process_buffer();
    void dispatch();
    // Whether to go on reading a request body in the loop before queueing the request
    // (reserving its share of the worker's prebuffer budget on first use).
    bool prebuffer_body();
    bool buffers_whole_body() const;
    bool spool_body();
    // A buffered chunked body's limit when --max-body-size is 0 (unlimited streaming).
    static constexpr std::uint64_t max_buffered_body = std::uint64_t{1} << 30;
    void end_prebuffer();
    // The server's own answer (4xx/5xx), then a lingering close counted under reason.
    void reply_and_close(int code, std::string_view message, metrics::CloseReason reason,
                         std::string_view extra = {});
    void lingering_close();
    void write_deferred_tail();
    // --health-path: answered here, on the loop, never queued.
    bool is_health_request() const;
    void serve_health();
    void ensure_request_id();

    // The one completion point of a request, whatever path its response took: counts it
    // (metrics) and writes its access-log line. At most once per request.
    void record_request(int status, std::uint64_t response_bytes, bool body_known = true);
    void check_request_timeout(clock::time_point now);
    // "GET /path from 10.0.0.1 (request id ...)", for log lines about a stuck request.
    std::string describe_request() const;
    // A request back from its blocking thread (or answered on the loop): records it.
    void record_exchange();
    Worker& worker_;
    socket_type socket_;
    Phase phase_ = Phase::reading;
    bool kept_alive_ = false; // has served a request and was kept open
    clock::time_point deadline_;
    clock::time_point queued_at_;
    clock::time_point request_start_; // first byte of the current request
    bool request_recorded_ = false;
    bool written_off_ = false; // its thread was written off after a request timeout
    std::string request_target_;        // copied at dispatch when --request-timeout is on
    std::uint8_t request_version_ = 11; // the same: major * 10 + minor
    metrics::CloseReason linger_reason_ = metrics::CloseReason::response;
    bool lingering_ = false;
    std::size_t linger_dropped_ = 0;
    std::size_t tail_sent_ = 0; // bytes of the deferred tail the client has taken
    std::size_t prebuffer_reserved_ = 0; // of the worker's prebuffer budget, while reading a body
    bool awaiting_proxy_header_ = false;  // --proxy-protocol: nothing else is read before it
};

} // namespace appserver::server
