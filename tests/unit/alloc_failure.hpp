// Injected allocation failures for the unit tests (alloc_failure.cpp replaces operator new).
#pragma once

namespace appserver::testing {

// While alive, every operator new on this thread after the first `after` ones throws
// std::bad_alloc (malloc and CPython's allocators are untouched).
class FailAllocations {
public:
    explicit FailAllocations(int after = 0);
    ~FailAllocations();
    FailAllocations(const FailAllocations&) = delete;
    FailAllocations& operator=(const FailAllocations&) = delete;
    // How many allocations were refused so far.
    int refused() const;
};

} // namespace appserver::testing
