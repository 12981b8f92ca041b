// The listening socket: bound once by the master, inherited by every worker.
#pragma once

#include <appserver/config.hpp>

#include <cstdint>
#include <string>

namespace appserver::net {

struct ListenSocket {
    int fd = -1;
    int family = 0;          // AF_INET, AF_INET6 or AF_UNIX
    std::string host;        // numeric address actually bound (TCP)
    std::uint16_t port = 0;  // port actually bound (TCP)
    std::string uds_path;    // path (unix socket)
    unsigned long uds_inode = 0; // inode of the socket file we bound
    std::string url() const; // for the log: http://127.0.0.1:8000 or unix:/path
};

// Binds and listens as the config says. Throws std::runtime_error with a one-line reason.
ListenSocket bind_listener(const Config& config);

// Resolves --host (binding nothing), so that a bad address is reported before the app is
// imported; throws std::runtime_error as bind_listener would.
void check_address(const Config& config);

// Closes the socket; removes the unix socket file when remove_path.
void close_listener(ListenSocket& sock, bool remove_path);

} // namespace appserver::net
