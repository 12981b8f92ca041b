// Unit tests for peers' option names (src/cli/peers.hpp).
#include "cli/options.hpp"
#include "cli/peers.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>

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
