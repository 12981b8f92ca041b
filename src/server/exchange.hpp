// One request/response exchange on a connection, as the application side sees it.
// While a request is in flight the blocking thread that runs the app owns the exchange
// (socket reads of the body, response writes); the event loop does not touch the
// connection until the exchange is handed back. One owner at a time, no locks.
// The app may use one request from two of its threads (one reading the body, one writing
// the response): their caller's lock (the GIL) serialises them, and is dropped only inside
// socket waits (BlockingScope), where no state is touched. The one thing that could
// interleave across such a wait, a "100 Continue" and the response, is ordered by
// continue_in_flight_.
#pragma once

#include "http/parser.hpp"
#include "http/response.hpp"
#include "net/proxy.hpp"
#include "net/socket_io.hpp"

#include <appserver/config.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/uio.h>

namespace appserver::server {

// A request's id, kept in place (ids are at most 128 bytes): no allocation per request.
class RequestId {
public:
    static constexpr std::size_t max_size = 128;
    bool empty() const { return size_ == 0; }
    std::string_view view() const { return {bytes_, size_}; }
    operator std::string_view() const { return view(); }
    void assign(std::string_view id) {
        size_ = id.size() < max_size ? id.size() : max_size;
        std::memcpy(bytes_, id.data(), size_);
    }
    void clear() { size_ = 0; }

private:
    char bytes_[max_size];
    std::size_t size_ = 0;
};

// Static facts about where this worker listens, for the application (environ).
struct ServerInfo {
    std::string name = "127.0.0.1"; // SERVER_NAME when the request has no Host
    std::string port = "8000";      // SERVER_PORT
    bool unix_socket = false;
};

class Exchange {
public:
    Exchange(const Config& config, const ServerInfo& server, const std::atomic<bool>& draining,
             int fd, std::string remote_addr, std::uint16_t remote_port,
             std::size_t read_buffer_size);
    Exchange(const Exchange&) = delete;
    Exchange& operator=(const Exchange&) = delete;

    // ---- the request ----------------------------------------------------------------
    const http::RequestHead& head() const { return parser_.head(); }
    const std::string& remote_addr() const { return remote_addr_; }
    std::uint16_t remote_port() const { return remote_port_; }
    const ServerInfo& server() const { return server_; }
    const Config& config() const { return config_; }
    // What the request's forwarding headers said, when its peer is a trusted proxy
    // (remote_addr() is then already the client's); applied == false otherwise.
    const net::Forwarding& forwarding() const { return forwarding_; }

    // Body access, blocking: fill_body() makes at least one byte available in
    // staged_body() unless the body has ended (returns false, body_error() empty) or the
    // read failed (returns false, body_error() says why). Sends "100 Continue" first when
    // the client asked for it: the app reading the body is the signal to go on.
    // stop: a flag the caller may raise while this waits (checked after each socket read,
    // with the caller's lock held again); raised, the read ends as failed.
    bool fill_body(net::BlockingScope& scope, const int* stop = nullptr);
    std::string_view staged_body() const;
    void consume_body(std::size_t n);
    bool body_done() const;
    const std::string& body_error() const { return body_error_; }
    // When the body failed through the client (bad framing, over a limit: the parser's
    // 4xx; too slow: 408), the status that says so; 0 otherwise. An app that lets the
    // resulting exception escape gets this answer sent instead of a 500.
    int body_error_status() const { return body_error_status_; }

    // ---- the response ---------------------------------------------------------------
    // Starts (or, before anything is sent, restarts) the response head.
    void begin_response(int code, std::string_view status);
    // Adds an application header; false (and nothing added) when the name or value is
    // not valid HTTP. Hop-by-hop fields are the server's: Connection: close is honoured,
    // the others are dropped.
    bool add_header(std::string_view name, std::string_view value);
    static void note_dropped_header(std::string_view name);
    // Sends the head if not yet sent, then these body parts in one gather write.
    // last = the body ends with these parts (lets a list response get a Content-Length).
    bool send(std::span<const std::string_view> parts, bool last, net::BlockingScope& scope);
    // Sends count bytes of a regular file from offset with sendfile(2).
    bool send_file(int file_fd, std::int64_t offset, std::uint64_t count, bool last,
                   net::BlockingScope& scope);
    // Ends the body (terminating chunk, length check).
    bool finish(net::BlockingScope& scope);
    // A complete response made by the server (500 after an app error, for instance);
    // only possible while nothing was sent.
    bool send_error(int code, std::string_view message, net::BlockingScope& scope,
                    std::string_view extra_headers = {});
    // The response cannot be completed (app error mid-body): close after what was sent.
    void abort() { keep_alive_ = false; aborted_ = true; }

    bool response_started() const { return head_sent_; }
    bool response_finished() const { return finished_; }
    // The app gave more body than its Content-Length: the response ended there.
    bool body_overflow() const { return body_overflow_; }
    // An aborted response delimited by the connection's end: close with a reset, since
    // an orderly close would pass the truncated body off as complete (RFC 9112 6.3).
    bool close_with_reset() const {
        return aborted_ && framing_ == http::Framing::close_delimited && head_sent_;
    }
    bool client_gone() const { return client_gone_; }
    int status_code() const { return status_code_; }
    std::uint64_t body_bytes_sent() const { return body_sent_; }
    // A field of the response head as sent (first one with this name, any case); none for
    // a response the server made itself. For the access log.
    std::optional<std::string_view> response_header(std::string_view name) const;

    // ---- request bookkeeping (logs and metrics) ---------------------------------------
    // The request's id: the client's X-Request-ID when it sent a usable one, else one the
    // worker made. Set by the loop before the request is queued.
    std::string_view request_id() const { return request_id_.view(); }
    // Set by the blocking thread that took the request; read by the loop once it is back.
    void note_queue_wait(std::uint64_t ns) { queue_wait_ns_ = static_cast<std::int64_t>(ns); }
    void note_expired() { expired_ = true; }

    // --request-timeout. Who answers the request: the app (its response head) or the event
    // loop (504, once the app ran too long); whoever claims it first. Atomic because the
    // loop decides while the blocking thread owns the exchange.
    static constexpr std::uint8_t verdict_open = 0;
    static constexpr std::uint8_t verdict_app = 1;
    static constexpr std::uint8_t verdict_timed_out = 2;
    // Blocking thread, before the first response byte: false (and the exchange aborted)
    // when the loop already answered.
    bool claim_response();
    // Event loop: true when it may answer 504 (the app has sent nothing).
    bool claim_timeout();
    bool timed_out() const {
        return verdict_.load(std::memory_order_acquire) == verdict_timed_out;
    }
    // Set by the blocking thread around the app (steady-clock ns; 0: not in the app) and
    // the thread that runs it (pthread_self()), for the loop's timeout check.
    void note_app_start(std::int64_t ns, std::uint64_t thread, unsigned thread_index) {
        app_thread_ = thread;
        app_thread_index_ = thread_index;
        app_started_ns_.store(ns, std::memory_order_release);
    }
    void note_app_end() { app_started_ns_.store(0, std::memory_order_release); }
    std::int64_t app_started_ns() const {
        return app_started_ns_.load(std::memory_order_acquire);
    }
    std::uint64_t app_thread() const { return app_thread_; }
    unsigned app_thread_index() const { return app_thread_index_; }
    void note_abandoned() { abandoned_ = true; }

    // After the app is done, on the same thread: drain an unread small body so the
    // connection can be reused; decides keep_alive().
    void complete(net::BlockingScope& scope);
    bool keep_alive() const { return keep_alive_; }

    // The end of a response that the client was not ready to take when the app finished
    // (at most max_deferred_tail bytes, within the worker's budget): the event loop writes
    // it, so a slow reader does not hold a blocking thread. Null budget: never deferred.
    static constexpr std::size_t max_deferred_tail = 8 * 1024 * 1024;
    void set_deferred_budget(std::atomic<std::int64_t>* budget) { deferred_budget_ = budget; }

    // Coalescing (ResponseCork): while a staging buffer is set, the final write of the
    // response, when it is a single write of at most limit bytes, is appended there
    // instead of written; held() says it was. write_held() writes those bytes later,
    // from the owner thread or the event loop, and never blocks: what the socket does
    // not take becomes the deferred tail, written by the loop (so one slow client does
    // not delay the responses held with its own; bounded by the cork's limits).
    void hold_final_write(std::string* staging, std::size_t limit) {
        hold_ = staging;
        hold_limit_ = limit;
    }
    bool held() const { return held_; }
    void write_held(const std::string& bytes);

protected:
    // Prepares the per-request state for the next message on this connection.
    void reset_exchange();

    // ---- proxies (event loop, before the request is queued) ------------------------------
    // Whether the connection's peer (the socket's, or the one a PROXY protocol header
    // named) is in trusted: decided once per connection.
    bool peer_trusted(const net::TrustedProxies& trusted);
    // A PROXY protocol header named the connection's real peer.
    void set_peer(const net::IpAddress& address, std::uint16_t port);
    // Believes the current request's forwarding headers if the peer is trusted: the
    // client's address replaces remote_addr()/remote_port() (logs, REMOTE_ADDR) until
    // reset_exchange() puts the peer's back, and forwarding() holds the rest.
    void apply_forwarding(const net::TrustedProxies& trusted);
    // Measurement only (bench/native/pyfloor): response bytes are dropped instead of
    // written, so what is timed is the application side alone.
    void discard_output(bool on) { discard_output_ = on; }
    const Config& config_;
    const ServerInfo& server_;
    const std::atomic<bool>& draining_; // the worker is shutting down: no more keep-alive
    int fd_;
    std::string remote_addr_;
    std::uint16_t remote_port_;

    http::RequestParser parser_;
    std::unique_ptr<char[]> rbuf_;
    std::size_t rbuf_size_;
    std::size_t rbeg_ = 0; // unparsed bytes are rbuf_[rbeg_, rend_)
    std::size_t rend_ = 0;

    std::string deferred_tail_; // written by the loop after the hand-back (see above)
    void release_deferred_tail();

    RequestId request_id_;
    std::atomic<std::uint8_t> verdict_{verdict_open};
    std::atomic<std::int64_t> app_started_ns_{0};
    std::uint64_t app_thread_ = 0; // written before app_started_ns_ (release), read after
    unsigned app_thread_index_ = 0; // the same
    std::int64_t queue_wait_ns_ = -1; // -1: never taken from the queue
    bool expired_ = false;
    bool abandoned_ = false;

private:
    // May the event loop write the end of this write after the thread moves on?
    // never: no (headers, mid-body chunks); within_budget: if it fits the worker's budget
    // for slow readers, else the thread waits; always: never wait (held responses, at
    // most ResponseCork::max_bytes each).
    enum class Defer { never, within_budget, always };
    void await_continue(net::BlockingScope& scope);
    bool write_iov(net::BlockingScope& scope, Defer defer = Defer::never);
    bool defer_rest(const iovec* iov, int count, Defer defer);
    void prepare_head(std::uint64_t known_length, bool length_known);
    void check_body_length();

    std::size_t body_pos_ = 0;
    std::string body_error_;
    int body_error_status_ = 0;
    bool continue_sent_ = false;
    std::atomic<bool> continue_in_flight_{false}; // fill_body() is writing "100 Continue"

    std::string head_buf_;            // status line + headers being built
    std::size_t head_status_end_ = 0; // where the status line ends (restart point)
    std::vector<iovec> iov_;
    char chunk_buf_[24];
    int status_code_ = 0;
    bool app_close_ = false;
    bool app_has_date_ = false;
    bool app_has_length_ = false;
    std::uint64_t app_length_ = 0;
    http::Framing framing_ = http::Framing::none;
    bool head_sent_ = false;
    bool finished_ = false;
    bool aborted_ = false;
    bool body_overflow_ = false;
    bool client_gone_ = false;
    bool keep_alive_ = true;
    double read_timeout_override_ = -1.0; // >= 0: body reads wait at most this long
    bool discard_output_ = false;
    std::uint64_t body_sent_ = 0;
    std::atomic<std::int64_t>* deferred_budget_ = nullptr;
    std::string* hold_ = nullptr;
    std::size_t hold_limit_ = 0;
    bool held_ = false;

    net::Forwarding forwarding_;
    std::string peer_addr_;           // the peer's, while remote_addr_ holds a forwarded client
    std::uint16_t peer_port_ = 0;
    bool client_forwarded_ = false;
    enum class PeerTrust : std::uint8_t { unknown, trusted, untrusted };
    PeerTrust peer_trust_ = PeerTrust::unknown;
};

} // namespace appserver::server
