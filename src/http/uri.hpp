// What a request's authority may look like: the Host field (RFC 9112 3.2) and the
// authority of an absolute-form target (RFC 9112 3.2.2), both in the URI grammar of
// RFC 3986. A server that passes an invalid Host on lets the app build links, redirects
// and cache keys from it, so these are checked before anything reaches the app.
#pragma once

#include <string_view>

namespace appserver::http {

// host [ ":" port ]: host is an IP-literal ("[" IPv6 / IPvFuture "]"), an IPv4 address or
// a reg-name (unreserved, pct-encoded and sub-delims characters, possibly empty); port is
// digits. No userinfo.
bool valid_authority(std::string_view authority);

// For an absolute-form target ("http://host/path?query"): why it cannot be served, or
// nullptr when it is fine. Only http and https URIs with a non-empty, valid host and no
// userinfo are (RFC 9110 4.2.1, 4.2.4).
const char* absolute_form_problem(std::string_view target);

} // namespace appserver::http
