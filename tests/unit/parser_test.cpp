// Unit tests for the llhttp request adapter (src/http/parser.hpp): framing, limits, keep-alive
// rules and the status each malformed request maps to. Where llhttp and RFC 9112 disagree,
// these tests assert the RFC.
#include "http/parser.hpp"

#include "alloc_failure.hpp"

#include <gtest/gtest.h>

#include <random>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using appserver::http::ParserLimits;
using appserver::http::RequestHead;
using appserver::http::RequestParser;
using State = RequestParser::State;
using namespace std::string_literals;

// Feeds all of s at once; returns what feed() reported as consumed.
std::size_t feed(RequestParser& p, std::string_view s) {
    return p.feed(s.data(), s.size());
}

// Feeds s one byte at a time, as a very slow client would, until the parser stops taking
// bytes (message complete or error). Returns the total consumed.
std::size_t feed_bytewise(RequestParser& p, std::string_view s) {
    std::size_t total = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (p.state() == State::complete || p.state() == State::error) {
            break;
        }
        const std::size_t n = p.feed(s.data() + i, 1);
        EXPECT_LE(n, 1U);
        total += n;
        if (n == 0) {
            break;
        }
    }
    return total;
}

// Feeds s in as many pieces as feeding one byte at a time; stops at a message end.
std::size_t feed_split(RequestParser& p, std::string_view s, std::size_t at) {
    std::size_t n = p.feed(s.data(), at);
    if (n == at && p.state() != State::complete && p.state() != State::error) {
        n += p.feed(s.data() + at, s.size() - at);
    }
    return n;
}

std::vector<std::pair<std::string, std::string>> headers_of(const RequestHead& h) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& f : h.headers) {
        out.emplace_back(std::string(h.view(f.name)), std::string(h.view(f.value)));
    }
    return out;
}

using Headers = std::vector<std::pair<std::string, std::string>>;

// Parses a complete request fed at once and asserts it parsed cleanly.
struct Parsed {
    State state;
    int status;
    std::string reason;
    std::size_t consumed;
};

Parsed parse(std::string_view s, const ParserLimits& limits = {}) {
    RequestParser p(limits);
    const std::size_t n = feed(p, s);
    return {p.state(), p.error_status(), p.error_reason(), n};
}

// The error status a request earns, or 0 when it parses (complete or waiting for a body).
int status_of(std::string_view s, const ParserLimits& limits = {}) {
    const Parsed r = parse(s, limits);
    return r.state == State::error ? r.status : 0;
}

int status_of_bytewise(std::string_view s, const ParserLimits& limits = {}) {
    RequestParser p(limits);
    feed_bytewise(p, s);
    return p.state() == State::error ? p.error_status() : 0;
}

const std::string simple_get = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

const std::string rich_get = "GET /search/caf%C3%A9?q=a%20b&x=1 HTTP/1.1\r\n"
                             "Host: example.com:8080\r\n"
                             "User-Agent: unit-test/1.0\r\n"
                             "Accept: text/html, application/json;q=0.9\r\n"
                             "X-Empty:\r\n"
                             "X-Padded:    padded value\t \r\n"
                             "Cookie: a=1; b=2\r\n"
                             "\r\n";

void expect_rich_get(RequestParser& p) {
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    const RequestHead& h = p.head();
    EXPECT_EQ(h.method, HTTP_GET);
    EXPECT_EQ(h.method_name(), "GET");
    EXPECT_EQ(h.target_view(), "/search/caf%C3%A9?q=a%20b&x=1");
    EXPECT_EQ(h.version_major, 1);
    EXPECT_EQ(h.version_minor, 1);
    EXPECT_TRUE(h.keep_alive);
    EXPECT_FALSE(h.has_body());
    EXPECT_FALSE(h.chunked);
    EXPECT_FALSE(h.has_content_length);
    EXPECT_FALSE(h.expect_continue);
    const Headers expected = {
        {"Host", "example.com:8080"},
        {"User-Agent", "unit-test/1.0"},
        {"Accept", "text/html, application/json;q=0.9"},
        {"X-Empty", ""},
        {"X-Padded", "padded value"},
        {"Cookie", "a=1; b=2"},
    };
    EXPECT_EQ(headers_of(h), expected);
    EXPECT_TRUE(p.body().empty());
}

// ---- the C boundary ----------------------------------------------------------------------

// A callback that throws (here: the list of header fields cannot grow) must not unwind
// through llhttp's C frames: the request fails with a 500, and the parser is usable
// afterwards.
TEST(RequestParser, ExceptionInAHeaderCallbackBecomesA500) {
    std::string request = "GET / HTTP/1.1\r\nHost: example.com\r\n";
    for (int i = 0; i < 40; ++i) { // more than the 32 fields reserved up front
        request += "X-" + std::to_string(i) + ": v\r\n";
    }
    request += "\r\n";
    for (const bool bytewise : {false, true}) {
        RequestParser p{ParserLimits{}};
        int refused = 0;
        {
            appserver::testing::FailAllocations fail;
            EXPECT_NO_THROW(bytewise ? (void)feed_bytewise(p, request) : (void)feed(p, request));
            refused = fail.refused();
        }
        EXPECT_GT(refused, 0) << "no allocation was made to fail";
        EXPECT_EQ(p.state(), State::error);
        EXPECT_EQ(p.error_status(), 500);
        p.next_message();
        feed(p, simple_get);
        EXPECT_EQ(p.state(), State::complete) << p.error_reason();
    }
}

// The same outside llhttp (the raw-byte checks before it): feed() throws nothing.
TEST(RequestParser, ExceptionBeforeLlhttpBecomesA500) {
    const std::string request = "GET /" + std::string(4000, 'a') +
                                " HTTP/1.1\r\nHost: example.com\r\n\r\n";
    RequestParser p{ParserLimits{}};
    {
        appserver::testing::FailAllocations fail;
        EXPECT_NO_THROW(feed(p, request));
    }
    EXPECT_EQ(p.state(), State::error);
    EXPECT_EQ(p.error_status(), 500);
    EXPECT_EQ(p.error_reason(), "out of memory");
}

TEST(RequestParser, ExceptionInABodyCallbackBecomesA500) {
    const std::string body(100000, 'b');
    const std::string request = "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
    RequestParser p{ParserLimits{}};
    {
        appserver::testing::FailAllocations fail;
        EXPECT_NO_THROW(feed(p, request));
    }
    EXPECT_EQ(p.state(), State::error);
    EXPECT_EQ(p.error_status(), 500);
}

// ---- well-formed requests --------------------------------------------------------------

TEST(RequestParser, FreshParserIsIdleAndWaitingForAHead) {
    RequestParser p;
    EXPECT_EQ(p.state(), State::head);
    EXPECT_TRUE(p.idle());
    EXPECT_FALSE(p.head_done());
    EXPECT_EQ(feed(p, ""), 0U);
    EXPECT_TRUE(p.idle());
}

TEST(RequestParser, SimpleGet) {
    RequestParser p;
    EXPECT_EQ(feed(p, simple_get), simple_get.size());
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_TRUE(p.head_done());
    EXPECT_FALSE(p.idle());
    const RequestHead& h = p.head();
    EXPECT_EQ(h.method, HTTP_GET);
    EXPECT_EQ(h.method_name(), "GET");
    EXPECT_EQ(h.target_view(), "/");
    EXPECT_EQ(h.version_major, 1);
    EXPECT_EQ(h.version_minor, 1);
    EXPECT_TRUE(h.keep_alive);
    EXPECT_FALSE(h.has_body());
    EXPECT_EQ(headers_of(h), (Headers{{"Host", "example.com"}}));
    EXPECT_EQ(p.body_received(), 0U);
}

TEST(RequestParser, HeadMethodIsKnownEvenWhenTheHeadIsBad) {
    // An error answered to a HEAD request must carry no content: the method is known as
    // soon as its token ends, before the rest of the head is checked.
    RequestParser p;
    feed(p, "HEAD /x HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n");
    EXPECT_EQ(p.state(), State::error);
    EXPECT_TRUE(p.head_method());
    RequestParser q;
    feed(q, "GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n");
    EXPECT_EQ(q.state(), State::error);
    EXPECT_FALSE(q.head_method());
    // A keep-alive connection: HEAD, then GET; the flag follows the current message.
    RequestParser r;
    feed(r, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_EQ(r.state(), State::complete);
    EXPECT_TRUE(r.head_method());
    r.next_message();
    EXPECT_FALSE(r.head_method());
    feed(r, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_FALSE(r.head_method());
}

TEST(RequestParser, RequestTargetAndHeaderValues) {
    RequestParser p;
    EXPECT_EQ(feed(p, rich_get), rich_get.size());
    expect_rich_get(p);
}

TEST(RequestParser, OtherMethodsAndTargetForms) {
    {
        RequestParser p;
        feed(p, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
        ASSERT_EQ(p.state(), State::complete);
        EXPECT_EQ(p.head().method, HTTP_HEAD);
        EXPECT_EQ(p.head().method_name(), "HEAD");
    }
    {
        RequestParser p;
        feed(p, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        ASSERT_EQ(p.state(), State::complete) << p.error_reason();
        EXPECT_EQ(p.head().method, HTTP_OPTIONS);
        EXPECT_EQ(p.head().target_view(), "*");
    }
    {
        RequestParser p;
        feed(p, "GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
        ASSERT_EQ(p.state(), State::complete) << p.error_reason();
        EXPECT_EQ(p.head().target_view(), "http://example.com/p?q=1");
    }
    {
        RequestParser p;
        feed(p, "DELETE /item/7 HTTP/1.1\r\nHost: a\r\n\r\n");
        ASSERT_EQ(p.state(), State::complete);
        EXPECT_EQ(p.head().method, HTTP_DELETE);
        EXPECT_EQ(p.head().method_name(), "DELETE");
    }
}

TEST(RequestParser, HeaderValueWhitespaceIsTrimmed) {
    RequestParser p;
    feed(p, "GET / HTTP/1.1\r\nHost: a\r\nX-A:   v  a \t \r\nX-B: \t\tb\t\r\nX-C:   \r\n\r\n");
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    const Headers expected = {{"Host", "a"}, {"X-A", "v  a"}, {"X-B", "b"}, {"X-C", ""}};
    EXPECT_EQ(headers_of(p.head()), expected);
}

TEST(RequestParser, ObsTextInHeaderValueIsKept) {
    RequestParser p;
    feed(p, "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9\r\n\r\n");
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(headers_of(p.head())[1].second, "caf\xe9");
}

TEST(RequestParser, LeadingEmptyLineBeforeRequestIsIgnored) {
    // RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line.
    RequestParser p;
    EXPECT_EQ(feed(p, "\r\n"), 2U);
    EXPECT_EQ(p.state(), State::head);
    EXPECT_TRUE(p.idle());
    feed(p, simple_get);
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.head().target_view(), "/");
}

// ---- feeding in pieces ---------------------------------------------------------------

TEST(RequestParser, HeadFedOneByteAtATime) {
    RequestParser p;
    EXPECT_EQ(feed_bytewise(p, rich_get), rich_get.size());
    expect_rich_get(p);
}

TEST(RequestParser, HeadSplitAtEveryByteBoundary) {
    for (std::size_t at = 0; at <= rich_get.size(); ++at) {
        SCOPED_TRACE("split at " + std::to_string(at));
        RequestParser p;
        EXPECT_EQ(feed_split(p, rich_get, at), rich_get.size());
        expect_rich_get(p);
    }
}

TEST(RequestParser, BodiesFedOneByteAtATime) {
    {
        const std::string req =
            "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
        RequestParser p;
        EXPECT_EQ(feed_bytewise(p, req), req.size());
        ASSERT_EQ(p.state(), State::complete) << p.error_reason();
        EXPECT_EQ(p.body(), "hello world");
        EXPECT_EQ(p.body_received(), 11U);
    }
    {
        const std::string req = "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n";
        RequestParser p;
        EXPECT_EQ(feed_bytewise(p, req), req.size());
        ASSERT_EQ(p.state(), State::complete) << p.error_reason();
        EXPECT_EQ(p.body(), "hello world");
        EXPECT_EQ(p.body_received(), 11U);
    }
}

// ---- keep-alive (RFC 9112 9.3) ---------------------------------------------------------

bool keep_alive_of(std::string_view req) {
    RequestParser p;
    feed(p, req);
    EXPECT_EQ(p.state(), State::complete) << req << ": " << p.error_reason();
    return p.head().keep_alive;
}

TEST(RequestParser, KeepAliveRules) {
    EXPECT_TRUE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n"));
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n"));
    EXPECT_TRUE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"));
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
    EXPECT_TRUE(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    EXPECT_TRUE(keep_alive_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    EXPECT_TRUE(keep_alive_of("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n"));
}

TEST(RequestParser, ConnectionTokensMayCarryTabs) {
    // RFC 9110 5.6.1: OWS (SP or HTAB) may surround list elements; "close\t" is "close".
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\t\r\n\r\n"));
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\t, foo\r\n\r\n"));
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo,\tclose\t\r\n\r\n"));
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive, close\t\r\n\r\n"));
    EXPECT_TRUE(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\t\r\n\r\n"));
    // A token that merely contains the word is not it.
    EXPECT_TRUE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"));
    EXPECT_TRUE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-close\r\n\r\n"));
}

TEST(RequestParser, ConnectionCloseInASecondFieldCounts) {
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\n"
                               "Connection: close\t\r\n\r\n"));
}

TEST(RequestParser, CloseWinsOverKeepAliveOnHttp10) {
    // RFC 9112 9.3: "close" present -> the connection does not persist, whatever the version.
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
    EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n"));
}

TEST(RequestParser, Http10WithTransferEncodingClosesTheConnection) {
    // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; the
    // server MUST close the connection after processing it, keep-alive or not.
    RequestParser p;
    feed(p, "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\n");
    if (p.state() == State::error) {
        EXPECT_EQ(p.error_status(), 400); // rejecting it is fine too
    } else {
        ASSERT_EQ(p.state(), State::complete);
        EXPECT_FALSE(p.head().keep_alive);
    }
}

// ---- bodies ----------------------------------------------------------------------------

TEST(RequestParser, ContentLengthBodyIsStaged) {
    const std::string req = "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
                            "Content-Type: text/plain\r\n\r\nhello world";
    RequestParser p;
    EXPECT_EQ(feed(p, req), req.size());
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    const RequestHead& h = p.head();
    EXPECT_EQ(h.method, HTTP_POST);
    EXPECT_TRUE(h.has_content_length);
    EXPECT_EQ(h.content_length, 11U);
    EXPECT_FALSE(h.chunked);
    EXPECT_TRUE(h.has_body());
    EXPECT_EQ(p.body(), "hello world");
    EXPECT_EQ(p.body_received(), 11U);
}

TEST(RequestParser, BodyArrivesAfterTheHead) {
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n";
    RequestParser p;
    EXPECT_EQ(feed(p, head), head.size());
    EXPECT_EQ(p.state(), State::body);
    EXPECT_TRUE(p.head_done());
    EXPECT_FALSE(p.idle());
    EXPECT_TRUE(p.body().empty());
    EXPECT_EQ(feed(p, "0123"), 4U);
    EXPECT_EQ(p.state(), State::body);
    EXPECT_EQ(p.body(), "0123");
    p.body().clear(); // the consumer took them
    EXPECT_EQ(feed(p, "456789"), 6U);
    EXPECT_EQ(p.state(), State::complete);
    EXPECT_EQ(p.body(), "456789");
    EXPECT_EQ(p.body_received(), 10U);
}

TEST(RequestParser, ZeroContentLengthHasNoBody) {
    RequestParser p;
    feed(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ(p.state(), State::complete);
    EXPECT_TRUE(p.head().has_content_length);
    EXPECT_EQ(p.head().content_length, 0U);
    EXPECT_FALSE(p.head().has_body());
}

TEST(RequestParser, ChunkedBodyWithExtensionsAndTrailers) {
    const std::string req = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5;ext=1\r\nhello\r\n"
                            "6;name;q=\"quoted value\"\r\n world\r\n"
                            "A\r\n0123456789\r\n"
                            "0\r\n"
                            "X-Trailer: t\r\n"
                            "X-Other: u\r\n"
                            "\r\n";
    RequestParser p;
    EXPECT_EQ(feed(p, req), req.size());
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    const RequestHead& h = p.head();
    EXPECT_TRUE(h.chunked);
    EXPECT_FALSE(h.has_content_length);
    EXPECT_TRUE(h.has_body());
    EXPECT_EQ(p.body(), "hello world0123456789");
    EXPECT_EQ(p.body_received(), 21U);
    // Trailer fields are dropped: only the head's fields are there.
    EXPECT_EQ(headers_of(h), (Headers{{"Host", "a"}, {"Transfer-Encoding", "chunked"}}));
}

TEST(RequestParser, ChunkedBodySplitAtEveryByteBoundary) {
    const std::string req = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n";
    for (std::size_t at = 0; at <= req.size(); ++at) {
        SCOPED_TRACE("split at " + std::to_string(at));
        RequestParser p;
        EXPECT_EQ(feed_split(p, req, at), req.size());
        ASSERT_EQ(p.state(), State::complete) << p.error_reason();
        EXPECT_EQ(p.body(), "hello!");
        EXPECT_EQ(p.head().headers.size(), 2U);
    }
}

TEST(RequestParser, ChunkedWithSeveralExtensions) {
    // RFC 9112 7.1.1: any number of extensions, token or quoted values, are read and
    // ignored. (llhttp 8.1 alone rejects a second extension after a token value.)
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string body = "5;a=1;b=2;c=3\r\nhello\r\n3;x=\"q\";y=z;w\r\nabc\r\n0;n=1;m=2\r\n\r\n";
    const std::string req = head + body;
    RequestParser p;
    EXPECT_EQ(feed(p, req), req.size());
    ASSERT_EQ(p.state(), State::complete) << p.error_status() << " " << p.error_reason();
    EXPECT_EQ(p.body(), "helloabc");
    RequestParser b;
    EXPECT_EQ(feed_bytewise(b, req), req.size());
    ASSERT_EQ(b.state(), State::complete) << b.error_reason();
    EXPECT_EQ(b.body(), "helloabc");
    for (std::size_t at = head.size(); at < req.size(); ++at) {
        SCOPED_TRACE(at);
        RequestParser q;
        EXPECT_EQ(feed_split(q, req, at), req.size());
        ASSERT_EQ(q.state(), State::complete) << q.error_reason();
        EXPECT_EQ(q.body(), "helloabc");
    }
}

TEST(RequestParser, MalformedChunkExtensionsAre400) {
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    EXPECT_EQ(status_of(head + "5;a=1;\r\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(status_of(head + "5;a=b c\r\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(status_of(head + "5;a=1;b=\"x\r\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(status_of_bytewise(head + "5;a=1;\r\nhello\r\n0\r\n\r\n"), 400);
}

TEST(RequestParser, ChunkExtensionBwsAndQuotedPairsAreAccepted) {
    // RFC 9112 7.1.1: BWS around ';' and '='; RFC 9110 5.6.4: quoted-pair in a value.
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (const char* ext : {" ;a=b", "\t; a = b", ";a =b", ";a= b", "; a", " ;a=1 ;b = \"x y\"",
                            ";a=\"x\\\"y\"", ";a=\"\\\\\"", ";a=\"q\\ r\" ; b"}) {
        const std::string req = head + "5" + ext + "\r\nhello\r\n3" + ext + "\r\nabc\r\n0" + ext +
                                "\r\nX-T: 1\r\n\r\n";
        RequestParser p;
        EXPECT_EQ(feed(p, req), req.size()) << ext;
        ASSERT_EQ(p.state(), State::complete) << ext << ": " << p.error_reason();
        EXPECT_EQ(p.body(), "helloabc") << ext;
        RequestParser b;
        EXPECT_EQ(feed_bytewise(b, req), req.size()) << ext;
        ASSERT_EQ(b.state(), State::complete) << ext << ": " << b.error_reason();
        EXPECT_EQ(b.body(), "helloabc") << ext;
    }
}

TEST(RequestParser, ManySmallChunksInOneFeed) {
    // Each chunk is a pause and a resume inside one feed: handled in a loop, so 50,000
    // chunks in one buffer cost no stack depth.
    std::string req = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 50000; ++i) {
        req += "1 ;e\r\nx\r\n";
    }
    req += "0\r\n\r\n";
    RequestParser p;
    EXPECT_EQ(feed(p, req), req.size());
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.body(), std::string(50000, 'x'));
}

TEST(RequestParser, WhitespaceOutsideChunkExtensionBwsIs400) {
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (const char* line : {"5 ", " 5", "5\t", "5;a b", "5;a=b c", "5 5", "5;a=\"x\\\x01\""}) {
        const std::string req = head + line + "\r\nhello\r\n0\r\n\r\n";
        EXPECT_EQ(status_of(req), 400) << line;
        EXPECT_EQ(status_of_bytewise(req), 400) << line;
    }
}

TEST(RequestParser, PipelinedRequestAfterChunkedBodyIsUntouched) {
    // The size-line rewriting stops at the last chunk: what follows is the next request.
    const std::string first = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5 ;a = b\r\nhello\r\n0\r\n\r\n";
    const std::string second = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    RequestParser p;
    const std::string both = first + second;
    EXPECT_EQ(feed(p, both), first.size());
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.body(), "hello");
    p.next_message();
    EXPECT_EQ(feed(p, second), second.size());
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.head().view(p.head().target), "/next");
}

TEST(RequestParser, EmptyChunkExtensionNamesAndValuesAre400) {
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (const char* ext : {";=x", ";a=", ";a=1;=2", ";a=1;b="}) {
        const std::string req = head + "5" + ext + "\r\nhello\r\n0\r\n\r\n";
        EXPECT_EQ(status_of(req), 400) << ext;
        EXPECT_EQ(status_of_bytewise(req), 400) << ext;
    }
    for (const char* ext : {";a", ";a=\"\"", ";a=1;b", ";a=\"\";b=2"}) {
        const std::string req = head + "5" + ext + "\r\nhello\r\n0\r\n\r\n";
        EXPECT_EQ(status_of(req), 0) << ext;
        EXPECT_EQ(status_of_bytewise(req), 0) << ext;
    }
}

TEST(RequestParser, ChunkExtensionsAreBounded) {
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    std::string many;
    while (many.size() <= appserver::http::kMaxChunkExtensionBytes) {
        many += ";a=1";
    }
    EXPECT_EQ(status_of(head + "5" + many + "\r\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(status_of(head + "5;" + std::string(appserver::http::kMaxChunkExtensionBytes, 'n') +
                        "\r\nhello\r\n0\r\n\r\n"),
              400);
    // The bound is per chunk-size line: many small ones across chunks are fine.
    std::string chunks;
    for (int i = 0; i < 200; ++i) {
        chunks += "1;name=value;other=\"quoted\"\r\nx\r\n";
    }
    RequestParser p;
    feed(p, head + chunks + "0\r\n\r\n");
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.body(), std::string(200, 'x'));
}

TEST(RequestParser, ChunkedBodyOnlyZeroChunk) {
    RequestParser p;
    feed(p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_TRUE(p.body().empty());
    EXPECT_EQ(p.body_received(), 0U);
}

// ---- pipelining ------------------------------------------------------------------------

TEST(RequestParser, PipelinedRequestsStopAfterEachMessage) {
    const std::string first = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string second = "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    const std::string third = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "2\r\nxy\r\n0\r\n\r\n";
    const std::string fourth = "GET /d HTTP/1.0\r\n\r\n";
    const std::string all = first + second + third + fourth;

    RequestParser p;
    std::size_t off = feed(p, all);
    EXPECT_EQ(off, first.size());
    ASSERT_EQ(p.state(), State::complete);
    EXPECT_EQ(p.head().target_view(), "/a");
    // A complete message takes no more bytes until next_message().
    EXPECT_EQ(p.feed(all.data() + off, all.size() - off), 0U);
    EXPECT_EQ(p.head().target_view(), "/a");

    p.next_message();
    EXPECT_TRUE(p.idle());
    EXPECT_TRUE(p.body().empty());
    EXPECT_EQ(p.body_received(), 0U);
    std::size_t n = p.feed(all.data() + off, all.size() - off);
    EXPECT_EQ(n, second.size());
    off += n;
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.head().target_view(), "/b");
    EXPECT_EQ(p.head().method, HTTP_POST);
    EXPECT_EQ(p.body(), "abc");
    EXPECT_EQ(headers_of(p.head()), (Headers{{"Host", "a"}, {"Content-Length", "3"}}));

    p.next_message();
    n = p.feed(all.data() + off, all.size() - off);
    EXPECT_EQ(n, third.size());
    off += n;
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.head().target_view(), "/c");
    EXPECT_TRUE(p.head().chunked);
    EXPECT_FALSE(p.head().has_content_length);
    EXPECT_EQ(p.body(), "xy");

    p.next_message();
    n = p.feed(all.data() + off, all.size() - off);
    EXPECT_EQ(n, fourth.size());
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.head().target_view(), "/d");
    EXPECT_EQ(p.head().version_minor, 0);
    EXPECT_FALSE(p.head().keep_alive);
    EXPECT_FALSE(p.head().chunked);
    EXPECT_TRUE(p.head().headers.empty());
}

TEST(RequestParser, UpgradeRequestIsAnsweredPlainThenClosed) {
    // No protocol switch under WSGI: the request is served as a plain one and the
    // connection must not carry another request (the parser's own contract).
    RequestParser p;
    feed(p, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.head().target_view(), "/ws");
    EXPECT_FALSE(p.head().keep_alive);
}

TEST(RequestParser, NoPhantomRequestAfterAnUpgradeRequest) {
    // If a caller does go on after an upgrade request, the next bytes must be parsed as
    // the next request, never turn into an empty "complete" message.
    const std::string first =
        "GET /u HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    const std::string second = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string all = first + second;
    RequestParser p;
    const std::size_t n = feed(p, all);
    ASSERT_EQ(p.state(), State::complete);
    EXPECT_EQ(n, first.size());
    p.next_message();
    const std::size_t m = p.feed(all.data() + n, all.size() - n);
    if (p.state() == State::complete) {
        EXPECT_GT(m, 0U);
        EXPECT_EQ(p.head().target_view(), "/next");
        EXPECT_EQ(p.head().method, HTTP_GET);
    } else {
        EXPECT_EQ(p.state(), State::error); // refusing is acceptable, a phantom is not
    }
}

// ---- Expect: 100-continue --------------------------------------------------------------

bool expects_continue(std::string_view req) {
    RequestParser p;
    feed(p, req);
    EXPECT_TRUE(p.head_done()) << req << ": " << p.error_reason();
    return p.head().expect_continue;
}

TEST(RequestParser, ExpectContinueDetection) {
    EXPECT_TRUE(expects_continue(
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
    EXPECT_TRUE(expects_continue(
        "POST / HTTP/1.1\r\nHost: a\r\nEXPECT: 100-Continue\r\nContent-Length: 5\r\n\r\n"));
    EXPECT_TRUE(expects_continue("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n"));
    // RFC 9110 10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request.
    EXPECT_FALSE(expects_continue(
        "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
    // Nothing to wait for without a body.
    EXPECT_FALSE(expects_continue("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"));
    EXPECT_FALSE(expects_continue("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"));
    EXPECT_FALSE(expects_continue(
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n"));
    // A list: 100-continue among other (ignored) expectations still asks for the 100.
    EXPECT_TRUE(expects_continue(
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, foo\r\nContent-Length: 5\r\n\r\n"));
    EXPECT_TRUE(expects_continue(
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: foo,\t100-continue\r\nContent-Length: 5\r\n\r\n"));

    RequestParser p;
    feed(p, "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    EXPECT_EQ(p.state(), State::body); // the body is not there yet
}

// ---- errors and their status -------------------------------------------------------------

TEST(RequestParser, ContentLengthWithTransferEncodingIs400) {
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
              400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                        "Content-Length: 3\r\n\r\n0\r\n\r\n"),
              400);
}

TEST(RequestParser, DuplicateDifferingContentLengthIs400) {
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                        "Content-Length: 4\r\n\r\nabcd"),
              400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd"), 400);
}

TEST(RequestParser, InvalidContentLengthIs400) {
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), 400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na"), 400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\na"), 400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), 400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\n"
                        "Content-Length: 99999999999999999999999\r\n\r\n"),
              400);
}

TEST(RequestParser, TransferCodingsOtherThanChunkedAre501) {
    // RFC 9112 6.1: a coding the server does not understand gets 501; the app must never
    // see a gzip body passed off as plain bytes.
    const std::string body = "5\r\nhello\r\n0\r\n\r\n";
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + body), 501);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n" + body),
              501);
    EXPECT_EQ(status_of_bytewise("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: deflate ,chunked\r\n\r\n" + body), 501);
    // chunked alone, in any case and with surrounding whitespace, is fine.
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  CHUNKED \r\n\r\n" + body), 0);
}

TEST(RequestParser, AsteriskFormOnlyWithOptions) {
    RequestParser p;
    feed(p, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    EXPECT_EQ(p.head().view(p.head().target), "*");
    EXPECT_EQ(status_of("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("POST * HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), 400);
}

TEST(RequestParser, TransferEncodingNotEndingInChunkedIs400) {
    // RFC 9112 6.3: a request whose final coding is not chunked MUST get a 400.
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc"), 400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                        "abc"),
              400);
}

TEST(RequestParser, EmptyTransferEncodingIs400) {
    // RFC 9112 6.3: Transfer-Encoding is present and chunked is not its final coding,
    // however empty the field: 400, never framing by the Content-Length beside it.
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                        "Transfer-Encoding:\r\n\r\nhello"),
              400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n"
                        "Content-Length: 5\r\n\r\nhello"),
              400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:   \r\n"
                        "Content-Length: 5\r\n\r\nhello"),
              400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"
                        "5\r\nhello\r\n0\r\n\r\n"),
              400);
    EXPECT_EQ(status_of_bytewise("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"
                                 "5\r\nhello\r\n0\r\n\r\n"),
              400);
    EXPECT_EQ(status_of("GET / HTTP/1.0\r\nTransfer-Encoding:\r\n\r\n"), 400);
    // An empty element beside chunked, in one field or across two, is refused alike.
    const std::string body = "5\r\nhello\r\n0\r\n\r\n";
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                        "Transfer-Encoding:\r\n\r\n" + body),
              400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n" + body),
              400);
}

TEST(RequestParser, ObsFoldIs400) {
    // RFC 9112 5.2 lets a server reject obs-fold with 400; this server refuses ambiguity.
    const std::string sp = "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: first\r\n second\r\n\r\n";
    const std::string tab = "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: first\r\n\tsecond\r\n\r\n";
    EXPECT_EQ(status_of(sp), 400);
    EXPECT_EQ(status_of(tab), 400);
    // A fold after an empty first line is a fold all the same.
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX-Folded:\r\n second\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: \r\n second\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost:\r\n evil.example\r\n\r\n"), 400);
}

TEST(RequestParser, ObsFoldIs400WhateverTheReadBoundaries) {
    const std::string sp = "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: first\r\n second\r\n\r\n";
    EXPECT_EQ(status_of_bytewise(sp), 400);
    for (std::size_t at = 0; at <= sp.size(); ++at) {
        SCOPED_TRACE("split at " + std::to_string(at));
        RequestParser p;
        feed_split(p, sp, at);
        EXPECT_EQ(p.state(), State::error);
        EXPECT_EQ(p.error_status(), 400);
    }
}

TEST(RequestParser, ExtraSpacesInTheRequestLineAre400) {
    // This server does not take RFC 9112 3's option to parse on whitespace boundaries.
    EXPECT_EQ(status_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of_bytewise("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

// The verdict on a byte stream must not depend on how the network cut it into reads: a
// check that only looks inside one feed() lets a client bypass it by splitting its packets.
TEST(RequestParser, VerdictDoesNotDependOnReadBoundaries) {
    const std::vector<std::string> corpus = {
        simple_get,
        rich_get,
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /   HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: first\r\n second\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: first\r\n\tsecond\r\n\r\n",
        "GET / HTTP/1.1\r\nHost:\r\n evil.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;a=1;b=\"c\";d\r\nhi\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;a=1;\r\nhi\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2 ; a = \"x\\\"\" ;b\r\nhi\r\n"
        "0 ;z\r\nT: 1 ; 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nhi\r\n0\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        "FROB / HTTP/1.1\r\nHost: a\r\n\r\n",
        "HELLO WORLD\r\n\r\n",
    };
    for (const auto& req : corpus) {
        SCOPED_TRACE(req);
        RequestParser whole;
        const std::size_t whole_n = feed(whole, req);
        const int whole_status = whole.state() == State::error ? whole.error_status() : 0;
        {
            RequestParser p;
            const std::size_t n = feed_bytewise(p, req);
            EXPECT_EQ(p.state(), whole.state()) << "fed one byte at a time";
            EXPECT_EQ(p.state() == State::error ? p.error_status() : 0, whole_status)
                << "fed one byte at a time";
            if (whole.state() != State::error) {
                EXPECT_EQ(n, whole_n);
                EXPECT_EQ(headers_of(p.head()), headers_of(whole.head()));
            }
        }
        for (std::size_t at = 1; at < req.size(); ++at) {
            RequestParser p;
            feed_split(p, req, at);
            EXPECT_EQ(p.state(), whole.state()) << "split at " << at;
            EXPECT_EQ(p.state() == State::error ? p.error_status() : 0, whole_status)
                << "split at " << at;
        }
    }
}

TEST(RequestParser, BareLfInHeaderLineIs400) {
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\nX-B: b\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\nHost: a\nX: b\n\n"), 400);
}

TEST(RequestParser, BareLfEndingTheRequestLineIs400) {
    // Strict framing (see CMakeLists: "no lenient line endings"): CRLF only.
    EXPECT_EQ(status_of("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
}

TEST(RequestParser, BareLfEndingTheHeaderSectionIs400) {
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
}

TEST(RequestParser, BareLfInChunkedFramingIs400) {
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    EXPECT_EQ(status_of(head + "5\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(status_of(head + "5\r\nhello\n0\r\n\r\n"), 400);
}

TEST(RequestParser, BareCrIs400) {
    // RFC 9112 2.2: a bare CR MUST be treated as invalid (or replaced by SP).
    const Parsed r = parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n");
    EXPECT_EQ(r.state, State::error);
    EXPECT_EQ(r.status, 400);
}

TEST(RequestParser, ControlBytesInHeaderValueAre400) {
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"s), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n"), 400);
}

TEST(RequestParser, MalformedHeaderNamesAre400) {
    // RFC 9112 5.1: whitespace between name and colon MUST be rejected with 400.
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX\xe9: v\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n"), 400);
    // A header line may not start with whitespace right after the request-line.
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
}

TEST(RequestParser, EmptyHeaderNameIs400) {
    // field-name = token = 1*tchar (RFC 9110 5.1): an empty name is not a field line.
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\n: value\r\n\r\n"), 400);
}

TEST(RequestParser, HostRules) {
    // RFC 9112 3.2: 400 for an HTTP/1.1 request without Host, or with more than one.
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.0\r\n\r\n"), 0);
}

std::string get_with_host(std::string_view host) {
    return "GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n";
}

TEST(RequestParser, HostMustBeAValidAuthority) {
    // RFC 9112 3.2: Host = uri-host [ ":" port ] (RFC 3986), else 400.
    for (const char* ok : {"example.com", "example.com:8080", "a:", "127.0.0.1:80", "[::1]",
                           "[::1]:8000", "[v1.x]", "xn--bcher-kva.example", "a%20b", ""}) {
        EXPECT_EQ(status_of(get_with_host(ok)), 0) << ok;
    }
    for (const char* bad : {"a:xx", "a:80:80", "a:-1", "a%zz", "a%2", "[::1", "[::1]x", "[zz]",
                            "a b", "a/b", "u@a", "a\"b", "a?b", "[]", "[v1]"}) {
        EXPECT_EQ(status_of(get_with_host(bad)), 400) << bad;
    }
}

std::string get_target(std::string_view target) {
    return "GET " + std::string(target) + " HTTP/1.1\r\nHost: h\r\n\r\n";
}

TEST(RequestParser, AbsoluteFormTargetsAreChecked) {
    // RFC 9112 3.2.2 (absolute-form), RFC 9110 4.2.1 (no empty host), 4.2.4 (no userinfo).
    for (const char* ok : {"http://a/p", "HTTPS://a:8443/p?q", "http://a", "http://a?q",
                           "http://[::1]:80/"}) {
        EXPECT_EQ(status_of(get_target(ok)), 0) << ok;
    }
    for (const char* bad : {"http:///p", "http://:80/p", "http://u:p@a/p", "http://a:xx/p",
                            "http://[::1/p", "ftp://a/p"}) {
        EXPECT_EQ(status_of(get_target(bad)), 400) << bad;
    }
}

TEST(RequestParser, FragmentInTargetIs400) {
    // RFC 9112 3.2: the request-target has no fragment part.
    EXPECT_EQ(status_of(get_target("/p#f")), 400);
    EXPECT_EQ(status_of(get_target("/p?q=1#f")), 400);
}

TEST(RequestParser, InvalidChunkSizeIs400) {
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    EXPECT_EQ(status_of(head + "zz\r\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(status_of(head + "-5\r\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(status_of(head + "10000000000000000\r\n"), 400); // overflows 64 bits
    EXPECT_EQ(status_of(head + "3\r\nabcXY0\r\n\r\n"), 400);   // no CRLF after the data
}

TEST(RequestParser, HeaderSectionOverLimitIs431) {
    const ParserLimits limits{1024, 100, 0};
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(600, 'v') +
                            "\r\n\r\n",
                        limits),
              0);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(2000, 'v') +
                            "\r\n\r\n",
                        limits),
              431);
    // A request line that alone exceeds the limit is a target too long (RFC 9110 15.5.15).
    EXPECT_EQ(status_of("GET /" + std::string(2000, 'p') + " HTTP/1.1\r\nHost: a\r\n\r\n",
                        limits),
              414);
    // A method that long is one this server does not implement (RFC 9112 3), and a
    // flood of empty lines before the request line is no target at all.
    EXPECT_EQ(status_of(std::string(2000, 'M') + " / HTTP/1.1\r\nHost: a\r\n\r\n", limits), 501);
    EXPECT_EQ(status_of_bytewise(std::string(2000, 'M') + " / HTTP/1.1\r\nHost: a\r\n\r\n", limits), 501);
    std::string blank_lines;
    for (int i = 0; i < 600; ++i) {
        blank_lines += "\r\n";
    }
    EXPECT_EQ(status_of(blank_lines + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", limits), 400);
    std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 60; ++i) {
        many += "X-Header-" + std::to_string(i) + ": some value\r\n";
    }
    EXPECT_EQ(status_of(many + "\r\n", limits), 431);
    EXPECT_EQ(status_of_bytewise(many + "\r\n", limits), 431);
}

TEST(RequestParser, WhitespacePaddingCountsTowardsTheHeaderLimit) {
    // The limit is on the header section's bytes; optional whitespace is part of them, or
    // a client could send an arbitrarily long head.
    const ParserLimits limits{1024, 100, 0};
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX-Pad:" + std::string(5000, ' ') +
                            "v\r\n\r\n",
                        limits),
              431);
}

TEST(RequestParser, TooManyHeadersIs431) {
    std::string head = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 1; i < 100; ++i) {
        head += "H" + std::to_string(i) + ": v\r\n";
    }
    EXPECT_EQ(status_of(head + "\r\n"), 0); // exactly max_headers (100)
    EXPECT_EQ(status_of(head + "One-Too-Many: v\r\n\r\n"), 431);
    const ParserLimits few{64 * 1024, 3, 0};
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", few), 0);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", few), 431);
}

TEST(RequestParser, TrailerSectionIsBounded) {
    const ParserLimits limits{1024, 100, 0};
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    EXPECT_EQ(status_of(head + "0\r\nX-T: " + std::string(5000, 't') + "\r\n\r\n", limits), 431);
    // The number of fields is bounded as in the head (max_headers), not only their bytes.
    const ParserLimits few{64 * 1024, 3, 0};
    EXPECT_EQ(status_of(head + "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", few), 0);
    EXPECT_EQ(status_of(head + "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", few), 431);
    std::string many = head + "0\r\n";
    for (int i = 0; i < 101; ++i) {
        many += "T: v\r\n";
    }
    EXPECT_EQ(status_of(many + "\r\n"), 431);
}

TEST(RequestParser, TrailerSectionFollowsTheHeadsRules) {
    // A bare LF must not end the trailer section: other parsers read on there, and the
    // two would disagree about where the next request starts.
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string next = "GET /second HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"0\r\n\n", "bare LF"},
        {"0\r\nX: a\r\n\n", "bare LF"},
        {"0;a=1\r\n\n", "bare LF"},
        {"0\r\nX: a\n\r\n", "bare LF"},
        {"0\r\nX: a\r\r\n\r\n", "bare CR"},
        {"0\r\nX: a\r\n b\r\n\r\n", "folding"},
        {"0\r\nX: a\r\n\tb\r\n\r\n", "folding"},
        {"0\r\n: a\r\n\r\n", "empty trailer field name"},
    };
    for (const auto& [trailer, why] : bad) {
        const std::string req = head + "5\r\nhello\r\n" + trailer + next;
        SCOPED_TRACE(trailer);
        RequestParser p;
        feed(p, req);
        ASSERT_EQ(p.state(), State::error);
        EXPECT_EQ(p.error_status(), 400);
        EXPECT_NE(p.error_reason().find(why), std::string::npos) << p.error_reason();
        EXPECT_EQ(status_of_bytewise(req), 400);
        for (std::size_t at = head.size(); at < req.size(); ++at) {
            RequestParser q;
            feed_split(q, req, at);
            EXPECT_EQ(q.state(), State::error) << "split at " << at;
        }
    }
    // Well-formed trailers still end the message exactly, with the next request left over.
    for (const std::string trailer : {"0\r\n\r\n", "0\r\nX: a\r\nY:\r\n\r\n", "0;e=\"q\"\r\nX: a\r\n\r\n"}) {
        const std::string req = head + "5\r\nhello\r\n" + trailer;
        SCOPED_TRACE(trailer);
        RequestParser p;
        EXPECT_EQ(feed(p, req + next), req.size());
        ASSERT_EQ(p.state(), State::complete) << p.error_reason();
        EXPECT_EQ(p.body(), "hello");
        RequestParser q;
        EXPECT_EQ(feed_bytewise(q, req + next), req.size());
        EXPECT_EQ(q.state(), State::complete) << q.error_reason();
        p.next_message(); // the trailer checks start over with the next message
        EXPECT_EQ(feed(p, req), req.size());
        EXPECT_EQ(p.state(), State::complete) << p.error_reason();
    }
}

TEST(RequestParser, Http2PrefaceIs505) {
    const Parsed r = parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    ASSERT_EQ(r.state, State::error);
    EXPECT_EQ(r.status, 505);
    EXPECT_NE(r.reason.find("HTTP/2"), std::string::npos) << r.reason;
}

TEST(RequestParser, BodyOverLimitByContentLengthIs413UpFront) {
    const ParserLimits limits{64 * 1024, 100, 10};
    RequestParser p(limits);
    feed(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n");
    ASSERT_EQ(p.state(), State::error); // before a single body byte arrived
    EXPECT_EQ(p.error_status(), 413);
    EXPECT_TRUE(p.body().empty());
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
                        limits),
              0);
}

TEST(RequestParser, BodyOverLimitByChunkedAccumulationIs413) {
    const ParserLimits limits{64 * 1024, 100, 10};
    const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    EXPECT_EQ(status_of(head + "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", limits), 0); // exactly 10
    EXPECT_EQ(status_of(head + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", limits), 413);
    EXPECT_EQ(status_of_bytewise(head + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", limits), 413);
    // One huge chunk announced: refused at the latest when the limit is crossed.
    RequestParser p(limits);
    feed(p, head + "100000\r\n" + std::string(64, 'x'));
    ASSERT_EQ(p.state(), State::error);
    EXPECT_EQ(p.error_status(), 413);
    EXPECT_LE(p.body().size(), 10U);
}

TEST(RequestParser, NewerHttp1MinorVersionsAreServedAsHttp11) {
    // RFC 9110 6.2: a higher minor version of a major version we implement is processed
    // as the highest minor version we implement.
    for (const char* v : {"HTTP/1.2", "HTTP/1.9"}) {
        SCOPED_TRACE(v);
        const std::string req = std::string("GET /x HTTP/1.1\r\nHost: a\r\n\r\n").replace(7, 8, v);
        for (int mode = 0; mode < 2; ++mode) {
            RequestParser p;
            EXPECT_EQ(mode == 0 ? feed(p, req) : feed_bytewise(p, req), req.size());
            ASSERT_EQ(p.state(), State::complete) << p.error_reason();
            EXPECT_EQ(p.head().version_major, 1);
            EXPECT_EQ(p.head().version_minor, 1);
            EXPECT_TRUE(p.head().keep_alive);
            EXPECT_EQ(p.head().view(p.head().target), "/x");
        }
    }
    EXPECT_EQ(status_of("GET / HTTP/1.2\r\n\r\n"), 400); // 1.1 rules: Host required
    EXPECT_EQ(status_of("GET / HTTP/1.12\r\nHost: a\r\n\r\n"), 400);
}

TEST(RequestParser, UnsupportedVersionsAre505) {
    EXPECT_EQ(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    EXPECT_EQ(status_of("GET / HTTP/3.0\r\nHost: a\r\n\r\n"), 505);
    EXPECT_EQ(status_of("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505);
}

TEST(RequestParser, ConnectIs501) {
    EXPECT_EQ(status_of("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
              501);
}

// RFC 9110 9.1: any token is a method; the app decides (405, 501...). llhttp 8.1 knows a
// fixed list, so the parser reads the others itself. Whatever the read boundaries.
TEST(RequestParser, AnyTokenMethodReachesTheApp) {
    for (const std::string method : {"QUERY", "FROB", "get", "PROPFIX", "X-CUSTOM.1~", "M"}) {
        const std::string req = method + " /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
        for (std::size_t at = 1; at < req.size(); ++at) {
            RequestParser p;
            const std::size_t n = feed_split(p, req, at);
            ASSERT_EQ(p.state(), State::complete) << method << " split at " << at << ": " << p.error_reason();
            EXPECT_EQ(n, req.size());
            EXPECT_EQ(p.head().method, appserver::http::kOtherMethod);
            EXPECT_EQ(p.head().method_name(), method);
            EXPECT_EQ(p.method_name(), method);
            EXPECT_EQ(p.head().target_view(), "/x?y");
            EXPECT_EQ(headers_of(p.head()), (Headers{{"Host", "a"}, {"Content-Length", "2"}}));
            EXPECT_EQ(p.body(), "hi");
        }
        RequestParser p;
        feed_bytewise(p, req);
        ASSERT_EQ(p.state(), State::complete) << method;
        EXPECT_EQ(p.head().method_name(), method);
    }
}

TEST(RequestParser, KnownMethodsSplitAcrossReadsKeepTheirId) {
    const std::string req = "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n";
    for (std::size_t at = 1; at < req.size(); ++at) {
        RequestParser p;
        feed_split(p, req, at);
        ASSERT_EQ(p.state(), State::complete) << at;
        EXPECT_EQ(p.head().method, HTTP_DELETE);
        EXPECT_EQ(p.head().method_name(), "DELETE");
    }
}

TEST(RequestParser, UnknownMethodsCarryOnForPipelinedRequests) {
    const std::string two = "QUERY /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    RequestParser p;
    const std::size_t first = feed(p, two);
    ASSERT_EQ(p.state(), State::complete);
    EXPECT_EQ(p.head().method_name(), "QUERY");
    p.next_message();
    feed(p, std::string_view(two).substr(first));
    ASSERT_EQ(p.state(), State::complete);
    EXPECT_EQ(p.head().method, HTTP_GET);
    EXPECT_EQ(p.head().method_name(), "GET");
}

TEST(RequestParser, MethodsThatAreNotTokensAre400) {
    EXPECT_EQ(status_of("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of_bytewise("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n"s), 400);
    // Answered at once, not after waiting for the end of a line that may never come.
    RequestParser p;
    feed(p, "\x16\x03\x01"s);
    EXPECT_EQ(p.state(), State::error);
}

// RFC 9110 5.5: OWS around a field value may be SP or HTAB, in any field: also in those
// llhttp reads itself (it rejects "Content-Length: 5<HTAB>" and misses "chunked<HTAB>").
TEST(RequestParser, HtabAroundFieldValuesIsAccepted) {
    const std::vector<std::string> requests = {
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\t\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t5 \t \r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost:\ta\t\r\nX: \t\r\nContent-Length: 5\t\r\n\r\nhello",
    };
    for (const auto& req : requests) {
        for (std::size_t at = 1; at < req.size(); ++at) {
            RequestParser p;
            const std::size_t n = feed_split(p, req, at);
            ASSERT_EQ(p.state(), State::complete) << req << " split at " << at << ": " << p.error_reason();
            EXPECT_EQ(n, req.size());
            EXPECT_EQ(p.body(), "hello");
        }
        RequestParser p;
        feed_bytewise(p, req);
        ASSERT_EQ(p.state(), State::complete) << req << ": " << p.error_reason();
        EXPECT_EQ(p.body(), "hello");
    }
}

TEST(RequestParser, HtabInsideAFieldValueIsKeptAsSent) {
    const std::string req = "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb\t\r\nX-B:\t\tc \t d\r\n\r\n";
    for (std::size_t at = 1; at < req.size(); ++at) {
        RequestParser p;
        feed_split(p, req, at);
        ASSERT_EQ(p.state(), State::complete) << at;
        EXPECT_EQ(headers_of(p.head()), (Headers{{"Host", "a"}, {"X-A", "a\tb"}, {"X-B", "c \t d"}}));
    }
}

TEST(RequestParser, HtabDoesNotMakeABadValueGood) {
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\t6\r\n\r\nhello"), 400);
    EXPECT_EQ(status_of_bytewise("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\t6\r\n\r\nhello"), 400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\tx\r\n\r\n0\r\n\r\n"), 400);
    // Still a request line, where HTAB is no separator.
    EXPECT_EQ(status_of("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\t\r\nHost: a\r\n\r\n"), 400);
}

TEST(RequestParser, GarbageRequestLineIs400) {
    // RFC 9112 3: an invalid request-line gets 400 (not 501: there is no method at all).
    EXPECT_EQ(status_of("HELLO WORLD\r\n\r\n"), 400);
    EXPECT_EQ(status_of("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s), 400);
    EXPECT_EQ(status_of("\0\0\0\0"s), 400);
    EXPECT_EQ(status_of("GET\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / \r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

TEST(RequestParser, MalformedVersionIs400) {
    // A syntax error in HTTP-version is an invalid request-line (400, RFC 9112 3); 505 is
    // for a well-formed major version the server does not support (RFC 9110 15.6.6).
    EXPECT_EQ(status_of("GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/11\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
}

TEST(RequestParser, ErrorIsSticky) {
    RequestParser p;
    const std::string bad = "GET / HTTP/1.1\r\nHost : a\r\n\r\n";
    const std::size_t n = feed(p, bad);
    EXPECT_LE(n, bad.size());
    ASSERT_EQ(p.state(), State::error);
    const int status = p.error_status();
    EXPECT_FALSE(p.error_reason().empty());
    EXPECT_EQ(feed(p, simple_get), 0U);
    EXPECT_EQ(p.state(), State::error);
    EXPECT_EQ(p.error_status(), status);
    p.finish();
    EXPECT_EQ(p.state(), State::error);
    EXPECT_EQ(p.error_status(), status);
}

// ---- finish() and idle() ---------------------------------------------------------------

TEST(RequestParser, FinishOnATruncatedMessageIsAnError) {
    const std::vector<std::string> truncated = {
        "G",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    };
    for (const auto& t : truncated) {
        SCOPED_TRACE(t);
        RequestParser p;
        EXPECT_EQ(feed(p, t), t.size());
        EXPECT_NE(p.state(), State::error);
        EXPECT_FALSE(p.idle());
        p.finish();
        EXPECT_EQ(p.state(), State::error);
        EXPECT_EQ(p.error_status(), 400);
        EXPECT_FALSE(p.error_reason().empty());
    }
}

TEST(RequestParser, FinishBetweenMessagesIsNotAnError) {
    RequestParser fresh;
    fresh.finish();
    EXPECT_EQ(fresh.state(), State::head);
    EXPECT_TRUE(fresh.idle());

    RequestParser p;
    feed(p, simple_get);
    ASSERT_EQ(p.state(), State::complete);
    p.finish(); // the message is whole; the peer may close after it
    EXPECT_EQ(p.state(), State::complete);
    p.next_message();
    p.finish();
    EXPECT_EQ(p.state(), State::head);
    EXPECT_TRUE(p.idle());
}

TEST(RequestParser, IdleSemantics) {
    RequestParser p;
    EXPECT_TRUE(p.idle());
    feed(p, "G");
    EXPECT_FALSE(p.idle()); // a message has begun: closing now would cut it
    feed(p, "ET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_EQ(p.state(), State::complete);
    EXPECT_FALSE(p.idle()); // being served
    p.next_message();
    EXPECT_TRUE(p.idle());
    EXPECT_EQ(p.state(), State::head);
    EXPECT_TRUE(p.head().headers.empty());
    EXPECT_EQ(p.head().target.length, 0U);
    feed(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n");
    EXPECT_EQ(p.state(), State::body);
    EXPECT_FALSE(p.idle());
}

TEST(RequestParser, NextMessageResetsTheHead) {
    RequestParser p;
    const std::string a = "POST /first HTTP/1.0\r\nConnection: keep-alive\r\n"
                          "Content-Length: 2\r\nExpect: 100-continue\r\nX-Only-First: 1\r\n\r\nab";
    feed(p, a);
    ASSERT_EQ(p.state(), State::complete);
    p.next_message();
    feed(p, "GET /second HTTP/1.1\r\nHost: b\r\n\r\n");
    ASSERT_EQ(p.state(), State::complete) << p.error_reason();
    const RequestHead& h = p.head();
    EXPECT_EQ(h.target_view(), "/second");
    EXPECT_EQ(h.method, HTTP_GET);
    EXPECT_EQ(h.version_minor, 1);
    EXPECT_TRUE(h.keep_alive);
    EXPECT_FALSE(h.has_content_length);
    EXPECT_EQ(h.content_length, 0U);
    EXPECT_FALSE(h.expect_continue);
    EXPECT_EQ(headers_of(h), (Headers{{"Host", "b"}}));
    EXPECT_FALSE(h.has_body());
    EXPECT_TRUE(p.body().empty());
    EXPECT_EQ(p.body_received(), 0U);
}

// ---- property: the verdict never depends on read boundaries ------------------------------

// Mutates valid requests (fixed seed: the same inputs every run) and checks that feeding
// each one whole, one byte at a time, and split at a random point gives the same state and
// the same error status. Boundary-dependent verdicts are what request smuggling feeds on.
TEST(RequestParserProperty, MutatedRequestsGetTheSameVerdictWhateverTheSplits) {
    const std::vector<std::string> bases = {
        simple_get,
        rich_get,
        "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;x=\"y\"\r\nhello\r\n0\r\nT: v\r\n\r\n",
        "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5 ; x = \"y\\\"\" ;z\r\nhello\r\n3\r\nabc\r\n0 ;e\r\nT: v\r\n\r\n",
        "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
    };
    const std::string alphabet = std::string(" \r\n:\t;/aZ0-=") + std::string(1, '\0');
    std::mt19937 rng(20261126);
    const ParserLimits limits{512, 20, 64};
    int checked = 0;
    for (int round = 0; round < 20000; ++round) {
        std::string s = bases[rng() % bases.size()];
        const int edits = 1 + static_cast<int>(rng() % 3);
        for (int e = 0; e < edits && !s.empty(); ++e) {
            const std::size_t pos = rng() % s.size();
            const char c = alphabet[rng() % alphabet.size()];
            switch (rng() % 3) {
            case 0: s[pos] = c; break;
            case 1: s.insert(s.begin() + static_cast<std::ptrdiff_t>(pos), c); break;
            default: s.erase(pos, 1); break;
            }
        }
        RequestParser whole(limits);
        feed(whole, s);
        RequestParser bytes(limits);
        feed_bytewise(bytes, s);
        RequestParser split(limits);
        feed_split(split, s, 1 + rng() % s.size());
        const auto verdict = [](const RequestParser& p) {
            return std::make_pair(p.state(), p.state() == State::error ? p.error_status() : 0);
        };
        ASSERT_EQ(verdict(whole), verdict(bytes)) << ::testing::PrintToString(s);
        ASSERT_EQ(verdict(whole), verdict(split)) << ::testing::PrintToString(s);
        ++checked;
    }
    EXPECT_EQ(checked, 20000);
}

} // namespace
