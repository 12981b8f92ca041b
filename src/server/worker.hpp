// A worker process: one Asio event loop thread that accepts and parses, a bounded
// backlog, and the blocking threads that run the application. Shutdown is two-phase:
// stop accepting and close idle connections, let in-flight exchanges finish within the
// grace period, then stop.
#pragma once

#include "metrics/stats_page.hpp"
#include "net/listener.hpp"
#include "server/application.hpp"
#include "server/backlog.hpp"
#include "server/buffer_pool.hpp"
#include "server/exchange.hpp"
#include "server/response_cork.hpp"

#include <appserver/config.hpp>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <string>
#include <memory>
#include <span>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace appserver::log {
class AccessLog;
}

namespace appserver::server {

class Connection;

class Worker {
public:
    static constexpr std::size_t read_buffer_size = 16 * 1024;

    Worker(const Config& config, const net::ListenSocket& listener, Application& app,
           unsigned index);
    ~Worker();

    // Runs until shut down by SIGTERM/SIGINT/SIGQUIT. Returns the process exit code.
    // The calling thread becomes the event loop thread. Whatever is thrown meanwhile
    // (here or in the worker's threads) ends the process: logged, then _exit().
    int run();

    // ---- for connections, on the event-loop thread ------------------------------------
    boost::asio::io_context& io() { return io_; }
    const Config& config() const { return config_; }
    const ServerInfo& server_info() const { return server_info_; }
    const std::atomic<bool>& draining_flag() const { return draining_; }
    bool draining() const { return draining_.load(std::memory_order_relaxed); }
    // Queues a parsed request for the blocking threads; false when the queue is full
    // (the caller answers 503). Stops accepting while the queue is full.
    bool enqueue(std::shared_ptr<Connection>& connection);
    void remove(Connection* connection);
    // A request refused because the queue was full (counted; logged at most every 10 s).
    void note_rejected(const std::string& remote_addr);
    // This worker's counters, shared with the master's metrics endpoint (a private slot
    // when the worker runs outside a master, as in unit tests). Event-loop thread only,
    // but for the values stats_page.hpp says otherwise.
    metrics::WorkerSlot& stats() { return *slot_; }
    // The access log, or null when --access-log is not set. Event-loop thread only.
    log::AccessLog* access_log() { return access_log_.get(); }
    unsigned index() const { return index_; }
    // A request id for a request whose client sent none (unique per worker and start).
    void make_request_id(RequestId& out);
    // --request-timeout (see Connection::check_request_timeout): have the stuck thread's
    // stack logged and the thread interrupted (by the watchdog thread, not the loop); and,
    // when it stays stuck, write it off: stop accepting and ask for a replacement.
    void report_timeout(std::uint64_t thread, unsigned thread_index, std::int64_t started,
                        const std::string& what);
    void write_off_thread(std::uint64_t thread, const std::string& what);
    // A request is done (answered): --max-requests counts it.
    void note_request_done() {
        if (++requests_done_ == recycle_after_) {
            ask_for_replacement();
        }
    }
    // Bytes of finished responses the loop may hold for slow clients (Exchange).
    std::atomic<std::int64_t>& deferred_budget() { return deferred_budget_; }
    // Read buffers, and a scratch one for bytes read only to be dropped (lingering close).
    BufferPool& buffers() { return buffers_; }
    std::span<char> discard_buffer() { return {discard_.get(), read_buffer_size}; }
    std::size_t max_connections() const { return max_connections_; }
    // A connection has nothing left to do but wait for its client: at --max-connections
    // it is now one that may be closed to make room, so accepting is tried again.
    void note_idle_connection() {
        if (at_connection_limit_) {
            at_connection_limit_ = false;
            boost::asio::post(io_, [this] { do_accept(); });
        }
    }
    static constexpr std::int64_t deferred_bytes_per_worker = 64 * 1024 * 1024;
    // Small request bodies are read by the loop before the request is queued (Connection),
    // so a client that sends one slowly holds no blocking thread. Loop thread only.
    static constexpr std::size_t prebuffer_body_limit = 64 * 1024;           // per request
    static constexpr std::size_t prebuffer_bytes_per_worker = 64 * 1024 * 1024;
    bool reserve_prebuffer(std::size_t bytes) {
        if (bytes > prebuffer_available_) {
            return false;
        }
        prebuffer_available_ -= bytes;
        return true;
    }
    void release_prebuffer(std::size_t bytes) { prebuffer_available_ += bytes; }
    // The application when it runs on the loop thread itself (see runs_inline()).
    Application* inline_app() const { return inline_app_; }

    // On a graceful stop, how long an idle keep-alive connection may still bring one more
    // request (answered with Connection: close), a request head already begun may take to
    // end, and a closing connection may linger: 1 s, or half of --graceful-timeout when
    // that is shorter, so the grace never makes a clean stop a forced one.
    std::chrono::steady_clock::duration drain_grace() const;

    // How often the loop checks connection deadlines (see worker.cpp).
    static std::chrono::milliseconds sweep_period(const Config& config);

private:
    int serve();
    void do_accept();
    // --max-connections reached: closes idle connections; false when none was idle.
    bool make_room();
    void wait_for_connection();
    void retry_accept_later();
    void take_connection(int fd, const sockaddr_storage& peer, socklen_t peer_len);
    void pause_accepting();
    void resume_accepting_if_room();
    void do_sweep();
    // Loop lag and busy share, sampled by the sweep (no timer of their own).
    void sample_loop(std::chrono::steady_clock::time_point due,
                     std::chrono::steady_clock::time_point now);
    void expire_queued(std::chrono::steady_clock::time_point now);
    // Logs the 503s given since the last report (and client lines left out); final: now,
    // whatever the period.
    void report_shed_requests(std::chrono::steady_clock::time_point now, bool final);
    void return_memory_after_burst();
    static constexpr std::size_t trim_after_connections = 1000;
    void begin_shutdown(int signal_number);
    void maybe_finish_shutdown();
    void blocking_thread_main();
    void wait_for_signal();
    // Blocking thread -> loop: a finished exchange.
    void hand_back(std::shared_ptr<Connection> connection);
    void drain_done();
    // Coalesced response writes (response_cork.hpp).
    void write_held(ResponseCork& cork, std::vector<ResponseCork::Held>& batch);
    void watch_corks();
    void cork_tick();

    const Config& config_;
    Application& app_;
    Application* inline_app_ = nullptr;
    unsigned index_;
    ServerInfo server_info_;
    int family_;
    boost::asio::io_context io_;
    boost::asio::basic_socket_acceptor<boost::asio::generic::stream_protocol> acceptor_;
    boost::asio::signal_set signals_;
    boost::asio::steady_timer sweep_timer_;
    boost::asio::steady_timer grace_timer_;
    boost::asio::steady_timer accept_retry_timer_;
    boost::asio::steady_timer cork_timer_;
    Backlog<std::shared_ptr<Connection>> backlog_;
    std::unordered_map<Connection*, std::shared_ptr<Connection>> connections_;
    std::vector<std::thread> threads_;
    std::mutex done_mutex_;
    std::vector<std::shared_ptr<Connection>> done_;          // guarded by done_mutex_
    std::vector<std::shared_ptr<Connection>> draining_done_; // loop thread only
    std::atomic<bool> draining_{false};
    bool forced_ = false;
    bool stopped_now_ = false; // forced by the master's stop-now signal, not the grace timer
    bool accept_armed_ = false;  // a wait for a connection (or the next batch) is outstanding
    bool accept_paused_ = false; // the request queue is full: new connections wait in the kernel
    bool at_connection_limit_ = false; // --max-connections reached with none idle: the same
    std::size_t max_connections_ = 0;
    BufferPool buffers_{read_buffer_size, 64};
    std::unique_ptr<char[]> discard_{new char[read_buffer_size]};
    // Set while accepting is paused: the first blocking thread to take a request then asks
    // the loop to accept again (else a small queue would stay closed until a request ends).
    std::atomic<bool> resume_wanted_{false};
    // Shed requests (503s), reported at most every shed_log_period; loop thread only.
    static constexpr std::chrono::seconds shed_log_period{10};
    std::chrono::steady_clock::time_point last_full_warning_{};
    std::uint64_t rejected_since_warning_ = 0;
    std::string last_rejected_addr_;
    std::chrono::steady_clock::time_point last_expired_warning_{};
    std::uint64_t expired_reported_ = 0;
    std::vector<std::shared_ptr<Connection>> expired_;
    // Accepting paused because queued requests expired (threads stuck), not because the
    // queue is full: the pause ends when a thread takes a request, or at this time, so a
    // server whose workers are all stuck still answers new clients (with 503).
    bool stuck_pause_ = false;
    std::chrono::steady_clock::time_point stuck_pause_until_{};
    metrics::WorkerSlot* slot_;
    std::unique_ptr<metrics::WorkerSlot> private_slot_;  // when there is no shared page
    std::vector<metrics::ThreadLine*> thread_lines_;     // one per blocking thread
    std::unique_ptr<metrics::ThreadLine[]> private_lines_;
    std::atomic<unsigned> next_line_{0};
    std::unique_ptr<log::AccessLog> access_log_;
    void ask_for_replacement(std::uint32_t reason = 1);
    void watchdog_main();
    std::thread watchdog_;
    std::mutex watchdog_mutex_;
    std::condition_variable watchdog_wake_;
    struct StuckRequest {
        std::uint64_t thread;
        unsigned index;       // the blocking thread's number
        std::int64_t started; // its app start (ns), to recognise the request
        std::string what;
    };
    std::vector<StuckRequest> watchdog_jobs_; // guarded by watchdog_mutex_
    // Per blocking thread: when its current request entered the app (ns), 0 when none.
    // Changed by the thread with the GIL (enter()) held, read by the watchdog under it.
    std::unique_ptr<std::atomic<std::int64_t>[]> running_since_;
    bool watchdog_stop_ = false;                                      // guarded
    bool written_off_ = false; // a thread was written off: never accept again
    std::uint64_t requests_done_ = 0;  // loop thread only
    std::uint64_t recycle_after_ = 0;  // --max-requests plus this worker's jitter; 0 = never
    char request_id_prefix_[17] = {};
    std::uint64_t request_id_sequence_ = 0;
    std::chrono::steady_clock::time_point busy_sampled_at_{};
    std::uint64_t busy_cpu_ns_ = 0;
    std::atomic<std::int64_t> deferred_budget_{deferred_bytes_per_worker};
    std::size_t prebuffer_available_ = prebuffer_bytes_per_worker; // loop thread only
    std::size_t peak_connections_ = 0; // since the last malloc_trim; loop thread only
    std::vector<std::unique_ptr<ResponseCork>> corks_; // one per blocking thread
    std::atomic<unsigned> next_cork_{0};
    std::atomic<bool> cork_watch_{false};               // the loop runs cork_tick()
    unsigned cork_idle_ticks_ = 0;                       // loop thread only
    std::vector<ResponseCork::Held> loop_batch_;         // loop thread only
};

} // namespace appserver::server
