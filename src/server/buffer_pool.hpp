// Read buffers for one worker's connections, used on its event loop thread only. A
// connection holds a buffer while it has bytes to parse or a request in progress; an idle
// keep-alive connection holds none, so thousands of them do not cost a buffer each.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace appserver::server {

class BufferPool {
public:
    using Buffer = std::unique_ptr<char[]>;

    // keep: free buffers kept for reuse (the next burst finds them warm); more go back to
    // the allocator.
    BufferPool(std::size_t buffer_size, std::size_t keep) : size_(buffer_size), keep_(keep) {
        free_.reserve(keep);
    }
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;

    std::size_t buffer_size() const { return size_; }
    std::size_t free_count() const { return free_.size(); }

    Buffer take() {
        if (free_.empty()) {
            return Buffer(new char[size_]);
        }
        Buffer b = std::move(free_.back());
        free_.pop_back();
        return b;
    }

    void give(Buffer b) {
        if (b && free_.size() < keep_) {
            free_.push_back(std::move(b));
        }
    }

private:
    std::size_t size_;
    std::size_t keep_;
    std::vector<Buffer> free_;
};

} // namespace appserver::server
