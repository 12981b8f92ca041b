// Log lines written off the hot threads: callers append complete lines to a bounded
// buffer under a short mutex, one writer thread per process does the write(2) calls.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace appserver::log {

class LineWriter {
public:
    static constexpr std::size_t default_capacity = 4 * 1024 * 1024;
    // How long the writer lets lines accumulate after the first one of a batch wakes it
    // (one write(2) for many lines), unless flush() or stop() want them now.
    static constexpr std::chrono::milliseconds batch_window{20};

    // "-" is stdout (not owned, never reopened); any other path is opened for appending
    // (created 0644). nullptr and `error` set when it cannot be opened.
    static std::unique_ptr<LineWriter> open_path(const std::string& path, std::string& error,
                                                 std::size_t capacity = default_capacity);
    // An fd this writer does not own (stderr): never closed nor reopened.
    static std::unique_ptr<LineWriter> for_fd(int fd, std::size_t capacity = default_capacity);

    // `path` is what reopen() opens again when `owns_fd`; both buffers (capacity bytes
    // each) are reserved here so that push() never allocates.
    LineWriter(int fd, bool owns_fd, std::string path, std::size_t capacity = default_capacity);
    // stop(); but a writer whose thread was started by another process (this one is a
    // forked copy) is leaked on purpose: its mutex and condition variables may be in a
    // state that only the parent's thread could end, and destroying them could hang.
    ~LineWriter();

    LineWriter(const LineWriter&) = delete;
    LineWriter& operator=(const LineWriter&) = delete;

    // Starts the writer thread. Call it in the process that writes (after fork): a
    // forked child does not inherit threads.
    void start();

    // Appends one or more complete lines ('\n'-terminated); any thread. Never blocks on
    // I/O: when the buffer would exceed its capacity the lines are dropped and counted,
    // and false is returned.
    bool push(std::string_view lines) noexcept;

    // Returns once everything pushed before the call has been written (or failed to be).
    // Without a writer thread (never started, or stopped) it writes on the caller's thread.
    void flush();

    // Flushes and joins the writer thread; pushes after it are written by flush() or the
    // destructor on the caller's thread.
    void stop();

    // Asks for the path to be opened again (logrotate moved the file): lines pushed before
    // the call go to the old file, later ones to the new one; none is lost. The writer
    // thread does it (on the caller's thread when there is none). A no-op for fds this
    // writer does not own. Takes a mutex: not for a raw signal handler.
    void reopen();

    // Lines lost so far: dropped on a full buffer or lost to a failed write (EPIPE, ENOSPC).
    std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

    // Also counts every dropped line into `counter` (shared memory read by the metrics
    // endpoint); nullptr stops that.
    void set_drop_counter(std::atomic<std::uint64_t>* counter) noexcept {
        drop_counter_.store(counter, std::memory_order_release);
    }

    int fd() const noexcept { return fd_; }
    std::size_t capacity() const noexcept { return capacity_; }

private:
    struct State;

    void run();
    void drain(std::unique_lock<std::mutex>& lock);
    void write_out(std::string_view data);
    void write_chunk(std::string_view chunk);
    void reopen_now();
    void count_dropped(std::string_view lines) noexcept;
    bool foreign() const;

    const int fd_;
    const bool owns_fd_;
    const std::string path_;
    const std::size_t capacity_;
    // Only the thread holding io_mutex touches this (the writer thread, or a flush() on
    // the caller's thread when there is none).
    bool is_pipe_ = false;
    std::atomic<std::uint64_t> dropped_{0};
    std::atomic<std::atomic<std::uint64_t>*> drop_counter_{nullptr};
    // Heap-allocated so a forked copy can leak it whole (see the destructor).
    std::unique_ptr<State> state_;
    std::unique_ptr<std::thread> thread_;
    int owner_pid_ = 0; // the process that started thread_
};

} // namespace appserver::log
