// Fuzz target: the PROXY protocol header parser (src/net/proxy.hpp, versions 1 and 2) and
// the address parsing behind it and behind --forwarded-allow-ips.
//
// Input: the first bytes of a connection. A connection calls parse_proxy_header on all it
// has received so far, again after every read, so the verdict on a prefix must agree with
// the verdict on the whole: a prefix of a valid header is incomplete (never invalid, never
// done early), bytes after a complete header change nothing, and once a prefix is invalid
// every longer one is too.
#include "fuzz_support.hpp"

#include "net/proxy.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

namespace net = appserver::net;
using Status = net::ProxyHeader::Status;

bool same(const net::ProxyHeader& a, const net::ProxyHeader& b) {
    return a.status == b.status && a.size == b.size && a.version == b.version &&
           a.has_source == b.has_source && a.source == b.source &&
           a.source_port == b.source_port;
}

void check_header(std::string_view data) {
    const net::ProxyHeader whole = net::parse_proxy_header(data);
    if (whole.status == Status::done) {
        FUZZ_CHECK(whole.size > 0 && whole.size <= data.size(), "size %zu of %zu bytes",
                   whole.size, data.size());
        FUZZ_CHECK(whole.version == 1 || whole.version == 2, "version %d", whole.version);
        FUZZ_CHECK(whole.version != 1 || whole.size <= net::max_proxy_v1_header,
                   "v1 header of %zu bytes", whole.size);
        FUZZ_CHECK(whole.version != 2 ||
                       (whole.size >= 16 && whole.size <= net::max_proxy_v2_header),
                   "v2 header of %zu bytes", whole.size);
        if (whole.has_source) {
            const std::string text = net::format_ip(whole.source);
            const auto again = net::parse_ip(text);
            FUZZ_CHECK(again && again->bytes == whole.source.bytes,
                       "source %s does not survive format_ip/parse_ip", text.c_str());
        }
    } else if (whole.status == Status::invalid) {
        FUZZ_CHECK(whole.error != nullptr && *whole.error != '\0', "invalid without a reason");
    }
    // Every prefix up to 300 bytes, then a sample (headers reach 4096 bytes).
    bool invalid_seen = false;
    for (std::size_t k = 0; k <= data.size(); k = k < 300 ? k + 1 : k + 1 + k / 8) {
        const net::ProxyHeader part = net::parse_proxy_header(data.substr(0, k));
        if (whole.status == Status::done && k < whole.size) {
            FUZZ_CHECK(part.status == Status::incomplete,
                       "prefix of %zu bytes of a %zu-byte header: status %d", k, whole.size,
                       static_cast<int>(part.status));
        } else if (whole.status == Status::done) {
            FUZZ_CHECK(same(part, whole), "prefix of %zu bytes reads another header", k);
        } else {
            FUZZ_CHECK(part.status != Status::done, "prefix of %zu bytes done, the whole %s", k,
                       whole.status == Status::invalid ? "invalid" : "incomplete");
            FUZZ_CHECK(!invalid_seen || part.status == Status::invalid,
                       "prefix of %zu bytes valid again after an invalid shorter one", k);
            invalid_seen = invalid_seen || part.status == Status::invalid;
        }
    }
    FUZZ_CHECK(whole.status != Status::incomplete || !invalid_seen,
               "whole input incomplete after an invalid prefix");
}

// Address text: from forwarding headers (client bytes) and from the option.
void check_text(std::string_view text) {
    if (const auto a = net::parse_ip(text)) {
        const std::string formatted = net::format_ip(*a);
        const auto again = net::parse_ip(formatted);
        FUZZ_CHECK(again && *again == *a, "'%s' does not parse back to the same address",
                   formatted.c_str());
    }
    std::string error;
    if (const auto trusted = net::TrustedProxies::parse(text, &error)) {
        (void)trusted->trusts_peer("10.1.2.3");
        (void)trusted->trusts_peer("::1");
        (void)trusted->trusts_peer("");
        (void)trusted->trusts_peer(text);
    } else {
        FUZZ_CHECK(!error.empty(), "list refused without a reason");
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    check_header(bytes);
    if (size <= 256) {
        check_text(bytes);
    }
    return 0;
}
