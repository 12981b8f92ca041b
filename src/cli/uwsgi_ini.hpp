// --ini: a uWSGI ini file read into appserver's options. Each uWSGI option the file uses is
// mapped to appserver's, ignored with one warning line (no meaning here), or refused (what
// appserver cannot honour safely). One table in uwsgi_ini.cpp decides, and also drives the
// "did you mean" hints for uWSGI's spellings and the table in docs/migrating-from-uwsgi.md.
#pragma once

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace appserver::cli {

// A value for one of appserver's options, and where in the file it came from.
struct IniValue {
    std::string option; // appserver's option without "--" ("workers"); "" for TARGET
    std::string text;   // in appserver's syntax, to be checked by the option itself
    std::string origin; // "uwsgi.ini line 4: processes"
};

struct IniSettings {
    std::vector<IniValue> values; // in file order: the last one wins for single options
    std::optional<IniValue> target;
    std::vector<std::string> warnings; // one line each
};

// What the reader takes from the process (magic variables, uid/gid, $(VAR)); injectable so
// the tests do not depend on the machine.
struct IniHost {
    std::function<const char*(const char*)> getenv;
    std::string cwd; // absolute
    std::string hostname;
    unsigned cpus = 1;
    unsigned uid = 0;
    unsigned gid = 0;
    std::string user;  // name of uid, empty if it has none
    std::string group; // name of gid, empty if it has none
};

IniHost current_host(std::function<const char*(const char*)> getenv);

// A file that cannot be read, or an option that cannot be honoured: one line, naming the
// file, the line and the option.
class IniError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// spec: "FILE" or "FILE:SECTION" (default section: uwsgi), as uWSGI's --ini takes it.
IniSettings read_uwsgi_ini(const std::string& spec, const IniHost& host);

// The same for text already read: `path` as the user named the file (relative paths are taken
// from host.cwd), `section` the one to read.
IniSettings map_uwsgi_ini(std::string_view text, const std::string& path,
                          const std::string& section, const IniHost& host);

// What appserver has for a uWSGI option name, for "did you mean" (nullopt: not in the table).
struct UwsgiOptionHint {
    std::string_view appserver; // "--workers", "TARGET", or "" when there is no equivalent
    std::string_view note;      // what differs, or why there is no equivalent
};
std::optional<UwsgiOptionHint> uwsgi_option_hint(std::string_view name);

// Every "--flag" the table names as appserver's (checked against the option table by a test).
std::vector<std::string> uwsgi_table_flags();

// The table as Markdown, for docs/migrating-from-uwsgi.md.
std::string markdown_uwsgi_options();

// The names of a table row, written space-separated ("processes workers").
std::vector<std::string_view> split_names(std::string_view names);

} // namespace appserver::cli
