// Blocking-with-deadline socket I/O (see socket_io.hpp).
#include "net/socket_io.hpp"

#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <climits>

namespace appserver::net {
namespace {

// Waits for events on fd; false on timeout or a poll error.
IoResult wait_for(int fd, short events, double timeout_s, BlockingScope& scope) {
    pollfd pfd{fd, events, 0};
    // Rounded up: a deadline under a millisecond away still waits (poll's 0 would not).
    const int ms = timeout_s <= 0 ? 0 : std::max(1, static_cast<int>(std::ceil(timeout_s * 1000.0)));
    scope.enter();
    int rc;
    do {
        rc = ::poll(&pfd, 1, ms);
    } while (rc < 0 && errno == EINTR);
    scope.leave();
    if (rc == 0) {
        return IoResult::timeout;
    }
    if (rc < 0) {
        return IoResult::error;
    }
    // POLLHUP with POLLIN still lets a reader drain; let the next syscall decide.
    return IoResult::ok;
}

} // namespace

const char* describe(IoResult r) {
    switch (r) {
    case IoResult::ok: return "ok";
    case IoResult::eof: return "connection closed by peer";
    case IoResult::timeout: return "timed out";
    case IoResult::error: return "socket error";
    }
    return "?";
}

IoResult write_all(int fd, iovec* iov, int iovcnt, double timeout_s, BlockingScope& scope) {
    bool deferred = false;
    return write_or_defer(fd, iov, iovcnt, timeout_s, 0, deferred, scope);
}

IoResult write_or_defer(int fd, iovec*& iov, int& iovcnt, double timeout_s,
                        std::size_t defer_limit, bool& deferred, BlockingScope& scope) {
    deferred = false;
    // timeout_s bounds the time without progress, not the whole write: a client that keeps
    // reading, however slowly, gets the whole response (as NGINX's send_timeout), one that
    // stops reading is dropped. (A slow reader does not hold a blocking thread for the end
    // of a finished response: that goes to the event loop, see write_or_defer's callers.)
    const auto patience = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(timeout_s));
    std::chrono::steady_clock::time_point deadline{};
    bool progressed = true; // since the deadline was set: start a new one at the next wait
    while (iovcnt > 0) {
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = static_cast<std::size_t>(iovcnt < IOV_MAX ? iovcnt : IOV_MAX);
        const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (defer_limit > 0) {
                    std::size_t left_bytes = 0;
                    for (int i = 0; i < iovcnt; ++i) {
                        left_bytes += iov[i].iov_len;
                    }
                    if (left_bytes <= defer_limit) {
                        deferred = true;
                        return IoResult::ok;
                    }
                }
                const auto now = std::chrono::steady_clock::now();
                if (progressed) {
                    deadline = now + patience;
                    progressed = false;
                }
                const double left_s = std::chrono::duration<double>(deadline - now).count();
                if (left_s <= 0) {
                    return IoResult::timeout;
                }
                const IoResult w = wait_for(fd, POLLOUT, left_s, scope);
                if (w != IoResult::ok) {
                    return w;
                }
                continue;
            }
            return (errno == EPIPE || errno == ECONNRESET) ? IoResult::eof : IoResult::error;
        }
        if (n > 0) {
            progressed = true;
        }
        auto left = static_cast<std::size_t>(n);
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            ++iov;
            --iovcnt;
        }
        if (iovcnt > 0) {
            iov->iov_base = static_cast<char*>(iov->iov_base) + left;
            iov->iov_len -= left;
        }
    }
    return IoResult::ok;
}

IoResult send_file(int fd, int file_fd, off_t offset, std::size_t count, double timeout_s,
                   BlockingScope& scope) {
    while (count > 0) {
        const std::size_t chunk = count < (std::size_t{1} << 30) ? count : (std::size_t{1} << 30);
        // sendfile may read the file from disk first: a cold read must not stall the
        // caller's other threads, so their lock (the GIL) is dropped for the call itself.
        scope.enter();
        const ssize_t n = ::sendfile(fd, file_fd, &offset, chunk);
        const int err = errno;
        scope.leave();
        errno = err;
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                const IoResult w = wait_for(fd, POLLOUT, timeout_s, scope);
                if (w != IoResult::ok) {
                    return w;
                }
                continue;
            }
            return (errno == EPIPE || errno == ECONNRESET) ? IoResult::eof : IoResult::error;
        }
        if (n == 0) {
            return IoResult::error; // the file is shorter than promised
        }
        count -= static_cast<std::size_t>(n);
    }
    return IoResult::ok;
}

IoResult read_some(int fd, char* buf, std::size_t cap, std::size_t& got, double timeout_s,
                   BlockingScope& scope) {
    got = 0;
    for (;;) {
        const ssize_t n = ::recv(fd, buf, cap, 0);
        if (n > 0) {
            got = static_cast<std::size_t>(n);
            return IoResult::ok;
        }
        if (n == 0) {
            return IoResult::eof;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            const IoResult w = wait_for(fd, POLLIN, timeout_s, scope);
            if (w != IoResult::ok) {
                return w;
            }
            continue;
        }
        return errno == ECONNRESET ? IoResult::eof : IoResult::error;
    }
}

bool peer_closed(int fd) {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
        return true;
    }
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

} // namespace appserver::net
