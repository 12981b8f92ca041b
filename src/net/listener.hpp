// The listening socket: bound once by the master (or handed over by whoever started the
// process: --fd, systemd's socket activation), inherited by every worker.
#pragma once

#include <appserver/config.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace appserver::net {

struct ListenSocket {
    int fd = -1;
    int family = 0;          // AF_INET, AF_INET6 or AF_UNIX
    std::string host;        // numeric address actually bound (TCP)
    std::uint16_t port = 0;  // port actually bound (TCP)
    std::string uds_path;    // path (unix socket; "@name" for an abstract one)
    unsigned long uds_inode = 0; // inode of the socket file we bound
    // Handed over, not bound here: "socket fd 3 from systemd", "socket fd 5 from --fd".
    // Such a socket is taken as it is (its backlog too) and its file is never removed.
    std::string origin;
    bool inherited() const { return !origin.empty(); }
    std::string address() const; // http://127.0.0.1:8000, http://[::1]:8000 or unix:/path
    std::string url() const;     // for the log: address(), plus " (origin)" when inherited
};

// Two sources for the listening socket were given (--fd with --uds, LISTEN_FDS with --fd
// or --uds): a usage error (exit status 2).
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The variables of systemd's socket-activation protocol (sd_listen_fds(3)).
inline constexpr std::array<const char*, 3> socket_activation_variables{
    "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"};

// The socket whoever started the process handed over, if any: --fd N (config.listen_fd),
// or systemd's socket activation (LISTEN_PID is this process, LISTEN_FDS sockets from fd
// 3: the first is used, the others are closed with a warning). The LISTEN_* variables are
// removed from the environment whoever they were for, so neither the app nor the
// processes it starts see them (CPython's os.environ copy is the caller's business).
// nullopt: nothing was handed over; bind with bind_listener(). Throws UsageError when two
// sources are given, std::runtime_error with a one-line reason when the descriptor is not
// a listening stream socket (TCP or unix) or the variables are malformed.
std::optional<ListenSocket> take_inherited_listener(const Config& config);

// Takes fd as the listening socket: checks that it is a listening TCP or unix stream
// socket, sets it close-on-exec and non-blocking, reads its address. origin as above. A
// socket on fd 0-2 (inetd style) is moved to a new descriptor and /dev/null put in its
// place. Throws std::runtime_error naming the descriptor.
ListenSocket adopt_listener(int fd, const std::string& origin);

// Binds and listens as the config says. Throws std::runtime_error with a one-line reason.
ListenSocket bind_listener(const Config& config);

// Resolves --host (binding nothing), so that a bad address is reported before the app is
// imported; throws std::runtime_error as bind_listener would.
void check_address(const Config& config);

// Closes the socket; removes the unix socket file when remove_path, and only a file this
// process bound (never an inherited socket's).
void close_listener(ListenSocket& sock, bool remove_path);

} // namespace appserver::net
