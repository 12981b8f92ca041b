// Request body access and response framing for one exchange (see exchange.hpp).
#include "server/exchange.hpp"

#include "http/field_list.hpp"
#include "log/log.hpp"
#include "log/throttle.hpp"

#include <spdlog/spdlog.h>
#include <strings.h>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <mutex>
#include <string>
#include <unordered_set>

namespace appserver::server {
namespace {

// An unread body up to this size is read and dropped after the response so the
// connection stays reusable; a larger one costs the connection instead.
constexpr std::uint64_t drain_limit = 256 * 1024;

// Connection is a comma-separated token list (RFC 9110 7.6.1).
bool contains_close_token(std::string_view value) {
    return http::any_list_element(value, [](std::string_view token) {
        return token.size() == 5 && ::strncasecmp(token.data(), "close", 5) == 0;
    });
}


void append_number(std::string& out, std::uint64_t n) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
    (void)ec;
    out.append(buf, end);
}

} // namespace

Exchange::Exchange(const Config& config, const ServerInfo& server,
                   const std::atomic<bool>& draining, int fd, std::string remote_addr,
                   std::uint16_t remote_port, std::size_t read_buffer_size)
    : config_(config), server_(server), draining_(draining), fd_(fd), remote_addr_(std::move(remote_addr)),
      remote_port_(remote_port),
      parser_(http::ParserLimits{config.max_header_size, config.max_headers,
                                 config.max_body_size}),
      rbuf_(new char[read_buffer_size]), rbuf_size_(read_buffer_size) {
    head_buf_.reserve(1024);
    iov_.reserve(16);
}

bool Exchange::claim_response() {
    std::uint8_t open = verdict_open;
    if (verdict_.load(std::memory_order_relaxed) == verdict_app ||
        verdict_.compare_exchange_strong(open, verdict_app, std::memory_order_acq_rel)) {
        return true;
    }
    // The event loop answered 504 (--request-timeout): what the app sends now goes nowhere.
    client_gone_ = true;
    keep_alive_ = false;
    aborted_ = true;
    return false;
}

bool Exchange::claim_timeout() {
    std::uint8_t open = verdict_open;
    return verdict_.compare_exchange_strong(open, verdict_timed_out, std::memory_order_acq_rel);
}

void Exchange::reset_exchange() {
    verdict_.store(verdict_open, std::memory_order_relaxed);
    app_started_ns_.store(0, std::memory_order_relaxed);
    request_id_.clear();
    queue_wait_ns_ = -1;
    expired_ = false;
    abandoned_ = false;
    body_pos_ = 0;
    body_error_.clear();
    body_error_status_ = 0;
    continue_sent_ = false;
    head_buf_.clear();
    head_status_end_ = 0;
    status_code_ = 0;
    app_close_ = false;
    app_has_date_ = false;
    app_has_length_ = false;
    app_length_ = 0;
    framing_ = http::Framing::none;
    head_sent_ = false;
    finished_ = false;
    aborted_ = false;
    body_overflow_ = false;
    client_gone_ = false;
    keep_alive_ = true;
    body_sent_ = 0;
    read_timeout_override_ = -1.0;
    if (forwarding_.applied) {
        forwarding_ = {};
        if (client_forwarded_) {
            remote_addr_.swap(peer_addr_); // no allocation: the two buffers trade places
            remote_port_ = peer_port_;
            client_forwarded_ = false;
        }
    }
}

// ---- proxies ----------------------------------------------------------------------------

bool Exchange::peer_trusted(const net::TrustedProxies& trusted) {
    if (peer_trust_ == PeerTrust::unknown) {
        const std::string& peer = client_forwarded_ ? peer_addr_ : remote_addr_;
        peer_trust_ = trusted.trusts_peer(peer) ? PeerTrust::trusted : PeerTrust::untrusted;
    }
    return peer_trust_ == PeerTrust::trusted;
}

void Exchange::set_peer(const net::IpAddress& address, std::uint16_t port) {
    net::format_ip(address, remote_addr_);
    remote_port_ = port;
    peer_trust_ = PeerTrust::unknown; // the next hop out: trusted or not on its own merits
}

void Exchange::apply_forwarding(const net::TrustedProxies& trusted) {
    if (!peer_trusted(trusted)) {
        return; // the headers stay plain headers
    }
    forwarding_ = net::resolve_forwarding(parser_.head(), trusted);
    if (forwarding_.has_client) {
        if (!client_forwarded_) {
            peer_addr_.swap(remote_addr_);
            peer_port_ = remote_port_;
            client_forwarded_ = true;
        }
        net::format_ip(forwarding_.client, remote_addr_);
        remote_port_ = forwarding_.client_port;
    }
}

// ---- request body ---------------------------------------------------------------------

std::string_view Exchange::staged_body() const {
    const std::string& b = parser_.body();
    return std::string_view(b).substr(body_pos_);
}

void Exchange::consume_body(std::size_t n) {
    body_pos_ += n;
}

bool Exchange::body_done() const {
    return parser_.state() == http::RequestParser::State::complete && staged_body().empty();
}

bool Exchange::fill_body(net::BlockingScope& scope, const int* stop) {
    std::string& staged = parser_.body();
    if (body_pos_ < staged.size()) {
        return true;
    }
    staged.clear();
    body_pos_ = 0;
    for (;;) {
        if (!body_error_.empty()) {
            return false;
        }
        if (parser_.state() == http::RequestParser::State::complete) {
            return false;
        }
        if (parser_.state() == http::RequestParser::State::error) {
            body_error_ = parser_.error_reason();
            body_error_status_ = parser_.error_status();
            keep_alive_ = false;
            return false;
        }
        if (rbeg_ == rend_) {
            if (head().expect_continue && !continue_sent_ && !head_sent_) {
                continue_sent_ = true;
                iovec iov{const_cast<char*>(http::continue_100.data()),
                          http::continue_100.size()};
                continue_in_flight_.store(true, std::memory_order_relaxed);
                const net::IoResult sent =
                    net::write_all(fd_, &iov, 1, config_.write_timeout, scope);
                continue_in_flight_.store(false, std::memory_order_release);
                if (sent != net::IoResult::ok) {
                    client_gone_ = true;
                    keep_alive_ = false;
                    body_error_ = "client went away before sending the body";
                    return false;
                }
            }
            rbeg_ = rend_ = 0;
            std::size_t got = 0;
            const double timeout =
                read_timeout_override_ >= 0.0 ? read_timeout_override_ : config_.read_timeout;
            const net::IoResult r =
                net::read_some(fd_, rbuf_.get(), rbuf_size_, got, timeout, scope);
            if (r != net::IoResult::ok) {
                keep_alive_ = false;
                if (r == net::IoResult::eof) {
                    client_gone_ = true;
                    body_error_ = "client closed the connection before the end of the body";
                } else if (r == net::IoResult::timeout) {
                    body_error_ = "timed out reading the request body";
                    body_error_status_ = 408;
                } else {
                    body_error_ = "error reading the request body";
                }
                return false;
            }
            rend_ = got;
        }
        rbeg_ += parser_.feed(rbuf_.get() + rbeg_, rend_ - rbeg_);
        if (rbeg_ == rend_) {
            rbeg_ = rend_ = 0;
        }
        if (!staged.empty()) {
            return true;
        }
        // Only framing arrived (a chunk-size line, trailers): the caller may stop here.
        if (stop != nullptr && *stop != 0) {
            keep_alive_ = false;
            body_error_ = "the request ended while its body was being read";
            return false;
        }
    }
}

// ---- response -------------------------------------------------------------------------

void Exchange::begin_response(int code, std::string_view status) {
    head_buf_.clear();
    head_buf_.append("HTTP/1.1 ").append(status);
    if (status.size() == 3) {
        // A bare code ("200"): RFC 9112 4 wants the SP before the (possibly empty)
        // reason; give it the standard one.
        head_buf_.append(" ").append(http::reason_phrase(code));
    }
    head_buf_.append("\r\n");
    head_status_end_ = head_buf_.size();
    status_code_ = code;
    app_close_ = false;
    app_has_date_ = false;
    app_has_length_ = false;
    app_length_ = 0;
}

// PEP 3333: a server that discards an application header must say so in its log. Once
// per header name and process, at warning level: an app that always sends one would
// otherwise write a line per request.
void Exchange::note_dropped_header(std::string_view name) {
    static std::mutex mutex;
    static std::unordered_set<std::string> noted;
    std::string lower(name);
    for (char& c : lower) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    {
        std::lock_guard lock(mutex);
        if (!noted.insert(lower).second) {
            return;
        }
    }
    spdlog::warn("the application set the hop-by-hop response header '{}': the server owns "
                 "it and drops it (logged once)",
                 name);
}

bool Exchange::add_header(std::string_view name, std::string_view value) {
    if (!http::valid_header_name(name) || !http::valid_header_value(value)) {
        return false;
    }
    switch (http::classify_hop_by_hop(name)) {
    case http::HopByHop::connection:
        if (contains_close_token(value)) {
            app_close_ = true;
        } else {
            note_dropped_header(name);
        }
        return true;
    case http::HopByHop::drop:
        note_dropped_header(name);
        return true;
    case http::HopByHop::no:
        break;
    }
    if (name.size() == 14 && http::iequals(name, "content-length")) {
        std::uint64_t n = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (value.empty() || ec != std::errc() || end != value.data() + value.size()) {
            return false;
        }
        if (app_has_length_ && n != app_length_) {
            return false; // two different lengths: no valid framing exists
        }
        app_has_length_ = true;
        app_length_ = n;
        return true; // written by prepare_head, which owns framing
    }
    if (name.size() == 4 && http::iequals(name, "date")) {
        app_has_date_ = true;
    }
    head_buf_.append(name).append(": ").append(value).append("\r\n");
    return true;
}

void Exchange::prepare_head(std::uint64_t known_length, bool length_known) {
    const auto& req = head();
    const bool http11 = req.version_minor >= 1;
    const bool head_request = req.method == HTTP_HEAD;
    bool ka = req.keep_alive && !app_close_ && !draining_.load(std::memory_order_relaxed) && keep_alive_;

    // Can the connection carry another request after this one? Only if the request
    // body ends where we can find it.
    if (parser_.state() == http::RequestParser::State::error) {
        ka = false;
    } else if (parser_.state() != http::RequestParser::State::complete) {
        // The app did not read the whole body. complete() only drops what has already
        // arrived; unless the rest is in the socket buffer now, say we will close.
        bool drainable = false;
        if (req.has_content_length && !(req.expect_continue && !continue_sent_)) {
            const std::uint64_t left = req.content_length - parser_.body_received();
            int available = 0;
            drainable = left <= drain_limit && ::ioctl(fd_, FIONREAD, &available) == 0 &&
                        static_cast<std::uint64_t>(available) + (rend_ - rbeg_) >= left;
        }
        if (!drainable) {
            ka = false;
        }
    }

    if (status_code_ < 200) {
        framing_ = http::Framing::none;
        ka = false; // a 1xx cannot end an exchange; do not pretend it did
    } else if (http::status_forbids_body(status_code_)) {
        framing_ = http::Framing::none;
        if (status_code_ == 304 && app_has_length_) {
            head_buf_.append("Content-Length: ");
            append_number(head_buf_, app_length_);
            head_buf_.append("\r\n");
        }
    } else if (status_code_ == 205) {
        // RFC 9110 15.3.6: no content in a 205, yet (unlike 204) its framing is not
        // implied: say the body is empty so the connection can carry the next response.
        framing_ = http::Framing::none;
        head_buf_.append("Content-Length: 0\r\n");
    } else if (head_request) {
        framing_ = http::Framing::none;
        // Only the app knows what a GET would have carried; an empty HEAD body says
        // nothing about it, so no length is invented.
        if (app_has_length_ || (length_known && known_length > 0)) {
            head_buf_.append("Content-Length: ");
            append_number(head_buf_, app_has_length_ ? app_length_ : known_length);
            head_buf_.append("\r\n");
        } else if (http11) {
            // What a GET would carry when its length is not known up front (RFC 9110
            // 9.3.2); without any framing field some clients (node, aiohttp) take the
            // response for close-delimited and drop the keep-alive connection.
            head_buf_.append("Transfer-Encoding: chunked\r\n");
        }
    } else if (app_has_length_ || length_known) {
        framing_ = http::Framing::content_length;
        if (!app_has_length_) {
            app_has_length_ = true;
            app_length_ = known_length;
        }
        head_buf_.append("Content-Length: ");
        append_number(head_buf_, app_length_);
        head_buf_.append("\r\n");
    } else if (http11) {
        framing_ = http::Framing::chunked;
        head_buf_.append("Transfer-Encoding: chunked\r\n");
    } else {
        framing_ = http::Framing::close_delimited;
        ka = false;
    }
    if (!app_has_date_) {
        head_buf_.append(http::date_line());
    }
    if (!ka) {
        head_buf_.append("Connection: close\r\n");
    } else if (!http11) {
        head_buf_.append("Connection: keep-alive\r\n");
    }
    head_buf_.append("\r\n");
    keep_alive_ = ka;
}

// Another of the app's threads may be writing "100 Continue" from fill_body(), its
// caller's lock dropped while the socket is full: the response's bytes wait until that is
// out, so the two never interleave on the wire.
void Exchange::await_continue(net::BlockingScope& scope) {
    while (continue_in_flight_.load(std::memory_order_acquire)) {
        scope.enter();
        ::usleep(500);
        scope.leave();
    }
}

bool Exchange::write_iov(net::BlockingScope& scope, Defer defer) {
    if (discard_output_) {
        return true;
    }
    await_continue(scope);
    iovec* iov = iov_.data();
    int count = static_cast<int>(iov_.size());
    if (defer != Defer::never && hold_ != nullptr && !held_) {
        std::size_t total = 0;
        for (int i = 0; i < count; ++i) {
            total += iov[i].iov_len;
        }
        if (total <= hold_limit_) {
            for (int i = 0; i < count; ++i) {
                hold_->append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
            }
            held_ = true;
            return true;
        }
    }
    std::size_t defer_limit = 0;
    if (defer == Defer::always) {
        defer_limit = static_cast<std::size_t>(-1);
    } else if (defer == Defer::within_budget && deferred_budget_ != nullptr) {
        const std::int64_t available = deferred_budget_->load(std::memory_order_relaxed);
        if (available > 0) {
            defer_limit = std::min(max_deferred_tail, static_cast<std::size_t>(available));
        }
    }
    bool deferred = false;
    net::IoResult r = net::write_or_defer(fd_, iov, count, config_.write_timeout, defer_limit,
                                          deferred, scope);
    if (r == net::IoResult::ok && deferred) {
        if (defer_rest(iov, count, defer)) {
            return true;
        }
        r = net::write_all(fd_, iov, count, config_.write_timeout, scope);
    }
    if (r != net::IoResult::ok) {
        client_gone_ = true;
        keep_alive_ = false;
        if (r == net::IoResult::timeout) {
            if (log::client_events().allow()) {
                spdlog::info("response to {} cut off: the client took nothing for {}s "
                             "(--write-timeout)",
                             remote_addr_, config_.write_timeout);
            }
        } else {
            spdlog::debug("response write to {} failed: {}", remote_addr_, net::describe(r));
        }
        return false;
    }
    return true;
}

bool Exchange::defer_rest(const iovec* iov, int count, Defer defer) {
    std::size_t left = 0;
    for (int i = 0; i < count; ++i) {
        left += iov[i].iov_len;
    }
    // Reserve the bytes in the worker's budget; another thread may have taken it
    // meanwhile, and then this one finishes the write itself. The event loop cannot wait,
    // so it takes the (small) bytes even past the budget.
    const auto want = static_cast<std::int64_t>(left);
    if (deferred_budget_ != nullptr) {
        if (defer == Defer::always) {
            deferred_budget_->fetch_sub(want, std::memory_order_relaxed);
        } else {
            std::int64_t available = deferred_budget_->load(std::memory_order_relaxed);
            while (available >= want &&
                   !deferred_budget_->compare_exchange_weak(available, available - want,
                                                            std::memory_order_relaxed)) {
            }
            if (available < want) {
                return false;
            }
        }
    } else if (defer != Defer::always) {
        return false;
    }
    deferred_tail_.reserve(left);
    for (int i = 0; i < count; ++i) {
        deferred_tail_.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    }
    return true;
}

void Exchange::write_held(const std::string& bytes) {
    if (!held_) {
        return;
    }
    held_ = false;
    hold_ = nullptr;
    iov_.clear();
    iov_.push_back({const_cast<char*>(bytes.data()), bytes.size()});
    net::NoLock no_wait; // Defer::always never waits
    write_iov(no_wait, Defer::always);
}

bool Exchange::send(std::span<const std::string_view> parts, bool last,
                    net::BlockingScope& scope) {
    if (client_gone_ || aborted_ || finished_) {
        return false;
    }
    std::uint64_t total = 0;
    for (const auto& p : parts) {
        total += p.size();
    }
    iov_.clear();
    if (!head_sent_) {
        if (!claim_response()) {
            return false;
        }
        prepare_head(total, last);
        iov_.push_back({head_buf_.data(), head_buf_.size()});
        head_sent_ = true;
    }
    std::uint64_t budget = total;
    bool overflow = false;
    if (framing_ == http::Framing::content_length) {
        const std::uint64_t room = app_length_ - body_sent_;
        if (total > room) {
            // The response is complete at its Content-Length: send up to there, then
            // stop (send() returns false, so the app's iterable is not drained further,
            // which could be endless) and close the connection after it.
            spdlog::error("application sent more than its Content-Length ({} bytes); "
                          "response truncated there",
                          app_length_);
            budget = room;
            keep_alive_ = false;
            overflow = true;
        }
    }
    const bool body = framing_ != http::Framing::none && budget > 0;
    if (body && framing_ == http::Framing::chunked) {
        std::string size_line;
        http::append_chunk_size(size_line, budget);
        std::copy(size_line.begin(), size_line.end(), chunk_buf_);
        iov_.push_back({chunk_buf_, size_line.size()});
    }
    if (body) {
        std::uint64_t left = budget;
        for (const auto& p : parts) {
            if (left == 0) {
                break;
            }
            const std::size_t n = p.size() < left ? p.size() : static_cast<std::size_t>(left);
            if (n > 0) {
                iov_.push_back({const_cast<char*>(p.data()), n});
            }
            left -= n;
        }
        if (framing_ == http::Framing::chunked) {
            iov_.push_back({const_cast<char*>("\r\n"), 2});
        }
    }
    if (last && framing_ == http::Framing::chunked) {
        iov_.push_back({const_cast<char*>(http::last_chunk.data()), http::last_chunk.size()});
    }
    if (!iov_.empty() &&
        !write_iov(scope, last || overflow ? Defer::within_budget : Defer::never)) {
        return false;
    }
    if (body) {
        body_sent_ += budget;
    }
    if (last || overflow) {
        finished_ = true;
        check_body_length();
    }
    if (overflow) {
        body_overflow_ = true;
        return false;
    }
    return true;
}

bool Exchange::send_file(int file_fd, std::int64_t offset, std::uint64_t count, bool last,
                         net::BlockingScope& scope) {
    if (client_gone_ || aborted_ || finished_) {
        return false;
    }
    iov_.clear();
    if (!head_sent_) {
        if (!claim_response()) {
            return false;
        }
        prepare_head(count, last);
        iov_.push_back({head_buf_.data(), head_buf_.size()});
        head_sent_ = true;
    }
    if (framing_ == http::Framing::content_length) {
        const std::uint64_t room = app_length_ - body_sent_;
        if (count > room) {
            count = room;
            keep_alive_ = false;
        }
    }
    const bool body = framing_ != http::Framing::none && count > 0;
    std::string size_line;
    if (body && framing_ == http::Framing::chunked) {
        http::append_chunk_size(size_line, count);
        iov_.push_back({size_line.data(), size_line.size()});
    }
    if (!iov_.empty() && !write_iov(scope)) {
        return false;
    }
    if (body) {
        await_continue(scope);
        const net::IoResult r =
            discard_output_ ? net::IoResult::ok
                            : net::send_file(fd_, file_fd, offset, count, config_.write_timeout,
                                             scope);
        if (r != net::IoResult::ok) {
            client_gone_ = r == net::IoResult::eof;
            keep_alive_ = false;
            aborted_ = true;
            return false;
        }
        body_sent_ += count;
        if (framing_ == http::Framing::chunked) {
            iov_.clear();
            iov_.push_back({const_cast<char*>("\r\n"), 2});
            if (!write_iov(scope)) {
                return false;
            }
        }
    }
    if (last) {
        return finish(scope);
    }
    return true;
}

void Exchange::check_body_length() {
    // The head promised a length the body fell short of: the framing is broken, so the
    // connection cannot carry another request.
    if (framing_ == http::Framing::content_length && body_sent_ < app_length_) {
        spdlog::error("application sent {} of the {} bytes its Content-Length promised",
                      body_sent_, app_length_);
        keep_alive_ = false;
    }
}

bool Exchange::finish(net::BlockingScope& scope) {
    if (finished_) {
        return true;
    }
    if (client_gone_ || aborted_) {
        return false;
    }
    if (!head_sent_) {
        return send({}, true, scope);
    }
    finished_ = true;
    if (framing_ == http::Framing::chunked) {
        iov_.clear();
        iov_.push_back({const_cast<char*>(http::last_chunk.data()), http::last_chunk.size()});
        return write_iov(scope, Defer::within_budget);
    }
    check_body_length();
    return true;
}

bool Exchange::send_error(int code, std::string_view message, net::BlockingScope& scope,
                          std::string_view extra_headers) {
    if (head_sent_ || client_gone_ || !claim_response()) {
        return false;
    }
    keep_alive_ = false;
    std::string response = http::canned_response(code, message, true, extra_headers,
                                                 head().method != HTTP_HEAD);
    head_sent_ = true;
    finished_ = true;
    status_code_ = code;
    if (head().method != HTTP_HEAD) {
        body_sent_ = message.size() + 1; // canned_response's body: the message and '\n'
    }
    iov_.clear();
    iov_.push_back({response.data(), response.size()});
    return write_iov(scope);
}

std::optional<std::string_view> Exchange::response_header(std::string_view name) const {
    if (!head_sent_ || head_buf_.empty()) {
        return std::nullopt;
    }
    // head_buf_ holds the status line and the fields, each ending in CRLF.
    std::string_view rest(head_buf_);
    rest.remove_prefix(std::min(rest.size(), head_status_end_));
    while (!rest.empty()) {
        const auto eol = rest.find("\r\n");
        const std::string_view line = rest.substr(0, eol);
        rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 2);
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            continue;
        }
        if (http::iequals(line.substr(0, colon), name)) {
            std::string_view value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ') {
                value.remove_prefix(1);
            }
            return value;
        }
    }
    return std::nullopt;
}

void Exchange::release_deferred_tail() {
    if (deferred_budget_ != nullptr && !deferred_tail_.empty()) {
        deferred_budget_->fetch_add(static_cast<std::int64_t>(deferred_tail_.size()),
                                    std::memory_order_relaxed);
    }
    std::string().swap(deferred_tail_); // give the memory back, not just the length
}

void Exchange::complete(net::BlockingScope& scope) {
    if (!head_sent_ && !client_gone_) {
        send_error(500, "Internal Server Error", scope);
    }
    if (!finished_ && !aborted_ && !client_gone_) {
        finish(scope);
    }
    if (!finished_ || aborted_) {
        keep_alive_ = false;
    }
    if (!keep_alive_) {
        return;
    }
    // Read and drop what the app left of the body, so the next request's bytes are next:
    // only what has already arrived. Waiting for a slow client here would hold this
    // thread (and the worker) hostage; a connection whose body is still on its way is
    // closed instead (the loop's lingering close drops the rest).
    std::uint64_t dropped = 0;
    net::NoLock no_wait;
    const double saved_timeout = read_timeout_override_;
    read_timeout_override_ = 0.0;
    while (fill_body(no_wait)) {
        const std::size_t n = staged_body().size();
        consume_body(n);
        dropped += n;
        if (dropped > drain_limit) {
            break;
        }
    }
    read_timeout_override_ = saved_timeout;
    if (!body_done()) {
        keep_alive_ = false;
    }
    (void)scope;
}

} // namespace appserver::server
