// Sizes with units for the size options (--max-body-size 10M, --workers-max-rss 2G) and for
// the sizes read from a uWSGI ini file. One reading everywhere: K, M and G are powers of 1024,
// as in NGINX's sizes (client_max_body_size 10m), and KiB, MiB and GiB say the same thing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace appserver::cli {

inline constexpr std::uint64_t kib = 1024;
inline constexpr std::uint64_t mib = 1024 * kib;
inline constexpr std::uint64_t gib = 1024 * mib;

enum class SizeError {
    none,
    malformed,    // not digits with an optional unit
    decimal_unit, // KB, MB, GB: 1000 or 1024? refused rather than guessed
    negative,     // "-1": reported as out of range by the caller, like a negative integer
    too_large,    // does not fit in 64 bits
    not_whole,    // a fraction of the option's unit (100K for an option counted in MiB)
};

struct Size {
    std::uint64_t value = 0; // in the option's unit
    SizeError error = SizeError::none;
};

// Reads "512", "10M", "64KiB" (units in any case) as a count of `unit` bytes: 1 for an
// option counted in bytes, mib for one counted in MiB. A bare number is already in `unit`.
Size parse_size(std::string_view text, std::uint64_t unit);

// The reason for a SizeError other than negative and too_large (which depend on the option's
// range), in words that follow "value 'x' ".
std::string size_error_text(SizeError error, std::uint64_t unit);

// The shortest exact spelling of a byte count: 65536 -> "64K", 1048576 -> "1M", 1000 -> "1000".
std::string format_size(std::uint64_t bytes);

// The accepted values in words, for --help and docs/cli.md.
std::string size_rule(std::uint64_t unit);

} // namespace appserver::cli
