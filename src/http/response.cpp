// Response-side HTTP/1.1 rules (see response.hpp).
#include "http/response.hpp"

#include "http/field_list.hpp"

#include <strings.h>

#include <array>
#include <charconv>
#include <ctime>

namespace appserver::http {
namespace {

constexpr std::array<bool, 256> make_tchar_table() {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
    return t;
}
constexpr auto tchar = make_tchar_table();


} // namespace

bool parse_status(std::string_view status, int& code) {
    if (status.size() < 3) {
        return false;
    }
    int value = 0;
    for (int i = 0; i < 3; ++i) {
        const char c = status[i];
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + (c - '0');
    }
    if (value < 100 || value > 599) { // RFC 9110 15: the valid range is 100-599
        return false;
    }
    if (status.size() > 3) {
        if (status[3] != ' ') {
            return false;
        }
        if (!valid_header_value(status.substr(4))) {
            return false;
        }
    }
    code = value;
    return true;
}

bool valid_header_name(std::string_view name) {
    if (name.empty()) {
        return false;
    }
    for (unsigned char c : name) {
        if (!tchar[c]) {
            return false;
        }
    }
    return true;
}

bool valid_header_value(std::string_view value) {
    for (unsigned char c : value) {
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

HopByHop classify_hop_by_hop(std::string_view name) {
    if (name.size() < 2 || name.size() > 17) {
        return HopByHop::no;
    }
    if (iequals(name, "connection")) {
        return HopByHop::connection;
    }
    if (iequals(name, "transfer-encoding") || iequals(name, "keep-alive") ||
        iequals(name, "upgrade") || iequals(name, "te") || iequals(name, "trailer") ||
        iequals(name, "proxy-connection")) {
        return HopByHop::drop;
    }
    return HopByHop::no;
}

std::size_t format_date_line(std::time_t t, char* out) {
    // Not strftime: its %a and %b follow LC_TIME, and RFC 9110 5.6.7 wants these names.
    static constexpr char days[] = "SunMonTueWedThuFriSat";
    static constexpr char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char* p = out;
    auto text = [&p](std::string_view s) {
        for (char c : s) {
            *p++ = c;
        }
    };
    auto two = [&p](int v) {
        *p++ = static_cast<char>('0' + v / 10 % 10);
        *p++ = static_cast<char>('0' + v % 10);
    };
    text("Date: ");
    text(std::string_view(days + 3 * tm.tm_wday, 3));
    text(", ");
    two(tm.tm_mday);
    *p++ = ' ';
    text(std::string_view(months + 3 * tm.tm_mon, 3));
    *p++ = ' ';
    const int year = tm.tm_year + 1900; // four digits until 9999
    two(year / 100);
    two(year % 100);
    *p++ = ' ';
    two(tm.tm_hour);
    *p++ = ':';
    two(tm.tm_min);
    *p++ = ':';
    two(tm.tm_sec);
    text(" GMT\r\n");
    return static_cast<std::size_t>(p - out);
}

std::string_view date_line() {
    thread_local std::time_t cached_second = 0;
    thread_local char line[64];
    thread_local std::size_t line_len = 0;
    const std::time_t now = std::time(nullptr);
    if (now != cached_second) {
        line_len = format_date_line(now, line);
        cached_second = now;
    }
    return {line, line_len};
}

void append_chunk_size(std::string& out, std::size_t n) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf - 2, n, 16);
    (void)ec;
    *end++ = '\r';
    *end++ = '\n';
    out.append(buf, end);
}

std::string_view reason_phrase(int code) {
    // RFC 9110 section 15 (and RFC 6585 for 428, 429, 431, 511; RFC 8297 for 103).
    switch (code) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 511: return "Network Authentication Required";
    default: return "Unknown";
    }
}

std::string canned_response(int code, std::string_view message, bool close,
                            std::string_view extra_headers, bool with_body) {
    std::string body;
    body.reserve(message.size() + 1);
    body.append(message).push_back('\n');
    std::string out;
    out.reserve(160 + body.size() + extra_headers.size());
    out.append("HTTP/1.1 ").append(std::to_string(code)).append(" ");
    out.append(reason_phrase(code)).append("\r\n");
    out.append(date_line());
    out.append("Content-Type: text/plain; charset=utf-8\r\n");
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    out.append(extra_headers);
    if (close) {
        out.append("Connection: close\r\n");
    }
    out.append("\r\n");
    if (with_body) {
        out.append(body);
    }
    return out;
}

} // namespace appserver::http
