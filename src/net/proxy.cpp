// Trusted proxies, the PROXY protocol header and forwarding headers (see proxy.hpp).
#include "net/proxy.hpp"

#include "http/field_list.hpp"
#include "http/uri.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace appserver::net {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// Four decimal numbers 0-255 separated by dots, no leading zeros (which some parsers read
// as octal: "010.0.0.1" must not mean two different hosts).
bool parse_ipv4(std::string_view s, std::uint8_t* out) {
    std::size_t i = 0;
    for (int part = 0; part < 4; ++part) {
        if (part > 0) {
            if (i >= s.size() || s[i] != '.') {
                return false;
            }
            ++i;
        }
        const std::size_t start = i;
        unsigned value = 0;
        while (i < s.size() && is_digit(s[i]) && i - start < 3) {
            value = value * 10 + static_cast<unsigned>(s[i] - '0');
            ++i;
        }
        if (i == start || value > 255 || (i - start > 1 && s[start] == '0')) {
            return false;
        }
        out[part] = static_cast<std::uint8_t>(value);
    }
    return i == s.size();
}

bool parse_ipv6(std::string_view s, std::uint8_t* out) {
    char buf[INET6_ADDRSTRLEN + 1];
    if (s.empty() || s.size() >= sizeof buf || s.find(':') == std::string_view::npos) {
        return false;
    }
    std::memcpy(buf, s.data(), s.size());
    buf[s.size()] = '\0';
    return ::inet_pton(AF_INET6, buf, out) == 1;
}

IpAddress mapped_v4(const std::uint8_t* v4) {
    IpAddress a;
    a.bytes[10] = 0xff;
    a.bytes[11] = 0xff;
    std::memcpy(a.bytes.data() + 12, v4, 4);
    a.v4 = true;
    return a;
}

// 0-65535 in decimal (leading zeros allowed: "port" in RFC 3986 is just digits).
std::optional<std::uint16_t> parse_port(std::string_view s) {
    if (s.empty() || s.size() > 5) {
        return std::nullopt;
    }
    unsigned value = 0;
    for (const char c : s) {
        if (!is_digit(c)) {
            return std::nullopt;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
}

// The PROXY v1 port: no leading zeros (the spec forbids them, as for IPv4 numbers).
std::optional<std::uint16_t> parse_strict_port(std::string_view s) {
    if (s.size() > 1 && s.front() == '0') {
        return std::nullopt;
    }
    return parse_port(s);
}

bool prefix_matches(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                    unsigned prefix) {
    const unsigned whole = prefix / 8;
    if (std::memcmp(a.data(), b.data(), whole) != 0) {
        return false;
    }
    const unsigned rest = prefix % 8;
    if (rest == 0) {
        return true;
    }
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

// host [":" port] split; an IP-literal keeps its brackets in name. False when a ':' is
// followed by no valid port.
bool split_authority(std::string_view authority, std::string_view& name, std::string_view& port) {
    std::size_t colon = std::string_view::npos;
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        if (close + 1 < authority.size()) {
            if (authority[close + 1] != ':') {
                return false;
            }
            colon = close + 1;
        }
    } else {
        colon = authority.rfind(':');
    }
    name = authority.substr(0, colon);
    port = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon + 1);
    return colon == std::string_view::npos || parse_port(port).has_value();
}

// A Host value a proxy forwarded: RFC 3986 host [":" port], with a host.
bool valid_forwarded_host(std::string_view host) {
    std::string_view name;
    std::string_view port;
    return !host.empty() && http::valid_authority(host) && split_authority(host, name, port) &&
           !name.empty();
}

Scheme parse_scheme(std::string_view s) {
    if (http::iequals(s, "https")) {
        return Scheme::https;
    }
    if (http::iequals(s, "http")) {
        return Scheme::http;
    }
    return Scheme::unchanged;
}

// An X-Forwarded-For element: "1.2.3.4", "1.2.3.4:5678", "2001:db8::1", "[2001:db8::1]",
// "[2001:db8::1]:5678".
struct Node {
    IpAddress address{};
    std::uint16_t port = 0;
};

std::optional<Node> parse_xff_element(std::string_view s) {
    Node node;
    std::string_view port;
    if (!s.empty() && s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string_view::npos) {
            return std::nullopt;
        }
        const auto rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                return std::nullopt;
            }
            port = rest.substr(1);
            if (port.empty()) {
                return std::nullopt;
            }
        }
        if (!parse_ipv6(s.substr(1, close - 1), node.address.bytes.data())) {
            return std::nullopt;
        }
    } else if (const auto colon = s.find(':'); colon != std::string_view::npos &&
                                               s.find(':', colon + 1) == std::string_view::npos) {
        std::uint8_t v4[4];
        if (!parse_ipv4(s.substr(0, colon), v4)) {
            return std::nullopt;
        }
        node.address = mapped_v4(v4);
        port = s.substr(colon + 1);
        if (port.empty()) {
            return std::nullopt;
        }
    } else {
        const auto address = parse_ip(s);
        if (!address) {
            return std::nullopt;
        }
        node.address = *address;
    }
    if (!port.empty()) {
        const auto p = parse_port(port);
        if (!p) {
            return std::nullopt;
        }
        node.port = *p;
    }
    return node;
}

// Calls f on every non-empty element of a list field's value, in order.
template <class F>
void for_each_element(std::string_view value, F f) {
    http::any_list_element(value, [&](std::string_view item) {
        if (!item.empty()) {
            f(item);
        }
        return false;
    });
}

std::string_view last_element(std::string_view value, std::string_view last) {
    for_each_element(value, [&](std::string_view item) { last = item; });
    return last;
}

// X-Forwarded-For's right-to-left walk as one left-to-right pass over every element of
// every line: the client is the last element that is not a trusted proxy (all those right
// of it are), else the leftmost. A malformed element there makes the whole list unusable.
struct XffWalk {
    bool any = false;
    bool have_candidate = false;
    std::optional<Node> leftmost;
    std::optional<Node> candidate;

    void add(std::string_view value, const TrustedProxies& trusted) {
        for_each_element(value, [&](std::string_view item) {
            const auto node = parse_xff_element(item);
            if (!any) {
                leftmost = node;
                any = true;
            }
            if (!node || !trusted.trusts(node->address)) {
                candidate = node;
                have_candidate = true;
            }
        });
    }

    const std::optional<Node>& client() const { return have_candidate ? candidate : leftmost; }
};

// ---- RFC 7239 -----------------------------------------------------------------------------

bool is_tchar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
           (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

// obfnode / obfport: "_" 1*( ALPHA / DIGIT / "." / "_" / "-" )
bool is_obfuscated(std::string_view s) {
    if (s.size() < 2 || s.front() != '_') {
        return false;
    }
    for (const char c : s.substr(1)) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
                        c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

// A "for" value: node = nodename [ ":" node-port ]; nodename = IPv4address /
// "[" IPv6address "]" / "unknown" / obfnode. has_address only for an IP.
bool parse_forwarded_node(std::string_view s, bool& has_address, Node& node) {
    has_address = false;
    std::string_view name = s;
    std::string_view port;
    bool bracketed = false;
    if (!s.empty() && s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        name = s.substr(1, close - 1);
        const auto rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                return false;
            }
            port = rest.substr(1);
            if (port.empty()) {
                return false;
            }
        }
        bracketed = true;
    } else if (const auto colon = s.find(':'); colon != std::string_view::npos) {
        name = s.substr(0, colon);
        port = s.substr(colon + 1);
        if (port.empty()) {
            return false;
        }
    }
    if (!port.empty()) {
        if (const auto p = parse_port(port)) {
            node.port = *p;
        } else if (!is_obfuscated(port)) {
            return false;
        }
    }
    if (bracketed) {
        if (!parse_ipv6(name, node.address.bytes.data())) {
            return false;
        }
        has_address = true;
        return true;
    }
    std::uint8_t v4[4];
    if (parse_ipv4(name, v4)) {
        node.address = mapped_v4(v4);
        has_address = true;
        return true;
    }
    return http::iequals(name, "unknown") || is_obfuscated(name);
}

struct Element {
    bool has_for = false;
    bool for_address = false; // the "for" node is an IP address
    Node node{};
    std::string_view proto; // raw values (quotes removed); empty: absent
    std::string_view host;
    bool proto_escaped = false; // had a quoted-pair: not a usable value
    bool host_escaped = false;
};

class ForwardedParser {
public:
    explicit ForwardedParser(std::string_view s) : s_(s) {}

    // Next element into e; false at the end of the line. Sets error_ on a syntax error.
    bool next(Element& e) {
        for (;;) {
            skip_ows();
            if (pos_ >= s_.size()) {
                return false;
            }
            if (s_[pos_] != ',') {
                break;
            }
            ++pos_; // empty list element
        }
        e = Element{};
        bool seen_by = false;
        bool seen_proto = false;
        bool seen_host = false;
        for (;;) {
            skip_ows();
            if (pos_ >= s_.size() || s_[pos_] == ',') {
                break;
            }
            if (s_[pos_] == ';') {
                ++pos_; // empty pair
                continue;
            }
            const std::size_t name_start = pos_;
            while (pos_ < s_.size() && is_tchar(s_[pos_])) {
                ++pos_;
            }
            const std::string_view name = s_.substr(name_start, pos_ - name_start);
            if (name.empty() || pos_ >= s_.size() || s_[pos_] != '=') {
                return fail();
            }
            ++pos_;
            std::string_view value;
            bool escaped = false;
            if (!read_value(value, escaped)) {
                return fail();
            }
            bool* seen = nullptr;
            if (http::iequals(name, "for")) {
                if (e.has_for || escaped ||
                    !parse_forwarded_node(value, e.for_address, e.node)) {
                    return fail();
                }
                e.has_for = true;
            } else if (http::iequals(name, "proto")) {
                seen = &seen_proto;
                e.proto = value;
                e.proto_escaped = escaped;
            } else if (http::iequals(name, "host")) {
                seen = &seen_host;
                e.host = value;
                e.host_escaped = escaped;
            } else if (http::iequals(name, "by")) {
                seen = &seen_by;
            }
            if (seen != nullptr) {
                if (*seen) {
                    return fail(); // RFC 7239 4: a parameter at most once per element
                }
                *seen = true;
            }
            skip_ows();
            if (pos_ < s_.size() && s_[pos_] == ';') {
                ++pos_;
            } else if (pos_ < s_.size() && s_[pos_] != ',') {
                return fail();
            }
        }
        if (pos_ < s_.size()) {
            ++pos_; // the ','
        }
        return true;
    }

    bool error() const { return error_; }

private:
    bool fail() {
        error_ = true;
        return false;
    }

    void skip_ows() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) {
            ++pos_;
        }
    }

    // token / quoted-string
    bool read_value(std::string_view& value, bool& escaped) {
        if (pos_ < s_.size() && s_[pos_] == '"') {
            const std::size_t start = ++pos_;
            while (pos_ < s_.size() && s_[pos_] != '"') {
                const auto c = static_cast<unsigned char>(s_[pos_]);
                if (c == '\\') {
                    escaped = true;
                    if (++pos_ >= s_.size()) {
                        return false;
                    }
                } else if (c < 0x20 && c != '\t') {
                    return false;
                } else if (c == 0x7f) {
                    return false;
                }
                ++pos_;
            }
            if (pos_ >= s_.size()) {
                return false; // no closing quote
            }
            value = s_.substr(start, pos_ - start);
            ++pos_;
            return true;
        }
        const std::size_t start = pos_;
        while (pos_ < s_.size() && is_tchar(s_[pos_])) {
            ++pos_;
        }
        value = s_.substr(start, pos_ - start);
        return !value.empty();
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    bool error_ = false;
};

void resolve_rfc7239(const http::RequestHead& head, const TrustedProxies& trusted,
                     Forwarding& out) {
    bool any = false;
    Element leftmost;
    bool have_candidate = false;
    Element candidate;
    for (const http::HeaderField& field : head.headers) {
        if (!http::iequals(head.view(field.name), "forwarded")) {
            continue;
        }
        ForwardedParser parser(head.view(field.value));
        Element e;
        while (parser.next(e)) {
            if (!any) {
                leftmost = e;
                any = true;
            }
            // An element whose "for" is not a trusted proxy's address (another address,
            // unknown, obfuscated, or none) is where the walk from the right stops.
            if (!e.for_address || !trusted.trusts(e.node.address)) {
                candidate = e;
                have_candidate = true;
            }
        }
        if (parser.error()) {
            return; // malformed: nothing of it is believed
        }
    }
    if (!any) {
        return;
    }
    const Element& e = have_candidate ? candidate : leftmost;
    if (e.for_address) {
        out.has_client = true;
        out.client = e.node.address;
        out.client_port = e.node.port;
    }
    if (!e.proto.empty() && !e.proto_escaped) {
        out.scheme = parse_scheme(e.proto);
    }
    if (!e.host_escaped && valid_forwarded_host(e.host)) {
        out.host = e.host;
    }
}

void append_port(std::string& out, std::uint16_t port) {
    char buf[8];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, port);
    out.push_back(':');
    out.append(buf, end);
}

constexpr std::uint8_t proxy_v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view proxy_v1_signature = "PROXY ";

ProxyHeader invalid(const char* why) {
    ProxyHeader h;
    h.status = ProxyHeader::Status::invalid;
    h.error = why;
    return h;
}

ProxyHeader parse_v1(std::string_view d) {
    const std::string_view window = d.substr(0, max_proxy_v1_header);
    const auto lf = window.find('\n');
    if (lf == std::string_view::npos) {
        if (window.find('\r') != std::string_view::npos &&
            window.find('\r') + 1 < window.size()) {
            return invalid("PROXY v1 line with a CR not followed by LF");
        }
        return d.size() >= max_proxy_v1_header
                   ? invalid("PROXY v1 line without CRLF in its first 107 bytes")
                   : ProxyHeader{};
    }
    if (d[lf - 1] != '\r') {
        return invalid("PROXY v1 line ended by a bare LF");
    }
    const std::string_view line = d.substr(proxy_v1_signature.size(),
                                           lf - 1 - proxy_v1_signature.size());
    if (line.find('\r') != std::string_view::npos) {
        return invalid("PROXY v1 line with a stray CR");
    }
    ProxyHeader h;
    h.status = ProxyHeader::Status::done;
    h.size = lf + 1;
    h.version = 1;
    if (line.starts_with("UNKNOWN") && (line.size() == 7 || line[7] == ' ')) {
        return h; // the rest of the line is to be ignored
    }
    std::string_view parts[5];
    std::string_view rest = line;
    for (int i = 0; i < 5; ++i) {
        const auto space = rest.find(' ');
        if ((i < 4) == (space == std::string_view::npos)) {
            return invalid("PROXY v1 line is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'");
        }
        parts[i] = rest.substr(0, space);
        if (parts[i].empty()) {
            return invalid("PROXY v1 line is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'");
        }
        rest = i < 4 ? rest.substr(space + 1) : std::string_view{};
    }
    IpAddress src;
    IpAddress dst;
    if (parts[0] == "TCP4") {
        std::uint8_t s4[4];
        std::uint8_t d4[4];
        if (!parse_ipv4(parts[1], s4) || !parse_ipv4(parts[2], d4)) {
            return invalid("PROXY v1 TCP4 line with an invalid IPv4 address");
        }
        src = mapped_v4(s4);
    } else if (parts[0] == "TCP6") {
        if (!parse_ipv6(parts[1], src.bytes.data()) || !parse_ipv6(parts[2], dst.bytes.data())) {
            return invalid("PROXY v1 TCP6 line with an invalid IPv6 address");
        }
    } else {
        return invalid("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN");
    }
    const auto sport = parse_strict_port(parts[3]);
    if (!sport || !parse_strict_port(parts[4])) {
        return invalid("PROXY v1 line with an invalid port");
    }
    h.has_source = true;
    h.source = src;
    h.source_port = *sport;
    return h;
}

ProxyHeader parse_v2(std::string_view d) {
    const auto* b = reinterpret_cast<const std::uint8_t*>(d.data());
    const std::uint8_t version_command = b[12];
    const std::uint8_t family_protocol = b[13];
    const std::size_t length = (static_cast<std::size_t>(b[14]) << 8) | b[15];
    if ((version_command >> 4) != 2) {
        return invalid("PROXY v2 header with a version other than 2");
    }
    const unsigned command = version_command & 0x0f;
    if (command > 1) {
        return invalid("PROXY v2 header with an unknown command");
    }
    const std::size_t total = 16 + length;
    if (total > max_proxy_v2_header) {
        return invalid("PROXY v2 header longer than 4096 bytes");
    }
    if (d.size() < total) {
        return ProxyHeader{};
    }
    ProxyHeader h;
    h.status = ProxyHeader::Status::done;
    h.size = total;
    h.version = 2;
    if (command == 0) {
        return h; // LOCAL: the proxy's own connection (a health check); family ignored
    }
    const unsigned family = family_protocol >> 4;
    const unsigned protocol = family_protocol & 0x0f;
    if (family > 3 || protocol > 2) {
        return invalid("PROXY v2 header with an unknown address family or protocol");
    }
    if (protocol == 1 && family == 1) { // TCP over IPv4
        if (length < 12) {
            return invalid("PROXY v2 TCP over IPv4 header shorter than its addresses");
        }
        h.source = mapped_v4(b + 16);
        h.source_port = static_cast<std::uint16_t>((b[24] << 8) | b[25]);
        h.has_source = true;
    } else if (protocol == 1 && family == 2) { // TCP over IPv6
        if (length < 36) {
            return invalid("PROXY v2 TCP over IPv6 header shorter than its addresses");
        }
        std::memcpy(h.source.bytes.data(), b + 16, 16);
        h.source_port = static_cast<std::uint16_t>((b[48] << 8) | b[49]);
        h.has_source = true;
    }
    // UNSPEC, UNIX, UDP: valid, but no address to use (the spec lets the receiver fall
    // back to the connection's own).
    return h;
}

} // namespace

// ---- addresses ----------------------------------------------------------------------------

std::optional<IpAddress> parse_ip(std::string_view text) {
    std::uint8_t v4[4];
    if (parse_ipv4(text, v4)) {
        return mapped_v4(v4);
    }
    IpAddress a;
    if (parse_ipv6(text, a.bytes.data())) {
        return a;
    }
    return std::nullopt;
}

void format_ip(const IpAddress& address, std::string& out) {
    char buf[INET6_ADDRSTRLEN];
    if (address.v4) {
        // By hand: glibc's inet_ntop formats IPv4 with sprintf, a thousand instructions.
        char* p = buf;
        for (int i = 12; i < 16; ++i) {
            if (i > 12) {
                *p++ = '.';
            }
            p = std::to_chars(p, buf + sizeof buf, static_cast<unsigned>(address.bytes[i])).ptr;
        }
        out.assign(buf, p);
        return;
    }
    const char* text = ::inet_ntop(AF_INET6, address.bytes.data(), buf, sizeof buf);
    out.assign(text != nullptr ? text : "");
}

std::string format_ip(const IpAddress& address) {
    std::string out;
    format_ip(address, out);
    return out;
}

std::optional<TrustedProxies> TrustedProxies::parse(std::string_view list, std::string* error) {
    TrustedProxies t;
    auto bad = [&](std::string why) -> std::optional<TrustedProxies> {
        if (error != nullptr) {
            *error = std::move(why);
        }
        return std::nullopt;
    };
    if (trim_ows(list).empty()) {
        return t; // nobody
    }
    bool explicit_unix = false;
    for (;;) {
        const auto comma = list.find(',');
        const std::string_view entry = trim_ows(list.substr(0, comma));
        const std::string quoted = "'" + std::string(entry) + "'";
        if (entry.empty()) {
            return bad("has an empty entry (entries are separated by single commas)");
        }
        if (entry == "*") {
            t.all_ = true;
        } else if (http::iequals(entry, "unix")) {
            explicit_unix = true;
        } else {
            std::string_view address = entry;
            std::string_view bits;
            if (const auto slash = entry.find('/'); slash != std::string_view::npos) {
                address = entry.substr(0, slash);
                bits = entry.substr(slash + 1);
                if (bits.empty()) {
                    return bad("has an entry " + quoted + " with no prefix length after '/'");
                }
            }
            if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
                address = address.substr(1, address.size() - 2);
                if (address.find(':') == std::string_view::npos) {
                    return bad("has an entry " + quoted + ": only IPv6 addresses go in brackets");
                }
            }
            const auto parsed = parse_ip(address);
            if (!parsed) {
                return bad("has an entry " + quoted +
                           " that is not an IP address, a CIDR range (10.0.0.0/8), '*' or "
                           "'unix'");
            }
            Range range;
            range.network = parsed->bytes;
            const unsigned family_bits = parsed->v4 ? 32 : 128;
            if (!bits.empty()) {
                unsigned n = 0;
                const auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), n);
                if (ec != std::errc{} || end != bits.data() + bits.size() || n > family_bits ||
                    !is_digit(bits.front())) {
                    return bad("has an entry " + quoted + " whose prefix length is not 0 to " +
                               std::to_string(family_bits));
                }
                range.prefix = 128 - family_bits + n;
                // Bits set after the prefix: most likely a typo, never silently widened.
                Range masked = range;
                for (unsigned i = range.prefix; i < 128; ++i) {
                    masked.network[i / 8] &= static_cast<std::uint8_t>(~(0x80u >> (i % 8)));
                }
                if (masked.network != range.network) {
                    IpAddress start = *parsed;
                    start.bytes = masked.network;
                    return bad("has an entry " + quoted + " with bits set after the /" +
                               std::string(bits) + " prefix (the range starts at " +
                               format_ip(start) + "/" + std::string(bits) + ")");
                }
            }
            t.ranges_.push_back(range);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        list.remove_prefix(comma + 1);
    }
    IpAddress loopback4 = *parse_ip("127.0.0.1");
    IpAddress loopback6 = *parse_ip("::1");
    t.unix_ = t.all_ || explicit_unix || t.trusts(loopback4) || t.trusts(loopback6);
    return t;
}

bool TrustedProxies::trusts(const IpAddress& address) const {
    if (all_) {
        return true;
    }
    for (const Range& r : ranges_) {
        if (prefix_matches(r.network, address.bytes, r.prefix)) {
            return true;
        }
    }
    return false;
}

bool TrustedProxies::trusts_peer(std::string_view peer) const {
    if (peer.empty()) {
        return unix_;
    }
    if (all_) {
        return true;
    }
    const auto address = parse_ip(peer);
    return address && trusts(*address);
}

// ---- PROXY protocol -----------------------------------------------------------------------

ProxyHeader parse_proxy_header(std::string_view data) {
    if (data.empty()) {
        return {};
    }
    if (data.front() == 'P') {
        const std::size_t n = std::min(data.size(), proxy_v1_signature.size());
        if (data.substr(0, n) != proxy_v1_signature.substr(0, n)) {
            return invalid("not a PROXY protocol header");
        }
        return n < proxy_v1_signature.size() ? ProxyHeader{} : parse_v1(data);
    }
    const std::size_t n = std::min<std::size_t>(data.size(), sizeof proxy_v2_signature);
    if (std::memcmp(data.data(), proxy_v2_signature, n) != 0) {
        return invalid("not a PROXY protocol header");
    }
    return data.size() < 16 ? ProxyHeader{} : parse_v2(data);
}

// ---- forwarding headers -------------------------------------------------------------------

Forwarding resolve_forwarding(const http::RequestHead& head, const TrustedProxies& trusted) {
    // One pass over the fields for the X-Forwarded-* family; Forwarded, when present, is
    // parsed on its own afterwards and replaces all of it.
    Forwarding out;
    bool forwarded = false;
    XffWalk walk;
    std::string_view proto;
    std::string_view host;
    std::string_view port;
    for (const http::HeaderField& field : head.headers) {
        const std::string_view name = head.view(field.name);
        if (!http::is_forwarding_field(name)) {
            continue;
        }
        const std::string_view value = head.view(field.value);
        switch (name.size()) {
        case 9: // forwarded
            forwarded = forwarded || !trim_ows(value).empty();
            break;
        case 15: // x-forwarded-for
            walk.add(value, trusted);
            break;
        case 16: // x-forwarded-host, x-forwarded-port
            if ((name[12] | 0x20) == 'h') {
                host = last_element(value, host);
            } else {
                port = last_element(value, port);
            }
            break;
        default: // x-forwarded-proto
            proto = last_element(value, proto);
            break;
        }
    }
    if (forwarded) {
        resolve_rfc7239(head, trusted, out);
    } else {
        if (const auto& client = walk.client(); walk.any && client) {
            out.has_client = true;
            out.client = client->address;
            out.client_port = client->port;
        }
        if (!proto.empty()) {
            out.scheme = parse_scheme(proto);
        }
        if (valid_forwarded_host(host)) {
            out.host = host;
        }
        if (const auto p = parse_port(port); p && *p != 0) {
            out.port = *p;
        }
    }
    out.applied =
        out.has_client || out.scheme != Scheme::unchanged || !out.host.empty() || out.port != 0;
    return out;
}

ForwardedServer forwarded_server(const Forwarding& f, std::string_view request_host) {
    ForwardedServer out;
    const std::uint16_t default_port = f.scheme == Scheme::https ? 443 : 80;
    std::string_view name;
    std::string_view port_text;
    if (!f.host.empty()) {
        split_authority(f.host, name, port_text); // validated by resolve_forwarding
        out.server_name = name;
        if (f.port == 0) {
            out.http_host.assign(f.host);
            out.server_port = port_text.empty() ? default_port : parse_port(port_text).value_or(0);
            return out;
        }
    } else if (f.port != 0) {
        if (request_host.empty() || !split_authority(request_host, name, port_text)) {
            name = {};
        }
    } else {
        return out;
    }
    // X-Forwarded-Port: the port of the host the client asked for (RFC 3986 6.2.3: the
    // scheme's default port is left out).
    out.server_port = f.port;
    if (!name.empty()) {
        out.http_host.assign(name);
        if (f.port != default_port) {
            append_port(out.http_host, f.port);
        }
    }
    return out;
}

} // namespace appserver::net
