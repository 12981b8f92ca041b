// Unit tests for the request body spool file (src/server/body_spool.hpp).
#include "server/body_spool.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include <dirent.h>

namespace {

using appserver::server::BodySpool;

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        s[i] = static_cast<char>('a' + i % 23);
    }
    return s;
}

TEST(BodySpool, ReadsBackWhatWasAppendedInPieces) {
    BodySpool spool;
    const std::string data = pattern(300 * 1000 + 7);
    for (std::size_t at = 0; at < data.size(); at += 4093) {
        ASSERT_TRUE(spool.append(std::string_view(data).substr(at, 4093))) << spool.error();
    }
    EXPECT_EQ(spool.size(), data.size());
    std::string back, piece;
    for (std::uint64_t pos = 0;; pos += piece.size()) {
        ASSERT_TRUE(spool.read(pos, 65536, piece)) << spool.error();
        if (piece.empty()) {
            break;
        }
        EXPECT_LE(piece.size(), 65536U);
        back += piece;
    }
    EXPECT_EQ(back, data);
}

TEST(BodySpool, EmptyUntilWrittenAndCreatesNoFileForNothing) {
    BodySpool spool;
    EXPECT_TRUE(spool.append(""));
    std::string out = "x";
    EXPECT_TRUE(spool.read(0, 10, out));
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(spool.size(), 0U);
}

// The file has no name: nothing is left in TMPDIR, whatever ends the process.
TEST(BodySpool, LeavesNoFileBehindInTmpdir) {
    char dir[] = "/tmp/spool-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const char* old = std::getenv("TMPDIR");
    const std::string saved = old != nullptr ? old : "";
    ::setenv("TMPDIR", dir, 1);
    {
        BodySpool spool;
        ASSERT_TRUE(spool.append("hello")) << spool.error();
        DIR* d = ::opendir(dir);
        ASSERT_NE(d, nullptr);
        int entries = 0;
        while (const dirent* e = ::readdir(d)) {
            entries += std::string(e->d_name) != "." && std::string(e->d_name) != "..";
        }
        ::closedir(d);
        EXPECT_EQ(entries, 0);
    }
    if (old != nullptr) {
        ::setenv("TMPDIR", saved.c_str(), 1);
    } else {
        ::unsetenv("TMPDIR");
    }
    ::rmdir(dir);
}

TEST(BodySpool, AnUnusableTmpdirIsAClearError) {
    const char* old = std::getenv("TMPDIR");
    const std::string saved = old != nullptr ? old : "";
    ::setenv("TMPDIR", "/nonexistent-dir-for-spool-test", 1);
    BodySpool spool;
    EXPECT_FALSE(spool.append("hello"));
    EXPECT_NE(spool.error().find("/nonexistent-dir-for-spool-test"), std::string::npos) << spool.error();
    if (old != nullptr) {
        ::setenv("TMPDIR", saved.c_str(), 1);
    } else {
        ::unsetenv("TMPDIR");
    }
}

} // namespace
