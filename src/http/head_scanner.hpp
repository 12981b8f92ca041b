// Framing checks on the raw bytes of a request head that llhttp does not make, or makes
// only for some read boundaries: bare LF or CR, obs-fold, an empty field name, more than
// one SP in the request line, and the head's total size (padding included). Runs before
// llhttp on the same bytes and keeps its state across reads, so a verdict never depends
// on how the client's bytes were split.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace appserver::http {

class HeadScanner {
public:
    enum class Verdict { more, done, error };
    // A request head (request line, field lines, blank line) or the trailer section
    // after a last chunk (field lines, blank line; RFC 9112 7.1.2), held to the same rules.
    enum class Section { head, trailers };

    explicit HeadScanner(std::size_t max_bytes, Section section = Section::head)
        : max_bytes_(max_bytes), section_(section) {
        reset();
    }
    void reset();

    // Scans up to len bytes; used = how many belong to the head (it stops after the
    // blank line that ends it). After done or error, further calls scan nothing.
    Verdict scan(const char* data, std::size_t len, std::size_t& used);

    bool done() const { return verdict_ == Verdict::done; }
    int error_status() const { return error_status_; }
    const char* error_reason() const { return error_reason_; }

    // Facts about the request line, once request_line_complete().
    bool request_line_complete() const { return line_ > 0 || verdict_ == Verdict::done; }
    // The last token of the request line has the syntax HTTP/DIGIT.DIGIT.
    bool version_syntax_ok() const;
    // What was seen of the request line so far can no longer become well-formed
    // (binary garbage, a TLS handshake): no need to wait for its end.
    bool request_line_hopeless() const;
    // Index, in the bytes of the last scan() call, of the minor digit of an HTTP/1.x
    // version newer than 1.1 (npos if none there): the parser reads it as HTTP/1.1.
    std::size_t newer_minor_version_at() const { return newer_minor_at_; }
    // The request method's bytes seen so far, and whether they are all tchars.
    std::string_view method() const { return method_; }
    bool method_token() const { return method_token_ && !method_.empty(); }
    // Index, in the bytes of the last scan() call, of the SP that ends the method (npos
    // if it is not there).
    std::size_t method_end_at() const { return method_end_at_; }
    // Index, in the bytes of the last scan() call, where the field lines begin: 0 when
    // they began before, npos while the request line is still being read.
    std::size_t field_lines_from() const { return field_lines_from_; }

private:
    Verdict fail(int status, const char* reason);
    // The reason to give, by section.
    const char* in_section(const char* head_reason, const char* trailers_reason) const {
        return section_ == Section::head ? head_reason : trailers_reason;
    }

    std::size_t max_bytes_;
    Section section_;
    std::size_t bytes_ = 0;
    std::size_t line_ = 0;      // index of the current line; 0 = request line
    std::size_t line_len_ = 0;
    bool prev_cr_ = false;
    bool prev_sp_ = false;
    unsigned spaces_ = 0;       // SPs in the request line
    bool method_token_ = true;  // every byte before the first SP is a tchar
    std::string last_token_;    // bytes after the request line's last SP (capped)
    std::string method_;        // bounded by max_bytes, as the whole head is
    std::size_t newer_minor_at_ = std::string::npos;
    std::size_t method_end_at_ = std::string::npos;
    std::size_t field_lines_from_ = std::string::npos;
    Verdict verdict_ = Verdict::more;
    int error_status_ = 0;
    const char* error_reason_ = "";
};

} // namespace appserver::http
