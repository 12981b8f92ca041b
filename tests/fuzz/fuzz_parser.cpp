// Fuzz target: the request parser (src/http/parser.hpp, with the head scanner and the URI
// checks it calls) and the forwarding-header resolution run on what it parsed.
//
// Input: one flags byte, then the bytes a client sends on one connection (any number of
// pipelined requests). Flags bit 0: small limits; bits 1-7: seed of the random splits.
// The stream is parsed three times, the way a connection feeds it (consumed bytes dropped,
// the rest kept for the next feed): all at once, one byte at a time, and in random pieces.
// The parser promises verdicts that do not depend on read boundaries, so the three
// transcripts (heads, bodies, errors) must be identical; each message is also checked
// against what the parser promises on its own (limits, framing, field syntax).
#include "fuzz_support.hpp"

#include "http/field_list.hpp"
#include "http/parser.hpp"
#include "http/uri.hpp"
#include "net/proxy.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace http = appserver::http;
namespace net = appserver::net;
namespace fuzz = appserver::fuzz;
using State = http::RequestParser::State;

struct Message {
    State state = State::head; // complete, error, or where the stream left it
    int error_status = 0;
    std::string error_reason;
    bool begun = false;
    std::string method;
    std::string target;
    std::uint8_t version_major = 0;
    std::uint8_t version_minor = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    bool keep_alive = false;
    bool chunked = false;
    bool has_content_length = false;
    std::uint64_t content_length = 0;
    bool expect_continue = false;
    bool forwarding = false;
    std::string body;

    bool operator==(const Message&) const = default;
};

bool is_tchar(char c) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) {
        return true;
    }
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// What the parser promises about a request it accepted (heads are checked once done).
void check_head(const http::RequestParser& p, const http::ParserLimits& limits) {
    const http::RequestHead& h = p.head();
    FUZZ_CHECK(h.bytes.size() <= limits.max_header_size, "head bytes %zu over the limit",
               h.bytes.size());
    FUZZ_CHECK(h.headers.size() <= limits.max_headers, "%zu fields over the limit",
               h.headers.size());
    FUZZ_CHECK(h.version_major == 1, "HTTP/%u accepted", h.version_major);
    FUZZ_CHECK(h.target.offset + std::size_t{h.target.length} <= h.bytes.size(),
               "target span out of the head");
    const std::string_view target = h.target_view();
    FUZZ_CHECK(!target.empty(), "empty target accepted");
    for (const char c : target) {
        const auto u = static_cast<unsigned char>(c);
        FUZZ_CHECK(u > 0x20 && u != 0x7f, "control byte or space 0x%02x in an accepted target",
                   u);
    }
    FUZZ_CHECK(target.find('#') == std::string_view::npos, "fragment accepted");
    FUZZ_CHECK(target.front() == '/' || target == "*" ||
                   http::absolute_form_problem(target) == nullptr,
               "target accepted in an unknown form");
    std::size_t hosts = 0;
    bool transfer_encoding = false;
    for (const auto& f : h.headers) {
        FUZZ_CHECK(f.name.offset + std::size_t{f.name.length} <= h.bytes.size() &&
                       f.value.offset + std::size_t{f.value.length} <= h.bytes.size(),
                   "field span out of the head");
        const std::string_view name = h.view(f.name);
        const std::string_view value = h.view(f.value);
        FUZZ_CHECK(!name.empty(), "empty field name accepted");
        for (const char c : name) {
            FUZZ_CHECK(is_tchar(c), "byte 0x%02x in an accepted field name",
                       static_cast<unsigned char>(c));
        }
        for (const char c : value) {
            FUZZ_CHECK(c != '\r' && c != '\n' && c != '\0',
                       "CR, LF or NUL in an accepted field value");
        }
        FUZZ_CHECK(value.empty() || (value.back() != ' ' && value.back() != '\t'),
                   "trailing whitespace kept in a field value");
        if (http::iequals(name, "host")) {
            ++hosts;
            FUZZ_CHECK(http::valid_authority(value), "invalid Host accepted");
        }
        if (http::iequals(name, "transfer-encoding")) {
            transfer_encoding = true;
        }
    }
    FUZZ_CHECK(hosts <= 1, "%zu Host fields accepted", hosts);
    FUZZ_CHECK(h.version_minor == 0 || hosts == 1, "HTTP/1.1 request without Host accepted");
    FUZZ_CHECK(!(h.chunked && h.has_content_length),
               "both chunked and Content-Length accepted (request smuggling)");
    FUZZ_CHECK(!transfer_encoding || h.chunked,
               "Transfer-Encoding without chunked accepted (unknown framing)");
    FUZZ_CHECK(!h.expect_continue || (h.has_body() && h.version_minor >= 1),
               "100-continue expected for a request without a body or on HTTP/1.0");
    FUZZ_CHECK(limits.max_body_size == 0 || !h.has_content_length ||
                   h.content_length <= limits.max_body_size,
               "Content-Length %llu over the body limit accepted",
               static_cast<unsigned long long>(h.content_length));
    FUZZ_CHECK(!h.method_name().empty(), "no method name");
}

// Forwarding headers are client bytes too (a proxy appends to them, it does not clean
// them): resolve them as for a trusted peer and check what comes out.
void check_forwarding(const http::RequestHead& h) {
    static const net::TrustedProxies everyone = *net::TrustedProxies::parse("*");
    static const net::TrustedProxies some =
        *net::TrustedProxies::parse("127.0.0.1, 10.0.0.0/8, fd00::/8, unix");
    for (const net::TrustedProxies* trusted : {&everyone, &some}) {
        const net::Forwarding f = net::resolve_forwarding(h, *trusted);
        if (f.has_client) {
            const std::string text = net::format_ip(f.client);
            const auto again = net::parse_ip(text);
            FUZZ_CHECK(again && again->bytes == f.client.bytes,
                       "forwarded client %s does not survive format_ip/parse_ip", text.c_str());
        }
        for (const char c : f.host) {
            FUZZ_CHECK(c != '\r' && c != '\n' && c != '\0', "control byte in a forwarded host");
        }
        std::string_view request_host;
        for (const auto& field : h.headers) {
            if (http::iequals(h.view(field.name), "host")) {
                request_host = h.view(field.value);
            }
        }
        const net::ForwardedServer s = net::forwarded_server(f, request_host);
        for (const char c : s.http_host) {
            FUZZ_CHECK(c != '\r' && c != '\n' && c != '\0', "control byte in HTTP_HOST");
        }
    }
}

Message snapshot(const http::RequestParser& p) {
    Message m;
    m.state = p.state();
    m.error_status = p.error_status();
    m.error_reason = p.state() == State::error ? p.error_reason() : std::string();
    m.begun = !p.idle();
    m.method = std::string(p.method_name());
    if (p.head_done()) {
        const http::RequestHead& h = p.head();
        m.target = std::string(h.target_view());
        m.version_major = h.version_major;
        m.version_minor = h.version_minor;
        for (const auto& f : h.headers) {
            m.headers.emplace_back(h.view(f.name), h.view(f.value));
        }
        m.keep_alive = h.keep_alive;
        m.chunked = h.chunked;
        m.has_content_length = h.has_content_length;
        m.content_length = h.content_length;
        m.expect_continue = h.expect_continue;
        m.forwarding = h.forwarding;
    }
    return m;
}

// Parses stream as a connection would, its bytes arriving in the pieces split says, up to
// the end of the first message after which the connection closes.
std::vector<Message> parse_stream(std::string_view stream, const http::ParserLimits& limits,
                                  fuzz::Split split, std::uint64_t seed, bool check) {
    std::vector<Message> out;
    http::RequestParser p(limits);
    fuzz::Splitter splitter(seed);
    std::string pending; // received, not yet consumed
    std::string body;
    bool head_checked = false;
    std::size_t pos = 0;
    while (pos < stream.size()) {
        std::size_t n = stream.size() - pos;
        if (split == fuzz::Split::bytes) {
            n = 1;
        } else if (split == fuzz::Split::random) {
            n = splitter.piece(n);
        }
        pending.append(stream.substr(pos, n));
        pos += n;
        std::size_t used = 0;
        while (used < pending.size()) {
            const std::size_t avail = pending.size() - used;
            const std::size_t took = p.feed(pending.data() + used, avail);
            FUZZ_CHECK(took <= avail, "feed consumed %zu of %zu bytes", took, avail);
            used += took;
            body += p.body();
            p.body().clear(); // the consumer takes body bytes as they come
            // (A rejected piece of body counts as received, not as delivered.)
            FUZZ_CHECK(p.body_received() == body.size() ||
                           (p.state() == State::error && p.body_received() > body.size()),
                       "body_received %llu, body bytes delivered %zu",
                       static_cast<unsigned long long>(p.body_received()), body.size());
            if (p.head_done() && check) {
                const http::RequestHead& h = p.head();
                FUZZ_CHECK(h.chunked || !h.has_content_length ||
                               body.size() <= h.content_length,
                           "body of %zu bytes for a Content-Length of %llu", body.size(),
                           static_cast<unsigned long long>(h.content_length));
                FUZZ_CHECK(limits.max_body_size == 0 || body.size() <= limits.max_body_size,
                           "body of %zu bytes passed the %llu byte limit", body.size(),
                           static_cast<unsigned long long>(limits.max_body_size));
                if (!head_checked) {
                    check_head(p, limits);
                    head_checked = true;
                }
            }
            if (p.state() == State::error) {
                Message m = snapshot(p);
                m.body = body;
                out.push_back(std::move(m));
                if (check) {
                    FUZZ_CHECK(p.error_status() >= 400 && p.error_status() <= 505,
                               "error status %d", p.error_status());
                    FUZZ_CHECK(!p.error_reason().empty(), "error without a reason");
                    // A rejected request stays rejected: nothing more is taken or changed.
                    const std::size_t again = p.feed("GET / HTTP/1.1\r\n", 16);
                    p.finish();
                    FUZZ_CHECK(again == 0 && p.state() == State::error &&
                                   p.error_status() == out.back().error_status,
                               "the parser left its error state");
                }
                return out;
            }
            if (p.state() == State::complete) {
                if (check) {
                    const http::RequestHead& h = p.head();
                    FUZZ_CHECK(h.chunked || body.size() == h.content_length,
                               "complete with %zu body bytes for a Content-Length of %llu",
                               body.size(), static_cast<unsigned long long>(h.content_length));
                    check_forwarding(h);
                    // A complete message takes no more bytes until next_message().
                    FUZZ_CHECK(p.feed("x", 1) == 0 && p.state() == State::complete,
                               "a complete message took more bytes");
                }
                Message m = snapshot(p);
                m.body = std::move(body);
                body.clear();
                out.push_back(std::move(m));
                if (!p.head().keep_alive) {
                    // The connection closes after this answer (Connection: close, HTTP/1.0,
                    // an upgrade request): what follows is never parsed.
                    return out;
                }
                p.next_message();
                head_checked = false;
                continue;
            }
            // Still in a head or a body: it must have taken everything it was given, or
            // a connection would wait for more with its buffer holding bytes never parsed.
            FUZZ_CHECK(used == pending.size(),
                       "state %d with %zu of %zu bytes unconsumed", static_cast<int>(p.state()),
                       pending.size() - used, pending.size());
        }
        pending.erase(0, used);
    }
    // The client closes its side: a message cut short is an error.
    const bool was_idle = p.idle();
    p.finish();
    if (check) {
        FUZZ_CHECK(was_idle == (p.state() == State::head),
                   "finish(): idle %d, state %d afterwards", was_idle,
                   static_cast<int>(p.state()));
    }
    Message m = snapshot(p);
    m.body = std::move(body);
    out.push_back(std::move(m));
    return out;
}

// The fields of two messages that differ, for the report.
std::string differences(const Message& a, const Message& b) {
    std::string out;
    const auto field = [&out](const char* name, bool same) {
        if (!same) {
            out.append(out.empty() ? "" : ", ").append(name);
        }
    };
    field("begun", a.begun == b.begun);
    field("method", a.method == b.method);
    field("target", a.target == b.target);
    field("version", a.version_major == b.version_major && a.version_minor == b.version_minor);
    field("headers", a.headers == b.headers);
    field("keep_alive", a.keep_alive == b.keep_alive);
    field("chunked", a.chunked == b.chunked);
    field("content_length",
          a.has_content_length == b.has_content_length && a.content_length == b.content_length);
    field("expect_continue", a.expect_continue == b.expect_continue);
    field("forwarding", a.forwarding == b.forwarding);
    field("body", a.body == b.body);
    return out;
}

void compare(const std::vector<Message>& a, const std::vector<Message>& b, const char* how) {
    FUZZ_CHECK(a.size() == b.size(), "%zu messages read whole, %zu read %s", a.size(), b.size(),
               how);
    for (std::size_t i = 0; i < a.size(); ++i) {
        const Message& x = a[i];
        const Message& y = b[i];
        FUZZ_CHECK(x.state == y.state && x.error_status == y.error_status,
                   "message %zu: state %d/%d read whole, %d/%d read %s (reasons: '%s' / '%s')",
                   i, static_cast<int>(x.state), x.error_status, static_cast<int>(y.state),
                   y.error_status, how, x.error_reason.c_str(), y.error_reason.c_str());
        FUZZ_CHECK(x.error_reason == y.error_reason, "message %zu: '%s' read whole, '%s' read %s",
                   i, x.error_reason.c_str(), y.error_reason.c_str(), how);
        if (x.state == State::error) {
            // Body bytes before the error are delivered as they come: fewer when the
            // rejected piece came in the same read. Both are the start of the same body.
            const std::string& shorter = x.body.size() < y.body.size() ? x.body : y.body;
            const std::string& longer = x.body.size() < y.body.size() ? y.body : x.body;
            FUZZ_CHECK(longer.compare(0, shorter.size(), shorter) == 0,
                       "message %zu: body bytes before the error differ when read %s", i, how);
            Message a = x;
            Message b = y;
            a.body.clear();
            b.body.clear();
            FUZZ_CHECK(a == b, "message %zu differs when read %s: %s", i, how,
                       differences(a, b).c_str());
            continue;
        }
        FUZZ_CHECK(x == y, "message %zu differs when read %s: %s", i, how,
                   differences(x, y).c_str());
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) {
        return 0;
    }
    const std::uint8_t flags = data[0];
    const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
    http::ParserLimits limits; // the server's defaults
    if (flags & 1) {
        // Small enough that inputs of a few hundred bytes reach every limit.
        limits.max_header_size = 200;
        limits.max_headers = 6;
        limits.max_body_size = 64;
    }
    const std::uint64_t seed = flags >> 1;
    const auto whole = parse_stream(stream, limits, fuzz::Split::whole, seed, true);
    compare(whole, parse_stream(stream, limits, fuzz::Split::bytes, seed, false), "byte by byte");
    compare(whole, parse_stream(stream, limits, fuzz::Split::random, seed, false),
            "in random pieces");
    return 0;
}
