// The shared statistics region (see stats_page.hpp): mapping, slot layout, and the
// master's folding of a replaced worker's counters into per-slot totals.
#include "metrics/stats_page.hpp"

#include <sys/mman.h>

#include <cassert>
#include <cerrno>
#include <new>
#include <system_error>

namespace appserver::metrics {
namespace {

// Workers and master update these without locks across processes: they must be plain
// lock-free atomics, which on Linux are also address-free (valid in a shared mapping).
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

constexpr std::size_t cache_line = 64;

constexpr std::size_t round_up(std::size_t n, std::size_t to) {
    return (n + to - 1) / to * to;
}

} // namespace

std::size_t method_index(std::string_view method) {
    // Exact, case-sensitive: method names are case-sensitive (RFC 9110 9.1), so "get" is
    // not GET and counts as other.
    for (std::size_t i = 0; i + 1 < method_labels.size(); ++i) {
        if (method == method_labels[i]) {
            return i;
        }
    }
    return method_labels.size() - 1;
}

std::size_t code_index(int status) {
    if (status < 100 || status > 599) {
        return code_labels.size() - 1;
    }
    return static_cast<std::size_t>(status / 100 - 1);
}

StatsPage::StatsPage(std::size_t slots, std::size_t threads)
    : slots_(slots), threads_(threads),
      stride_(round_up(sizeof(WorkerSlot) + threads * sizeof(ThreadLine), cache_line)),
      bytes_(slots * stride_), retired_(slots), retired_gil_ns_(slots, 0),
      retired_cpu_ns_(slots, 0) {
    // mmap refuses a zero length; a page with no slots still maps one line.
    void* p = ::mmap(nullptr, bytes_ == 0 ? cache_line : bytes_, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        throw std::system_error(errno, std::generic_category(),
                                "cannot map the workers' statistics page");
    }
    base_ = static_cast<unsigned char*>(p);
    for (auto& r : retired_) {
        r.fill(0);
    }
    // The mapping is zero-filled already; placement-new starts the atomics' lifetimes.
    for (std::size_t i = 0; i < slots_; ++i) {
        unsigned char* at = base_ + i * stride_;
        new (at) WorkerSlot;
        for (std::size_t t = 0; t < threads_; ++t) {
            new (at + sizeof(WorkerSlot) + t * sizeof(ThreadLine)) ThreadLine;
        }
    }
}

StatsPage::~StatsPage() {
    // WorkerSlot and ThreadLine hold only atomics (trivially destructible): just unmap.
    ::munmap(base_, bytes_ == 0 ? cache_line : bytes_);
}

WorkerSlot& StatsPage::slot(std::size_t i) {
    assert(i < slots_);
    return *std::launder(reinterpret_cast<WorkerSlot*>(base_ + i * stride_));
}

const WorkerSlot& StatsPage::slot(std::size_t i) const {
    assert(i < slots_);
    return *std::launder(reinterpret_cast<const WorkerSlot*>(base_ + i * stride_));
}

ThreadLine& StatsPage::thread_line(std::size_t slot, std::size_t thread) {
    assert(slot < slots_ && thread < threads_);
    return *std::launder(reinterpret_cast<ThreadLine*>(base_ + slot * stride_ +
                                                       sizeof(WorkerSlot) +
                                                       thread * sizeof(ThreadLine)));
}

const ThreadLine& StatsPage::thread_line(std::size_t slot, std::size_t thread) const {
    assert(slot < slots_ && thread < threads_);
    return *std::launder(reinterpret_cast<const ThreadLine*>(
        base_ + slot * stride_ + sizeof(WorkerSlot) + thread * sizeof(ThreadLine)));
}

void StatsPage::retire(std::size_t i) {
    std::lock_guard lock(mutex_);
    WorkerSlot& s = slot(i);
    Cumulative& r = retired_[i];
    // The worker is reaped, so nothing writes the slot any more: a load then a store of
    // zero loses nothing.
    for (std::size_t k = 0; k < idx::count; ++k) {
        r[k] += s.cumulative[k].load(std::memory_order_relaxed);
        s.cumulative[k].store(0, std::memory_order_relaxed);
    }
    for (std::size_t t = 0; t < threads_; ++t) {
        ThreadLine& line = thread_line(i, t);
        retired_gil_ns_[i] += line.gil_wait_ns.load(std::memory_order_relaxed);
        line.gil_wait_ns.store(0, std::memory_order_relaxed);
        line.busy.store(0, std::memory_order_relaxed);
    }
    s.queue_depth.store(0, std::memory_order_relaxed);
    s.queue_capacity.store(0, std::memory_order_relaxed);
    s.blocking_threads.store(0, std::memory_order_relaxed);
    s.connections_open.store(0, std::memory_order_relaxed);
    s.loop_busy_ppm.store(0, std::memory_order_relaxed);
    s.ready.store(0, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_release);
}

Cumulative StatsPage::totals(std::size_t i) const {
    const WorkerSlot& s = slot(i);
    Cumulative out = retired_[i];
    for (std::size_t k = 0; k < idx::count; ++k) {
        out[k] += s.cumulative[k].load(std::memory_order_relaxed);
    }
    return out;
}

std::uint64_t StatsPage::gil_wait_ns(std::size_t i) const {
    std::uint64_t ns = retired_gil_ns_[i];
    for (std::size_t t = 0; t < threads_; ++t) {
        ns += thread_line(i, t).gil_wait_ns.load(std::memory_order_relaxed);
    }
    return ns;
}

void StatsPage::add_retired_cpu(std::size_t i, std::uint64_t ns) {
    std::lock_guard lock(mutex_);
    retired_cpu_ns_[i] += ns;
}

std::uint64_t StatsPage::retired_cpu_ns(std::size_t i) const {
    return retired_cpu_ns_[i];
}

void StatsPage::note_restart(RestartReason reason) {
    std::lock_guard lock(mutex_);
    ++restarts_[static_cast<std::size_t>(reason)];
}

std::uint64_t StatsPage::restarts(RestartReason reason) const {
    return restarts_[static_cast<std::size_t>(reason)];
}

} // namespace appserver::metrics
