// Unit tests for sizes with units (src/cli/units.hpp).
#include "cli/units.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace {

using appserver::cli::format_size;
using appserver::cli::gib;
using appserver::cli::kib;
using appserver::cli::mib;
using appserver::cli::parse_size;
using appserver::cli::SizeError;

std::uint64_t bytes(const char* text) {
    const auto size = parse_size(text, 1);
    EXPECT_EQ(size.error, SizeError::none) << text;
    return size.value;
}

SizeError error_of(const char* text, std::uint64_t unit = 1) {
    return parse_size(text, unit).error;
}

TEST(Sizes, BareNumbersAreInTheOptionsUnit) {
    EXPECT_EQ(bytes("0"), 0U);
    EXPECT_EQ(bytes("1000"), 1000U);
    EXPECT_EQ(bytes("18446744073709551615"), 18446744073709551615ULL);
    EXPECT_EQ(parse_size("512", mib).value, 512U);
}

TEST(Sizes, UnitsArePowersOf1024InAnyCase) {
    for (const char* text : {"10M", "10m", "10MiB", "10mib", "10MIB"}) {
        EXPECT_EQ(bytes(text), 10 * mib) << text;
    }
    EXPECT_EQ(bytes("64K"), 64 * kib);
    EXPECT_EQ(bytes("64KiB"), 64 * kib);
    EXPECT_EQ(bytes("2G"), 2 * gib);
    EXPECT_EQ(bytes("2GiB"), 2 * gib);
    EXPECT_EQ(parse_size("2G", mib).value, 2048U);
    EXPECT_EQ(parse_size("1048576K", mib).value, 1024U);
}

TEST(Sizes, Refused) {
    EXPECT_EQ(error_of(""), SizeError::malformed);
    EXPECT_EQ(error_of("M"), SizeError::malformed);
    EXPECT_EQ(error_of("1.5M"), SizeError::malformed);
    EXPECT_EQ(error_of("10 M"), SizeError::malformed);
    EXPECT_EQ(error_of(" 10"), SizeError::malformed);
    EXPECT_EQ(error_of("+10"), SizeError::malformed);
    EXPECT_EQ(error_of("10T"), SizeError::malformed);
    EXPECT_EQ(error_of("10B"), SizeError::malformed);
    for (const char* decimal : {"10KB", "10MB", "10GB", "10kb", "10mb"}) {
        EXPECT_EQ(error_of(decimal), SizeError::decimal_unit) << decimal;
    }
    EXPECT_EQ(error_of("-1"), SizeError::negative);
    EXPECT_EQ(error_of("-1K"), SizeError::negative);
    EXPECT_EQ(error_of("-0"), SizeError::none);
    EXPECT_EQ(error_of("18446744073709551616"), SizeError::too_large);
    EXPECT_EQ(error_of("16777216T"), SizeError::malformed);
    EXPECT_EQ(error_of("17179869184G"), SizeError::too_large); // 2^64
    EXPECT_EQ(error_of("17179869183G"), SizeError::none);
    EXPECT_EQ(error_of("100K", mib), SizeError::not_whole);
    EXPECT_EQ(error_of("1537K", mib), SizeError::not_whole);
}

TEST(Sizes, FormattedInTheLargestExactUnit) {
    EXPECT_EQ(format_size(0), "0");
    EXPECT_EQ(format_size(1000), "1000");
    EXPECT_EQ(format_size(1024), "1K");
    EXPECT_EQ(format_size(65536), "64K");
    EXPECT_EQ(format_size(1536 * kib), "1536K");
    EXPECT_EQ(format_size(mib), "1M");
    EXPECT_EQ(format_size(3 * gib), "3G");
    EXPECT_EQ(format_size(18446744073709551615ULL), "18446744073709551615");
    for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{1000}, 64 * kib, 1536 * kib, 3 * gib}) {
        EXPECT_EQ(parse_size(format_size(n), 1).value, n);
    }
}

} // namespace
