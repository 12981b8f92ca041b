// A request body read whole before the application is called (--request-buffering on), in
// an unlinked temporary file: what NGINX does with request bodies larger than its memory
// buffer. Written on the event loop as the body arrives, read back by the app's thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace appserver::server {

class BodySpool {
public:
    BodySpool() = default;
    BodySpool(const BodySpool&) = delete;
    BodySpool& operator=(const BodySpool&) = delete;
    ~BodySpool();

    // Appends bytes, creating the file on first use (in $TMPDIR, else /tmp). False with
    // error() set when the file cannot be created or written (disk full).
    bool append(std::string_view bytes);
    std::uint64_t size() const { return size_; }
    // Replaces out with up to max bytes from offset pos; false with error() set on a read
    // error. Empty out at the end.
    bool read(std::uint64_t pos, std::size_t max, std::string& out);
    const std::string& error() const { return error_; }

private:
    bool open_file();

    int fd_ = -1;
    std::uint64_t size_ = 0;
    std::string error_;
};

} // namespace appserver::server
