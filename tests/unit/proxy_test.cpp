// Unit tests for src/net/proxy.hpp: addresses, --forwarded-allow-ips matching, the PROXY
// protocol header (vectors from HAProxy's proxy-protocol.txt) and the forwarding headers
// (X-Forwarded-*, RFC 7239 Forwarded with its examples).
#include "net/proxy.hpp"

#include "http/field_list.hpp"
#include "http/parser.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace net = appserver::net;
namespace http = appserver::http;
using namespace std::string_literals;
using Status = net::ProxyHeader::Status;

// ---- addresses ------------------------------------------------------------------------------

std::string roundtrip(std::string_view text) {
    const auto a = net::parse_ip(text);
    return a ? net::format_ip(*a) : "<invalid>";
}

TEST(ParseIp, Ipv4IsStrictDottedDecimal) {
    EXPECT_EQ(roundtrip("192.0.2.1"), "192.0.2.1");
    EXPECT_EQ(roundtrip("0.0.0.0"), "0.0.0.0");
    EXPECT_EQ(roundtrip("255.255.255.255"), "255.255.255.255");
    for (const char* bad : {"256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "1..3.4",
                            "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4", "0x1.2.3.4", "1.2.3.4/8", "",
                            "1234.1.1.1", "localhost"}) {
        EXPECT_EQ(roundtrip(bad), "<invalid>") << bad;
    }
}

TEST(ParseIp, Ipv6CanonicalForm) {
    EXPECT_EQ(roundtrip("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
    EXPECT_EQ(roundtrip("::1"), "::1");
    EXPECT_EQ(roundtrip("::"), "::");
    EXPECT_EQ(roundtrip("::ffff:192.0.2.1"), "::ffff:192.0.2.1");
    for (const char* bad : {"[::1]", "fe80::1%eth0", "2001:db8::g", "1:2:3:4:5:6:7:8:9", ":::"}) {
        EXPECT_EQ(roundtrip(bad), "<invalid>") << bad;
    }
}

TEST(ParseIp, Ipv4AndItsMappedFormAreTheSameAddressBytes) {
    const auto v4 = net::parse_ip("10.1.2.3");
    const auto mapped = net::parse_ip("::ffff:10.1.2.3");
    ASSERT_TRUE(v4 && mapped);
    EXPECT_EQ(v4->bytes, mapped->bytes);
    EXPECT_TRUE(v4->v4);
    EXPECT_FALSE(mapped->v4);
}

// ---- --forwarded-allow-ips ------------------------------------------------------------------

net::TrustedProxies trusted(std::string_view list) {
    std::string error;
    auto t = net::TrustedProxies::parse(list, &error);
    EXPECT_TRUE(t.has_value()) << list << ": " << error;
    return t.value_or(net::TrustedProxies{});
}

std::string list_error(std::string_view list) {
    std::string error;
    const auto t = net::TrustedProxies::parse(list, &error);
    return t ? "<accepted>" : error;
}

bool trusts(const net::TrustedProxies& t, std::string_view address) {
    const auto a = net::parse_ip(address);
    EXPECT_TRUE(a.has_value()) << address;
    return a && t.trusts(*a);
}

TEST(TrustedProxies, DefaultTrustsLoopbackAndUnixSockets) {
    const auto t = trusted("127.0.0.1,::1");
    EXPECT_TRUE(trusts(t, "127.0.0.1"));
    EXPECT_TRUE(trusts(t, "::1"));
    EXPECT_TRUE(trusts(t, "::ffff:127.0.0.1")); // a dual-stack socket's view of it
    EXPECT_FALSE(trusts(t, "127.0.0.2"));
    EXPECT_FALSE(trusts(t, "10.0.0.1"));
    EXPECT_FALSE(trusts(t, "::2"));
    EXPECT_TRUE(t.trusts_unix());
    EXPECT_TRUE(t.trusts_peer(""));
    EXPECT_TRUE(t.trusts_peer("127.0.0.1"));
    EXPECT_FALSE(t.trusts_peer("192.0.2.1"));
    EXPECT_FALSE(t.trusts_peer("not an address"));
    EXPECT_FALSE(t.trusts_everyone());
}

TEST(TrustedProxies, CidrRanges) {
    const auto t = trusted(" 10.0.0.0/8 , 192.168.1.128/25,fd00::/8, 2001:db8::1/128");
    EXPECT_TRUE(trusts(t, "10.0.0.0"));
    EXPECT_TRUE(trusts(t, "10.255.255.255"));
    EXPECT_TRUE(trusts(t, "::ffff:10.9.8.7"));
    EXPECT_FALSE(trusts(t, "11.0.0.0"));
    EXPECT_FALSE(trusts(t, "9.255.255.255"));
    EXPECT_TRUE(trusts(t, "192.168.1.128"));
    EXPECT_TRUE(trusts(t, "192.168.1.255"));
    EXPECT_FALSE(trusts(t, "192.168.1.127"));
    EXPECT_TRUE(trusts(t, "fd12:3456::1"));
    EXPECT_FALSE(trusts(t, "fe80::1"));
    EXPECT_TRUE(trusts(t, "2001:db8::1"));
    EXPECT_FALSE(trusts(t, "2001:db8::2"));
    EXPECT_FALSE(trusts(t, "127.0.0.1"));
    EXPECT_FALSE(t.trusts_unix()); // loopback is not in the list
    EXPECT_FALSE(t.trusts_peer(""));
}

TEST(TrustedProxies, PrefixLengthsAtTheEdges) {
    const auto all4 = trusted("0.0.0.0/0");
    EXPECT_TRUE(trusts(all4, "1.2.3.4"));
    EXPECT_TRUE(trusts(all4, "255.255.255.255"));
    EXPECT_FALSE(trusts(all4, "2001:db8::1")); // the IPv4 space only
    const auto host = trusted("192.0.2.7/32");
    EXPECT_TRUE(trusts(host, "192.0.2.7"));
    EXPECT_FALSE(trusts(host, "192.0.2.6"));
    const auto odd = trusted("172.16.0.0/12");
    EXPECT_TRUE(trusts(odd, "172.31.255.255"));
    EXPECT_FALSE(trusts(odd, "172.32.0.0"));
    const auto all6 = trusted("::/0");
    EXPECT_TRUE(trusts(all6, "2001:db8::1"));
}

TEST(TrustedProxies, StarAndUnix) {
    const auto star = trusted("*");
    EXPECT_TRUE(star.trusts_everyone());
    EXPECT_TRUE(trusts(star, "203.0.113.9"));
    EXPECT_TRUE(star.trusts_peer(""));
    EXPECT_TRUE(star.trusts_peer("garbage")); // any peer at all

    const auto unix_only = trusted("unix");
    EXPECT_TRUE(unix_only.trusts_unix());
    EXPECT_FALSE(trusts(unix_only, "127.0.0.1"));

    const auto ranged_loopback = trusted("127.0.0.0/8");
    EXPECT_TRUE(ranged_loopback.trusts_unix());
    const auto bracketed = trusted("[::1]");
    EXPECT_TRUE(trusts(bracketed, "::1"));
}

TEST(TrustedProxies, EmptyListTrustsNobody) {
    const auto t = trusted("");
    EXPECT_FALSE(trusts(t, "127.0.0.1"));
    EXPECT_FALSE(t.trusts_peer(""));
    const auto blank = trusted("  ");
    EXPECT_FALSE(blank.trusts_peer(""));
}

TEST(TrustedProxies, BadListsSayWhy) {
    EXPECT_EQ(list_error("10.0.0.1/8"),
              "has an entry '10.0.0.1/8' with bits set after the /8 prefix (the range starts "
              "at 10.0.0.0/8)");
    EXPECT_EQ(list_error("fd00::1/8"),
              "has an entry 'fd00::1/8' with bits set after the /8 prefix (the range starts at "
              "fd00::/8)");
    EXPECT_EQ(list_error("10.0.0.0/33"),
              "has an entry '10.0.0.0/33' whose prefix length is not 0 to 32");
    EXPECT_EQ(list_error("::/129"), "has an entry '::/129' whose prefix length is not 0 to 128");
    EXPECT_EQ(list_error("10.0.0.0/"), "has an entry '10.0.0.0/' with no prefix length after '/'");
    EXPECT_EQ(list_error("10.0.0.0/+8"),
              "has an entry '10.0.0.0/+8' whose prefix length is not 0 to 32");
    EXPECT_EQ(list_error("proxy.internal"),
              "has an entry 'proxy.internal' that is not an IP address, a CIDR range "
              "(10.0.0.0/8), '*' or 'unix'");
    EXPECT_EQ(list_error("127.0.0.1,,::1"),
              "has an empty entry (entries are separated by single commas)");
    EXPECT_EQ(list_error("127.0.0.1,"), "has an empty entry (entries are separated by single commas)");
    EXPECT_EQ(list_error("[10.0.0.1]"), "has an entry '[10.0.0.1]': only IPv6 addresses go in brackets");
    EXPECT_EQ(list_error("10.0.0.0 /8"),
              "has an entry '10.0.0.0 /8' that is not an IP address, a CIDR range (10.0.0.0/8), "
              "'*' or 'unix'");
    EXPECT_EQ(list_error("fe80::1%eth0"),
              "has an entry 'fe80::1%eth0' that is not an IP address, a CIDR range (10.0.0.0/8), "
              "'*' or 'unix'");
}

// ---- PROXY protocol -------------------------------------------------------------------------

// Every proper prefix of a valid header is "incomplete": never invalid, never done.
void expect_prefixes_incomplete(const std::string& header) {
    for (std::size_t n = 0; n < header.size(); ++n) {
        const auto h = net::parse_proxy_header(std::string_view(header).substr(0, n));
        EXPECT_EQ(h.status, Status::incomplete) << "prefix of " << n << " bytes: " << h.error;
    }
}

TEST(ProxyV1, Tcp4FromTheSpec) {
    const std::string header = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    const auto h = net::parse_proxy_header(header + "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n");
    ASSERT_EQ(h.status, Status::done) << h.error;
    EXPECT_EQ(h.version, 1);
    EXPECT_EQ(h.size, header.size());
    ASSERT_TRUE(h.has_source);
    EXPECT_EQ(net::format_ip(h.source), "192.168.0.1");
    EXPECT_EQ(h.source_port, 56324);
    expect_prefixes_incomplete(header);
}

TEST(ProxyV1, Tcp6) {
    const std::string header = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
    const auto h = net::parse_proxy_header(header);
    ASSERT_EQ(h.status, Status::done) << h.error;
    EXPECT_EQ(h.size, header.size());
    EXPECT_EQ(net::format_ip(h.source), "2001:db8::1");
    EXPECT_EQ(h.source_port, 65535);
    expect_prefixes_incomplete(header);
}

TEST(ProxyV1, LongestTcp6LineIs104Bytes) {
    const std::string full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    const std::string header = "PROXY TCP6 " + full + " " + full + " 65535 65535\r\n";
    ASSERT_EQ(header.size(), 104u);
    const auto h = net::parse_proxy_header(header);
    ASSERT_EQ(h.status, Status::done) << h.error;
    EXPECT_EQ(net::format_ip(h.source), full);
}

TEST(ProxyV1, UnknownKeepsTheSocketAddress) {
    for (const std::string header :
         {"PROXY UNKNOWN\r\n"s,
          // The spec's worst case, 107 bytes: the rest of an UNKNOWN line is ignored.
          "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"s,
          "PROXY UNKNOWN whatever\r\n"s}) {
        const auto h = net::parse_proxy_header(header + "GET /");
        ASSERT_EQ(h.status, Status::done) << header << ": " << h.error;
        EXPECT_EQ(h.size, header.size());
        EXPECT_FALSE(h.has_source);
        expect_prefixes_incomplete(header);
    }
}

TEST(ProxyV1, NoCrlfWithin107BytesIsInvalid) {
    const std::string long_line = "PROXY UNKNOWN " + std::string(93, 'x');
    ASSERT_EQ(long_line.size(), 107u);
    EXPECT_EQ(net::parse_proxy_header(long_line.substr(0, 106)).status, Status::incomplete);
    EXPECT_EQ(net::parse_proxy_header(long_line).status, Status::invalid);
    EXPECT_EQ(net::parse_proxy_header(long_line + "\r\n").status, Status::invalid);
}

TEST(ProxyV1, MalformedLines) {
    for (const char* bad : {
             "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",     // bare LF
             "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\r\n", // stray CR
             "PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",       // a field missing
             "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n", // one too many
             "PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n",  // two spaces
             "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",  // trailing space
             "PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",  // leading zero
             "PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",  // leading zero (port)
             "PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",   // port range
             "PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
             "PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n",          // family mismatch
             "PROXY TCP6 192.168.0.1 192.168.0.11 1 2\r\n",
             "PROXY TCP4 192.168.0.1 192.168.0.300 1 2\r\n",        // destination checked too
             "PROXY UDP4 192.168.0.1 192.168.0.11 1 2\r\n",
             "PROXY tcp4 192.168.0.1 192.168.0.11 1 2\r\n",
             "PROXY UNKNOWNX\r\n",
             "PROXY \r\n",
             "PROXY\r\n",
         }) {
        const auto h = net::parse_proxy_header(bad);
        EXPECT_EQ(h.status, Status::invalid) << bad;
        EXPECT_STRNE(h.error, "") << bad;
    }
}

TEST(ProxyV1, AnythingElseIsRefusedAtItsFirstByte) {
    EXPECT_EQ(net::parse_proxy_header("G").status, Status::invalid);
    EXPECT_EQ(net::parse_proxy_header("GET / HTTP/1.1\r\n").status, Status::invalid);
    EXPECT_EQ(net::parse_proxy_header("PROXZ").status, Status::invalid);
    EXPECT_EQ(net::parse_proxy_header("proxy ").status, Status::invalid);
    EXPECT_EQ(net::parse_proxy_header("\x16\x03\x01").status, Status::invalid); // TLS
    EXPECT_EQ(net::parse_proxy_header("").status, Status::incomplete);
    EXPECT_EQ(net::parse_proxy_header("PROX").status, Status::incomplete);
}

std::string v2_signature() { return std::string("\r\n\r\n\0\r\nQUIT\n", 12); }

std::string v2(std::uint8_t version_command, std::uint8_t family_protocol, std::string body) {
    std::string out = v2_signature();
    out.push_back(static_cast<char>(version_command));
    out.push_back(static_cast<char>(family_protocol));
    out.push_back(static_cast<char>(body.size() >> 8));
    out.push_back(static_cast<char>(body.size() & 0xff));
    return out + body;
}

std::string bytes(std::initializer_list<int> values) {
    std::string out;
    for (int v : values) {
        out.push_back(static_cast<char>(v));
    }
    return out;
}

TEST(ProxyV2, TcpOverIpv4) {
    // What HAProxy sent in front of a curl request (172.19.0.1:42578 -> 172.19.0.3:80).
    const std::string header =
        v2(0x21, 0x11, bytes({0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50}));
    ASSERT_EQ(header.size(), 28u);
    const auto h = net::parse_proxy_header(header + "GET / HTTP/1.1\r\n");
    ASSERT_EQ(h.status, Status::done) << h.error;
    EXPECT_EQ(h.version, 2);
    EXPECT_EQ(h.size, 28u);
    ASSERT_TRUE(h.has_source);
    EXPECT_EQ(net::format_ip(h.source), "172.19.0.1");
    EXPECT_EQ(h.source_port, 42578);
    expect_prefixes_incomplete(header);
}

TEST(ProxyV2, TcpOverIpv6WithTlvs) {
    std::string addresses = bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07});
    addresses += bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08});
    addresses += bytes({0x12, 0x34, 0x01, 0xbb});
    // PP2_TYPE_AUTHORITY "example.com" and a PP2_TYPE_NOOP: skipped, but counted.
    const std::string tlvs = bytes({0x02, 0x00, 0x0b}) + "example.com" + bytes({0x04, 0x00, 0x02, 0, 0});
    const std::string header = v2(0x21, 0x21, addresses + tlvs);
    const auto h = net::parse_proxy_header(header + "GET");
    ASSERT_EQ(h.status, Status::done) << h.error;
    EXPECT_EQ(h.size, header.size());
    EXPECT_EQ(net::format_ip(h.source), "2001:db8::7");
    EXPECT_EQ(h.source_port, 0x1234);
    expect_prefixes_incomplete(header);
}

TEST(ProxyV2, LocalAndUnsupportedFamiliesKeepTheSocketAddress) {
    const std::string ipv4 = bytes({1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2});
    for (const std::string& header : {
             v2(0x20, 0x00, ""),                        // LOCAL, as health checks send it
             v2(0x20, 0x11, ipv4),                      // LOCAL with addresses: ignored
             v2(0x20, 0xff, ""),                        // LOCAL: the family is not looked at
             v2(0x21, 0x00, ""),                        // PROXY, UNSPEC
             v2(0x21, 0x12, ipv4),                      // UDP over IPv4
             v2(0x21, 0x31, std::string(216, '\0')),    // UNIX stream
         }) {
        const auto h = net::parse_proxy_header(header);
        ASSERT_EQ(h.status, Status::done) << h.error;
        EXPECT_EQ(h.size, header.size());
        EXPECT_FALSE(h.has_source);
    }
}

TEST(ProxyV2, Malformed) {
    const std::string ipv4 = bytes({1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2});
    EXPECT_EQ(net::parse_proxy_header(v2(0x11, 0x11, ipv4)).status, Status::invalid); // version 1
    EXPECT_EQ(net::parse_proxy_header(v2(0x31, 0x11, ipv4)).status, Status::invalid); // version 3
    EXPECT_EQ(net::parse_proxy_header(v2(0x22, 0x11, ipv4)).status, Status::invalid); // command 2
    EXPECT_EQ(net::parse_proxy_header(v2(0x21, 0x41, ipv4)).status, Status::invalid); // family 4
    EXPECT_EQ(net::parse_proxy_header(v2(0x21, 0x13, ipv4)).status, Status::invalid); // protocol 3
    EXPECT_EQ(net::parse_proxy_header(v2(0x21, 0x11, ipv4.substr(0, 11))).status,
              Status::invalid); // shorter than two IPv4 addresses and ports
    EXPECT_EQ(net::parse_proxy_header(v2(0x21, 0x21, std::string(35, '\0'))).status,
              Status::invalid);
    // Bounded: a length beyond 4096 bytes in all is refused before waiting for it.
    std::string huge = v2_signature() + bytes({0x21, 0x11, 0x10, 0x00});
    EXPECT_EQ(net::parse_proxy_header(huge).status, Status::invalid);
    const std::string largest = v2(0x21, 0x11, ipv4 + std::string(4096 - 16 - 12, '\0'));
    EXPECT_EQ(net::parse_proxy_header(largest).status, Status::done);
    // The signature is checked byte by byte, so a wrong one is refused at once.
    for (std::size_t i = 0; i < 12; ++i) {
        std::string sig = v2_signature();
        sig[i] ^= 0x20;
        EXPECT_EQ(net::parse_proxy_header(sig.substr(0, i + 1)).status, Status::invalid) << i;
    }
}

// ---- forwarding headers ---------------------------------------------------------------------

// A parsed request head with these header lines (after Host).
class Head {
public:
    explicit Head(const std::string& fields) {
        const std::string request = "GET / HTTP/1.1\r\nHost: app.internal:8000\r\n" + fields + "\r\n";
        parser_.feed(request.data(), request.size());
        EXPECT_EQ(parser_.state(), http::RequestParser::State::complete) << request;
    }
    const http::RequestHead& head() const { return parser_.head(); }

private:
    http::RequestParser parser_;
};

struct Seen {
    std::string client = "-"; // "-": not set
    int port = -1;
    std::string scheme = "-";
    std::string host = "-";
    int xport = -1;
    bool applied = false;
};

Seen resolve(const std::string& fields, std::string_view list = "127.0.0.1,::1,10.0.0.0/8") {
    Head h(fields);
    const net::Forwarding f = net::resolve_forwarding(h.head(), trusted(list));
    Seen s;
    s.applied = f.applied;
    if (f.has_client) {
        s.client = net::format_ip(f.client);
        s.port = f.client_port;
    }
    if (f.scheme != net::Scheme::unchanged) {
        s.scheme = f.scheme == net::Scheme::https ? "https" : "http";
    }
    if (!f.host.empty()) {
        s.host = std::string(f.host);
    }
    if (f.port != 0) {
        s.xport = f.port;
    }
    return s;
}

TEST(ForwardingFields, TheParserNoticesThem) {
    EXPECT_FALSE(Head("Accept: */*\r\nX-Forwarded: 1\r\nForwarded-For: 1\r\n").head().forwarding);
    for (const char* name : {"Forwarded", "X-Forwarded-For", "x-forwarded-proto",
                             "X-FORWARDED-HOST", "X-Forwarded-Port"}) {
        EXPECT_TRUE(Head(std::string(name) + ": x\r\n").head().forwarding) << name;
        EXPECT_TRUE(http::is_forwarding_field(name)) << name;
    }
    for (const char* name : {"X_Forwarded_For", "X-Forwarded-Fo", "X-Forwarded-Server",
                             "Forwarde", "X-Forwarded-Prefix", "Host"}) {
        EXPECT_FALSE(http::is_forwarding_field(name)) << name;
    }
}

TEST(XForwardedFor, OneHop) {
    const Seen s = resolve("X-Forwarded-For: 203.0.113.7\r\n");
    EXPECT_TRUE(s.applied);
    EXPECT_EQ(s.client, "203.0.113.7");
    EXPECT_EQ(s.port, 0);
    EXPECT_EQ(s.scheme, "-");
}

TEST(XForwardedFor, WalksFromTheRightPastTrustedProxies) {
    // client -> 10.0.0.5 (trusted) -> 10.0.0.6 (trusted) -> us: the client is the rightmost
    // untrusted address; what the client itself put in front is not believed.
    EXPECT_EQ(resolve("X-Forwarded-For: 198.51.100.1, 203.0.113.7, 10.0.0.5\r\n").client,
              "203.0.113.7");
    EXPECT_EQ(resolve("X-Forwarded-For: 6.6.6.6,203.0.113.7,10.0.0.5,10.0.0.6\r\n").client,
              "203.0.113.7");
    // Repeated fields are one list (RFC 9110 5.3), in order.
    EXPECT_EQ(resolve("X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\nX-Forwarded-For: 10.0.0.5\r\n")
                  .client,
              "203.0.113.7");
    // Every address a trusted proxy: the leftmost (the client runs on a proxy's host).
    EXPECT_EQ(resolve("X-Forwarded-For: 10.0.0.9, 127.0.0.1\r\n").client, "10.0.0.9");
    // With "*" every address is trusted: the leftmost.
    EXPECT_EQ(resolve("X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n", "*").client, "6.6.6.6");
}

TEST(XForwardedFor, PortsAndIpv6) {
    Seen s = resolve("X-Forwarded-For: 203.0.113.7:4711\r\n");
    EXPECT_EQ(s.client, "203.0.113.7");
    EXPECT_EQ(s.port, 4711);
    s = resolve("X-Forwarded-For: [2001:db8::17]:4711\r\n");
    EXPECT_EQ(s.client, "2001:db8::17");
    EXPECT_EQ(s.port, 4711);
    EXPECT_EQ(resolve("X-Forwarded-For: 2001:DB8::17\r\n").client, "2001:db8::17");
    EXPECT_EQ(resolve("X-Forwarded-For: [2001:db8::17]\r\n").client, "2001:db8::17");
    EXPECT_EQ(resolve("X-Forwarded-For: 2001:db8::17, ::1\r\n").client, "2001:db8::17");
}

TEST(XForwardedFor, MalformedIsIgnored) {
    for (const char* bad : {"X-Forwarded-For: unknown\r\n", "X-Forwarded-For: 203.0.113\r\n",
                            "X-Forwarded-For: 1.2.3.4, <script>\r\n",
                            "X-Forwarded-For: 1.2.3.4:\r\n", "X-Forwarded-For: 1.2.3.4:99999\r\n",
                            "X-Forwarded-For: [2001:db8::1\r\n", "X-Forwarded-For: fe80::1%eth0\r\n",
                            "X-Forwarded-For: _hidden\r\n", "X-Forwarded-For: ,\r\n",
                            "X-Forwarded-For: \r\n"}) {
        const Seen s = resolve(bad);
        EXPECT_EQ(s.client, "-") << bad;
        EXPECT_FALSE(s.applied) << bad;
    }
    // Garbage left of the client is never looked at.
    EXPECT_EQ(resolve("X-Forwarded-For: garbage, 203.0.113.7, 10.0.0.5\r\n").client, "203.0.113.7");
    // Empty elements are skipped (RFC 9110 5.6.1).
    EXPECT_EQ(resolve("X-Forwarded-For: , 203.0.113.7,,\r\n").client, "203.0.113.7");
}

TEST(XForwardedProtoHostPort, LastElementWins) {
    Seen s = resolve("X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
                     "X-Forwarded-Port: 8443\r\n");
    EXPECT_TRUE(s.applied);
    EXPECT_EQ(s.client, "-");
    EXPECT_EQ(s.scheme, "https");
    EXPECT_EQ(s.host, "example.com");
    EXPECT_EQ(s.xport, 8443);
    EXPECT_EQ(resolve("X-Forwarded-Proto: HTTPS\r\n").scheme, "https");
    EXPECT_EQ(resolve("X-Forwarded-Proto: https, http\r\n").scheme, "http");
    EXPECT_EQ(resolve("X-Forwarded-Proto: http\r\nX-Forwarded-Proto: https\r\n").scheme, "https");
    EXPECT_EQ(resolve("X-Forwarded-Host: a.example, b.example:81\r\n").host, "b.example:81");
    EXPECT_EQ(resolve("X-Forwarded-Host: [2001:db8::1]:8080\r\n").host, "[2001:db8::1]:8080");
}

TEST(XForwardedProtoHostPort, MalformedValuesAreIgnoredOneByOne) {
    const Seen s = resolve("X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: ftp\r\n"
                           "X-Forwarded-Host: bad host\r\nX-Forwarded-Port: 0\r\n");
    EXPECT_EQ(s.client, "203.0.113.7");
    EXPECT_EQ(s.scheme, "-");
    EXPECT_EQ(s.host, "-");
    EXPECT_EQ(s.xport, -1);
    for (const char* bad : {"X-Forwarded-Proto: ws\r\n", "X-Forwarded-Proto: https;x\r\n",
                            "X-Forwarded-Host: :80\r\n", "X-Forwarded-Host: a:b\r\n",
                            "X-Forwarded-Host: a:\r\n", "X-Forwarded-Host: a:70000\r\n",
                            "X-Forwarded-Host: a/b\r\n", "X-Forwarded-Host: [::1\r\n",
                            "X-Forwarded-Host: u@a\r\n", "X-Forwarded-Port: 65536\r\n",
                            "X-Forwarded-Port: -1\r\n", "X-Forwarded-Port: 80a\r\n"}) {
        EXPECT_FALSE(resolve(bad).applied) << bad;
    }
}

TEST(Forwarded, ExamplesFromRfc7239) {
    Seen s = resolve("Forwarded: for=\"_gazonk\"\r\n");
    EXPECT_EQ(s.client, "-"); // obfuscated: the peer's address stays
    EXPECT_FALSE(s.applied);
    s = resolve("Forwarded: For=\"[2001:db8:cafe::17]:4711\"\r\n");
    EXPECT_EQ(s.client, "2001:db8:cafe::17");
    EXPECT_EQ(s.port, 4711);
    s = resolve("Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43\r\n");
    EXPECT_EQ(s.client, "192.0.2.60");
    EXPECT_EQ(s.scheme, "http");
    s = resolve("Forwarded: for=192.0.2.43, for=198.51.100.17\r\n");
    EXPECT_EQ(s.client, "198.51.100.17"); // neither is a trusted proxy: the rightmost
    s = resolve("Forwarded: for=192.0.2.43,for=\"[2001:db8:cafe::17]\",for=unknown\r\n");
    EXPECT_EQ(s.client, "-"); // the nearest hop did not know its client
}

TEST(Forwarded, WalksFromTheRightAndTakesThatElementsProtoAndHost) {
    const Seen s = resolve(
        "Forwarded: for=6.6.6.6;proto=http;host=evil.example, "
        "for=203.0.113.7;proto=https;host=\"shop.example:8443\", for=10.0.0.5;proto=http;host=lb\r\n");
    EXPECT_EQ(s.client, "203.0.113.7");
    EXPECT_EQ(s.scheme, "https");
    EXPECT_EQ(s.host, "shop.example:8443");
    // Two fields, one list.
    EXPECT_EQ(resolve("Forwarded: for=203.0.113.7\r\nForwarded: for=10.0.0.5\r\n").client,
              "203.0.113.7");
    // Every hop trusted: the leftmost.
    EXPECT_EQ(resolve("Forwarded: for=10.0.0.1, for=10.0.0.2\r\n").client, "10.0.0.1");
}

TEST(Forwarded, ObfuscatedOrMissingForStopsTheWalk) {
    Seen s = resolve("Forwarded: for=203.0.113.7, for=_hidden;proto=https, for=10.0.0.5\r\n");
    EXPECT_EQ(s.client, "-");
    EXPECT_EQ(s.scheme, "https");
    EXPECT_TRUE(s.applied);
    s = resolve("Forwarded: for=203.0.113.7, proto=https;host=example.com\r\n");
    EXPECT_EQ(s.client, "-");
    EXPECT_EQ(s.host, "example.com");
    s = resolve("Forwarded: for=\"192.0.2.7:_port\"\r\n");
    EXPECT_EQ(s.client, "192.0.2.7");
    EXPECT_EQ(s.port, 0);
}

TEST(Forwarded, LenientWhereHarmless) {
    // Case-insensitive names, whitespace around ';' and ',', empty pairs and elements.
    const Seen s = resolve("Forwarded: , FOR=203.0.113.7 ; Proto=HTTPS;; HOST=example.com ,\r\n");
    EXPECT_EQ(s.client, "203.0.113.7");
    EXPECT_EQ(s.scheme, "https");
    EXPECT_EQ(s.host, "example.com");
    // Unknown parameters are skipped, quoted or not.
    EXPECT_EQ(resolve("Forwarded: ext=\"a, b; c\";for=203.0.113.7\r\n").client, "203.0.113.7");
}

TEST(Forwarded, MalformedIsIgnoredWhole) {
    for (const char* bad : {
             "Forwarded: for=2001:db8::1\r\n",           // IPv6 must be quoted and bracketed
             "Forwarded: for=\"2001:db8::1\"\r\n",       // ... bracketed
             "Forwarded: for=[2001:db8::1]\r\n",         // ... quoted
             "Forwarded: for=\"203.0.113.7\r\n",         // no closing quote
             "Forwarded: for=203.0.113.7;for=1.2.3.4\r\n", // a parameter twice
             "Forwarded: for=203.0.113.7;proto=https;proto=http\r\n",
             "Forwarded: for=\r\n", "Forwarded: for\r\n", "Forwarded: =1\r\n",
             "Forwarded: for=203.0.113.7 proto=https\r\n", // no ';'
             "Forwarded: for = 203.0.113.7\r\n",           // no whitespace around '='
             "Forwarded: for=\"203.0.113.7:\"\r\n", "Forwarded: for=\"203.0.113.7:99999\"\r\n",
             "Forwarded: for=\"_\"\r\n", "Forwarded: for=\"_a b\"\r\n",
             "Forwarded: for=\"203.0.11\\3.7\"\r\n", // a quoted-pair in for
             "Forwarded: for=203.0.113.7;proto=https, garbage\r\n",
         }) {
        const Seen s = resolve(bad);
        EXPECT_FALSE(s.applied) << bad;
        EXPECT_EQ(s.client, "-") << bad;
    }
}

TEST(Forwarded, WinsOverXForwarded) {
    Seen s = resolve("X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\n"
                     "Forwarded: for=203.0.113.7\r\n");
    EXPECT_EQ(s.client, "203.0.113.7");
    EXPECT_EQ(s.scheme, "-"); // X-Forwarded-Proto is not read at all
    // Even a malformed Forwarded: then nothing is believed.
    s = resolve("X-Forwarded-For: 198.51.100.1\r\nForwarded: for=2001:db8::1\r\n");
    EXPECT_FALSE(s.applied);
    // An empty one does not count.
    EXPECT_EQ(resolve("Forwarded: \r\nX-Forwarded-For: 198.51.100.1\r\n").client, "198.51.100.1");
}

TEST(Forwarded, BadProtoOrHostIsDroppedAlone) {
    Seen s = resolve("Forwarded: for=203.0.113.7;proto=ftp;host=\"a b\"\r\n");
    EXPECT_EQ(s.client, "203.0.113.7");
    EXPECT_EQ(s.scheme, "-");
    EXPECT_EQ(s.host, "-");
    s = resolve("Forwarded: for=203.0.113.7;host=\"exa\\mple.com\"\r\n"); // quoted-pair
    EXPECT_EQ(s.host, "-");
}

// ---- HTTP_HOST, SERVER_NAME, SERVER_PORT ------------------------------------------------------

struct Server {
    std::string http_host;
    std::string server_name;
    int server_port;
    bool operator==(const Server&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Server& s) {
    return os << "{" << s.http_host << ", " << s.server_name << ", " << s.server_port << "}";
}

Server server(net::Scheme scheme, std::string_view host, std::uint16_t port,
              std::string_view request_host = "app.internal:8000") {
    net::Forwarding f;
    f.applied = true;
    f.scheme = scheme;
    f.host = host;
    f.port = port;
    const net::ForwardedServer s = net::forwarded_server(f, request_host);
    return {s.http_host, std::string(s.server_name), s.server_port};
}

TEST(ForwardedServer, HostAndPort) {
    using S = net::Scheme;
    // Host without a port: the scheme's default port.
    EXPECT_EQ(server(S::https, "example.com", 0), (Server{"example.com", "example.com", 443}));
    EXPECT_EQ(server(S::unchanged, "example.com", 0), (Server{"example.com", "example.com", 80}));
    EXPECT_EQ(server(S::http, "example.com:8080", 0),
              (Server{"example.com:8080", "example.com", 8080}));
    EXPECT_EQ(server(S::https, "[2001:db8::1]:8443", 0),
              (Server{"[2001:db8::1]:8443", "[2001:db8::1]", 8443}));
    // X-Forwarded-Port replaces the host's port; the scheme's default is left out.
    EXPECT_EQ(server(S::https, "example.com:8080", 443), (Server{"example.com", "example.com", 443}));
    EXPECT_EQ(server(S::https, "example.com", 8443), (Server{"example.com:8443", "example.com", 8443}));
    // X-Forwarded-Port alone: the request's own host with that port; SERVER_NAME unchanged.
    EXPECT_EQ(server(S::unchanged, "", 8080), (Server{"app.internal:8080", "", 8080}));
    EXPECT_EQ(server(S::https, "", 443), (Server{"app.internal", "", 443}));
    EXPECT_EQ(server(S::https, "", 443, ""), (Server{"", "", 443}));
    // Only the scheme: nothing of these changes.
    EXPECT_EQ(server(S::https, "", 0), (Server{"", "", 0}));
}

} // namespace
