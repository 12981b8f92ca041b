// Listening addresses written the way peers write them: gunicorn's --bind (HOST:PORT,
// [IPv6]:PORT, unix:PATH, fd://N) and uWSGI's http-socket (HOST:PORT, :PORT, a socket path).
// Only the syntax is read here; --host, --port, --uds and --fd check the values themselves.
#pragma once

#include <string>
#include <string_view>

namespace appserver::cli {

struct ListenAddress {
    enum class Kind { tcp, unix_socket, fd };
    Kind kind = Kind::tcp;
    std::string host; // tcp: without brackets; "0.0.0.0" for an empty host (":8000")
    std::string port; // tcp: digits as written; empty when the address names none
    std::string path; // unix_socket
    std::string fd;   // fd: digits as written
};

// gunicorn's --bind: "HOST", "HOST:PORT", "[IPv6]:PORT", ":PORT", "tcp://HOST:PORT",
// "unix:PATH", "unix://PATH", "fd://N". On error returns false with the reason in `error`
// (words that follow "value 'x' ").
bool parse_bind_address(std::string_view text, ListenAddress& out, std::string& error);

// uWSGI's socket addresses: "HOST:PORT", ":PORT", "[IPv6]:PORT", or, without a colon, the
// path of a unix socket. "@name" (abstract) and "=N" (a shared socket) are refused.
bool parse_uwsgi_address(std::string_view text, ListenAddress& out, std::string& error);

} // namespace appserver::cli
