// Raw request-head checks (see head_scanner.hpp).
#include "http/head_scanner.hpp"


#include <cstring>
#include <string_view>

namespace appserver::http {
namespace {

bool is_tchar(char c) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) {
        return true;
    }
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

} // namespace

void HeadScanner::reset() {
    bytes_ = 0;
    line_ = section_ == Section::head ? 0 : 1; // trailers have no request line
    line_len_ = 0;
    prev_cr_ = false;
    prev_sp_ = false;
    spaces_ = 0;
    method_token_ = true;
    last_token_.clear();
    method_.clear();
    newer_minor_at_ = std::string::npos;
    method_end_at_ = std::string::npos;
    field_lines_from_ = std::string::npos;
    verdict_ = Verdict::more;
    error_status_ = 0;
    error_reason_ = "";
}

HeadScanner::Verdict HeadScanner::fail(int status, const char* reason) {
    verdict_ = Verdict::error;
    error_status_ = status;
    error_reason_ = reason;
    return verdict_;
}

HeadScanner::Verdict HeadScanner::scan(const char* data, std::size_t len, std::size_t& used) {
    used = 0;
    newer_minor_at_ = std::string::npos;
    method_end_at_ = std::string::npos;
    field_lines_from_ = line_ > 0 ? 0 : std::string::npos;
    if (verdict_ != Verdict::more) {
        return verdict_;
    }
    for (std::size_t i = 0; i < len; ++i) {
        const char c = data[i];
        used = i + 1;
        if (++bytes_ > max_bytes_) {
            if (line_ == 0) {
                if (line_len_ == 0) {
                    return fail(400, "too many empty lines before the request line");
                }
                // RFC 9112 3: a method longer than any implemented is a 501.
                return spaces_ == 0 ? fail(501, "request method too long")
                                    : fail(414, "request target too long");
            }
            return fail(431, in_section("request header section too large",
                                        "request trailer section too large"));
        }
        if (prev_cr_) {
            if (c != '\n') {
                return fail(400, in_section("bare CR in the request head",
                                            "bare CR in the trailer section"));
            }
            prev_cr_ = false;
            if (line_len_ == 0) {
                if (line_ == 0) {
                    continue; // RFC 9112 2.2: empty lines before the request line are ignored
                }
                verdict_ = Verdict::done;
                return verdict_;
            }
            if (line_ == 0 && (spaces_ != 2 || !version_syntax_ok())) {
                // Also HTTP/0.9's "GET /path": not a request line we speak.
                return fail(400, "malformed request line");
            }
            if (line_++ == 0) {
                field_lines_from_ = i + 1;
            }
            line_len_ = 0;
            continue;
        }
        if (c == '\r') {
            prev_cr_ = true;
            continue;
        }
        if (c == '\n') {
            return fail(400, in_section("bare LF in the request head (lines end with CRLF)",
                                        "bare LF in the trailer section (lines end with CRLF)"));
        }
        if (line_ > 0 && line_len_ > 0) {
            // Inside a header line only CR and LF matter: jump to the next one with
            // memchr rather than looking at every byte.
            const char* rest = data + i;
            const std::size_t n = len - i;
            const void* cr = std::memchr(rest, '\r', n);
            const std::size_t span = cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - rest) : n;
            if (std::memchr(rest, '\n', span) != nullptr) {
                return fail(400, in_section("bare LF in the request head (lines end with CRLF)",
                                            "bare LF in the trailer section (lines end with CRLF)"));
            }
            // This byte was counted above; count the rest of the span too.
            if (span > 1) {
                bytes_ += span - 1;
                if (bytes_ > max_bytes_) {
                    return fail(431, in_section("request header section too large",
                                                "request trailer section too large"));
                }
            }
            line_len_ += span;
            i += span - 1;
            used = i + 1;
            continue;
        }
        if (line_ == 0) {
            if (c == ' ') {
                if (prev_sp_ || line_len_ == 0) {
                    return fail(400, "more than one space in the request line");
                }
                if (spaces_++ == 0) {
                    method_end_at_ = i;
                }
                last_token_.clear();
            } else {
                if (spaces_ == 0) {
                    method_token_ = method_token_ && is_tchar(c);
                    method_.push_back(c);
                } else if (last_token_.size() < 16) {
                    last_token_.push_back(c);
                    if (spaces_ == 2 && last_token_.size() == 8 && c >= '2' && c <= '9' &&
                        last_token_.compare(0, 7, "HTTP/1.") == 0) {
                        newer_minor_at_ = i;
                    }
                }
            }
            prev_sp_ = c == ' ';
        } else if (line_len_ == 0) {
            if (c == ' ' || c == '\t') {
                return fail(400, in_section("obsolete line folding in the request head",
                                            "obsolete line folding in the trailer section"));
            }
            if (c == ':') {
                return fail(400, in_section("empty header field name", "empty trailer field name"));
            }
        }
        ++line_len_;
    }
    return verdict_;
}

bool HeadScanner::version_syntax_ok() const {
    const std::string& v = last_token_;
    return v.size() == 8 && v.compare(0, 5, "HTTP/") == 0 && v[5] >= '0' && v[5] <= '9' &&
           v[6] == '.' && v[7] >= '0' && v[7] <= '9';
}

bool HeadScanner::request_line_hopeless() const {
    if (!method_token_ || spaces_ > 2) {
        return true;
    }
    if (spaces_ < 2) {
        return false;
    }
    static constexpr std::string_view shape = "HTTP/0.0";
    const std::string& v = last_token_;
    if (v.size() > shape.size()) {
        return true;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
        const bool digit = shape[i] == '0';
        if (digit ? (v[i] < '0' || v[i] > '9') : v[i] != shape[i]) {
            return true;
        }
    }
    return false;
}

} // namespace appserver::http
