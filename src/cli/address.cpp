// Peers' spellings of a listening address, read into host/port, a socket path or a descriptor.
#include "cli/address.hpp"

#include <algorithm>
#include <cctype>

namespace appserver::cli {
namespace {

bool all_digits(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) != 0;
    });
}

bool starts_with(std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
}

// HOST, HOST:PORT, [IPv6], [IPv6]:PORT, :PORT.
bool parse_host_port(std::string_view text, ListenAddress& out, std::string& error) {
    out.kind = ListenAddress::Kind::tcp;
    std::string_view rest;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            error = "has a '[' without its ']'";
            return false;
        }
        out.host = std::string(text.substr(1, close - 1));
        rest = text.substr(close + 1);
        if (out.host.empty()) {
            error = "has an empty IPv6 address in brackets";
            return false;
        }
        if (!rest.empty() && rest.front() != ':') {
            error = "has something other than ':PORT' after the ']'";
            return false;
        }
    } else {
        const auto first = text.find(':');
        if (first != std::string_view::npos &&
            text.find(':', first + 1) != std::string_view::npos) {
            error = "looks like an IPv6 address: put it in brackets, e.g. [::1]:8000";
            return false;
        }
        out.host = std::string(text.substr(0, first));
        rest = first == std::string_view::npos ? std::string_view() : text.substr(first);
        if (out.host.empty()) {
            out.host = "0.0.0.0"; // ":8000", as uWSGI and gunicorn read it: every interface
        }
    }
    if (!rest.empty()) {
        const std::string_view port = rest.substr(1);
        if (!all_digits(port)) {
            error = "has a port that is not a number";
            return false;
        }
        out.port = std::string(port);
    }
    return true;
}

} // namespace

bool parse_bind_address(std::string_view text, ListenAddress& out, std::string& error) {
    out = ListenAddress{};
    if (text.empty()) {
        error = "must not be empty";
        return false;
    }
    for (std::string_view prefix : {"unix://", "unix:"}) {
        if (starts_with(text, prefix)) {
            out.kind = ListenAddress::Kind::unix_socket;
            out.path = std::string(text.substr(prefix.size()));
            if (out.path.empty()) {
                error = "has no socket path after 'unix:'";
                return false;
            }
            return true;
        }
    }
    if (starts_with(text, "fd://")) {
        out.kind = ListenAddress::Kind::fd;
        out.fd = std::string(text.substr(5));
        if (!all_digits(out.fd)) {
            error = "has a descriptor that is not a number after 'fd://'";
            return false;
        }
        return true;
    }
    if (starts_with(text, "tcp://")) {
        text.remove_prefix(6);
    }
    if (text.empty()) {
        error = "has no address";
        return false;
    }
    return parse_host_port(text, out, error);
}

bool parse_uwsgi_address(std::string_view text, ListenAddress& out, std::string& error) {
    out = ListenAddress{};
    if (text.empty()) {
        error = "must not be empty";
        return false;
    }
    if (text.front() == '@') {
        error = "is an abstract unix socket, which appserver does not bind";
        return false;
    }
    if (text.front() == '=') {
        error = "refers to a shared socket, which appserver does not have";
        return false;
    }
    if (text.find(':') == std::string_view::npos && text.front() != '[') {
        out.kind = ListenAddress::Kind::unix_socket; // uWSGI: no colon, a socket path
        out.path = std::string(text);
        return true;
    }
    if (!parse_host_port(text, out, error)) {
        return false;
    }
    if (out.port.empty()) {
        error = "has no port";
        return false;
    }
    return true;
}

} // namespace appserver::cli
