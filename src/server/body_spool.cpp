// Request body spooling (see body_spool.hpp).
#include "server/body_spool.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace appserver::server {

BodySpool::~BodySpool() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

// O_TMPFILE: the file never has a name, so nothing is left behind whatever ends the
// process. Where the filesystem does not support it, a named file unlinked at once.
bool BodySpool::open_file() {
    const char* env = std::getenv("TMPDIR");
    const std::string dir = env != nullptr && *env != '\0' ? env : "/tmp";
    fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        std::string path = dir + "/appserver-body-XXXXXX";
        fd_ = ::mkostemp(path.data(), O_CLOEXEC);
        if (fd_ >= 0) {
            ::unlink(path.c_str());
        }
    }
    if (fd_ < 0) {
        error_ = "cannot create a temporary file for the request body in " + dir + ": " +
                 std::strerror(errno);
        return false;
    }
    return true;
}

bool BodySpool::append(std::string_view bytes) {
    if (bytes.empty()) {
        return true;
    }
    if (fd_ < 0 && !open_file()) {
        return false;
    }
    while (!bytes.empty()) {
        const ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(size_));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            error_ = std::string("cannot write the request body to its temporary file: ") +
                     std::strerror(errno);
            return false;
        }
        size_ += static_cast<std::uint64_t>(n);
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

bool BodySpool::read(std::uint64_t pos, std::size_t max, std::string& out) {
    out.clear();
    if (pos >= size_ || fd_ < 0) {
        return true;
    }
    const std::uint64_t left = size_ - pos;
    out.resize(left < max ? static_cast<std::size_t>(left) : max);
    std::size_t got = 0;
    while (got < out.size()) {
        const ssize_t n = ::pread(fd_, out.data() + got, out.size() - got,
                                  static_cast<off_t>(pos + got));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            out.resize(got);
            error_ = std::string("cannot read the request body back from its temporary file: ") +
                     (n < 0 ? std::strerror(errno) : "file shorter than written");
            return false;
        }
        got += static_cast<std::size_t>(n);
    }
    return true;
}

} // namespace appserver::server
