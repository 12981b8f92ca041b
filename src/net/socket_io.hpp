// Blocking-with-deadline I/O on a non-blocking socket, for the threads that run the app.
// Tries the syscall first and only waits (poll) when the kernel says it would block, so
// the common case costs one syscall and never touches the caller's lock.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>

namespace appserver::net {

// Wraps every wait that may block, so the caller can drop a lock meanwhile (the GIL).
class BlockingScope {
public:
    virtual void enter() noexcept = 0; // about to block
    virtual void leave() noexcept = 0; // done blocking
protected:
    ~BlockingScope() = default;
};

class NoLock final : public BlockingScope {
public:
    void enter() noexcept override {}
    void leave() noexcept override {}
};

enum class IoResult { ok, eof, timeout, error };

const char* describe(IoResult r);

// Writes every byte of iov (which it may modify); timeout when the peer takes nothing
// for timeout_s.
IoResult write_all(int fd, iovec* iov, int iovcnt, double timeout_s, BlockingScope& scope);

// The same, except that when the socket would block with at most defer_limit bytes left
// it stops there: returns ok with deferred set, iov/iovcnt describing what is left.
IoResult write_or_defer(int fd, iovec*& iov, int& iovcnt, double timeout_s,
                        std::size_t defer_limit, bool& deferred, BlockingScope& scope);

// sendfile(2) count bytes of file_fd starting at offset; scope is entered around each
// sendfile call too (it may read the file from disk), not only around waits.
IoResult send_file(int fd, int file_fd, off_t offset, std::size_t count, double timeout_s,
                   BlockingScope& scope);

// Reads 1..cap bytes into buf (got), waiting up to timeout_s for the first byte.
// eof when the peer closed its side.
IoResult read_some(int fd, char* buf, std::size_t cap, std::size_t& got, double timeout_s,
                   BlockingScope& scope);

// Non-blocking look: has the peer closed or reset the connection? (Data pending = no.)
bool peer_closed(int fd);

} // namespace appserver::net
