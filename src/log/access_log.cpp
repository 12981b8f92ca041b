// The access log (see access_log.hpp): compiles the format once, then formats each request
// into a reused buffer with no locale, no iostreams and no allocation.
#include "log/access_log.hpp"

#include "log/log.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <cstring>
#include <ctime>

namespace appserver::log {
namespace {

constexpr std::string_view common_spec = R"(%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s)";
constexpr std::string_view combined_suffix = R"( "%(f)s" "%(a)s")";

constexpr char hex_digits[] = "0123456789abcdef";

template <typename T> void append_number(std::string& out, T value) {
    char buf[24];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    out.append(buf, end);
}

// Text formats: whatever a client sent is written so that it cannot end the line, close a
// quoted field or pass for something else: control bytes, '"', '\' and non-ASCII bytes
// become \xHH (what NGINX does).
void append_escaped_byte(std::string& out, unsigned char c) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
        const char esc[4] = {'\\', 'x', hex_digits[c >> 4], hex_digits[c & 0xf]};
        out.append(esc, 4);
    } else {
        out.push_back(static_cast<char>(c));
    }
}

// One lookup per byte on the event loop's path (every request's target and agent).
constexpr std::array<bool, 256> text_escape = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c < 256; ++c) {
        t[c] = c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
    }
    return t;
}();

void append_escaped(std::string& out, std::string_view value) {
    std::size_t clean = 0;
    for (std::size_t i = 0; i < value.size(); ++i) {
        const auto c = static_cast<unsigned char>(value[i]);
        if (text_escape[c]) {
            out.append(value.data() + clean, i - clean);
            append_escaped_byte(out, c);
            clean = i + 1;
        }
    }
    out.append(value.data() + clean, value.size() - clean);
}

// '-' for a missing value, as gunicorn and NGINX write it.
void append_text_value(std::string& out, std::string_view value) {
    if (value.empty()) {
        out.push_back('-');
    } else {
        append_escaped(out, value);
    }
}

// JSON: RFC 8259 escapes; bytes >= 0x80 read as latin-1 (what HTTP field values are) and
// written \u00XX, so the line is valid UTF-8 JSON whatever the client sent.
void append_json_string(std::string& out, std::string_view value) {
    out.push_back('"');
    std::size_t clean = 0;
    for (std::size_t i = 0; i < value.size(); ++i) {
        const auto c = static_cast<unsigned char>(value[i]);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            continue;
        }
        out.append(value.data() + clean, i - clean);
        clean = i + 1;
        switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\n': out.append("\\n"); break;
        case '\r': out.append("\\r"); break;
        case '\t': out.append("\\t"); break;
        default: {
            const char esc[6] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 0xf]};
            out.append(esc, 6);
        }
        }
    }
    out.append(value.data() + clean, value.size() - clean);
    out.push_back('"');
}

void append_json_value(std::string& out, std::string_view value) {
    if (value.empty()) {
        out.append("null");
    } else {
        append_json_string(out, value);
    }
}

std::string_view path_of(std::string_view target) {
    return target.substr(0, target.find('?'));
}

std::string_view query_of(std::string_view target) {
    const auto q = target.find('?');
    return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

std::string_view header(const AccessRecord& r, bool request, std::string_view name) {
    const auto lookup = request ? r.request_header : r.response_header;
    if (lookup == nullptr) {
        return {};
    }
    return lookup(r.context, name).value_or(std::string_view());
}

void append_protocol(std::string& out, const AccessRecord& r) {
    out.append("HTTP/");
    append_number(out, r.version_major);
    out.push_back('.');
    append_number(out, r.version_minor);
}

int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

bool iequals_ascii(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

// %(u)s: the user part of "Authorization: Basic base64(user:password)", decoded straight
// into `out` (escaped); '-' when there is none or it does not decode.
void append_basic_user(std::string& out, const AccessRecord& r) {
    std::string_view auth = header(r, true, "Authorization");
    const std::size_t mark = out.size();
    const auto sp = auth.find(' ');
    if (sp != std::string_view::npos && iequals_ascii(auth.substr(0, sp), "basic")) {
        std::string_view b64 = auth.substr(sp + 1);
        while (!b64.empty() && b64.front() == ' ') {
            b64.remove_prefix(1);
        }
        unsigned acc = 0;
        int bits = 0;
        for (const char c : b64) {
            const int v = base64_value(c);
            if (v < 0) {
                break; // '=' padding, trailing blanks, or garbage: no colon seen, so '-'
            }
            acc = ((acc << 6) | static_cast<unsigned>(v)) & 0xffffU;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                const auto byte = static_cast<unsigned char>((acc >> bits) & 0xffU);
                if (byte == ':') {
                    if (out.size() == mark) {
                        break; // an empty user name
                    }
                    return;
                }
                append_escaped_byte(out, byte);
            }
        }
    }
    out.resize(mark);
    out.push_back('-');
}

// Local time of a request's start, formatted at most once a second per thread.
struct TimeCache {
    std::int64_t second = INT64_MIN;
    std::array<char, 32> clf{}; // [10/Oct/2000:13:55:36 +0000]
    std::size_t clf_size = 0;
    std::array<char, 32> iso{}; // 2000-10-10T13:55:36 (the milliseconds go after)
    std::size_t iso_size = 0;
    std::array<char, 8> offset{}; // +00:00
};

void put2(char* p, int v) {
    p[0] = static_cast<char>('0' + v / 10 % 10);
    p[1] = static_cast<char>('0' + v % 10);
}

const TimeCache& local_time(std::chrono::system_clock::time_point when) {
    thread_local TimeCache cache;
    const auto second = std::chrono::floor<std::chrono::seconds>(when).time_since_epoch().count();
    if (second == cache.second) {
        return cache;
    }
    static constexpr std::array<const char*, 12> months = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const auto t = static_cast<std::time_t>(second);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    const long gmtoff = tm.tm_gmtoff;
    const char sign = gmtoff < 0 ? '-' : '+';
    const long off_min = (gmtoff < 0 ? -gmtoff : gmtoff) / 60;
    const int oh = static_cast<int>(off_min / 60), om = static_cast<int>(off_min % 60);
    const int year = tm.tm_year + 1900;

    char* p = cache.clf.data();
    *p++ = '[';
    put2(p, tm.tm_mday), p += 2;
    *p++ = '/';
    std::memcpy(p, months[static_cast<std::size_t>(tm.tm_mon) % 12], 3), p += 3;
    *p++ = '/';
    p = std::to_chars(p, p + 6, year).ptr;
    *p++ = ':';
    put2(p, tm.tm_hour), p += 2;
    *p++ = ':';
    put2(p, tm.tm_min), p += 2;
    *p++ = ':';
    put2(p, tm.tm_sec), p += 2;
    *p++ = ' ';
    *p++ = sign;
    put2(p, oh), p += 2;
    put2(p, om), p += 2;
    *p++ = ']';
    cache.clf_size = static_cast<std::size_t>(p - cache.clf.data());

    p = cache.iso.data();
    p = std::to_chars(p, p + 6, year).ptr;
    *p++ = '-';
    put2(p, tm.tm_mon + 1), p += 2;
    *p++ = '-';
    put2(p, tm.tm_mday), p += 2;
    *p++ = 'T';
    put2(p, tm.tm_hour), p += 2;
    *p++ = ':';
    put2(p, tm.tm_min), p += 2;
    *p++ = ':';
    put2(p, tm.tm_sec), p += 2;
    cache.iso_size = static_cast<std::size_t>(p - cache.iso.data());

    cache.offset = {sign, '0', '0', ':', '0', '0', '\0', '\0'};
    put2(cache.offset.data() + 1, oh);
    put2(cache.offset.data() + 4, om);
    cache.second = second;
    return cache;
}

std::uint64_t micros(const AccessRecord& r) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(r.duration).count();
    return us < 0 ? 0 : static_cast<std::uint64_t>(us);
}

bool is_token_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::optional<AccessLogFormat::Atom> simple_atom(std::string_view name) {
    using A = AccessLogFormat::Atom;
    static constexpr std::pair<std::string_view, A> table[] = {
        {"h", A::remote_addr},   {"l", A::dash},         {"u", A::user},
        {"t", A::time},          {"r", A::request_line}, {"m", A::method},
        {"U", A::path},          {"q", A::query},        {"H", A::protocol},
        {"s", A::status},        {"B", A::body_bytes},   {"b", A::body_bytes_dash},
        {"f", A::referer},       {"a", A::user_agent},   {"T", A::seconds},
        {"M", A::milliseconds},  {"D", A::microseconds}, {"L", A::decimal_seconds},
        {"p", A::pid},           {"rid", A::request_id}, {"w", A::worker},
    };
    for (const auto& [n, atom] : table) {
        if (n == name) {
            return atom;
        }
    }
    return std::nullopt;
}

} // namespace

std::optional<AccessLogFormat> AccessLogFormat::compile(std::string_view spec,
                                                        std::string& error) {
    AccessLogFormat f;
    std::string combined;
    if (spec == "json") {
        f.json_ = true;
        return f;
    }
    if (spec == "common") {
        spec = common_spec;
    } else if (spec == "combined") {
        combined.append(common_spec).append(combined_suffix);
        spec = combined;
    }
    const auto add_literal = [&f](std::string_view text) {
        if (text.empty()) {
            return;
        }
        if (!f.parts_.empty() && f.parts_.back().atom == Atom::literal) {
            f.parts_.back().text.append(text);
        } else {
            f.parts_.push_back({Atom::literal, std::string(text)});
        }
    };
    const auto fail = [&error](std::string message) {
        error = "invalid access log format: " + std::move(message);
        return std::nullopt;
    };
    std::size_t i = 0;
    while (i < spec.size()) {
        const auto pct = spec.find('%', i);
        add_literal(spec.substr(i, pct == std::string_view::npos ? pct : pct - i));
        if (pct == std::string_view::npos) {
            break;
        }
        if (pct + 1 < spec.size() && spec[pct + 1] == '%') {
            add_literal("%");
            i = pct + 2;
            continue;
        }
        if (pct + 1 >= spec.size() || spec[pct + 1] != '(') {
            return fail("'%' at offset " + std::to_string(pct) +
                        " does not start an atom: atoms are written %(name)s, a literal "
                        "'%' as %%");
        }
        const auto close = spec.find(')', pct + 2);
        if (close == std::string_view::npos) {
            return fail("unterminated '" + std::string(spec.substr(pct)) +
                        "': atoms are written %(name)s");
        }
        const std::string_view name = spec.substr(pct + 2, close - pct - 2);
        const std::string atom_text = "%(" + std::string(name) + ")s";
        if (close + 1 >= spec.size() || spec[close + 1] != 's') {
            return fail("atom %(" + std::string(name) + ") must be followed by 's' (" +
                        atom_text + ")");
        }
        i = close + 2;
        if (auto atom = simple_atom(name)) {
            f.parts_.push_back({*atom, {}});
            continue;
        }
        if (name.size() >= 3 && name.front() == '{' && name[name.size() - 2] == '}') {
            const std::string_view field = name.substr(1, name.size() - 3);
            const char kind = name.back();
            if (kind == 'e') {
                return fail(atom_text +
                            ": the WSGI environ is not available to the access log (it is "
                            "written by the server, outside Python); log a request header "
                            "with %({name}i)s instead");
            }
            if (kind == 'i' || kind == 'o') {
                if (field.empty() ||
                    !std::all_of(field.begin(), field.end(), is_token_char)) {
                    return fail(atom_text + ": '" + std::string(field) +
                                "' is not a valid header field name");
                }
                f.parts_.push_back(
                    {kind == 'i' ? Atom::request_header : Atom::response_header,
                     std::string(field)});
                continue;
            }
        }
        return fail("unknown atom " + atom_text +
                    " (known: h l u t r m U q H s B b f a T M D L p rid w, {Header}i, "
                    "{Header}o)");
    }
    return f;
}

void AccessLogFormat::format(const AccessRecord& record, std::string& out) const {
    if (json_) {
        format_json(record, out);
    } else {
        format_text(record, out);
    }
    out.push_back('\n');
}

void AccessLogFormat::format_text(const AccessRecord& r, std::string& out) const {
    for (const Part& part : parts_) {
        switch (part.atom) {
        case Atom::literal: out.append(part.text); break;
        case Atom::remote_addr: append_text_value(out, r.remote_addr); break;
        case Atom::dash: out.push_back('-'); break;
        case Atom::user: append_basic_user(out, r); break;
        case Atom::time: {
            const TimeCache& t = local_time(r.start);
            out.append(t.clf.data(), t.clf_size);
            break;
        }
        case Atom::request_line:
            if (r.method.empty() && r.target.empty()) {
                out.push_back('-');
            } else {
                append_escaped(out, r.method);
                out.push_back(' ');
                append_escaped(out, r.target);
                out.push_back(' ');
                append_protocol(out, r);
            }
            break;
        case Atom::method: append_text_value(out, r.method); break;
        case Atom::path: append_text_value(out, path_of(r.target)); break;
        case Atom::query: append_text_value(out, query_of(r.target)); break;
        case Atom::protocol:
            if (r.method.empty()) {
                out.push_back('-');
            } else {
                append_protocol(out, r);
            }
            break;
        case Atom::status:
            if (r.status == 0) {
                out.push_back('-');
            } else {
                append_number(out, r.status);
            }
            break;
        case Atom::body_bytes: append_number(out, r.response_body_bytes); break;
        case Atom::body_bytes_dash:
            if (r.response_body_bytes == 0) {
                out.push_back('-');
            } else {
                append_number(out, r.response_body_bytes);
            }
            break;
        case Atom::referer: append_text_value(out, header(r, true, "Referer")); break;
        case Atom::user_agent: append_text_value(out, header(r, true, "User-Agent")); break;
        case Atom::seconds: append_number(out, micros(r) / 1000000); break;
        case Atom::milliseconds: append_number(out, micros(r) / 1000); break;
        case Atom::microseconds: append_number(out, micros(r)); break;
        case Atom::decimal_seconds: {
            const std::uint64_t us = micros(r);
            append_number(out, us / 1000000);
            char frac[7] = {'.'};
            std::uint64_t rest = us % 1000000;
            for (int d = 6; d >= 1; --d, rest /= 10) {
                frac[d] = static_cast<char>('0' + rest % 10);
            }
            out.append(frac, 7);
            break;
        }
        case Atom::pid:
            out.push_back('<');
            append_number(out, process_id());
            out.push_back('>');
            break;
        case Atom::request_header: append_text_value(out, header(r, true, part.text)); break;
        case Atom::response_header: append_text_value(out, header(r, false, part.text)); break;
        case Atom::request_id: append_text_value(out, r.request_id); break;
        case Atom::worker: append_number(out, r.worker); break;
        }
    }
}

// Fixed keys; a value the server does not have is null (an empty query too), so that every
// key is always there and keeps its type.
void AccessLogFormat::format_json(const AccessRecord& r, std::string& out) const {
    const TimeCache& t = local_time(r.start);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        r.start.time_since_epoch()).count();
    const auto ms_of_second = static_cast<int>(((ms % 1000) + 1000) % 1000);
    out.append(R"({"time":")");
    out.append(t.iso.data(), t.iso_size);
    const char millis[4] = {'.', static_cast<char>('0' + ms_of_second / 100),
                            static_cast<char>('0' + ms_of_second / 10 % 10),
                            static_cast<char>('0' + ms_of_second % 10)};
    out.append(millis, 4);
    out.append(t.offset.data(), 6);
    out.append(R"(","remote_addr":)");
    append_json_value(out, r.remote_addr);
    out.append(R"(,"remote_port":)");
    if (r.remote_addr.empty()) {
        out.append("null");
    } else {
        append_number(out, r.remote_port);
    }
    out.append(R"(,"method":)");
    append_json_value(out, r.method);
    out.append(R"(,"path":)");
    append_json_value(out, path_of(r.target));
    out.append(R"(,"query":)");
    append_json_value(out, query_of(r.target));
    out.append(R"(,"protocol":)");
    if (r.method.empty()) {
        out.append("null");
    } else {
        out.push_back('"');
        append_protocol(out, r);
        out.push_back('"');
    }
    out.append(R"(,"status":)");
    if (r.status == 0) {
        out.append("null");
    } else {
        append_number(out, r.status);
    }
    out.append(R"(,"request_bytes":)");
    append_number(out, r.request_body_bytes);
    out.append(R"(,"response_bytes":)");
    append_number(out, r.response_body_bytes);
    out.append(R"(,"duration_ms":)");
    const std::uint64_t us = micros(r);
    append_number(out, us / 1000);
    const char frac[4] = {'.', static_cast<char>('0' + us % 1000 / 100),
                          static_cast<char>('0' + us % 100 / 10),
                          static_cast<char>('0' + us % 10)};
    out.append(frac, 4);
    out.append(R"(,"request_id":)");
    append_json_value(out, r.request_id);
    out.append(R"(,"user_agent":)");
    append_json_value(out, header(r, true, "User-Agent"));
    out.append(R"(,"referer":)");
    append_json_value(out, header(r, true, "Referer"));
    out.append(R"(,"worker":)");
    append_number(out, r.worker);
    out.append(R"(,"pid":)");
    append_number(out, process_id());
    out.push_back('}');
}

std::string check_access_log_format(std::string_view spec) {
    std::string error;
    if (!AccessLogFormat::compile(spec, error)) {
        return error.empty() ? "invalid access log format" : error;
    }
    return {};
}

AccessLog::AccessLog(std::unique_ptr<LineWriter> writer, AccessLogFormat format)
    : writer_(std::move(writer)), format_(std::move(format)) {}

void AccessLog::write(const AccessRecord& record) noexcept {
    // Per thread, kept between requests: its capacity is reused, nothing is allocated.
    thread_local std::string line;
    try {
        line.clear();
        format_.format(record, line);
        writer_->push(line);
    } catch (...) {
        // Out of memory while growing the buffer for an unusually long line: that line
        // is lost, the request is not.
    }
}

} // namespace appserver::log
