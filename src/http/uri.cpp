// Authority checks (see uri.hpp).
#include "http/uri.hpp"

#include <arpa/inet.h>
#include <strings.h>

#include <cstring>

namespace appserver::http {
namespace {

bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_unreserved(char c) {
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

bool is_sub_delim(char c) {
    return std::strchr("!$&'()*+,;=", c) != nullptr && c != '\0';
}

// reg-name = *( unreserved / pct-encoded / sub-delims )
bool valid_reg_name(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) {
                return false;
            }
            i += 2;
        } else if (!is_unreserved(c) && !is_sub_delim(c)) {
            return false;
        }
    }
    return true;
}

// IP-literal content: IPv6address or IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
bool valid_ip_literal(std::string_view s) {
    if (!s.empty() && (s.front() == 'v' || s.front() == 'V')) {
        std::size_t i = 1;
        while (i < s.size() && is_hex(s[i])) {
            ++i;
        }
        if (i == 1 || i >= s.size() || s[i] != '.' || i + 1 == s.size()) {
            return false;
        }
        for (++i; i < s.size(); ++i) {
            if (!is_unreserved(s[i]) && !is_sub_delim(s[i]) && s[i] != ':') {
                return false;
            }
        }
        return true;
    }
    char buf[INET6_ADDRSTRLEN + 1];
    if (s.empty() || s.size() >= sizeof buf) {
        return false;
    }
    std::memcpy(buf, s.data(), s.size());
    buf[s.size()] = '\0';
    unsigned char addr[16];
    return ::inet_pton(AF_INET6, buf, addr) == 1;
}

bool valid_port(std::string_view s) {
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

} // namespace

bool valid_authority(std::string_view authority) {
    if (!authority.empty() && authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos || !valid_ip_literal(authority.substr(1, close - 1))) {
            return false;
        }
        const std::string_view rest = authority.substr(close + 1);
        return rest.empty() || (rest.front() == ':' && valid_port(rest.substr(1)));
    }
    // A reg-name has no ':' (nor does an IPv4 address), so the first one starts the port.
    const std::size_t colon = authority.find(':');
    if (colon == std::string_view::npos) {
        return valid_reg_name(authority);
    }
    return valid_reg_name(authority.substr(0, colon)) && valid_port(authority.substr(colon + 1));
}

const char* absolute_form_problem(std::string_view target) {
    const std::size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) {
        return "invalid request target";
    }
    const std::string_view scheme = target.substr(0, scheme_end);
    const bool http = (scheme.size() == 4 && ::strncasecmp(scheme.data(), "http", 4) == 0) ||
                      (scheme.size() == 5 && ::strncasecmp(scheme.data(), "https", 5) == 0);
    if (!http) {
        return "only http and https URIs can be requested";
    }
    std::string_view authority = target.substr(scheme_end + 3);
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (authority.find('@') != std::string_view::npos) {
        return "userinfo in the request target";
    }
    if (authority.empty() || authority.front() == ':') {
        return "no host in the request target";
    }
    if (!valid_authority(authority)) {
        return "invalid host in the request target";
    }
    return nullptr;
}

} // namespace appserver::http
