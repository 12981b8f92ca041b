// Field names and list values, shared by the request parser and the response side:
// case-insensitive comparison (field names, tokens such as "chunked" or "close") and
// comma-separated lists (RFC 9110 5.6.1: #element).
#pragma once

#include <strings.h>

#include <string_view>

namespace appserver::http {

inline bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// One of the fields a proxy uses to say who the client is: Forwarded (RFC 7239),
// X-Forwarded-For, -Proto, -Host, -Port. A length switch first: most names are rejected
// without a comparison.
inline bool is_forwarding_field(std::string_view name) {
    switch (name.size()) {
    case 9:
        return iequals(name, "forwarded");
    case 15:
        return iequals(name, "x-forwarded-for");
    case 16:
        return iequals(name, "x-forwarded-host") || iequals(name, "x-forwarded-port");
    case 17:
        return iequals(name, "x-forwarded-proto");
    default:
        return false;
    }
}

// Calls pred on each list element with its surrounding OWS removed (empty elements
// included); true as soon as pred is.
template <class Pred>
bool any_list_element(std::string_view value, Pred pred) {
    for (;;) {
        const std::size_t comma = value.find(',');
        std::string_view item = value.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
            item.remove_prefix(1);
        }
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
            item.remove_suffix(1);
        }
        if (pred(item)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            return false;
        }
        value.remove_prefix(comma + 1);
    }
}

} // namespace appserver::http
