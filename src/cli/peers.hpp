// Peers' option names (gunicorn, Granian; uWSGI's come from the --ini table) and what
// appserver has instead: the "did you mean" hint for an unknown option, and the option tables
// of docs/migrating-from-gunicorn.md and docs/migrating-from-granian.md.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace appserver::cli {

enum class Peer { gunicorn, granian };

struct PeerOption {
    Peer peer;
    std::string_view names;     // the peer's spellings, space-separated: "-t --timeout"
    std::string_view appserver; // appserver's option(s) ("--request-timeout"), "" for none
    std::string_view note;      // what differs, or why there is no equivalent
};

const std::vector<PeerOption>& peer_options();

// For an unknown option as typed ("--processes", "-w"): what the peers call it and what
// appserver has instead, as the rest of the error line ("did you mean --workers? (uWSGI's
// --processes)"); empty when no peer has that name.
std::string peer_hint(std::string_view option);

// The table of one peer as Markdown.
std::string markdown_peer_options(Peer peer);

// Markdown: --flags and TARGET in code spans.
std::string code_flags(std::string_view text);

} // namespace appserver::cli
