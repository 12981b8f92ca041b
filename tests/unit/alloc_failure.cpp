// Replaces the global operator new/delete of the unit-test binary so a test can make C++
// allocations fail on its thread (alloc_failure.hpp). The whole family is replaced, so
// every pair stays matched (sanitizer runtimes check new/delete pairs).
#include "alloc_failure.hpp"

#include <cstdlib>
#include <new>

namespace {

thread_local int allowed = -1; // < 0: no failures injected
thread_local int refused_count = 0;

void* allocate(std::size_t size) {
    if (allowed >= 0) {
        if (allowed == 0) {
            ++refused_count;
            throw std::bad_alloc();
        }
        --allowed;
    }
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    return p;
}

void* allocate_nothrow(std::size_t size) noexcept {
    try {
        return allocate(size);
    } catch (...) {
        return nullptr;
    }
}

} // namespace

namespace appserver::testing {

FailAllocations::FailAllocations(int after) {
    refused_count = 0;
    allowed = after;
}

FailAllocations::~FailAllocations() {
    allowed = -1;
}

int FailAllocations::refused() const {
    return refused_count;
}

} // namespace appserver::testing

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return allocate_nothrow(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return allocate_nothrow(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
