// What the fuzz targets share: a check that fails loudly (libFuzzer and the replay driver
// both record an abort as a crash, with the input that caused it), and a small
// deterministic generator that turns a seed taken from the input into split points.
// No FuzzedDataProvider: the targets also build with gcc, where clang's header is absent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

// An invariant of the code under test; when it does not hold, the input is a finding.
#define FUZZ_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::fprintf(stderr, "%s:%d: invariant failed: %s\n  ", __FILE__, __LINE__, #cond);  \
            std::fprintf(stderr, __VA_ARGS__);                                                 \
            std::fprintf(stderr, "\n");                                                        \
            std::abort();                                                                      \
        }                                                                                      \
    } while (0)

namespace appserver::fuzz {

// xorshift64*: the same sequence for the same seed on every platform.
class Splitter {
public:
    explicit Splitter(std::uint64_t seed) : state_(seed * 0x9e3779b97f4a7c15ULL + 1) {}

    std::uint64_t next() {
        state_ ^= state_ >> 12;
        state_ ^= state_ << 25;
        state_ ^= state_ >> 27;
        return state_ * 0x2545f4914f6cdd1dULL;
    }

    // The length of the next piece, 1..max_piece. Small pieces are the likelier ones:
    // boundaries inside tokens are where incremental parsers go wrong.
    std::size_t piece(std::size_t max_piece) {
        const std::uint64_t r = next();
        const std::size_t cap = (r & 3) == 0 ? max_piece : ((r >> 2) & 1) ? 4 : 32;
        const std::size_t limit = cap < max_piece ? cap : max_piece;
        return 1 + static_cast<std::size_t>((r >> 8) % limit);
    }

private:
    std::uint64_t state_;
};

// How an input's bytes reach the code under test.
enum class Split : std::uint8_t {
    whole,  // all at once
    bytes,  // one byte at a time
    random, // pieces from a Splitter
};

} // namespace appserver::fuzz
