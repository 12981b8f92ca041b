// Incremental HTTP/1.x request parser over llhttp. Knows nothing of sockets: bytes in,
// a request head, body bytes and a verdict out. Unit-tested and fuzzed on its own.
#pragma once

#include "http/head_scanner.hpp"

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace appserver::http {

struct ParserLimits {
    std::size_t max_header_size = 64 * 1024; // request line + header fields, bytes
    std::size_t max_headers = 100;
    std::uint64_t max_body_size = 0;          // 0 = unlimited
};

// Chunk extensions on one chunk-size line, in bytes (they are read and ignored).
inline constexpr std::size_t kMaxChunkExtensionBytes = 4096;

// Offsets into RequestHead::bytes: stable while the buffer grows.
struct Span {
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
};

struct HeaderField {
    Span name;
    Span value;
};

// RequestHead::method for a method llhttp does not know (any token may be a method,
// RFC 9110 9.1; the app decides what to do with it). Outside llhttp_method_t's range.
inline constexpr std::uint8_t kOtherMethod = 255;

struct RequestHead {
    std::string bytes;                 // target, header names and values, back to back
    Span target;
    Span method_text;                  // the method's name when method == kOtherMethod
    std::vector<HeaderField> headers;
    std::uint8_t method = 0;           // llhttp_method_t, or kOtherMethod
    std::uint8_t version_major = 1;
    std::uint8_t version_minor = 1;
    bool keep_alive = true;            // as the request asks (version + Connection)
    bool chunked = false;
    bool has_content_length = false;
    std::uint64_t content_length = 0;
    bool expect_continue = false;      // "Expect: 100-continue" on an HTTP/1.1 request
    bool forwarding = false;           // a Forwarded or X-Forwarded-* field is present

    std::string_view view(Span s) const { return {bytes.data() + s.offset, s.length}; }
    std::string_view target_view() const { return view(target); }
    std::string_view method_name() const;
    bool has_body() const { return chunked || (has_content_length && content_length > 0); }
    void clear();
};

class RequestParser {
public:
    enum class State { head, body, complete, error };

    explicit RequestParser(const ParserLimits& limits = {});
    RequestParser(const RequestParser&) = delete;
    RequestParser& operator=(const RequestParser&) = delete;

    // Parses up to len bytes and returns how many it consumed. Stops right after the end
    // of a message, so the bytes of a pipelined next request stay with the caller.
    // Body bytes are appended to body(). Check state() afterwards. Never throws: what
    // throws inside (out of memory) fails the request with a 500.
    std::size_t feed(const char* data, std::size_t len);

    // The peer closed its side: a message cut short becomes an error.
    void finish();

    // After a complete message: get ready for the next one on the same connection.
    void next_message();

    State state() const { return state_; }
    bool head_done() const { return state_ == State::body || state_ == State::complete; }
    // Nothing of a new message has been seen yet (safe point to close an idle connection).
    bool idle() const { return state_ == State::head && !message_begun_; }
    // The current message's method is known and is HEAD, even when the rest of its head
    // was bad: an error answered to it carries no content (RFC 9110 9.3.2).
    bool head_method() const { return head_method_; }
    // The current message's method as sent, once its name has been read (also when the
    // rest of the head was bad); empty before that. For logs and metrics.
    std::string_view method_name() const;

    RequestHead& head() { return head_; }
    const RequestHead& head() const { return head_; }

    // Decoded body bytes not yet taken by the consumer (body_offset() of them are taken).
    std::string& body() { return body_; }
    const std::string& body() const { return body_; }
    std::uint64_t body_received() const { return body_received_; }

    // For State::error: the status to answer with (400, 413, 431, 501, 505; 500 when a
    // callback threw) and why.
    int error_status() const { return error_status_; }
    const std::string& error_reason() const { return error_reason_; }

private:
    static const llhttp_settings_t* settings();
    // What llhttp calls: the callback below, behind a firewall. A C++ exception must not
    // unwind through llhttp's C frames; it fails the request with a 500 instead.
    template <int (*Callback)(llhttp_t*)>
    static int guarded(llhttp_t* p) noexcept;
    template <int (*Callback)(llhttp_t*, const char*, std::size_t)>
    static int guarded(llhttp_t* p, const char* at, std::size_t len) noexcept;
    void fail_on_exception() noexcept;
    std::size_t feed_unguarded(const char* data, std::size_t len);
    static int on_message_begin(llhttp_t* p);
    static int on_method_complete(llhttp_t* p);
    static int on_url(llhttp_t* p, const char* at, std::size_t len);
    static int on_header_field(llhttp_t* p, const char* at, std::size_t len);
    static int on_header_field_complete(llhttp_t* p);
    static int on_header_value(llhttp_t* p, const char* at, std::size_t len);
    static int on_header_value_complete(llhttp_t* p);
    static int on_headers_complete(llhttp_t* p);
    static int on_body(llhttp_t* p, const char* at, std::size_t len);
    static int on_chunk_header(llhttp_t* p);
    static int on_chunk_complete(llhttp_t* p);
    std::size_t execute_size_line(const char* data, std::size_t len, bool& more);
    // One step over data: a chunk-size line, checked trailer bytes, or an llhttp run;
    // more = go on with the rest (after a pause we resolved).
    std::size_t execute_step(const char* data, std::size_t len, bool& more);
    std::size_t execute_trailers(const char* data, std::size_t len, bool& more);
    std::size_t run_llhttp(const char* data, std::size_t len, bool& more);
    static int on_chunk_extension_name(llhttp_t* p, const char* at, std::size_t len);
    static int on_chunk_extension_name_complete(llhttp_t* p);
    static int on_chunk_extension_value(llhttp_t* p, const char* at, std::size_t len);
    static int on_chunk_extension_value_complete(llhttp_t* p);
    static int on_message_complete(llhttp_t* p);

    bool append_head(const char* at, std::size_t len);
    bool count_chunk_extension(std::size_t len);
    bool end_extension_part(const char* empty_reason);
    bool settle_deferred_error();
    std::size_t execute(const char* data, std::size_t len); // llhttp over checked bytes
    // Same for bytes of which the first head_len belong to the head (checked by the
    // scanner): the method is read here, and what llhttp 8.1 misreads is mapped first.
    std::size_t execute_head(const char* data, std::size_t len, std::size_t head_len);
    bool feed_method(std::size_t end, std::size_t& from);
    std::size_t execute_mapped(const char* data, std::size_t len, std::size_t head_len,
                               std::size_t base);
    void fail(int status, std::string reason);

    llhttp_t parser_{};
    ParserLimits limits_;
    RequestHead head_;
    std::string body_;
    std::uint64_t body_received_ = 0;
    std::size_t trailer_bytes_ = 0;
    std::size_t trailer_fields_ = 0; // counted against max_headers, as header fields are
    std::size_t host_fields_ = 0;
    bool other_transfer_coding_ = false; // a coding other than chunked was listed
    bool transfer_encoding_ = false;     // a Transfer-Encoding field, even an empty one
    bool empty_transfer_coding_ = false; // ... with an empty list element
    bool connection_close_ = false;      // "close" among the Connection tokens
    bool connection_keep_alive_ = false; // "keep-alive" among them
    std::size_t chunk_ext_bytes_ = 0;  // chunk extensions on the current chunk-size line
    // llhttp is paused where a chunk-size line starts: the line is collected whole
    // (size_line_), normalised (size_line_clean_), then fed (execute_size_line).
    bool size_line_next_ = false;
    bool last_chunk_ = false;          // the chunk being read has size 0
    bool trailers_next_ = false;       // paused where the trailer section starts
    bool size_line_read_ = false;      // llhttp finished the size line it was given
    std::string size_line_;
    std::string size_line_clean_;
    std::size_t ext_part_bytes_ = 0;   // bytes of the chunk extension name or value so far
    bool ext_value_quoted_ = false;    // the current extension value is a quoted-string
    const char* exec_end_ = nullptr;   // end of the bytes llhttp is executing
    bool ext_value_then_semicolon_ = false;
    HeadScanner scanner_;
    HeadScanner trailer_scanner_;
    llhttp_errno_t deferred_error_ = HPE_OK; // a request-line error awaiting its verdict
    std::string deferred_reason_;
    State state_ = State::head;
    bool message_begun_ = false;
    bool head_method_ = false;
    int method_ = -1; // llhttp_method_t (or kOtherMethod) once the method is read
    bool method_fed_ = false;   // llhttp has read this message's method (or a stand-in)
    std::string rewrite_;       // a head chunk as llhttp gets it (see execute_mapped)
    std::string held_ws_;       // SP/HTAB at the end of a read, inside a field line
    bool field_open_ = false;
    int error_status_ = 0;
    std::string error_reason_;
};

} // namespace appserver::http
