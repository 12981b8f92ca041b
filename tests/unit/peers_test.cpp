// Unit tests for peers' option names (src/cli/peers.hpp), and the check that the migration
// guides' option tables match the tables in the code.
#include "cli/peers.hpp"

#include "cli/options.hpp"
#include "cli/uwsgi_ini.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using appserver::cli::Peer;

std::set<std::string> flags_in(const std::string& text) {
    static const std::regex flag(R"(--[a-z][a-z0-9-]*)");
    std::set<std::string> out;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), flag);
         it != std::sregex_iterator(); ++it) {
        out.insert(it->str());
    }
    return out;
}

TEST(Peers, EveryAppserverOptionNamedExists) {
    const std::set<std::string> ours = flags_in(appserver::cli::markdown_reference());
    for (const auto& entry : appserver::cli::peer_options()) {
        for (const auto& named : flags_in(std::string(entry.appserver))) {
            EXPECT_EQ(ours.count(named), 1U) << entry.names << " -> " << named;
        }
        // Notes name appserver's options only (peers' own names are in `names`).
        for (const auto& named : flags_in(std::string(entry.note))) {
            EXPECT_EQ(ours.count(named), 1U) << entry.names << " note: " << named;
        }
    }
}

TEST(Peers, SameNameMeansOurs) {
    // A peer's name that is also appserver's option is documented as that option (the hint is
    // never needed for it: it is not unknown).
    const std::set<std::string> ours = flags_in(appserver::cli::markdown_reference());
    for (const auto& entry : appserver::cli::peer_options()) {
        std::string_view names = entry.names;
        while (!names.empty()) {
            const auto space = names.find(' ');
            const std::string name(names.substr(0, space));
            names = space == std::string_view::npos ? std::string_view() : names.substr(space + 1);
            if (ours.count(name) > 0) {
                EXPECT_NE(std::string(entry.appserver).find(name), std::string::npos)
                    << name << " is appserver's own option but maps to '" << entry.appserver << "'";
            }
        }
    }
}

TEST(Peers, Hints) {
    EXPECT_EQ(appserver::cli::peer_hint("-w"), "did you mean --workers? (gunicorn's -w)");
    EXPECT_EQ(appserver::cli::peer_hint("--chdir"),
              "did you mean --working-dir? (gunicorn's --chdir; also put first on sys.path; "
              "uWSGI's --chdir; also put first on sys.path, as appserver does with "
              "--working-dir)");
    EXPECT_EQ(appserver::cli::peer_hint("--daemon"),
              "gunicorn's --daemon has no equivalent: appserver stays in the foreground: run it "
              "under a supervisor (systemd, a container)");
    EXPECT_EQ(appserver::cli::peer_hint("--nothing-like-this"), "");
}

TEST(Peers, MarkdownTables) {
    const std::string gunicorn = appserver::cli::markdown_peer_options(Peer::gunicorn);
    EXPECT_EQ(gunicorn.rfind("| gunicorn | appserver | notes |\n|---|---|---|\n", 0), 0U);
    EXPECT_NE(gunicorn.find("| `-t`, `--timeout` | `--request-timeout` | "), std::string::npos);
    EXPECT_NE(gunicorn.find("| `-k`, `--worker-class` | none | "), std::string::npos);
    const std::string granian = appserver::cli::markdown_peer_options(Peer::granian);
    EXPECT_NE(granian.find("| `--backpressure` | `--request-queue-size` | "), std::string::npos);
}

} // namespace

// ---- the migration guides' generated tables ---------------------------------------------------

namespace {

struct GeneratedSection {
    const char* file;   // under docs/
    const char* begin;  // the start of its BEGIN marker line
    std::string content;
};

// The guide with the section between its markers replaced by `content`.
std::string with_section(const std::string& text, const GeneratedSection& section) {
    const std::string end_marker = "<!-- END generated -->";
    const auto begin = text.find(section.begin);
    const auto begin_line_end = begin == std::string::npos ? begin : text.find('\n', begin);
    const auto end = begin_line_end == std::string::npos ? begin_line_end
                                                         : text.find(end_marker, begin_line_end);
    if (end == std::string::npos) return "";
    return text.substr(0, begin_line_end + 1) + "\n" + section.content + "\n" + text.substr(end);
}

TEST(OptionsDocs, MigrationGuides) {
    const std::vector<GeneratedSection> sections{
        {"migrating-from-uwsgi.md", "<!-- BEGIN generated: the uWSGI table",
         appserver::cli::markdown_uwsgi_options()},
        {"migrating-from-gunicorn.md", "<!-- BEGIN generated: the gunicorn table",
         appserver::cli::markdown_peer_options(Peer::gunicorn)},
        {"migrating-from-granian.md", "<!-- BEGIN generated: the Granian table",
         appserver::cli::markdown_peer_options(Peer::granian)},
    };
    const char* regenerate = std::getenv("APPSERVER_REGENERATE_DOCS");
    for (const auto& section : sections) {
        SCOPED_TRACE(section.file);
        const auto path = std::filesystem::path(APPSERVER_SOURCE_DIR) / "docs" / section.file;
        std::ifstream in(path, std::ios::binary);
        ASSERT_TRUE(in.good()) << "missing " << path;
        std::ostringstream text;
        text << in.rdbuf();
        const std::string expected = with_section(text.str(), section);
        ASSERT_FALSE(expected.empty()) << path << " has no BEGIN/END generated markers";
        if (regenerate != nullptr && std::string(regenerate) == "1") {
            std::ofstream out(path, std::ios::binary | std::ios::trunc);
            out << expected;
            ASSERT_TRUE(out.good()) << "could not write " << path;
            continue;
        }
        EXPECT_EQ(text.str(), expected)
            << path << " is out of date; rerun this test with APPSERVER_REGENERATE_DOCS=1";
    }
}

} // namespace
