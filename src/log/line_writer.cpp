// The buffered line writer (see line_writer.hpp): a bounded double buffer, one writer
// thread, pipe-atomic writes, logrotate-style reopen.
#include "log/line_writer.hpp"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <mutex>

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

namespace appserver::log {

struct LineWriter::State {
    std::mutex mutex;
    std::condition_variable wake;    // the writer thread waits here for lines or requests
    std::condition_variable written; // flush() waits here for the writer's progress
    // Held by whoever writes: the writer thread for its whole life, else a flush().
    std::mutex io_mutex;
    std::string pending; // pushed, not yet taken by a writer (guarded by mutex)
    std::string writing; // the batch being written (guarded by io_mutex)
    // Byte offsets in the stream of everything ever pushed (dropped lines excluded).
    std::uint64_t appended = 0;  // end of pending
    std::uint64_t completed = 0; // taken and written (or lost to a write error)
    std::uint64_t reopen_offset = 0;
    bool reopen_requested = false;
    bool wake_pending = false;   // a push has notified since the last batch was taken
    bool half_signalled = false; // ... and so has one that filled half the buffer
    bool urgent = false;         // flush() or stop() wants the lines now, not after the window
    bool stopping = false;
    bool running = false;
};

namespace {

bool writes_must_be_line_atomic(int fd) {
    // Several processes write the same pipe (or socket, e.g. journald's): only writes of
    // at most PIPE_BUF bytes are guaranteed not to interleave with theirs.
    struct stat st{};
    return ::fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

std::size_t count_lines(std::string_view bytes) {
    auto n = static_cast<std::size_t>(std::count(bytes.begin(), bytes.end(), '\n'));
    if (!bytes.empty() && bytes.back() != '\n') {
        ++n; // an unterminated tail is a line too
    }
    return n;
}

} // namespace

std::unique_ptr<LineWriter> LineWriter::open_path(const std::string& path, std::string& error,
                                                  std::size_t capacity) {
    if (path == "-") {
        return std::make_unique<LineWriter>(STDOUT_FILENO, false, path, capacity);
    }
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = "cannot open access log " + path + ": " + std::strerror(errno);
        return nullptr;
    }
    return std::make_unique<LineWriter>(fd, true, path, capacity);
}

std::unique_ptr<LineWriter> LineWriter::for_fd(int fd, std::size_t capacity) {
    return std::make_unique<LineWriter>(fd, false, std::string(), capacity);
}

LineWriter::LineWriter(int fd, bool owns_fd, std::string path, std::size_t capacity)
    : fd_(fd), owns_fd_(owns_fd), path_(std::move(path)), capacity_(capacity),
      is_pipe_(writes_must_be_line_atomic(fd)), state_(std::make_unique<State>()) {
    state_->pending.reserve(capacity_);
    state_->writing.reserve(capacity_);
}

LineWriter::~LineWriter() {
    if (foreign()) {
        // Forked copy of a started writer: its thread lives in the parent only, and the
        // condition variables may count that thread as a waiter (destroying them would
        // wait for it forever). Leak the lot.
        (void)state_.release();
        (void)thread_.release();
    } else {
        stop();
    }
    if (owns_fd_) {
        ::close(fd_);
    }
}

bool LineWriter::foreign() const {
    return owner_pid_ != 0 && owner_pid_ != ::getpid();
}

void LineWriter::start() {
    State& s = *state_;
    {
        std::lock_guard lock(s.mutex);
        if (s.running) {
            return; // already started (in a forked copy, by the parent: see ~LineWriter)
        }
        s.running = true;
        s.stopping = false;
    }
    owner_pid_ = ::getpid();
    // The thread starts with every signal blocked, so process-directed signals go to the
    // threads that handle them and never interrupt a write here.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    thread_ = std::make_unique<std::thread>([this] { run(); });
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    pthread_setname_np(thread_->native_handle(), "log writer");
}

bool LineWriter::push(std::string_view lines) noexcept {
    if (lines.empty()) {
        return true;
    }
    State& s = *state_;
    bool accepted = false;
    bool notify = false;
    {
        std::lock_guard lock(s.mutex);
        if (lines.size() <= capacity_ - s.pending.size()) {
            s.pending.append(lines); // within the reserved capacity: no allocation
            s.appended += lines.size();
            accepted = true;
            // One wake-up per batch; a second one only to cut the batch window short when
            // the buffer is half full.
            if (!s.wake_pending) {
                s.wake_pending = true;
                notify = true;
            } else if (!s.half_signalled && s.pending.size() >= capacity_ / 2) {
                s.half_signalled = true;
                notify = true;
            }
        }
    }
    if (notify) {
        s.wake.notify_one();
    }
    if (!accepted) {
        count_dropped(lines);
    }
    return accepted;
}

void LineWriter::count_dropped(std::string_view lines) noexcept {
    const std::size_t n = count_lines(lines);
    dropped_.fetch_add(n, std::memory_order_relaxed);
    if (auto* counter = drop_counter_.load(std::memory_order_acquire); counter != nullptr) {
        counter->fetch_add(n, std::memory_order_relaxed);
    }
}

void LineWriter::flush() {
    if (foreign()) {
        return; // nobody in this process can write for it
    }
    State& s = *state_;
    std::unique_lock lock(s.mutex);
    if (s.running) {
        const std::uint64_t target = s.appended;
        if (s.completed >= target) {
            return;
        }
        s.urgent = true;
        s.wake.notify_one();
        s.written.wait(lock, [&] { return s.completed >= target || !s.running; });
        return;
    }
    lock.unlock();
    // No writer thread: write on this one. (A writer thread started meanwhile holds
    // io_mutex until it stops, and then has written everything.)
    std::lock_guard io(s.io_mutex);
    lock.lock();
    if (!s.pending.empty() || s.reopen_requested) {
        drain(lock);
    }
}

void LineWriter::stop() {
    if (foreign()) {
        return;
    }
    State& s = *state_;
    {
        std::lock_guard lock(s.mutex);
        if (!s.running || s.stopping) {
            // Never started, or another thread is stopping it.
        } else {
            s.stopping = true;
            s.urgent = true;
            s.wake.notify_one();
        }
    }
    if (thread_ != nullptr && thread_->joinable()) {
        thread_->join();
        thread_.reset();
        std::lock_guard lock(s.mutex);
        s.running = false;
        s.stopping = false;
        s.written.notify_all();
    }
    flush(); // lines pushed while the thread was stopping
}

void LineWriter::reopen() {
    if (!owns_fd_ || foreign()) {
        return;
    }
    State& s = *state_;
    {
        std::lock_guard lock(s.mutex);
        if (!s.reopen_requested) {
            s.reopen_requested = true;
            s.reopen_offset = s.appended;
        }
        if (s.running) {
            s.wake.notify_one();
            return;
        }
    }
    flush();
}

void LineWriter::run() {
    State& s = *state_;
    std::lock_guard io(s.io_mutex);
    std::unique_lock lock(s.mutex);
    const std::size_t half = capacity_ / 2;
    for (;;) {
        s.wake.wait(lock, [&] {
            return s.stopping || s.urgent || s.reopen_requested || !s.pending.empty();
        });
        if (!s.urgent && s.pending.size() < half) {
            // Let the batch grow: one write(2) for everything that comes in the window.
            s.wake.wait_for(lock, batch_window,
                            [&] { return s.urgent || s.pending.size() >= half; });
        }
        s.urgent = false;
        const bool stopping = s.stopping;
        drain(lock);
        if (stopping) {
            return;
        }
    }
}

// Takes the pending lines and writes them; called with `lock` (on mutex) and io_mutex
// held, returns with both held. The mutex is released during the writes, so pushes go on.
void LineWriter::drain(std::unique_lock<std::mutex>& lock) {
    State& s = *state_;
    s.pending.swap(s.writing);
    s.wake_pending = false;
    s.half_signalled = false;
    const bool reopen = s.reopen_requested;
    const std::size_t reopen_at = reopen ? s.reopen_offset - s.completed : 0;
    s.reopen_requested = false;
    lock.unlock();

    std::string_view batch(s.writing);
    if (reopen) {
        write_out(batch.substr(0, reopen_at));
        reopen_now();
        batch.remove_prefix(reopen_at);
    }
    write_out(batch);
    const std::size_t n = s.writing.size();
    s.writing.clear();

    lock.lock();
    s.completed += n;
    s.written.notify_all();
}

void LineWriter::write_out(std::string_view data) {
    if (!is_pipe_) {
        write_chunk(data);
        return;
    }
    // Whole lines, at most PIPE_BUF bytes a write (a longer line alone, whole).
    while (!data.empty()) {
        std::size_t end = 0;
        while (end < data.size()) {
            const std::size_t nl = data.find('\n', end);
            const std::size_t line_end = nl == std::string_view::npos ? data.size() : nl + 1;
            if (end != 0 && line_end > PIPE_BUF) {
                break;
            }
            end = line_end;
        }
        write_chunk(data.substr(0, end));
        data.remove_prefix(end);
    }
}

void LineWriter::write_chunk(std::string_view chunk) {
    std::size_t done = 0;
    while (done < chunk.size()) {
        const ssize_t n = ::write(fd_, chunk.data() + done, chunk.size() - done);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // A non-blocking fd inherited from whoever started us: this thread may wait.
            pollfd p{fd_, POLLOUT, 0};
            ::poll(&p, 1, -1);
            continue;
        }
        // EPIPE, ENOSPC, EIO...: the lines are lost, the process goes on.
        count_dropped(chunk.substr(done));
        return;
    }
}

void LineWriter::reopen_now() {
    // The new file is opened before the old one is let go, and takes the same fd number,
    // so a failed open leaves the log where it was.
    const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || ::dup3(fd, fd_, O_CLOEXEC) < 0) {
        const std::string message = "appserver: cannot reopen " + path_ + ": " +
                                    std::strerror(errno) + "; still writing the old file\n";
        if (fd >= 0) {
            ::close(fd);
        }
        // This thread may block: tell whoever reads stderr, directly.
        [[maybe_unused]] const ssize_t ignored =
            ::write(STDERR_FILENO, message.data(), message.size());
        return;
    }
    ::close(fd);
    is_pipe_ = writes_must_be_line_atomic(fd_);
}

} // namespace appserver::log
