// Proxies in front of the server: which peers are trusted (--forwarded-allow-ips), the
// HAProxy PROXY protocol header (--proxy-protocol), and what a request's forwarding
// headers (RFC 7239 Forwarded, X-Forwarded-For/-Proto/-Host/-Port) say. Pure functions
// over bytes: no sockets, no Python; the connection decides when to call them.
#pragma once

#include "http/parser.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace appserver::net {

// An IPv4 or IPv6 address. IPv4 is kept as the IPv4-mapped IPv6 address (::ffff:a.b.c.d),
// so a dual-stack socket's "::ffff:10.0.0.1" peer and "10.0.0.1" match the same ranges.
struct IpAddress {
    std::array<std::uint8_t, 16> bytes{};
    bool v4 = false; // written as IPv4 (formatting only)
    bool operator==(const IpAddress&) const = default;
};

// Strict text forms: IPv4 dotted decimal (four numbers 0-255, no leading zeros), or IPv6
// (inet_pton: no brackets, no zone).
std::optional<IpAddress> parse_ip(std::string_view text);
// Canonical text ("10.0.0.1", "2001:db8::1").
std::string format_ip(const IpAddress& address);
void format_ip(const IpAddress& address, std::string& out);

// --forwarded-allow-ips: comma-separated entries, spaces around them allowed: "*" (any
// peer), "unix" (unix-socket peers), IPv4/IPv6 addresses ("[::1]" too) and CIDR ranges
// ("10.0.0.0/8", "fd00::/8"; bits set after the prefix are an error). An empty list
// trusts nobody. A unix-socket peer has no address: it is trusted with "*", "unix", or
// when the list trusts loopback (127.0.0.1 or ::1: such a peer is on this machine too, and
// the socket file's mode says who may connect), so the default trusts it.
class TrustedProxies {
public:
    TrustedProxies() = default; // trusts nobody

    // The list, or nullopt with the reason in *error (words that follow the value in an
    // option error: "has an entry ...").
    static std::optional<TrustedProxies> parse(std::string_view list, std::string* error = nullptr);

    bool trusts(const IpAddress& address) const;
    // A connection's peer as the worker describes it: the address text, empty for a unix
    // socket. Text that is no address is not trusted (unless "*").
    bool trusts_peer(std::string_view peer) const;
    bool trusts_unix() const { return unix_; }
    bool trusts_everyone() const { return all_; }

private:
    struct Range {
        std::array<std::uint8_t, 16> network{};
        unsigned prefix = 128; // bits, in the 128-bit space (an IPv4 /8 is 104)
    };
    std::vector<Range> ranges_;
    bool all_ = false;
    bool unix_ = false;
};

// ---- the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) ---------------

inline constexpr std::size_t max_proxy_v1_header = 107; // with the CRLF (the spec's bound)
inline constexpr std::size_t max_proxy_v2_header = 4096; // 16 + addresses + TLVs

struct ProxyHeader {
    enum class Status : std::uint8_t {
        incomplete, // a valid beginning: read more (within the header-read deadline)
        invalid,    // not a PROXY header, or a malformed one: close the connection
        done,
    };
    Status status = Status::incomplete;
    std::size_t size = 0; // done: bytes of the header, the request follows them
    int version = 0;
    // false: "PROXY UNKNOWN", a v2 LOCAL command, or a family other than TCP over IPv4 or
    // IPv6 (UNSPEC, UNIX, UDP): the connection keeps the socket's own addresses.
    bool has_source = false;
    IpAddress source{};
    std::uint16_t source_port = 0;
    const char* error = ""; // invalid: why, for the log
};

// Looks at the first bytes of a connection (everything received so far).
ProxyHeader parse_proxy_header(std::string_view data);

// ---- forwarding headers ----------------------------------------------------------------

enum class Scheme : std::uint8_t { unchanged, http, https };

// What the forwarding headers of one request, from a trusted peer, say. Views point into
// the request head's bytes.
struct Forwarding {
    bool applied = false;    // something below is set
    bool has_client = false; // REMOTE_ADDR
    IpAddress client{};
    std::uint16_t client_port = 0;   // REMOTE_PORT; 0: not known
    Scheme scheme = Scheme::unchanged; // wsgi.url_scheme
    std::string_view host;           // host[:port] the client asked for; empty: unchanged
    std::uint16_t port = 0;          // X-Forwarded-Port; 0: none
};

// Only for a request whose peer is trusted (the caller checks that). With a Forwarded
// field present, only it is read (X-Forwarded-* are then ignored, even when it turns out
// malformed). The client is found walking the list from the right: the first address that
// is not itself a trusted proxy (the leftmost when all are). Repeated fields form one list
// (RFC 9110 5.3). X-Forwarded-Proto/-Host/-Port take their last element (set by the
// nearest proxy). A malformed value is ignored: what it would have set stays unchanged.
Forwarding resolve_forwarding(const http::RequestHead& head, const TrustedProxies& trusted);

// HTTP_HOST, SERVER_NAME and SERVER_PORT once forwarding applies. request_host is the
// request's own authority (absolute-form target, else Host; empty when none).
struct ForwardedServer {
    std::string http_host;         // empty: HTTP_HOST unchanged
    std::string_view server_name;  // empty: SERVER_NAME unchanged
    std::uint16_t server_port = 0; // 0: SERVER_PORT unchanged
};
ForwardedServer forwarded_server(const Forwarding& forwarding, std::string_view request_host);

} // namespace appserver::net
