// llhttp adapter: collects the request head into one growable buffer (offsets, not
// pointers, so growth is safe), stages body bytes, and enforces the size limits llhttp
// itself does not know about.
#include "http/parser.hpp"

#include "http/field_list.hpp"
#include "http/uri.hpp"

#include <strings.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <new>

namespace appserver::http {
namespace {



// Whether a Transfer-Encoding field value lists a coding other than chunked
// (transfer-coding = token *( OWS ";" OWS transfer-parameter ), RFC 9112 7).
bool lists_other_coding(std::string_view value) {
    return any_list_element(value, [](std::string_view item) {
        item = item.substr(0, item.find(';'));
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
            item.remove_suffix(1);
        }
        return !item.empty() && !iequals(item, "chunked");
    });
}

// A chunk-size line (without its CRLF) as llhttp 8.1 can read it. RFC 9112 7.1.1 allows
// BWS around the ';' and '=' of chunk extensions and RFC 9110 5.6.4 quoted-pairs in their
// quoted values; llhttp rejects both. Extensions are ignored anyway, so that whitespace is
// dropped and each quoted-pair becomes two plain characters. Anything else is left as it
// is, for llhttp to judge (whitespace elsewhere, control bytes, a bad quoted-pair).
void normalise_size_line(std::string_view line, std::string& out) {
    out.clear();
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted) {
            if (c == '\\' && i + 1 < line.size()) {
                const auto next = static_cast<unsigned char>(line[i + 1]);
                if (next == '\t' || (next >= 0x20 && next != 0x7f)) {
                    out.append("__");
                    ++i;
                    continue;
                }
            }
            if (c == '"') {
                quoted = false;
            }
            out.push_back(c);
            continue;
        }
        if (c == '"') {
            quoted = true;
            out.push_back(c);
            continue;
        }
        if (c == ' ' || c == '\t') {
            std::size_t end = i;
            while (end < line.size() && (line[end] == ' ' || line[end] == '\t')) {
                ++end;
            }
            const char before = out.empty() ? '\0' : out.back();
            const char after = end < line.size() ? line[end] : '\0';
            const bool bws = after == ';' || after == '=' || before == ';' || before == '=';
            if (!bws) {
                out.append(line.substr(i, end - i));
            }
            i = end - 1;
            continue;
        }
        out.push_back(c);
    }
}

// The llhttp_method_t of a method llhttp 8.1 reads in a request line (its HTTP methods,
// and PRI for the HTTP/2 connection preface); -1 for any other.
int llhttp_request_method(std::string_view name) {
    struct Entry {
        std::string_view name;
        int id;
    };
    static constexpr Entry table[] = {
#define APPSERVER_METHOD_ENTRY(NUM, NAME, STRING) {#STRING, NUM},
        HTTP_METHOD_MAP(APPSERVER_METHOD_ENTRY)
#undef APPSERVER_METHOD_ENTRY
        {"PRI", HTTP_PRI},
    };
    for (const Entry& e : table) {
        if (e.name == name) {
            return e.id;
        }
    }
    return -1;
}

} // namespace

std::string_view RequestHead::method_name() const {
    if (method == kOtherMethod) {
        return view(method_text);
    }
    return llhttp_method_name(static_cast<llhttp_method_t>(method));
}

void RequestHead::clear() {
    bytes.clear();
    target = {};
    method_text = {};
    headers.clear();
    method = 0;
    version_major = 1;
    version_minor = 1;
    keep_alive = true;
    chunked = false;
    has_content_length = false;
    content_length = 0;
    expect_continue = false;
    forwarding = false;
}

RequestParser::RequestParser(const ParserLimits& limits)
    : limits_(limits),
      scanner_(limits.max_header_size),
      trailer_scanner_(limits.max_header_size, HeadScanner::Section::trailers) {
    llhttp_init(&parser_, HTTP_REQUEST, settings());
    parser_.data = this;
    head_.bytes.reserve(1024);
    head_.headers.reserve(32);
}

std::size_t RequestParser::feed(const char* data, std::size_t len) {
    // Whatever throws while parsing (out of memory) fails this request alone, with a 500,
    // rather than the event loop that called in.
    try {
        return feed_unguarded(data, len);
    } catch (...) {
        fail_on_exception();
        return len;
    }
}

std::size_t RequestParser::feed_unguarded(const char* data, std::size_t len) {
    if (state_ == State::complete || state_ == State::error || len == 0) {
        return 0;
    }
    if (state_ == State::head && !scanner_.done()) {
        std::size_t used = 0;
        if (scanner_.scan(data, len, used) == HeadScanner::Verdict::error) {
            // The first error in byte order wins, however the bytes were split: let llhttp
            // see what comes before the offending byte first.
            if (deferred_error_ == HPE_OK && used > 1) {
                execute_head(data, used - 1, used - 1);
                if (state_ == State::error) {
                    return used;
                }
            }
            // A request-line error still awaiting its verdict came first if the request
            // line ended before the offending byte.
            if (deferred_error_ != HPE_OK && settle_deferred_error()) {
                return used;
            }
            fail(scanner_.error_status(), scanner_.error_reason());
            return used;
        }
        if (deferred_error_ != HPE_OK) {
            return settle_deferred_error() ? used : len;
        }
        return execute_head(data, len, used);
    }
    return execute(data, len);
}

std::size_t RequestParser::execute_head(const char* data, std::size_t len, std::size_t head_len) {
    std::size_t at = 0;
    if (!method_fed_) {
        if (!scanner_.method().empty()) {
            message_begun_ = true;
        }
        const std::size_t end = scanner_.method_end_at();
        if (end == std::string::npos || end >= head_len) {
            // The method goes on in the next read; the scanner keeps its bytes.
            if (!scanner_.method().empty() && !scanner_.method_token()) {
                fail(400, "invalid request method");
            }
            return head_len;
        }
        if (!feed_method(end, at)) {
            return end + 1;
        }
    }
    if (!held_ws_.empty()) {
        // Whether the SP/HTAB held back from the last read ends its field line (then it
        // is trailing OWS, mapped as in execute_mapped) depends on the next other byte.
        std::size_t next = at;
        while (next < head_len && (data[next] == ' ' || data[next] == '\t')) {
            ++next;
        }
        if (next == head_len && !scanner_.done()) {
            held_ws_.append(data + at, head_len - at);
            return len;
        }
        if (next < head_len && data[next] == '\r') {
            std::replace(held_ws_.begin(), held_ws_.end(), '\t', ' ');
        }
        const std::string held = std::move(held_ws_);
        held_ws_.clear();
        if (execute(held.data(), held.size()) != held.size() || state_ != State::head) {
            return at;
        }
    }
    return at + execute_mapped(data + at, len - at, head_len - at, at);
}

// llhttp 8.1 knows a fixed list of methods and fails any other, while RFC 9110 9.1 makes
// any token a method for the app to judge (QUERY, WebDAV's, custom ones). So llhttp
// reads a method it knows as sent and a stand-in for any other, whose name is kept here.
// from = where llhttp goes on in data.
bool RequestParser::feed_method(std::size_t end, std::size_t& from) {
    method_fed_ = true;
    const std::string_view name = scanner_.method();
    if (!scanner_.method_token()) {
        fail(400, "invalid request method");
        return false;
    }
    const int id = llhttp_request_method(name);
    if (id >= 0 && end >= name.size()) {
        from = end - name.size(); // the usual case: llhttp reads it in place, in one go
        return true;
    }
    rewrite_.assign(id >= 0 ? name : std::string_view("GET"));
    rewrite_.push_back(' ');
    if (execute(rewrite_.data(), rewrite_.size()) != rewrite_.size() || state_ != State::head) {
        return false;
    }
    if (id < 0) {
        method_ = kOtherMethod;
        head_method_ = false;
        head_.method_text = {static_cast<std::uint32_t>(head_.bytes.size()),
                             static_cast<std::uint32_t>(name.size())};
        if (!append_head(name.data(), name.size())) {
            return false;
        }
    }
    from = end + 1;
    return true;
}

// Two things RFC 9110 allows that llhttp 8.1 misreads, so llhttp gets a mapped copy of
// the head bytes when either is present (rarely):
// - an HTTP/1.x minor version above 1, to be processed as HTTP/1.1 (RFC 9110 6.2):
//   llhttp knows only 1.0 and 1.1, so it reads a '1' there;
// - HTAB in the OWS that ends a field line (RFC 9110 5.5): llhttp rejects
//   "Content-Length: 5<HTAB>" and misses "chunked<HTAB>", where it reads SP right.
//   Trailing OWS is not part of the value, so an SP there changes nothing the app sees.
//   A run cut by the end of the read is held back until the next byte tells.
// base = where data starts in the bytes of the last scan (for the scanner's indexes).
std::size_t RequestParser::execute_mapped(const char* data, std::size_t len,
                                          std::size_t head_len, std::size_t base) {
    const std::size_t minor = scanner_.newer_minor_version_at();
    const bool minor_here =
        minor != std::string::npos && minor >= base && minor - base < head_len;
    const std::size_t fields_at = scanner_.field_lines_from();
    const std::size_t fields =
        fields_at == std::string::npos ? head_len : std::max(fields_at, base) - base;
    const bool tab =
        fields < head_len && std::memchr(data + fields, '\t', head_len - fields) != nullptr;
    if (!minor_here && !tab) {
        return execute(data, len);
    }
    rewrite_.assign(data, head_len);
    if (minor_here) {
        rewrite_[minor - base] = '1';
    }
    std::size_t keep = rewrite_.size();
    for (std::size_t i = fields; tab && (i = rewrite_.find('\t', i)) != std::string::npos;) {
        std::size_t b = i;
        while (b > fields && (rewrite_[b - 1] == ' ' || rewrite_[b - 1] == '\t')) {
            --b;
        }
        std::size_t e = i;
        while (e < rewrite_.size() && (rewrite_[e] == ' ' || rewrite_[e] == '\t')) {
            ++e;
        }
        if (e == rewrite_.size()) {
            if (!scanner_.done()) {
                keep = b;
            }
            break;
        }
        if (rewrite_[e] == '\r') {
            std::replace(rewrite_.begin() + static_cast<std::ptrdiff_t>(b),
                         rewrite_.begin() + static_cast<std::ptrdiff_t>(e), '\t', ' ');
        }
        i = e;
    }
    held_ws_.assign(rewrite_, keep);
    rewrite_.resize(keep);
    const std::size_t done = execute(rewrite_.data(), rewrite_.size());
    if (done < rewrite_.size() || state_ == State::error || state_ == State::complete ||
        deferred_error_ != HPE_OK) {
        held_ws_.clear();
        return done;
    }
    if (!held_ws_.empty()) {
        return len; // held back: the head goes on in the next read
    }
    return head_len + execute(data + head_len, len - head_len);
}

// Paused where a chunk-size line starts (size_line_next_): collect the line, whole, then
// let llhttp read its normalised form. The verdict does not depend on read boundaries:
// the line is judged only once its LF is here.
std::size_t RequestParser::execute_size_line(const char* data, std::size_t len, bool& more) {
    const auto* lf = static_cast<const char*>(std::memchr(data, '\n', len));
    if (lf != nullptr && size_line_.empty() &&
        std::string_view(data, static_cast<std::size_t>(lf - data)).find_first_of(" \t\\") ==
            std::string_view::npos) {
        // The common case: the whole line is here and normalising would not change it, so
        // llhttp reads it in place, together with what follows.
        size_line_next_ = false;
        more = true;
        return 0;
    }
    const std::size_t take = lf != nullptr ? static_cast<std::size_t>(lf - data) + 1 : len;
    if (size_line_.size() + take > kMaxChunkExtensionBytes + 64) {
        fail(400, "chunk-size line too long");
        return take;
    }
    size_line_.append(data, take);
    if (lf == nullptr) {
        return len;
    }
    std::string_view line(size_line_);
    line.remove_suffix(1); // LF
    const bool crlf = !line.empty() && line.back() == '\r';
    if (crlf) {
        line.remove_suffix(1);
    }
    normalise_size_line(line, size_line_clean_);
    size_line_clean_.append(crlf ? "\r\n" : "\n"); // a bare LF stays for llhttp to reject
    size_line_.clear();
    size_line_next_ = false;
    size_line_read_ = false;
    const std::size_t used = execute(size_line_clean_.data(), size_line_clean_.size());
    if (state_ == State::error) {
        return take;
    }
    if (used != size_line_clean_.size() || !size_line_read_) {
        fail(400, "invalid chunk-size line");
        return take;
    }
    more = true;
    return take;
}

// A loop, not recursion: a read can hold thousands of small chunks, each a resume.
std::size_t RequestParser::execute(const char* data, std::size_t len) {
    std::size_t done = 0;
    bool more = true;
    while (more) {
        more = false;
        done += execute_step(data + done, len - done, more);
    }
    return done;
}

std::size_t RequestParser::execute_step(const char* data, std::size_t len, bool& more) {
    if (size_line_next_ && state_ == State::body) {
        return len == 0 ? 0 : execute_size_line(data, len, more);
    }
    if (trailers_next_ && state_ == State::body) {
        return len == 0 ? 0 : execute_trailers(data, len, more);
    }
    return run_llhttp(data, len, more);
}

// Paused after the last chunk's size line (trailers_next_): the trailer section gets the
// head's raw-byte checks before llhttp reads it. llhttp alone would end it at a bare LF,
// where other parsers read on: two views of where the next request starts.
std::size_t RequestParser::execute_trailers(const char* data, std::size_t len, bool& more) {
    std::size_t used = 0;
    const HeadScanner::Verdict verdict = trailer_scanner_.scan(data, len, used);
    if (verdict == HeadScanner::Verdict::error) {
        fail(trailer_scanner_.error_status(), trailer_scanner_.error_reason());
        return used;
    }
    if (verdict == HeadScanner::Verdict::done) {
        trailers_next_ = false; // llhttp ends the message at the same byte
    }
    return run_llhttp(data, used, more);
}

std::size_t RequestParser::run_llhttp(const char* data, std::size_t len, bool& more) {
    exec_end_ = data + len;
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    std::size_t consumed = err == HPE_OK ? len : static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
    if (err == HPE_PAUSED && state_ == State::body && ext_value_then_semicolon_) {
        // llhttp 8.1 takes the ';' after a chunk extension's token value for the end of
        // the extensions and then rejects the next one ("5;a=1;b=2", valid per RFC 9112
        // 7.1.1). Paused right after that ';', it expects a ';' or CRLF; hand it a ';' of
        // our own so it reads the next extension, then go on with the client's bytes.
        ext_value_then_semicolon_ = false;
        llhttp_resume(&parser_);
        static constexpr char semicolon = ';';
        if (llhttp_execute(&parser_, &semicolon, 1) != HPE_OK) {
            fail(400, "invalid chunk extension");
            return consumed;
        }
        more = true;
        return consumed;
    }
    if (err == HPE_PAUSED && state_ == State::body && (size_line_next_ || trailers_next_)) {
        // At the start of a chunk-size line (on_headers_complete, on_chunk_complete) or
        // of the trailer section (on_chunk_header of the last chunk).
        llhttp_resume(&parser_);
        more = true;
        return consumed;
    }
    if (err == HPE_PAUSED_UPGRADE && state_ != State::complete) {
        // llhttp's upgrade pause after the previous message ended; this is a new one.
        llhttp_resume_after_upgrade(&parser_);
        return consumed + feed(data + consumed, len - consumed);
    }
    if (err == HPE_OK) {
        return len;
    }
    if (err == HPE_PAUSED && state_ == State::complete) {
        return consumed;
    }
    if (err == HPE_PAUSED_UPGRADE) {
        // No protocol switch under WSGI: answer the request as a plain one, then close.
        head_.keep_alive = false;
        state_ = State::complete;
        return consumed;
    }
    if (state_ == State::error) {
        return consumed;
    }
    if (err == HPE_PAUSED_H2_UPGRADE) { // "PRI * HTTP/2.0": the HTTP/2 connection preface
        fail(505, "HTTP/2 is not supported (HTTP/1.1 only)");
        return consumed;
    }
    if (err == HPE_INVALID_VERSION) {
        // 505 or 400 depends on the whole request line: wait for its end.
        deferred_error_ = err;
        deferred_reason_ = llhttp_get_error_reason(&parser_);
        return settle_deferred_error() ? consumed : len;
    }
    fail(400, llhttp_get_error_reason(&parser_));
    return consumed;
}

bool RequestParser::settle_deferred_error() {
    if (!scanner_.request_line_complete() && !scanner_.request_line_hopeless()) {
        return false;
    }
    int status = 400;
    if (!scanner_.request_line_complete()) {
        status = 400;
    } else if (deferred_error_ == HPE_INVALID_VERSION && scanner_.version_syntax_ok()) {
        status = 505; // a well-formed version we do not speak
    }
    fail(status, deferred_reason_);
    return true;
}

void RequestParser::finish() {
    if (state_ == State::body || (state_ == State::head && message_begun_)) {
        fail(400, "connection closed before the request was complete");
    }
}

void RequestParser::next_message() {
    head_.clear();
    body_.clear();
    body_received_ = 0;
    trailer_bytes_ = 0;
    trailer_fields_ = 0;
    host_fields_ = 0;
    chunk_ext_bytes_ = 0;
    size_line_next_ = false;
    last_chunk_ = false;
    size_line_.clear();
    ext_part_bytes_ = 0;
    ext_value_then_semicolon_ = false;
    other_transfer_coding_ = false;
    transfer_encoding_ = false;
    empty_transfer_coding_ = false;
    connection_close_ = false;
    connection_keep_alive_ = false;
    trailers_next_ = false;
    scanner_.reset();
    trailer_scanner_.reset();
    deferred_error_ = HPE_OK;
    message_begun_ = false;
    head_method_ = false;
    method_ = -1;
    method_fed_ = false;
    held_ws_.clear();
    field_open_ = false;
    state_ = State::head;
    if (llhttp_get_errno(&parser_) != HPE_PAUSED && llhttp_get_errno(&parser_) != HPE_PAUSED_UPGRADE) {
        // After an error llhttp cannot resume: start over.
        llhttp_init(&parser_, HTTP_REQUEST, settings());
        parser_.data = this;
    } else if (llhttp_get_errno(&parser_) == HPE_PAUSED_UPGRADE) {
        llhttp_resume_after_upgrade(&parser_);
    } else {
        llhttp_resume(&parser_);
    }
}

std::string_view RequestParser::method_name() const {
    if (method_ < 0) {
        return {};
    }
    if (method_ == kOtherMethod) {
        return head_.view(head_.method_text);
    }
    return llhttp_method_name(static_cast<llhttp_method_t>(method_));
}

void RequestParser::fail(int status, std::string reason) {
    state_ = State::error;
    error_status_ = status;
    error_reason_ = std::move(reason);
}

bool RequestParser::append_head(const char* at, std::size_t len) {
    if (head_.bytes.size() + len > limits_.max_header_size) {
        fail(431, "request header section too large");
        return false;
    }
    head_.bytes.append(at, len);
    return true;
}

int RequestParser::on_message_begin(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    self->message_begun_ = true;
    return 0;
}

int RequestParser::on_method_complete(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    self->head_method_ = llhttp_get_method(p) == HTTP_HEAD;
    self->method_ = llhttp_get_method(p);
    return 0;
}

int RequestParser::on_url(llhttp_t* p, const char* at, std::size_t len) {
    auto* self = static_cast<RequestParser*>(p->data);
    auto& head = self->head_;
    if (head.target.length == 0) {
        head.target.offset = static_cast<std::uint32_t>(head.bytes.size());
    }
    if (!self->append_head(at, len)) {
        return HPE_USER;
    }
    head.target.length += static_cast<std::uint32_t>(len);
    return 0;
}

int RequestParser::on_header_field(llhttp_t* p, const char* at, std::size_t len) {
    auto* self = static_cast<RequestParser*>(p->data);
    if (self->state_ != State::head) { // trailer fields: bounded, then dropped
        if (!self->field_open_ && ++self->trailer_fields_ > self->limits_.max_headers) {
            self->fail(431, "too many trailer fields");
            return HPE_USER;
        }
        self->field_open_ = true;
        self->trailer_bytes_ += len;
        if (self->trailer_bytes_ > self->limits_.max_header_size) {
            self->fail(431, "request trailer section too large");
            return HPE_USER;
        }
        return 0;
    }
    auto& head = self->head_;
    if (!self->field_open_) { // llhttp may deliver one name in several pieces
        if (head.headers.size() >= self->limits_.max_headers) {
            self->fail(431, "too many header fields");
            return HPE_USER;
        }
        HeaderField field;
        field.name.offset = static_cast<std::uint32_t>(head.bytes.size());
        head.headers.push_back(field);
        self->field_open_ = true;
    }
    if (!self->append_head(at, len)) {
        return HPE_USER;
    }
    head.headers.back().name.length += static_cast<std::uint32_t>(len);
    return 0;
}

int RequestParser::on_header_field_complete(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    if (self->state_ == State::head && !self->head_.headers.empty()) {
        // The value's bytes follow the name's in the buffer; nothing comes between.
        auto& field = self->head_.headers.back();
        field.value.offset = static_cast<std::uint32_t>(self->head_.bytes.size());
        field.value.length = 0;
    }
    self->field_open_ = false;
    return 0;
}

int RequestParser::on_header_value(llhttp_t* p, const char* at, std::size_t len) {
    auto* self = static_cast<RequestParser*>(p->data);
    if (self->state_ != State::head) {
        self->trailer_bytes_ += len;
        if (self->trailer_bytes_ > self->limits_.max_header_size) {
            self->fail(431, "request trailer section too large");
            return HPE_USER;
        }
        return 0;
    }
    for (std::size_t i = 0; i < len; ++i) {
        const char c = at[i];
        if (c == '\r' || c == '\n' || c == '\0') { // obs-fold or a stray control byte
            self->fail(400, "invalid header value (line folding or control character)");
            return HPE_USER;
        }
    }
    if (!self->append_head(at, len)) {
        return HPE_USER;
    }
    self->head_.headers.back().value.length += static_cast<std::uint32_t>(len);
    return 0;
}

int RequestParser::on_header_value_complete(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    if (self->state_ != State::head || self->head_.headers.empty()) {
        return 0;
    }
    auto& head = self->head_;
    auto& field = head.headers.back();
    // RFC 9110 5.5: leading and trailing whitespace is not part of the value.
    while (field.value.length > 0) {
        const char c = head.bytes[field.value.offset + field.value.length - 1];
        if (c != ' ' && c != '\t') {
            break;
        }
        --field.value.length;
    }
    if (iequals(head.view(field.name), "host")) {
        ++self->host_fields_;
        // RFC 9112 3.2: Host = uri-host [ ":" port ]; anything else is a 400.
        if (!valid_authority(head.view(field.value))) {
            self->fail(400, "invalid Host header");
            return HPE_USER;
        }
    }
    const std::string_view name = head.view(field.name);
    const std::string_view value = head.view(field.value);
    if (iequals(name, "transfer-encoding")) {
        // Judged here, not from llhttp's flags: llhttp sets none for an empty value, so
        // "Transfer-Encoding:" next to a Content-Length would frame by the length while
        // a front end that honours the empty field frames otherwise (RFC 9112 6.3).
        self->transfer_encoding_ = true;
        if (lists_other_coding(value)) {
            self->other_transfer_coding_ = true;
        }
        if (any_list_element(value, [](std::string_view item) { return item.empty(); })) {
            self->empty_transfer_coding_ = true;
        }
    } else if (iequals(name, "connection")) {
        // Tokens with the OWS of RFC 9110 5.6.1 around them, HTAB included ("close\t"),
        // which llhttp's flags miss.
        any_list_element(value, [self](std::string_view item) {
            if (iequals(item, "close")) {
                self->connection_close_ = true;
            } else if (iequals(item, "keep-alive")) {
                self->connection_keep_alive_ = true;
            }
            return false;
        });
    } else if (iequals(name, "expect")) {
        // RFC 9110 10.1.1: 100-continue is the one expectation defined; others are ignored.
        if (any_list_element(value, [](std::string_view item) { return iequals(item, "100-continue"); })) {
            head.expect_continue = true;
        }
    } else if (is_forwarding_field(name)) {
        head.forwarding = true; // so requests without any cost the connection no look
    }
    return 0;
}

int RequestParser::on_headers_complete(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    auto& head = self->head_;
    head.method = self->method_ == kOtherMethod ? kOtherMethod : p->method;
    head.version_major = p->http_major;
    head.version_minor = p->http_minor;
    if (head.version_major != 1) {
        self->fail(505, "HTTP version not supported");
        return -1;
    }
    if (p->method == HTTP_CONNECT) {
        self->fail(501, "CONNECT is not supported");
        return -1;
    }
    if (head.target.length == 0) {
        self->fail(400, "empty request target");
        return -1;
    }
    // RFC 9112 3.2.4: the asterisk-form is only for a server-wide OPTIONS.
    if (head.view(head.target) == "*" && p->method != HTTP_OPTIONS) {
        self->fail(400, "the '*' request target is only allowed with OPTIONS");
        return -1;
    }
    const std::string_view target = head.view(head.target);
    // RFC 9112 3.2: a request-target has no fragment (clients strip it).
    if (target.find('#') != std::string_view::npos) {
        self->fail(400, "a fragment ('#') in the request target");
        return -1;
    }
    if (target.front() != '/' && target != "*") {
        if (const char* problem = absolute_form_problem(target)) {
            self->fail(400, problem);
            return -1;
        }
    }
    const bool http11 = head.version_minor >= 1;
    // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host field.
    if ((http11 && self->host_fields_ == 0) || self->host_fields_ > 1) {
        self->fail(400, self->host_fields_ == 0 ? "missing Host header" : "more than one Host header");
        return -1;
    }
    // RFC 9112 9.3: "close" wins over "keep-alive"; 1.0 persists only when asked to.
    const bool close = self->connection_close_ || (p->flags & F_CONNECTION_CLOSE) != 0;
    const bool asked_keep_alive =
        self->connection_keep_alive_ || (p->flags & F_CONNECTION_KEEP_ALIVE) != 0;
    head.keep_alive = !close && (http11 || asked_keep_alive);
    if (p->upgrade != 0) {
        head.keep_alive = false; // no protocol switch under WSGI: answer, then close
    }
    head.chunked = (p->flags & F_CHUNKED) != 0;
    if (self->transfer_encoding_ && (!head.chunked || self->empty_transfer_coding_)) {
        // RFC 9112 6.3: Transfer-Encoding without chunked as the final coding leaves the
        // body's length unknown: 400, then close. An empty list element is refused too
        // (as llhttp refuses "chunked,"): this field decides framing, so no leniency.
        self->fail(400, self->empty_transfer_coding_
                            ? "empty element in Transfer-Encoding"
                            : "Transfer-Encoding does not end with chunked");
        return -1;
    }
    if (head.chunked && self->other_transfer_coding_) {
        // RFC 9112 6.1: a transfer coding we do not implement (gzip, deflate...) is 501;
        // passing the still-encoded body to the app as if plain would be wrong. (Without
        // chunked last the framing is unknown, and llhttp answers 400 as 6.3 requires.)
        self->fail(501, "transfer codings other than chunked are not implemented");
        return -1;
    }
    if (!http11 && self->transfer_encoding_) {
        head.keep_alive = false; // RFC 9112 6.1: 1.0 framing with chunked: close after
    }
    head.has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
    head.content_length = head.has_content_length ? p->content_length : 0;
    head.expect_continue = head.expect_continue && http11 && head.has_body();
    if (self->limits_.max_body_size != 0 && head.has_content_length &&
        head.content_length > self->limits_.max_body_size) {
        self->fail(413, "request body larger than the configured limit");
        return -1;
    }
    self->state_ = State::body;
    if (head.chunked) {
        self->size_line_next_ = true; // see execute_size_line()
        return HPE_PAUSED;
    }
    return 0;
}

int RequestParser::on_body(llhttp_t* p, const char* at, std::size_t len) {
    auto* self = static_cast<RequestParser*>(p->data);
    self->body_received_ += len;
    if (self->limits_.max_body_size != 0 && self->body_received_ > self->limits_.max_body_size) {
        self->fail(413, "request body larger than the configured limit");
        return HPE_USER;
    }
    self->body_.append(at, len);
    return 0;
}

int RequestParser::on_chunk_header(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    self->chunk_ext_bytes_ = 0;
    self->size_line_next_ = false;
    self->size_line_read_ = true;
    self->last_chunk_ = p->content_length == 0;
    if (self->last_chunk_) {
        self->trailers_next_ = true; // see execute_trailers()
        return HPE_PAUSED;
    }
    return 0;
}

int RequestParser::on_chunk_complete(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    if (self->last_chunk_) {
        return 0; // after the last chunk come trailers (already read) and the end
    }
    self->size_line_next_ = true; // pause where the next chunk-size line starts
    return HPE_PAUSED;
}

// Chunk extensions are ignored (RFC 9112 7.1.1) but bounded: no one sends kilobytes of them.
bool RequestParser::count_chunk_extension(std::size_t len) {
    chunk_ext_bytes_ += len;
    if (chunk_ext_bytes_ > kMaxChunkExtensionBytes) {
        fail(400, "chunk extensions too long");
        return false;
    }
    return true;
}

int RequestParser::on_chunk_extension_name(llhttp_t* p, const char* /*at*/, std::size_t len) {
    auto* self = static_cast<RequestParser*>(p->data);
    self->ext_part_bytes_ += len;
    // Spans arrive in pieces at read boundaries: count their bytes here and each
    // separator once, in the *_complete callbacks, so the limit does not depend on how
    // the client's bytes were split.
    return self->count_chunk_extension(len) ? 0 : HPE_USER;
}

// RFC 9112 7.1.1: chunk-ext-name is a token, and a value after '=' is a token or a
// quoted-string: neither can be empty ("5;=x", "5;a="). llhttp 8.1 lets both through.
bool RequestParser::end_extension_part(const char* empty_reason) {
    const bool empty = ext_part_bytes_ == 0;
    ext_part_bytes_ = 0;
    if (empty) {
        fail(400, empty_reason);
        return false;
    }
    return count_chunk_extension(1); // the ';' or '=' that ended it
}

int RequestParser::on_chunk_extension_name_complete(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    return self->end_extension_part("empty chunk extension name") ? 0 : HPE_USER;
}

int RequestParser::on_chunk_extension_value(llhttp_t* p, const char* at, std::size_t len) {
    auto* self = static_cast<RequestParser*>(p->data);
    if (self->ext_part_bytes_ == 0 && len > 0) {
        self->ext_value_quoted_ = *at == '"';
    }
    self->ext_part_bytes_ += len;
    if (!self->count_chunk_extension(len)) {
        return HPE_USER;
    }
    // A token value ends where llhttp stopped; a span cut by the end of the read ends at
    // exec_end_ and says nothing about the next byte. (After a quoted value llhttp reads
    // the ';' right.)
    const char* end = at + len;
    self->ext_value_then_semicolon_ =
        !self->ext_value_quoted_ && end < self->exec_end_ && *end == ';';
    return 0;
}

int RequestParser::on_chunk_extension_value_complete(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    if (!self->end_extension_part("empty chunk extension value")) {
        return HPE_USER;
    }
    // Pause exactly where llhttp goes wrong (see execute()).
    return self->ext_value_then_semicolon_ ? HPE_PAUSED : 0;
}

int RequestParser::on_message_complete(llhttp_t* p) {
    auto* self = static_cast<RequestParser*>(p->data);
    self->state_ = State::complete;
    return HPE_PAUSED; // keep a pipelined next request's bytes with the caller
}

// Only inside a catch handler.
void RequestParser::fail_on_exception() noexcept {
    state_ = State::error;
    error_status_ = 500;
    try {
        throw;
    } catch (const std::bad_alloc&) {
        error_reason_ = "out of memory"; // short enough for the string's own buffer
    } catch (const std::exception& e) {
        try {
            error_reason_ = std::string("internal error while parsing: ") + e.what();
        } catch (...) {
            error_reason_.clear();
        }
    } catch (...) {
        error_reason_.clear();
    }
}

template <int (*Callback)(llhttp_t*)>
int RequestParser::guarded(llhttp_t* p) noexcept {
    try {
        return Callback(p);
    } catch (...) {
        static_cast<RequestParser*>(p->data)->fail_on_exception();
        return HPE_USER;
    }
}

template <int (*Callback)(llhttp_t*, const char*, std::size_t)>
int RequestParser::guarded(llhttp_t* p, const char* at, std::size_t len) noexcept {
    try {
        return Callback(p, at, len);
    } catch (...) {
        static_cast<RequestParser*>(p->data)->fail_on_exception();
        return HPE_USER;
    }
}

const llhttp_settings_t* RequestParser::settings() {
    static const llhttp_settings_t s = [] {
        llhttp_settings_t t;
        llhttp_settings_init(&t);
        t.on_message_begin = &guarded<&RequestParser::on_message_begin>;
        t.on_method_complete = &guarded<&RequestParser::on_method_complete>;
        t.on_url = &guarded<&RequestParser::on_url>;
        t.on_header_field = &guarded<&RequestParser::on_header_field>;
        t.on_header_field_complete = &guarded<&RequestParser::on_header_field_complete>;
        t.on_header_value = &guarded<&RequestParser::on_header_value>;
        t.on_header_value_complete = &guarded<&RequestParser::on_header_value_complete>;
        t.on_headers_complete = &guarded<&RequestParser::on_headers_complete>;
        t.on_body = &guarded<&RequestParser::on_body>;
        t.on_chunk_header = &guarded<&RequestParser::on_chunk_header>;
        t.on_chunk_complete = &guarded<&RequestParser::on_chunk_complete>;
        t.on_chunk_extension_name = &guarded<&RequestParser::on_chunk_extension_name>;
        t.on_chunk_extension_name_complete = &guarded<&RequestParser::on_chunk_extension_name_complete>;
        t.on_chunk_extension_value = &guarded<&RequestParser::on_chunk_extension_value>;
        t.on_chunk_extension_value_complete = &guarded<&RequestParser::on_chunk_extension_value_complete>;
        t.on_message_complete = &guarded<&RequestParser::on_message_complete>;
        return t;
    }();
    return &s;
}

} // namespace appserver::http
