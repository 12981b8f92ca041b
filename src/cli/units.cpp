// Sizes with units: the one parser behind every size option and the uWSGI ini sizes.
#include "cli/units.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>
#include <system_error>

namespace appserver::cli {
namespace {

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

struct Unit {
    std::string_view short_name;
    std::string_view iec_name;
    std::string_view decimal_name; // refused: 1000 or 1024?
    std::uint64_t bytes;
};

constexpr std::array<Unit, 3> units{{
    {"K", "KiB", "KB", kib},
    {"M", "MiB", "MB", mib},
    {"G", "GiB", "GB", gib},
}};

} // namespace

Size parse_size(std::string_view text, std::uint64_t unit) {
    Size out;
    const bool negative = !text.empty() && text.front() == '-';
    const std::string_view number = negative ? text.substr(1) : text;
    const auto digits_end = std::find_if(number.begin(), number.end(), [](char c) {
        return !std::isdigit(static_cast<unsigned char>(c));
    });
    const std::string_view digits = number.substr(0, digits_end - number.begin());
    const std::string_view suffix = number.substr(digits.size());
    if (digits.empty()) {
        out.error = SizeError::malformed;
        return out;
    }
    std::uint64_t multiplier = 1;
    if (!suffix.empty()) {
        bool known = false;
        for (const Unit& u : units) {
            if (equals_ignoring_case(suffix, u.short_name) ||
                equals_ignoring_case(suffix, u.iec_name)) {
                multiplier = u.bytes;
                known = true;
            } else if (equals_ignoring_case(suffix, u.decimal_name)) {
                out.error = SizeError::decimal_unit;
                return out;
            }
        }
        if (!known) {
            out.error = SizeError::malformed;
            return out;
        }
    }
    std::uint64_t count = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
    if (ec == std::errc::result_out_of_range) {
        out.error = negative ? SizeError::negative : SizeError::too_large;
        return out;
    }
    if (negative) {
        // "-0" is 0; anything else below zero is out of every range.
        out.error = count == 0 && multiplier == 1 ? SizeError::none : SizeError::negative;
        return out;
    }
    if (multiplier == 1) {
        out.value = count; // a bare number is in the option's own unit
        return out;
    }
    if (count > std::numeric_limits<std::uint64_t>::max() / multiplier) {
        out.error = SizeError::too_large;
        return out;
    }
    const std::uint64_t bytes = count * multiplier;
    if (bytes % unit != 0) {
        out.error = SizeError::not_whole;
        return out;
    }
    out.value = bytes / unit;
    return out;
}

std::string size_error_text(SizeError error, std::uint64_t unit) {
    switch (error) {
    case SizeError::decimal_unit:
        return "has an ambiguous unit: write K, M, G (or KiB, MiB, GiB), powers of 1024";
    case SizeError::not_whole:
        return unit == mib ? "is not a whole number of MiB" : "is not a whole number of units";
    case SizeError::malformed:
    default:
        return "is not a size (a whole number, optionally followed by K, M or G)";
    }
}

std::string format_size(std::uint64_t bytes) {
    if (bytes != 0) {
        for (auto it = units.rbegin(); it != units.rend(); ++it) {
            if (bytes % it->bytes == 0) {
                return std::to_string(bytes / it->bytes) + std::string(it->short_name);
            }
        }
    }
    return std::to_string(bytes);
}

std::string size_rule(std::uint64_t unit) {
    const std::string units_text =
        "K, M or G (also KiB, MiB, GiB, any case): powers of 1024, so 1M is 1048576 bytes";
    if (unit == mib) {
        return "MiB: a whole number of MiB, or a size with a unit, " + units_text +
               " (2G is 2048).";
    }
    return "Bytes: a whole number, optionally followed by a unit, " + units_text + ".";
}

} // namespace appserver::cli
