// Unit tests for the response-side HTTP rules (src/http/response.hpp): status parsing, field
// validation, hop-by-hop classification, chunk framing and the server's canned responses.
#include "http/response.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <clocale>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace http = appserver::http;
using namespace std::string_literals;

// ---- parse_status ----------------------------------------------------------------------

bool parses(std::string_view status, int expected) {
    int code = -1;
    const bool ok = http::parse_status(status, code);
    EXPECT_EQ(code, ok ? expected : -1) << status;
    return ok && code == expected;
}

bool rejects(std::string_view status) {
    int code = -1;
    const bool ok = http::parse_status(status, code);
    return !ok;
}

TEST(ParseStatus, AcceptsCodeWithReason) {
    EXPECT_TRUE(parses("200 OK", 200));
    EXPECT_TRUE(parses("404 Not Found", 404));
    EXPECT_TRUE(parses("503 Service Unavailable", 503));
    EXPECT_TRUE(parses("100 Continue", 100));
    EXPECT_TRUE(parses("599 Whatever", 599));
    EXPECT_TRUE(parses("201 Created\tand more", 201)); // HTAB is allowed in a reason
    EXPECT_TRUE(parses("200 d\xe9j\xe0 vu", 200));       // obs-text too
    EXPECT_TRUE(parses("200 ", 200));                   // empty reason-phrase
}

TEST(ParseStatus, AcceptsBareCode) {
    EXPECT_TRUE(parses("404", 404));
    EXPECT_TRUE(parses("200", 200));
}

TEST(ParseStatus, RejectsMalformedStatus) {
    EXPECT_TRUE(rejects(""));
    EXPECT_TRUE(rejects("20"));
    EXPECT_TRUE(rejects("20 OK"));
    EXPECT_TRUE(rejects("abc"));
    EXPECT_TRUE(rejects("abc OK"));
    EXPECT_TRUE(rejects("2OO OK")); // letter O
    EXPECT_TRUE(rejects("200OK"));
    EXPECT_TRUE(rejects("600 Too High")); // RFC 9110 15: 100-599
    EXPECT_TRUE(rejects("999 Whatever"));
    EXPECT_TRUE(rejects("099 Too Low"));
    EXPECT_TRUE(rejects("2000 OK"));
    EXPECT_TRUE(rejects("1000"));
    EXPECT_TRUE(rejects(" 200 OK"));
    EXPECT_TRUE(rejects("-20 OK"));
    EXPECT_TRUE(rejects("200\tOK"));
    EXPECT_TRUE(rejects("099 Too Low"));
    EXPECT_TRUE(rejects("000"));
}

TEST(ParseStatus, RejectsControlCharactersInReason) {
    EXPECT_TRUE(rejects("200 OK\r\n"));
    EXPECT_TRUE(rejects("200 OK\r\nSet-Cookie: injected=1"));
    EXPECT_TRUE(rejects("200 O\nK"));
    EXPECT_TRUE(rejects("200 O\x01K"));
    EXPECT_TRUE(rejects("200 OK\x7f"));
    EXPECT_TRUE(rejects("200 OK\0"s));
}

// ---- field validation ------------------------------------------------------------------

TEST(HeaderValidation, NamesAreTokens) {
    EXPECT_TRUE(http::valid_header_name("Content-Type"));
    EXPECT_TRUE(http::valid_header_name("x"));
    EXPECT_TRUE(http::valid_header_name("X_Underscore"));
    EXPECT_TRUE(http::valid_header_name("0123456789"));
    EXPECT_TRUE(http::valid_header_name("!#$%&'*+-.^_`|~"));
    EXPECT_FALSE(http::valid_header_name(""));
    EXPECT_FALSE(http::valid_header_name("Bad Name"));
    EXPECT_FALSE(http::valid_header_name("Name:"));
    EXPECT_FALSE(http::valid_header_name("Name\r\nX-Injected"));
    EXPECT_FALSE(http::valid_header_name("Tab\tName"));
    EXPECT_FALSE(http::valid_header_name("Nul\0"s));
    EXPECT_FALSE(http::valid_header_name("Del\x7f"));
    EXPECT_FALSE(http::valid_header_name("Caf\xe9")); // obs-text is not a tchar
    for (const char c : std::string_view("\"(),/:;<=>?@[\\]{}")) {
        EXPECT_FALSE(http::valid_header_name(std::string("X") + c)) << c;
    }
}

TEST(HeaderValidation, ValuesRejectCrLfNulDel) {
    EXPECT_FALSE(http::valid_header_value("a\rb"));
    EXPECT_FALSE(http::valid_header_value("a\nb"));
    EXPECT_FALSE(http::valid_header_value("a\r\nSet-Cookie: x=1"));
    EXPECT_FALSE(http::valid_header_value("a\0b"s));
    EXPECT_FALSE(http::valid_header_value("a\x7f"));
    EXPECT_FALSE(http::valid_header_value("\x01"));
    EXPECT_FALSE(http::valid_header_value("\x1f"));
}

TEST(HeaderValidation, ValuesAcceptHtabSpaceAndObsText) {
    EXPECT_TRUE(http::valid_header_value(""));
    EXPECT_TRUE(http::valid_header_value("text/html; charset=utf-8"));
    EXPECT_TRUE(http::valid_header_value("a\tb"));
    EXPECT_TRUE(http::valid_header_value("spaces inside"));
    EXPECT_TRUE(http::valid_header_value("caf\xe9"));
    EXPECT_TRUE(http::valid_header_value("\x80\xff"));
    std::string all_visible;
    for (int c = 0x20; c < 0x7f; ++c) {
        all_visible.push_back(static_cast<char>(c));
    }
    EXPECT_TRUE(http::valid_header_value(all_visible));
}

// ---- hop-by-hop ------------------------------------------------------------------------

TEST(HopByHop, Classification) {
    using http::HopByHop;
    EXPECT_EQ(http::classify_hop_by_hop("Connection"), HopByHop::connection);
    EXPECT_EQ(http::classify_hop_by_hop("CONNECTION"), HopByHop::connection);
    EXPECT_EQ(http::classify_hop_by_hop("connection"), HopByHop::connection);
    for (const char* name : {"Transfer-Encoding", "transfer-encoding", "Keep-Alive", "Upgrade",
                             "TE", "te", "Trailer", "Proxy-Connection", "PROXY-CONNECTION"}) {
        EXPECT_EQ(http::classify_hop_by_hop(name), HopByHop::drop) << name;
    }
    for (const char* name : {"Content-Length", "Content-Type", "X", "", "Date", "Trailers",
                             "Connections", "T", "Upgrade-Insecure-Requests", "Set-Cookie",
                             "Transfer-Encodings", "X-Connection"}) {
        EXPECT_EQ(http::classify_hop_by_hop(name), HopByHop::no) << name;
    }
}

// ---- chunk framing ---------------------------------------------------------------------

std::string chunk_size(std::size_t n) {
    std::string out;
    http::append_chunk_size(out, n);
    return out;
}

TEST(ChunkFraming, SizeLineIsHex) {
    EXPECT_EQ(chunk_size(1), "1\r\n");
    EXPECT_EQ(chunk_size(9), "9\r\n");
    EXPECT_EQ(chunk_size(10), "a\r\n");
    EXPECT_EQ(chunk_size(15), "f\r\n");
    EXPECT_EQ(chunk_size(16), "10\r\n");
    EXPECT_EQ(chunk_size(255), "ff\r\n");
    EXPECT_EQ(chunk_size(4096), "1000\r\n");
    EXPECT_EQ(chunk_size(0xdeadbeef), "deadbeef\r\n");
    EXPECT_EQ(chunk_size(std::numeric_limits<std::size_t>::max()),
              std::string(sizeof(std::size_t) * 2, 'f') + "\r\n");
}

TEST(ChunkFraming, SizeLineIsAppended) {
    std::string out = "prefix|";
    http::append_chunk_size(out, 26);
    EXPECT_EQ(out, "prefix|1a\r\n");
    http::append_chunk_size(out, 3);
    EXPECT_EQ(out, "prefix|1a\r\n3\r\n");
}

TEST(ChunkFraming, Constants) {
    EXPECT_EQ(http::last_chunk, "0\r\n\r\n");
    EXPECT_EQ(http::continue_100, "HTTP/1.1 100 Continue\r\n\r\n");
}

// ---- status_forbids_body ---------------------------------------------------------------

TEST(StatusForbidsBody, InformationalNoContentNotModified) {
    for (int code : {100, 101, 102, 103, 199, 204, 304}) {
        EXPECT_TRUE(http::status_forbids_body(code)) << code;
    }
    for (int code : {200, 201, 202, 203, 206, 301, 302, 303, 307, 400, 404, 500, 503, 999}) {
        EXPECT_FALSE(http::status_forbids_body(code)) << code;
    }
}

// ---- date_line -------------------------------------------------------------------------

const std::regex imf_fixdate_line(
    R"(^Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} )"
    R"((Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} )"
    R"([0-9]{2}:[0-9]{2}:[0-9]{2} GMT\r\n$)");

std::time_t parse_date_line(std::string_view line) {
    std::tm tm{};
    const std::string s(line);
    const char* end = ::strptime(s.c_str(), "Date: %a, %d %b %Y %H:%M:%S GMT", &tm);
    EXPECT_NE(end, nullptr) << s;
    return ::timegm(&tm);
}

TEST(DateLine, IsImfFixdate) {
    const std::string line(http::date_line());
    EXPECT_TRUE(std::regex_match(line, imf_fixdate_line)) << line;
}

TEST(DateLine, ShowsTheCurrentSecond) {
    const std::time_t before = std::time(nullptr);
    const std::string line(http::date_line());
    const std::time_t after = std::time(nullptr);
    const std::time_t shown = parse_date_line(line);
    EXPECT_GE(shown, before) << line;
    EXPECT_LE(shown, after) << line;
}

TEST(DateLine, WorksOnAnotherThread) {
    std::string other;
    std::thread t([&other] { other = std::string(http::date_line()); });
    t.join();
    EXPECT_TRUE(std::regex_match(other, imf_fixdate_line)) << other;
}

TEST(DateLine, FormatsKnownInstants) {
    char out[64];
    const std::pair<std::time_t, const char*> cases[] = {
        {0, "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"},
        {784111777, "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"}, // RFC 9110 5.6.7's example
        {951782400, "Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n"},
        {1700000000, "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"},
        {253402300799, "Date: Fri, 31 Dec 9999 23:59:59 GMT\r\n"},
    };
    for (const auto& [t, expected] : cases) {
        EXPECT_EQ(std::string(out, http::format_date_line(t, out)), expected) << t;
    }
}

// A locale whose day and month names are not English, built for the test (the machine
// may have none installed); empty when localedef or its sources are missing.
std::string non_english_time_locale() {
    static const std::string name = [] {
        char dir[] = "/tmp/appserver-locale-XXXXXX";
        if (::mkdtemp(dir) == nullptr) {
            return std::string();
        }
        const std::string cmd = std::string("localedef -i de_DE -f UTF-8 ") + dir +
                                "/de_DE.UTF-8 >/dev/null 2>&1";
        if (std::system(cmd.c_str()) != 0) {
            return std::string();
        }
        ::setenv("LOCPATH", dir, 1); // glibc reads it at each setlocale
        return std::string("de_DE.UTF-8");
    }();
    return name;
}

// An app may call setlocale(LC_ALL, "") under a German locale: the Date header must still
// say "Tue" and "Nov" (strftime's %a and %b would say "Di" and "Nov").
TEST(DateLine, EnglishWhateverTheLocale) {
    const std::string locale = non_english_time_locale();
    if (locale.empty() || std::setlocale(LC_TIME, locale.c_str()) == nullptr) {
        GTEST_SKIP() << "no non-English locale could be made (localedef)";
    }
    struct Restore {
        ~Restore() { std::setlocale(LC_TIME, "C"); }
    } restore;
    // The locale really took: strftime now names days in German.
    std::tm tm{};
    const std::time_t tuesday = 1700000000;
    ::gmtime_r(&tuesday, &tm);
    char local[32];
    std::strftime(local, sizeof local, "%a", &tm);
    ASSERT_STRNE(local, "Tue");

    char out[64];
    EXPECT_EQ(std::string(out, http::format_date_line(tuesday, out)),
              "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n");
    for (std::time_t t = 0; t < 12 * 31 * 86400; t += 86400) { // every day and month name
        const std::string line(out, http::format_date_line(t, out));
        EXPECT_TRUE(std::regex_match(line, imf_fixdate_line)) << line;
    }
    // And the cached line a fresh thread formats (nothing cached yet on it).
    std::string other;
    std::thread th([&other] { other = std::string(http::date_line()); });
    th.join();
    EXPECT_TRUE(std::regex_match(other, imf_fixdate_line)) << other;
}

// ---- reason phrases and canned responses -----------------------------------------------

TEST(ReasonPhrase, KnownCodes) {
    EXPECT_EQ(http::reason_phrase(200), "OK");
    EXPECT_EQ(http::reason_phrase(400), "Bad Request");
    EXPECT_EQ(http::reason_phrase(404), "Not Found");
    EXPECT_EQ(http::reason_phrase(408), "Request Timeout");
    EXPECT_EQ(http::reason_phrase(413), "Content Too Large");
    EXPECT_EQ(http::reason_phrase(431), "Request Header Fields Too Large");
    EXPECT_EQ(http::reason_phrase(500), "Internal Server Error");
    EXPECT_EQ(http::reason_phrase(501), "Not Implemented");
    EXPECT_EQ(http::reason_phrase(503), "Service Unavailable");
    EXPECT_EQ(http::reason_phrase(505), "HTTP Version Not Supported");
    // Whatever comes back for an unknown code must still be a valid reason-phrase.
    int code = 0;
    EXPECT_TRUE(http::parse_status("299 " + std::string(http::reason_phrase(299)), code));
}

struct CannedParts {
    std::string status_line;
    std::vector<std::string> header_lines; // without CRLF
    std::string body;
    bool well_formed = false;
};

CannedParts split_response(const std::string& r) {
    CannedParts out;
    const auto head_end = r.find("\r\n\r\n");
    if (head_end == std::string::npos) {
        return out;
    }
    out.body = r.substr(head_end + 4);
    std::string head = r.substr(0, head_end + 2);
    std::size_t pos = 0;
    bool first = true;
    while (pos < head.size()) {
        const auto eol = head.find("\r\n", pos);
        if (eol == std::string::npos) {
            return out;
        }
        std::string line = head.substr(pos, eol - pos);
        if (line.find('\n') != std::string::npos || line.find('\r') != std::string::npos) {
            return out;
        }
        if (first) {
            out.status_line = line;
            first = false;
        } else {
            out.header_lines.push_back(line);
        }
        pos = eol + 2;
    }
    out.well_formed = true;
    return out;
}

int count_prefix(const std::vector<std::string>& lines, std::string_view prefix) {
    int n = 0;
    for (const auto& l : lines) {
        if (l.rfind(prefix, 0) == 0) {
            ++n;
        }
    }
    return n;
}

std::string header(const std::vector<std::string>& lines, std::string_view name) {
    const std::string prefix = std::string(name) + ": ";
    for (const auto& l : lines) {
        if (l.rfind(prefix, 0) == 0) {
            return l.substr(prefix.size());
        }
    }
    return "<absent>";
}

TEST(CannedResponse, LayoutWithClose) {
    const std::string r = http::canned_response(404, "Not Found: /nope", true);
    const CannedParts p = split_response(r);
    ASSERT_TRUE(p.well_formed) << r;
    EXPECT_EQ(p.status_line, "HTTP/1.1 404 Not Found");
    EXPECT_EQ(p.body, "Not Found: /nope\n");
    EXPECT_EQ(header(p.header_lines, "Content-Length"), std::to_string(p.body.size()));
    EXPECT_EQ(count_prefix(p.header_lines, "Content-Length: "), 1);
    EXPECT_EQ(header(p.header_lines, "Content-Type"), "text/plain; charset=utf-8");
    EXPECT_EQ(header(p.header_lines, "Connection"), "close");
    EXPECT_EQ(count_prefix(p.header_lines, "Date: "), 1);
    const std::string date_line = "Date: " + header(p.header_lines, "Date") + "\r\n";
    EXPECT_TRUE(std::regex_match(date_line, imf_fixdate_line)) << date_line;
    EXPECT_EQ(count_prefix(p.header_lines, "Transfer-Encoding"), 0);
}

TEST(CannedResponse, LayoutWithoutClose) {
    const std::string r = http::canned_response(503, "busy", false);
    const CannedParts p = split_response(r);
    ASSERT_TRUE(p.well_formed) << r;
    EXPECT_EQ(p.status_line, "HTTP/1.1 503 Service Unavailable");
    EXPECT_EQ(p.body, "busy\n");
    EXPECT_EQ(header(p.header_lines, "Content-Length"), "5");
    EXPECT_EQ(count_prefix(p.header_lines, "Connection"), 0);
}

TEST(CannedResponse, ExtraHeadersAreInTheHead) {
    const std::string r =
        http::canned_response(503, "Service Unavailable", true, "Retry-After: 1\r\nX-A: b\r\n");
    const CannedParts p = split_response(r);
    ASSERT_TRUE(p.well_formed) << r;
    EXPECT_EQ(header(p.header_lines, "Retry-After"), "1");
    EXPECT_EQ(header(p.header_lines, "X-A"), "b");
    EXPECT_EQ(header(p.header_lines, "Connection"), "close");
    EXPECT_EQ(p.body, "Service Unavailable\n");
    EXPECT_EQ(header(p.header_lines, "Content-Length"), std::to_string(p.body.size()));
}

TEST(CannedResponse, EveryStatusTheServerProducesIsWellFormed) {
    for (int code : {400, 408, 413, 431, 500, 501, 503, 505}) {
        const std::string r = http::canned_response(code, "message", true);
        const CannedParts p = split_response(r);
        ASSERT_TRUE(p.well_formed) << r;
        int parsed = 0;
        ASSERT_EQ(p.status_line.rfind("HTTP/1.1 ", 0), 0U) << p.status_line;
        EXPECT_TRUE(http::parse_status(p.status_line.substr(9), parsed)) << p.status_line;
        EXPECT_EQ(parsed, code);
        EXPECT_EQ(p.status_line.substr(13), http::reason_phrase(code));
        EXPECT_EQ(header(p.header_lines, "Content-Length"), std::to_string(p.body.size()));
    }
}

TEST(CannedResponse, ForHeadTheSameHeadWithoutContent) {
    const std::string full = http::canned_response(413, "too big", true);
    const std::string head = http::canned_response(413, "too big", true, {}, false);
    const CannedParts p = split_response(full);
    ASSERT_TRUE(p.well_formed) << full;
    // The same head (Content-Length says what a GET would carry), then nothing.
    ASSERT_GE(head.size(), 4U);
    EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");
    EXPECT_EQ(head.find("too big"), std::string::npos);
    EXPECT_NE(head.find("Content-Length: " + std::to_string(p.body.size()) + "\r\n"),
              std::string::npos);
    EXPECT_EQ(head.size(), full.size() - p.body.size()); // the Date line has a fixed width
}

TEST(CannedResponse, EmptyMessageStillHasABody) {
    const std::string r = http::canned_response(500, "", true);
    const CannedParts p = split_response(r);
    ASSERT_TRUE(p.well_formed) << r;
    EXPECT_EQ(p.body, "\n");
    EXPECT_EQ(header(p.header_lines, "Content-Length"), "1");
}

} // namespace
