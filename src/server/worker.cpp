// Worker process main loop (see worker.hpp).
#include "server/worker.hpp"

#include "log/access_log.hpp"
#include "log/log.hpp"
#include "log/throttle.hpp"
#include "server/connection.hpp"
#include "server/master.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <system_error>
#include <thread>

namespace appserver::server {
namespace {

namespace asio = boost::asio;

// Called on the event-loop thread once the blocking threads exist (they keep the normal
// policy). Under the normal policy a thread woken by I/O preempts the running one, so
// when the loop and an app thread share a core, every request that arrives interrupts the
// app mid-call: two context switches per request, each handling a single event. As
// SCHED_BATCH the loop still runs at once on an idle core and gets its fair share of a
// busy one, but it waits for the app thread to block or for the scheduler tick, and then
// handles every ready connection in one wake-up. Measured with one worker on one core
// (docs/benchmarks.md): +40 % requests/s on hello and +26 % on json with one blocking
// thread, no change in p99 at a fixed rate. Needs no privilege; if a sandbox refuses it
// the loop keeps the normal policy.
void batch_schedule_event_loop(unsigned worker_index) {
    sched_param param{};
    if (::sched_setscheduler(0, SCHED_BATCH, &param) != 0) {
        spdlog::debug("worker {}: event loop keeps the normal scheduling policy: {}",
                      worker_index, std::strerror(errno));
    }
}

void describe_peer(const asio::generic::stream_protocol::endpoint& ep, std::string& addr,
                   std::uint16_t& port) {
    const sockaddr* sa = ep.data();
    char buf[INET6_ADDRSTRLEN] = {};
    if (sa->sa_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        port = ntohs(in->sin_port);
        addr = buf;
    } else if (sa->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
        port = ntohs(in6->sin6_port);
        addr = buf;
    } else {
        addr.clear(); // unix socket peers have no address
        port = 0;
    }
}

using metrics::to_ns;

std::uint64_t thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

} // namespace

Worker::Worker(const Config& config, const net::ListenSocket& listener, Application& app,
               unsigned index)
    : config_(config), app_(app), index_(index), family_(listener.family), io_(1),
      acceptor_(io_), signals_(io_), sweep_timer_(io_), grace_timer_(io_),
      accept_retry_timer_(io_), cork_timer_(io_), backlog_(config.request_queue_size) {
    if (app.runs_inline()) {
        inline_app_ = &app;
    }
    // Counters: the slot the master gave this worker, or a private one (no master).
    metrics::StatsPage* page = shared_stats_page();
    slot_ = own_stats_slot();
    if (slot_ == nullptr || page == nullptr || page->threads() < config.blocking_threads) {
        private_slot_ = std::make_unique<metrics::WorkerSlot>();
        private_lines_ = std::make_unique<metrics::ThreadLine[]>(config.blocking_threads);
        slot_ = private_slot_.get();
        for (unsigned i = 0; i < config.blocking_threads; ++i) {
            thread_lines_.push_back(&private_lines_[i]);
        }
    } else {
        for (unsigned i = 0; i < config.blocking_threads; ++i) {
            thread_lines_.push_back(&page->thread_line(own_stats_slot_index(), i));
        }
    }
    running_since_ = std::make_unique<std::atomic<std::int64_t>[]>(config.blocking_threads);
    slot_->queue_capacity.store(config.request_queue_size, std::memory_order_relaxed);
    slot_->blocking_threads.store(app.runs_inline() ? 0 : config.blocking_threads,
                                  std::memory_order_relaxed);
    backlog_.mirror_depth(&slot_->queue_depth);
    // Request ids: a random prefix per worker start, then a sequence number.
    std::uint64_t seed = 0;
    if (::getrandom(&seed, sizeof seed, 0) != sizeof seed) {
        seed = static_cast<std::uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ULL ^
               static_cast<std::uint64_t>(
                   std::chrono::steady_clock::now().time_since_epoch().count());
    }
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) {
        request_id_prefix_[i] = hex[(seed >> (60 - 4 * i)) & 0xf];
    }
    if (config.max_requests > 0) {
        // Each worker its own share of the jitter, so workers started together are not all
        // replaced together (the seed is random per worker start).
        recycle_after_ = config.max_requests +
                         (config.max_requests_jitter > 0
                              ? (seed >> 1) % (config.max_requests_jitter + 1)
                              : 0);
    }
    backlog_.set_contention(app.contention());
    if (listener.family == AF_UNIX) {
        server_info_.name = "localhost";
        server_info_.port = "";
        server_info_.unix_socket = true;
    } else {
        server_info_.name = listener.host;
        server_info_.port = std::to_string(listener.port);
    }
    const int protocol = listener.family == AF_UNIX ? 0 : IPPROTO_TCP;
    acceptor_.assign(asio::generic::stream_protocol(listener.family, protocol), listener.fd);
    // accept4 on a listening socket the workers share must not block when another worker
    // took the connection first (see do_accept).
    acceptor_.non_blocking(true);
}

Worker::~Worker() {
    for (auto& t : threads_) {
        if (t.joinable()) {
            t.detach();
        }
    }
}

// The master starts a successor and, once it serves, asks this worker to drain; until
// then this one goes on serving. reason: 1 --max-requests, 2 a thread written off.
void Worker::ask_for_replacement(std::uint32_t reason) {
    if (reason == 1) {
        spdlog::info("worker {}: served {} requests (--max-requests {}, jitter {}): asking the "
                     "master for a replacement",
                     index_, requests_done_, config_.max_requests, config_.max_requests_jitter);
    }
    std::uint32_t none = 0;
    slot_->recycle.compare_exchange_strong(none, reason, std::memory_order_acq_rel);
}

void Worker::report_timeout(std::uint64_t thread, unsigned thread_index, std::int64_t started,
                            const std::string& what) {
    {
        std::lock_guard lock(watchdog_mutex_);
        watchdog_jobs_.push_back({thread, thread_index, started, what});
    }
    watchdog_wake_.notify_one();
}

void Worker::write_off_thread(std::uint64_t thread, const std::string& what) {
    (void)thread;
    spdlog::error("worker {}: a blocking thread is still stuck in the application {}s after "
                  "its request timed out ({}): writing it off; this worker takes no more "
                  "connections and a replacement is started",
                  index_, config_.request_timeout, what);
    written_off_ = true;
    pause_accepting();
    ask_for_replacement(2);
}

// Takes the GIL (or whatever the application needs) to log a stuck thread's stack and
// interrupt it: work the event loop must never wait for.
void Worker::watchdog_main() {
    std::unique_lock lock(watchdog_mutex_);
    for (;;) {
        watchdog_wake_.wait(lock, [this] { return watchdog_stop_ || !watchdog_jobs_.empty(); });
        if (watchdog_jobs_.empty()) {
            return; // stopping
        }
        auto jobs = std::move(watchdog_jobs_);
        watchdog_jobs_.clear();
        lock.unlock();
        for (const auto& job : jobs) {
            app_.interrupt(job.thread, job.what, [this, &job] {
                return running_since_[job.index].load(std::memory_order_relaxed) == job.started;
            });
        }
        lock.lock();
    }
}

void Worker::make_request_id(RequestId& out) {
    // Every request without an X-Request-ID of its own comes here: the prefix, then the
    // sequence number in hex, two digits per table lookup.
    static constexpr auto pairs = [] {
        std::array<char, 512> t{};
        constexpr char hex[] = "0123456789abcdef";
        for (int i = 0; i < 256; ++i) {
            t[2 * i] = hex[i >> 4];
            t[2 * i + 1] = hex[i & 0xf];
        }
        return t;
    }();
    char id[32];
    std::memcpy(id, request_id_prefix_, 16);
    std::uint64_t n = ++request_id_sequence_;
    for (int i = 30; i >= 16; i -= 2) {
        std::memcpy(id + i, &pairs[2 * (n & 0xff)], 2);
        n >>= 8;
    }
    out.assign({id, sizeof id});
}

int Worker::run() {
    // An exception here must not unwind past the threads this started (~Worker detaches
    // them, and they would use what the unwinding frees): the worker ends here.
    try {
        return serve();
    } catch (...) {
        exit_worker_on_exception(index_, "while serving");
    }
}

int Worker::serve() {
    if (!config_.access_log.empty()) {
        // Opened by each worker (O_APPEND: the workers' lines never overwrite each other);
        // the master checked at start-up that it can be opened.
        std::string error;
        auto writer = log::LineWriter::open_path(config_.access_log, error);
        std::string format_error;
        auto format = log::AccessLogFormat::compile(config_.access_log_format, format_error);
        if (writer == nullptr || !format) {
            spdlog::error("worker {}: {}", index_, writer == nullptr ? error : format_error);
            return 1;
        }
        writer->set_drop_counter(&slot_->cumulative[metrics::idx::access_log_dropped]);
        access_log_ = std::make_unique<log::AccessLog>(std::move(writer), std::move(*format));
        access_log_->start();
    }
    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGQUIT);
    signals_.add(SIGHUP);
    // Meant for the master (resize); to a worker their default action would suspend it.
    signals_.add(SIGTTIN);
    signals_.add(SIGTTOU);
    // USR1/USR2 sent to the whole process group (pkill, logrotate) must not kill workers,
    // unless the app installed its own handler at import (faulthandler.register, say):
    // that one stays.
    for (int s : {SIGUSR1, SIGUSR2}) {
        struct sigaction current {};
        if (::sigaction(s, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
            signals_.add(s);
        }
    }
    signals_.add(stop_now_signal());
    wait_for_signal();
    // Signals stayed blocked since the fork so none could arrive before these handlers.
    // Unblock them before any thread starts: threads inherit the mask, and so does every
    // process the app spawns from them (a child with SIGTERM blocked cannot be stopped).
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGTTIN,
                  SIGTTOU, stop_now_signal()}) {
        sigaddset(&mask, s);
    }
    ::pthread_sigmask(SIG_UNBLOCK, &mask, nullptr);
    const unsigned thread_count = inline_app_ != nullptr ? 0 : config_.blocking_threads;
    threads_.reserve(thread_count);
    for (unsigned i = 0; i < thread_count; ++i) {
        corks_.push_back(std::make_unique<ResponseCork>());
    }
    for (unsigned i = 0; i < thread_count; ++i) {
        threads_.emplace_back([this] {
            try {
                blocking_thread_main();
            } catch (...) { // not std::terminate's abort: a logged reason
                exit_worker_on_exception(index_, "in a blocking thread");
            }
        });
    }
    if (config_.request_timeout > 0 && thread_count > 0) {
        watchdog_ = std::thread([this] {
            try {
                watchdog_main();
            } catch (...) {
                exit_worker_on_exception(index_, "in the watchdog thread");
            }
        });
    }
    batch_schedule_event_loop(index_);
    do_accept();
    do_sweep();
    spdlog::info("worker {} ready ({} blocking thread(s), request queue {})", index_,
                 config_.blocking_threads, config_.request_queue_size);
    report_worker_ready();
    io_.run();

    backlog_.close();
    if (watchdog_.joinable()) {
        {
            std::lock_guard lock(watchdog_mutex_);
            watchdog_stop_ = true;
        }
        watchdog_wake_.notify_one();
        if (forced_) {
            watchdog_.detach(); // it may be waiting for a GIL a stuck thread holds
        } else {
            watchdog_.join();
        }
    }
    if (access_log_ != nullptr) {
        access_log_->flush();
    }
    if (forced_) {
        if (stopped_now_) {
            spdlog::warn("worker {}: asked to stop now; exiting with requests in flight",
                         index_);
        } else {
            spdlog::warn("worker {}: graceful timeout ({}s) expired with requests in flight; "
                         "exiting anyway",
                         index_, config_.graceful_timeout);
        }
        return 1;
    }
    for (auto& t : threads_) {
        t.join();
    }
    threads_.clear();
    report_shed_requests(std::chrono::steady_clock::now(), true);
    spdlog::info("worker {} stopped", index_);
    return 0;
}

void Worker::wait_for_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
        if (ec) {
            return;
        }
        if (sig == SIGUSR1 && access_log_ != nullptr) {
            // logrotate moved the file: open the path again (the master forwards its USR1).
            spdlog::info("worker {}: reopening the access log {}", index_, config_.access_log);
            access_log_->reopen();
            wait_for_signal();
            return;
        }
        if (sig == SIGHUP || sig == SIGUSR1 || sig == SIGUSR2 || sig == SIGTTIN ||
            sig == SIGTTOU) {
            // The master owns reloads; these, sent to the whole process group (pkill,
            // logrotate), are ignored rather than killing the worker.
            spdlog::info("worker {}: signal {} ignored", index_, sig);
            wait_for_signal();
            return;
        }
        if (sig == stop_now_signal()) {
            // The master got a second signal: stop now.
            forced_ = true;
            stopped_now_ = true;
            io_.stop();
            return;
        }
        // A graceful stop; a repeat (the master forwarding the SIGTERM or SIGINT this worker
        // already got from a signal to the process group) changes nothing.
        begin_shutdown(sig);
        wait_for_signal();
    });
}

void Worker::hand_back(std::shared_ptr<Connection> connection) {
    bool first = false;
    {
        std::lock_guard lock(done_mutex_);
        first = done_.empty();
        done_.push_back(std::move(connection));
    }
    // One wake-up of the loop per burst: only the push that finds the list empty posts;
    // the loop takes the whole list at once. Nothing waits behind another request.
    if (first) {
        asio::post(io_, [this] { drain_done(); });
    }
}

void Worker::drain_done() {
    {
        std::lock_guard lock(done_mutex_);
        done_.swap(draining_done_);
    }
    for (auto& c : draining_done_) {
        c->on_exchange_done();
    }
    draining_done_.clear();
    resume_accepting_if_room();
}

// accept4 rather than Asio's accept, which sets no close-on-exec flag: a client's socket
// is close-on-exec from its first instant, so a process the app starts (subprocess,
// os.system) on another thread never inherits a connection, and the worker's close of it
// is the one that ends it. Accepts while connections are waiting (a batch, then the other
// handlers get a turn), waits for readability only once the kernel queue is empty.
void Worker::do_accept() {
    if (accept_armed_ || accept_paused_ || draining()) {
        return;
    }
    for (int taken = 0; taken < 64; ++taken) {
        if (accept_paused_ || draining()) { // a connection's first request filled the queue
            return;
        }
        sockaddr_storage peer{};
        socklen_t peer_len = sizeof peer;
        const int fd = ::accept4(acceptor_.native_handle(), reinterpret_cast<sockaddr*>(&peer),
                                 &peer_len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            take_connection(fd, peer, peer_len);
            continue;
        }
        const int err = errno;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO) {
            continue; // that client left before it was taken
        }
        if (err == EAGAIN || err == EWOULDBLOCK) { // none left (or another worker took it)
            wait_for_connection();
            return;
        }
        // Out of descriptors or memory: back off briefly instead of spinning.
        spdlog::error("accept: {}", std::strerror(err));
        retry_accept_later();
        return;
    }
    accept_armed_ = true;
    asio::post(io_, [this] {
        accept_armed_ = false;
        do_accept();
    });
}

void Worker::wait_for_connection() {
    accept_armed_ = true;
    acceptor_.async_wait(asio::socket_base::wait_read, [this](const boost::system::error_code& ec) {
        accept_armed_ = false;
        if (ec == asio::error::operation_aborted) {
            do_accept(); // cancelled by a pause that may already be over
            return;
        }
        if (ec) {
            if (draining()) {
                return;
            }
            spdlog::error("accept: {}", ec.message());
            retry_accept_later();
            return;
        }
        do_accept();
    });
}

void Worker::retry_accept_later() {
    accept_retry_timer_.expires_after(std::chrono::milliseconds(100));
    accept_retry_timer_.async_wait([this](const boost::system::error_code& e) {
        if (!e) {
            do_accept();
        }
    });
}

void Worker::take_connection(int fd, const sockaddr_storage& peer, socklen_t peer_len) {
    asio::generic::stream_protocol::socket socket(io_);
    boost::system::error_code ec;
    socket.assign(asio::generic::stream_protocol(family_, family_ == AF_UNIX ? 0 : IPPROTO_TCP),
                  fd, ec);
    if (ec) {
        ::close(fd);
        spdlog::error("accept: {}", ec.message());
        return;
    }
    metrics::bump(slot_->cumulative[metrics::idx::connections_accepted]);
    std::string addr;
    std::uint16_t port = 0;
    describe_peer(asio::generic::stream_protocol::endpoint(&peer, peer_len), addr, port);
    auto conn = std::make_shared<Connection>(*this, std::move(socket), std::move(addr), port);
    connections_.emplace(conn.get(), conn);
    slot_->connections_open.store(connections_.size(), std::memory_order_relaxed);
    conn->start();
}

// While the request queue is full, a new connection's request could only get a 503, so
// stop taking connections: they wait in the listen backlog, or another worker (sharing
// the listening socket) takes them. Requests on connections already open still get 503.
void Worker::pause_accepting() {
    if (accept_paused_ || draining()) {
        return;
    }
    accept_paused_ = true;
    resume_wanted_.store(true, std::memory_order_relaxed);
    boost::system::error_code ignored;
    acceptor_.cancel(ignored);
    spdlog::debug("worker {}: request queue full, not accepting connections", index_);
}

void Worker::resume_accepting_if_room() {
    if (!accept_paused_ || written_off_) {
        return;
    }
    if (backlog_.depth() >= backlog_.capacity()) {
        resume_wanted_.store(true, std::memory_order_relaxed); // ask again at the next pop
        return;
    }
    accept_paused_ = false;
    stuck_pause_ = false;
    resume_wanted_.store(false, std::memory_order_relaxed);
    spdlog::debug("worker {}: request queue has room, accepting again", index_);
    do_accept();
}

// One warning per burst of refusals rather than one per request: an overload must not
// also flood the log. The first refusal after a quiet spell is logged at once; the rest
// are counted and reported by the sweep (report_shed_requests) once 10 s have passed.
void Worker::note_rejected(const std::string& remote_addr) {
    metrics::bump(slot_->cumulative[metrics::idx::queue_rejected]);
    ++rejected_since_warning_;
    last_rejected_addr_ = remote_addr;
    report_shed_requests(std::chrono::steady_clock::now(), false);
}

void Worker::report_shed_requests(std::chrono::steady_clock::time_point now, bool final) {
    if (rejected_since_warning_ > 0 && (final || now - last_full_warning_ >= shed_log_period)) {
        spdlog::warn("worker {}: request queue full ({} waiting): answered 503 to {} request(s) "
                     "since the last warning, latest from {}",
                     index_, config_.request_queue_size, rejected_since_warning_,
                     last_rejected_addr_);
        last_full_warning_ = now;
        rejected_since_warning_ = 0;
    }
    // Expired requests are answered by the loop (expire_queued) and by blocking threads
    // (one taken just as it expired, counted when it comes back): the counter covers both.
    const std::uint64_t expired =
        slot_->cumulative[metrics::idx::queue_expired].load(std::memory_order_relaxed);
    if (expired > expired_reported_ &&
        (final || now - last_expired_warning_ >= shed_log_period)) {
        spdlog::warn("worker {}: answered 503 to {} request(s) that waited over {}s for a "
                     "blocking thread (--request-queue-timeout) since the last warning: the "
                     "{} blocking thread(s) are not keeping up, or are stuck in the app{}",
                     index_, expired - expired_reported_, config_.request_queue_timeout,
                     config_.blocking_threads,
                     stuck_pause_ ? "; other workers take new connections meanwhile" : "");
        last_expired_warning_ = now;
        expired_reported_ = expired;
    }
    const std::uint64_t left_out = final ? log::client_events().take_all_left_out()
                                         : log::client_events().take_left_out();
    if (left_out > 0) {
        spdlog::info("worker {}: {} more line(s) about bad requests, timeouts or cut-off "
                     "responses were left out (at most 20 are logged per 10 s)",
                     index_, left_out);
    }
}

// Requests that waited in the queue past --request-queue-timeout are answered 503 by the
// loop, whether or not a thread ever frees up: with every thread stuck in the app, the
// clients would otherwise wait in silence. With other workers to go to, this one also
// stops accepting until a thread takes a request again.
void Worker::expire_queued(Connection::clock::time_point now) {
    if (inline_app_ != nullptr) {
        return;
    }
    const auto limit = now - std::chrono::duration_cast<Connection::clock::duration>(
                                 std::chrono::duration<double>(config_.request_queue_timeout));
    expired_.clear();
    backlog_.take_front_while(
        [limit](const std::shared_ptr<Connection>& c) { return c->queued_at() < limit; },
        expired_);
    if (expired_.empty()) {
        return;
    }
    for (auto& conn : expired_) {
        metrics::bump(slot_->cumulative[metrics::idx::queue_expired]);
        metrics::observe(*slot_, metrics::idx::queue_wait, metrics::queue_wait_bounds,
                         to_ns(now - conn->queued_at()));
        conn->answer_expired();
    }
    expired_.clear();
    if (config_.workers > 1) {
        // Also when accepting was already paused because the queue was full: that pause
        // would otherwise last until a thread takes a request, which a stuck worker never
        // does.
        if (!accept_paused_) {
            pause_accepting();
        }
        if (!stuck_pause_) {
            stuck_pause_ = true;
            // Not for longer than a request may wait: if every worker is stuck, nobody else
            // takes the new connections, and they must still get their 503 in time.
            stuck_pause_until_ =
                now + std::chrono::duration_cast<Connection::clock::duration>(
                          std::chrono::duration<double>(config_.request_queue_timeout / 2));
        }
    } else {
        // The only worker: nobody else answers new clients, so take them in (the queue has
        // room again) to answer them, with 503 if the threads stay stuck.
        resume_accepting_if_room();
    }
}

// After a burst of connections has gone (their read buffers and state freed), hand the
// freed heap back to the kernel: glibc keeps it otherwise, and the worker's RSS would stay
// at its peak. Only after a large drop, so the cost (a walk over the heap) stays rare.
void Worker::return_memory_after_burst() {
    const std::size_t now_open = connections_.size();
    peak_connections_ = std::max(peak_connections_, now_open);
    if (peak_connections_ >= trim_after_connections && now_open <= peak_connections_ / 4) {
#ifdef __GLIBC__
        // Trimming walks every arena and returns pages page by page: milliseconds that
        // the loop would not be serving. A short-lived thread of its own does it.
        static std::atomic<bool> trimming{false};
        if (!trimming.exchange(true)) {
            try {
                std::thread([] {
                    ::malloc_trim(0);
                    trimming.store(false);
                }).detach();
            } catch (const std::system_error&) {
                trimming.store(false); // no thread to spare: the memory stays for now
            }
        }
#endif
        peak_connections_ = now_open;
    }
}

// How often deadlines are checked: once a second, or a quarter of the shortest timeout
// when that is less (a 1 s keep-alive timeout would otherwise fire after up to 2 s), not
// more often than every 50 ms. While stopping, every 100 ms (drain_grace()).
std::chrono::milliseconds Worker::sweep_period(const Config& config) {
    double shortest =
        std::min({config.keep_alive_timeout, config.header_read_timeout, config.read_timeout,
                  config.write_timeout, config.request_queue_timeout});
    if (config.request_timeout > 0) {
        shortest = std::min(shortest, config.request_timeout);
    }
    const double ms = std::clamp(shortest * 1000.0 / 4.0, 50.0, 1000.0);
    return std::chrono::milliseconds(static_cast<long>(ms));
}

std::chrono::steady_clock::duration Worker::drain_grace() const {
    return std::min<std::chrono::steady_clock::duration>(
        std::chrono::seconds(1), std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(config_.graceful_timeout / 2)));
}

void Worker::do_sweep() {
    sweep_timer_.expires_after(draining() ? std::chrono::milliseconds(100)
                                          : sweep_period(config_));
    sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) {
            return;
        }
        const auto now = Connection::clock::now();
        sample_loop(sweep_timer_.expiry(), now);
        std::vector<std::shared_ptr<Connection>> all;
        all.reserve(connections_.size());
        for (auto& [ptr, conn] : connections_) {
            all.push_back(conn);
        }
        for (auto& conn : all) {
            conn->check_deadline(now);
        }
        all.clear();
        expire_queued(now);
        if (accept_paused_ && stuck_pause_ && now >= stuck_pause_until_) {
            stuck_pause_ = false;
            resume_accepting_if_room(); // let new clients in, to be answered (503 if need be)
        }
        report_shed_requests(std::chrono::steady_clock::now(), false);
        return_memory_after_burst();
        do_sweep();
    });
}

// The sweep's own lateness is the loop's lag: how long a ready handler waits for the
// loop (handlers ahead of it, or the thread not getting a core). The busy share is the
// loop thread's CPU time over wall time, once a second.
void Worker::sample_loop(std::chrono::steady_clock::time_point due,
                         std::chrono::steady_clock::time_point now) {
    metrics::observe(*slot_, metrics::idx::loop_lag, metrics::loop_lag_bounds, to_ns(now - due));
    if (busy_sampled_at_ == std::chrono::steady_clock::time_point{}) {
        busy_sampled_at_ = now;
        busy_cpu_ns_ = thread_cpu_ns();
        return;
    }
    const auto wall = to_ns(now - busy_sampled_at_);
    if (wall < 1000000000ULL) {
        return;
    }
    const std::uint64_t cpu = thread_cpu_ns();
    const std::uint64_t used = cpu > busy_cpu_ns_ ? cpu - busy_cpu_ns_ : 0;
    metrics::bump(slot_->cumulative[metrics::idx::loop_busy_ns], used);
    slot_->loop_busy_ppm.store(std::min<std::uint64_t>(1000000, used * 1000000 / wall),
                               std::memory_order_relaxed);
    busy_sampled_at_ = now;
    busy_cpu_ns_ = cpu;
}

bool Worker::enqueue(std::shared_ptr<Connection>& connection) {
    bool full = false;
    const bool queued = backlog_.try_push(connection, full);
    if (full) {
        pause_accepting();
        // A thread may have taken the request between the push and the pause, and found
        // no resume asked for yet: then nobody would resume until a request ends. The
        // queue's lock orders the two, so one of them sees the other.
        if (backlog_.depth() < backlog_.capacity()) {
            resume_accepting_if_room();
        }
    }
    return queued;
}

void Worker::remove(Connection* connection) {
    connections_.erase(connection);
    slot_->connections_open.store(connections_.size(), std::memory_order_relaxed);
    maybe_finish_shutdown();
}

void Worker::begin_shutdown(int signal_number) {
    if (draining()) {
        return;
    }
    draining_.store(true);
    spdlog::info("worker {}: signal {} received, finishing {} connection(s)", index_,
                 signal_number, connections_.size());
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_timer_.cancel();
    std::vector<std::shared_ptr<Connection>> all;
    for (auto& [ptr, conn] : connections_) {
        all.push_back(conn);
    }
    for (auto& conn : all) {
        conn->shutdown_if_idle();
    }
    sweep_timer_.cancel(); // restart it at the draining pace
    do_sweep();
    grace_timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(config_.graceful_timeout)));
    grace_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) {
            forced_ = true;
            io_.stop();
        }
    });
    maybe_finish_shutdown();
}

void Worker::maybe_finish_shutdown() {
    if (!draining() || !connections_.empty()) {
        return;
    }
    sweep_timer_.cancel();
    grace_timer_.cancel();
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    io_.stop();
}

void Worker::blocking_thread_main() {
    app_.thread_started();
    const auto queue_timeout = std::chrono::duration_cast<Connection::clock::duration>(
        std::chrono::duration<double>(config_.request_queue_timeout));
    ResponseCork& cork = *corks_[next_cork_.fetch_add(1)];
    const unsigned index = next_line_.fetch_add(1);
    metrics::ThreadLine& line = *thread_lines_[index];
    std::vector<ResponseCork::Held> batch;
    // Recent app time per request (moving average), to decide whether holding responses
    // can pay off (ResponseCork::max_app_time).
    Connection::clock::duration app_time = ResponseCork::max_app_time * 4;
    std::shared_ptr<Connection> conn;
    // enter()/leave() (the GIL, for WSGI) once per request. Holding it across a burst of
    // queued requests was measured: no gain on hello, and json lost a quarter of its
    // throughput with the worker on one core, because the event-loop thread then only got
    // the CPU when the scheduler preempted the app thread (docs/benchmarks.md).
    for (;;) {
        if (cork.held() > 0) {
            // Write what is held unless another queued request can join it soon.
            if (cork.held() >= ResponseCork::max_held ||
                ResponseCork::clock::now() - cork.oldest() >= ResponseCork::soft_hold ||
                !backlog_.try_pop(conn)) {
                write_held(cork, batch);
                continue;
            }
        } else if (!backlog_.pop(conn)) {
            break;
        }
        if (resume_wanted_.load(std::memory_order_relaxed) && resume_wanted_.exchange(false)) {
            asio::post(io_, [this] { resume_accepting_if_room(); });
        }
        const auto started = Connection::clock::now();
        line.busy.store(1, std::memory_order_relaxed);
        app_.enter();
        const auto entered = Connection::clock::now();
        metrics::bump(line.gil_wait_ns, to_ns(entered - started));
        backlog_.wake_one_if_pending();
        net::BlockingScope& scope = app_.blocking_scope();
        // Counted by the loop when the exchange comes back (Connection::record_exchange).
        conn->note_queue_wait(to_ns(started - conn->queued_at()));
        {
            // The request's id on every log line written meanwhile (tracebacks,
            // wsgi.errors); it ends before the connection goes back to the loop.
            log::RequestIdScope request_id(conn->request_id());
            if (conn->abandoned(started)) {
                conn->note_abandoned();
                conn->abort();
            } else if (started - conn->queued_at() > queue_timeout) {
                // Queued past its deadline: the client has most likely given up; tell the
                // ones still waiting to retry rather than run the app for nobody.
                conn->note_expired();
                conn->send_error(503, Connection::expired_message, scope,
                                 "Retry-After: 1\r\n");
            } else {
                // Hold the response only when more work is already waiting for it.
                if (app_time < ResponseCork::max_app_time && backlog_.depth_hint() > 0) {
                    conn->hold_final_write(&cork.staging(), ResponseCork::max_bytes);
                }
                std::int64_t app_start = 0;
                if (config_.request_timeout > 0) {
                    app_start = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    Connection::clock::now().time_since_epoch())
                                    .count();
                    running_since_[index].store(app_start, std::memory_order_relaxed);
                    conn->note_app_start(app_start, static_cast<std::uint64_t>(::pthread_self()),
                                         index);
                }
                app_.handle(*conn);
                conn->complete(scope);
                if (app_start != 0) {
                    conn->note_app_end();
                    running_since_[index].store(0, std::memory_order_relaxed);
                    if (conn->timed_out()) {
                        app_.clear_interrupt();
                    }
                }
                conn->hold_final_write(nullptr, 0);
                app_time += (Connection::clock::now() - started - app_time) / 8;
            }
        }
        app_.leave();
        line.busy.store(0, std::memory_order_relaxed);
        if (conn->held()) {
            cork.hold(std::move(conn));
            watch_corks();
        } else {
            hand_back(std::move(conn));
        }
    }
    app_.thread_stopping();
}

// Owner thread: write what this thread holds, then give the connections to the loop.
void Worker::write_held(ResponseCork& cork, std::vector<ResponseCork::Held>& batch) {
    cork.take(batch);
    for (auto& h : batch) {
        h.connection->write_held(h.bytes);
    }
    for (auto& h : batch) {
        hand_back(std::move(h.connection));
    }
    cork.recycle(batch);
}

// A thread just held a response: make sure the loop's hard bound is being enforced.
void Worker::watch_corks() {
    if (cork_watch_.load(std::memory_order_seq_cst) || cork_watch_.exchange(true)) {
        return;
    }
    asio::post(io_, [this] { cork_tick(); });
}

// Loop: write responses a thread has held past the hard bound (it is busy with a slow
// request), every hard_hold while holding goes on; stop ticking once nothing is held.
void Worker::cork_tick() {
    const auto now = ResponseCork::clock::now();
    bool any = false;
    for (auto& cork : corks_) {
        if (cork->take_stale(now - ResponseCork::hard_hold, loop_batch_)) {
            spdlog::debug("worker {}: writing {} response(s) a busy blocking thread held "
                          "past the bound",
                          index_, loop_batch_.size());
            for (auto& h : loop_batch_) {
                h.connection->write_held(h.bytes);
                h.connection->on_exchange_done();
            }
            cork->recycle(loop_batch_);
        }
        any = any || cork->held() > 0;
    }
    if (any) {
        cork_idle_ticks_ = 0;
    } else if (++cork_idle_ticks_ >= 50) {
        // Stop; a thread that held something meanwhile sees the flag down and re-arms.
        cork_watch_.store(false, std::memory_order_seq_cst);
        bool held = false;
        for (auto& cork : corks_) {
            held = held || cork->held_ordered() > 0;
        }
        if (!held || cork_watch_.exchange(true)) {
            cork_idle_ticks_ = 0;
            return;
        }
    }
    cork_timer_.expires_after(ResponseCork::hard_hold);
    cork_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) {
            cork_tick();
        }
    });
}

} // namespace appserver::server
