// The shared statistics region (see stats_page.hpp): mapping, slot layout, and the
// master's folding of a replaced worker's counters into per-slot totals.
#include "metrics/stats_page.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <new>
#include <stdexcept>
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

// What the master keeps in the region besides the slots, so it survives a re-exec.
struct StatsPage::Header {
    std::uint64_t magic;
    std::uint64_t slots;
    std::uint64_t threads;
    std::atomic<std::uint64_t> positions;
    std::array<std::uint64_t, restart_reason_labels.size()> restarts;
};

struct StatsPage::Retired {
    Cumulative cumulative;
    std::uint64_t gil_ns;
    std::uint64_t cpu_ns;
};

namespace {
// "appstats", mixed with the layout: a master image of another build (an upgrade between
// reloads) does not take a page it would misread.
constexpr std::uint64_t page_magic = 0x61707073'74617473ULL ^ (sizeof(WorkerSlot) << 40) ^
                                     (sizeof(ThreadLine) << 32) ^ (idx::count << 16) ^
                                     restart_reason_labels.size();
} // namespace

StatsPage::StatsPage(std::size_t slots, std::size_t threads) : slots_(slots), threads_(threads) {
    fd_ = ::memfd_create("appserver-stats", MFD_CLOEXEC);
    if (fd_ < 0) {
        throw std::system_error(errno, std::generic_category(),
                                "cannot create the workers' statistics page");
    }
    map(true);
}

StatsPage::StatsPage(int fd) : fd_(fd) {
    // Inheritable only for the exec that handed it over.
    ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
    Header probe{};
    if (::pread(fd, &probe, sizeof probe, 0) != static_cast<ssize_t>(sizeof probe) ||
        probe.magic != page_magic) {
        throw std::runtime_error("the inherited statistics page is not one");
    }
    slots_ = probe.slots;
    threads_ = probe.threads;
    map(false);
}

void StatsPage::map(bool create) {
    stride_ = round_up(sizeof(WorkerSlot) + threads_ * sizeof(ThreadLine), cache_line);
    const std::size_t retired_offset = round_up(sizeof(Header), cache_line);
    slots_offset_ = round_up(retired_offset + slots_ * sizeof(Retired), cache_line);
    bytes_ = slots_offset_ + slots_ * stride_;
    if (create && ::ftruncate(fd_, static_cast<off_t>(bytes_)) != 0) {
        const int e = errno;
        ::close(fd_);
        throw std::system_error(e, std::generic_category(),
                                "cannot size the workers' statistics page");
    }
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd_);
        throw std::system_error(e, std::generic_category(),
                                "cannot map the workers' statistics page");
    }
    base_ = static_cast<unsigned char*>(p);
    header_ = reinterpret_cast<Header*>(base_);
    retired_ = reinterpret_cast<Retired*>(base_ + retired_offset);
    if (!create) {
        return; // the previous image's objects, with their values
    }
    // The memfd is zero-filled; placement-new starts the objects' lifetimes.
    new (header_) Header{page_magic, slots_, threads_, {0}, {}};
    for (std::size_t i = 0; i < slots_; ++i) {
        new (&retired_[i]) Retired{};
        unsigned char* at = base_ + slots_offset_ + i * stride_;
        new (at) WorkerSlot;
        slot(i).position.store(static_cast<std::uint32_t>(i), std::memory_order_relaxed);
        for (std::size_t t = 0; t < threads_; ++t) {
            new (at + sizeof(WorkerSlot) + t * sizeof(ThreadLine)) ThreadLine;
        }
    }
}

StatsPage::~StatsPage() {
    // WorkerSlot and ThreadLine hold only atomics (trivially destructible): just unmap.
    ::munmap(base_, bytes_);
    ::close(fd_);
}

void StatsPage::set_positions(std::size_t n) {
    header_->positions.store(n, std::memory_order_relaxed);
}

std::size_t StatsPage::positions() const {
    return header_->positions.load(std::memory_order_relaxed);
}

WorkerSlot& StatsPage::slot(std::size_t i) {
    assert(i < slots_);
    return *std::launder(reinterpret_cast<WorkerSlot*>(base_ + slots_offset_ + i * stride_));
}

const WorkerSlot& StatsPage::slot(std::size_t i) const {
    assert(i < slots_);
    return *std::launder(reinterpret_cast<const WorkerSlot*>(base_ + slots_offset_ + i * stride_));
}

ThreadLine& StatsPage::thread_line(std::size_t slot, std::size_t thread) {
    assert(slot < slots_ && thread < threads_);
    return *std::launder(reinterpret_cast<ThreadLine*>(base_ + slots_offset_ + slot * stride_ +
                                                       sizeof(WorkerSlot) +
                                                       thread * sizeof(ThreadLine)));
}

const ThreadLine& StatsPage::thread_line(std::size_t slot, std::size_t thread) const {
    assert(slot < slots_ && thread < threads_);
    return *std::launder(reinterpret_cast<const ThreadLine*>(
        base_ + slots_offset_ + slot * stride_ + sizeof(WorkerSlot) + thread * sizeof(ThreadLine)));
}

void StatsPage::retire(std::size_t i) {
    std::lock_guard lock(mutex_);
    WorkerSlot& s = slot(i);
    const std::size_t p = position_of(i);
    Cumulative& r = retired_[p].cumulative;
    // The worker is reaped, so nothing writes the slot any more: a load then a store of
    // zero loses nothing.
    for (std::size_t k = 0; k < idx::count; ++k) {
        r[k] += s.cumulative[k].load(std::memory_order_relaxed);
        s.cumulative[k].store(0, std::memory_order_relaxed);
    }
    for (std::size_t t = 0; t < threads_; ++t) {
        ThreadLine& line = thread_line(i, t);
        retired_[p].gil_ns += line.gil_wait_ns.load(std::memory_order_relaxed);
        line.gil_wait_ns.store(0, std::memory_order_relaxed);
        line.busy.store(0, std::memory_order_relaxed);
    }
    s.queue_depth.store(0, std::memory_order_relaxed);
    s.queue_capacity.store(0, std::memory_order_relaxed);
    s.blocking_threads.store(0, std::memory_order_relaxed);
    s.connections_open.store(0, std::memory_order_relaxed);
    s.loop_busy_ppm.store(0, std::memory_order_relaxed);
    s.ready.store(0, std::memory_order_relaxed);
    s.recycle.store(0, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_release);
}

std::size_t StatsPage::position_of(std::size_t i) const {
    const std::size_t p = slot(i).position.load(std::memory_order_relaxed);
    return p < slots_ ? p : i;
}

Cumulative StatsPage::totals(std::size_t p) const {
    Cumulative out = retired_[p].cumulative;
    for (std::size_t i = 0; i < slots_; ++i) {
        if (position_of(i) != p) {
            continue;
        }
        const WorkerSlot& s = slot(i);
        for (std::size_t k = 0; k < idx::count; ++k) {
            out[k] += s.cumulative[k].load(std::memory_order_relaxed);
        }
    }
    return out;
}

std::uint64_t StatsPage::gil_wait_ns(std::size_t p) const {
    std::uint64_t ns = retired_[p].gil_ns;
    for (std::size_t i = 0; i < slots_; ++i) {
        if (position_of(i) != p) {
            continue;
        }
        for (std::size_t t = 0; t < threads_; ++t) {
            ns += thread_line(i, t).gil_wait_ns.load(std::memory_order_relaxed);
        }
    }
    return ns;
}

void StatsPage::add_retired_cpu(std::size_t i, std::uint64_t ns) {
    std::lock_guard lock(mutex_);
    retired_[position_of(i)].cpu_ns += ns;
}

std::uint64_t StatsPage::retired_cpu_ns(std::size_t i) const {
    return retired_[i].cpu_ns;
}

void StatsPage::note_restart(RestartReason reason) {
    std::lock_guard lock(mutex_);
    ++header_->restarts[static_cast<std::size_t>(reason)];
}

std::uint64_t StatsPage::restarts(RestartReason reason) const {
    return header_->restarts[static_cast<std::size_t>(reason)];
}

} // namespace appserver::metrics
