// Reading a uWSGI ini file into appserver's options (--ini).
//
// A reader of its own rather than CLI11's config parser: CLI11 reads ini files into its own
// options, but uWSGI's dialect differs in what matters here. uWSGI substitutes magic variables
// (%d, %n, %h, ...), $(ENV) and %(option) references in values; repeats keys (env = ...,
// several times); takes any value other than false/off/no/0 as true; keeps quotes and ';'
// inside values (only whole lines are comments); and the keys are uWSGI's names, which must be
// mapped, warned about or refused one by one. The rules below follow uWSGI 2.0's core/ini.c
// and its configuration passes.
#include "cli/uwsgi_ini.hpp"

#include "cli/address.hpp"
#include "cli/peers.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace appserver::cli {
namespace {

namespace fs = std::filesystem;

// ---- the file's text ----------------------------------------------------------------------

struct Entry {
    std::string key;
    std::string raw; // before placeholders are substituted
    int line = 0;
    bool placeholder_only = false; // set-placeholder: a name for %(...), never an option
};

std::string_view trim(std::string_view text) {
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    return text;
}

// The lines of one section as uWSGI reads them: '[name]' starts a section, a line starting
// with ';' or '#' is a comment, everything else is key = value (a line without '=' is a key
// with an empty value, which a flag reads as true).
std::vector<Entry> section_entries(std::string_view text, const std::string& section,
                                   bool& section_seen) {
    std::vector<Entry> entries;
    std::string current;
    section_seen = false;
    int number = 0;
    while (!text.empty()) {
        const auto end = text.find('\n');
        const std::string_view line = trim(text.substr(0, end));
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        ++number;
        if (line.empty() || line.front() == ';' || line.front() == '#') continue;
        if (line.front() == '[') {
            current = std::string(line.substr(1, line.size() >= 2 ? line.size() - 2 : 0));
            continue;
        }
        if (current != section) continue;
        section_seen = true;
        const auto equals = line.find('=');
        Entry entry;
        entry.key = std::string(trim(line.substr(0, equals)));
        entry.raw = equals == std::string_view::npos ? std::string()
                                                     : std::string(trim(line.substr(equals + 1)));
        entry.line = number;
        entries.push_back(std::move(entry));
    }
    return entries;
}

// uWSGI's flags: anything but false/off/no/0 is true (an empty value too).
bool uwsgi_true(std::string_view value) {
    std::string lower(value);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return !(lower == "false" || lower == "off" || lower == "no" || lower == "0");
}

bool all_digits(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) != 0;
    });
}

// ---- placeholders ------------------------------------------------------------------------

struct FileNames {
    std::string as_given;                // %o
    std::string absolute;                // %p
    std::string dir;                     // %d, with its trailing '/', as uWSGI has it
    std::string base;                    // %s
    std::string stem;                    // %n
    std::string ext;                     // %e
    std::string dir_name;                // %c
    std::vector<std::string> components; // %0 .. %9
};

FileNames file_names(const std::string& path, const std::string& cwd) {
    FileNames names;
    names.as_given = path;
    fs::path p(path);
    if (p.is_relative()) p = fs::path(cwd) / p;
    std::error_code ec;
    // uWSGI resolves the file's real path, except when the file itself is a symbolic link.
    if (!fs::is_symlink(p, ec)) {
        const fs::path canonical = fs::weakly_canonical(p, ec);
        if (!ec) p = canonical;
    }
    p = p.lexically_normal();
    names.absolute = p.string();
    names.base = p.filename().string();
    names.dir = p.parent_path().string();
    if (names.dir.empty() || names.dir.back() != '/') names.dir += '/';
    const auto dot = names.base.rfind('.');
    names.stem = dot == std::string::npos ? names.base : names.base.substr(0, dot);
    names.ext = dot == std::string::npos ? "" : names.base.substr(dot + 1);
    for (const auto& part : p.parent_path()) {
        if (part != "/" && !part.empty()) names.components.push_back(part.string());
    }
    names.dir_name = names.components.empty() ? "" : names.components.back();
    return names;
}

class Expander {
public:
    Expander(const std::vector<Entry>& entries, const FileNames& file, const std::string& section,
             const IniHost& host, const std::string& display)
        : entries_(entries), file_(file), section_(section), host_(host), display_(display) {}

    // The value with every placeholder substituted; throws IniError naming the line for one
    // that cannot be.
    std::string expand(const Entry& entry) { return expand_at(entry, entry, 0); }

    std::vector<std::string> take_warnings() { return std::move(warnings_); }

private:
    [[noreturn]] void fail(const Entry& at, const std::string& why) const {
        throw IniError(display_ + " line " + std::to_string(at.line) + ": " + at.key + " = " +
                       at.raw + ": " + why);
    }

    std::string expand_at(const Entry& entry, const Entry& at, int depth) {
        if (depth > 16) fail(at, "its %(...) references go round in a circle");
        std::string value = magic(entry.raw, entry);
        value = environment(value, entry);
        value = file_contents(value, entry);
        return references(value, entry, depth);
    }

    // %d, %n, ... substituted first, as uWSGI does when it reads the file. A letter that means
    // nothing to uWSGI becomes empty, as there; one whose meaning is uWSGI's own (its binary,
    // its version, a timestamp) is refused.
    std::string magic(std::string_view raw, const Entry& at) const {
        std::string out;
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] != '%' || i + 1 == raw.size()) {
                out += raw[i];
                continue;
            }
            const char c = raw[++i];
            switch (c) {
            case '%':
                out += '%';
                break;
            case '(':
                out += "%(";
                break;
            case 'o':
            case 'O':
                out += file_.as_given;
                break;
            case 'p':
            case 'P':
                out += file_.absolute;
                break;
            case 'd':
            case 'D':
                out += file_.dir;
                break;
            case 's':
            case 'S':
                out += file_.base;
                break;
            case 'n':
            case 'N':
                out += file_.stem;
                break;
            case 'e':
            case 'E':
                out += file_.ext;
                break;
            case 'c':
            case 'C':
                out += file_.dir_name;
                break;
            case 'x':
            case 'X':
                out += section_ == "uwsgi" ? "" : section_;
                break;
            case 'h':
                out += host_.hostname;
                break;
            case 'k':
                out += std::to_string(host_.cpus);
                break;
            case 'u':
                out += std::to_string(host_.uid);
                break;
            case 'U':
                out += host_.user.empty() ? std::to_string(host_.uid) : host_.user;
                break;
            case 'g':
                out += std::to_string(host_.gid);
                break;
            case 'G':
                out += host_.group.empty() ? std::to_string(host_.gid) : host_.group;
                break;
            case 'v':
                out += host_.cwd;
                break;
            case 'b':
            case 'V':
            case 't':
            case 'T':
            case 'j':
            case 'J':
            case 'i':
            case 'I':
            case '[':
                fail(at,
                     std::string("the placeholder %") + c + " is uWSGI's own and not supported");
            default:
                if (c >= '0' && c <= '9') {
                    const auto index = static_cast<std::size_t>(c - '0');
                    if (index < file_.components.size()) out += file_.components[index];
                }
                break; // any other letter: empty, as in uWSGI
            }
        }
        return out;
    }

    // $(NAME), $(NAME:-default) (unset or empty), $(NAME-default) (unset). An unset NAME
    // without a default stays as it is, as in uWSGI, with a warning.
    std::string environment(const std::string& value, const Entry& at) {
        std::string out;
        std::size_t pos = 0;
        while (true) {
            const auto start = value.find("$(", pos);
            const auto close = start == std::string::npos ? start : value.find(')', start);
            if (close == std::string::npos) break;
            out += value.substr(pos, start - pos);
            const std::string key = value.substr(start + 2, close - start - 2);
            std::string name = key;
            std::optional<std::string> fallback;
            bool empty_counts = false;
            if (const auto colon = key.find(":-"); colon != std::string::npos) {
                name = key.substr(0, colon);
                fallback = key.substr(colon + 2);
                empty_counts = true;
            } else if (const auto dash = key.find('-'); dash != std::string::npos) {
                name = key.substr(0, dash);
                fallback = key.substr(dash + 1);
            }
            const char* set = host_.getenv ? host_.getenv(name.c_str()) : nullptr;
            if (set != nullptr && !(empty_counts && *set == '\0')) {
                out += set;
            } else if (fallback) {
                out += *fallback;
            } else {
                out += value.substr(start, close - start + 1);
                warnings_.push_back(display_ + " line " + std::to_string(at.line) + ": " + at.key +
                                    ": $(" + name + ") is not set; left as it is, as uWSGI does");
            }
            pos = close + 1;
        }
        return out + value.substr(pos);
    }

    // @(PATH): the file's contents without its final line break. uWSGI's other sources
    // (exec://, http://, sym://, ...) are refused.
    std::string file_contents(const std::string& value, const Entry& at) const {
        std::string out;
        std::size_t pos = 0;
        while (true) {
            const auto start = value.find("@(", pos);
            const auto close = start == std::string::npos ? start : value.find(')', start);
            if (close == std::string::npos) break;
            out += value.substr(pos, start - pos);
            std::string path = value.substr(start + 2, close - start - 2);
            if (path.find("://") != std::string::npos) {
                fail(at, "@(" + path + "): only plain files can be read, not uWSGI's schemes");
            }
            if (fs::path(path).is_relative()) path = (fs::path(host_.cwd) / path).string();
            std::ifstream in(path, std::ios::binary);
            if (!in) fail(at, "@(" + path + "): cannot read the file");
            std::ostringstream text;
            text << in.rdbuf();
            std::string contents = text.str();
            if (!contents.empty() && (contents.back() == '\n' || contents.back() == '\r')) {
                contents.pop_back();
            }
            out += contents;
            pos = close + 1;
        }
        return out + value.substr(pos);
    }

    // %(name): the first value of another key of the section (an option or a placeholder).
    std::string references(const std::string& value, const Entry& at, int depth) {
        std::string out;
        std::size_t pos = 0;
        while (true) {
            const auto start = value.find("%(", pos);
            const auto close = start == std::string::npos ? start : value.find(')', start);
            if (close == std::string::npos) break;
            out += value.substr(pos, start - pos);
            const std::string name = value.substr(start + 2, close - start - 2);
            if (name.find(' ') != std::string::npos || name == "_") {
                fail(at, "%(" + name +
                             "): uWSGI's placeholder arithmetic and loops are not "
                             "supported");
            }
            const auto found = std::find_if(entries_.begin(), entries_.end(),
                                            [&](const Entry& e) { return e.key == name; });
            if (found == entries_.end()) {
                fail(at, "%(" + name + ") names no key of the [" + section_ +
                             "] section (UWSGI_* variables are not read)");
            }
            out += expand_at(*found, at, depth + 1);
            pos = close + 1;
        }
        return out + value.substr(pos);
    }

    const std::vector<Entry>& entries_;
    const FileNames& file_;
    const std::string& section_;
    const IniHost& host_;
    const std::string& display_;
    std::vector<std::string> warnings_;
};

// ---- the mapping -------------------------------------------------------------------------

struct Located {
    std::string value;
    const Entry* entry = nullptr;
};

struct State {
    IniSettings out;
    std::string display; // the file as named, for messages
    std::optional<Located> module;
    std::optional<Located> callable;
    std::optional<Located> wsgi_file;
    std::optional<Located> chdir;
    std::optional<Located> address;
};

enum class Treatment { maps, always, ignored, refused };

class Mapper;
using Apply = void (*)(Mapper&);

struct UwsgiOption {
    std::string_view names; // uWSGI's spellings, space-separated; "hook-*" is a prefix
    Treatment treatment;
    std::string_view appserver; // "--workers", "TARGET", "" when none
    std::string_view note;      // what differs, or why not
    Apply apply = nullptr;      // for maps, and for what depends on the value
};

class Mapper {
public:
    Mapper(const Entry& entry, const UwsgiOption& option, Expander& expander, State& state,
           const IniHost& host)
        : entry_(entry), option_(option), expander_(expander), state_(state), host_(host) {}

    const std::string& value() {
        if (!value_) value_ = expander_.expand(entry_);
        return *value_;
    }
    const Entry& entry() const { return entry_; }
    const IniHost& host() const { return host_; }
    State& state() { return state_; }
    std::string origin() const {
        return state_.display + " line " + std::to_string(entry_.line) + ": " + entry_.key;
    }

    void set(std::string_view option) { set(option, value()); }
    void set(std::string_view option, std::string text) {
        state_.out.values.push_back({std::string(option), std::move(text), origin()});
    }
    Located located() { return {value(), &entry_}; }

    [[noreturn]] void refuse(std::string_view why) {
        throw IniError(origin() + (entry_.raw.empty() ? "" : " = " + entry_.raw) + ": " +
                       std::string(why));
    }
    [[noreturn]] void refuse() { refuse(option_.note); }
    void warn(std::string_view why) {
        state_.out.warnings.push_back(origin() + (entry_.raw.empty() ? "" : " = " + entry_.raw) +
                                      ": " + std::string(why) + "; ignored");
    }
    void warn() { warn(option_.note); }

private:
    const Entry& entry_;
    const UwsgiOption& option_;
    Expander& expander_;
    State& state_;
    const IniHost& host_;
    std::optional<std::string> value_;
};

// What appserver always does: nothing to map when the file asks for it, a warning when the
// file asks for the opposite.
void always_when_true(Mapper& m) {
    if (!uwsgi_true(m.value())) m.warn();
}

void set_flag(Mapper& m, std::string_view option) {
    m.set(option, uwsgi_true(m.value()) ? "true" : "false");
}

void set_listen_address(Mapper& m) {
    if (m.state().address) {
        m.refuse("a second address (line " + std::to_string(m.state().address->entry->line) +
                 " has one); appserver listens on one socket");
    }
    m.state().address = m.located();
}

bool names_current(std::string_view value, unsigned id, const std::string& name) {
    return (all_digits(value) && value == std::to_string(id)) || (!name.empty() && value == name);
}

// Equal directories, however written (a trailing '/', "." segments, relative to cwd).
bool same_directory(const std::string& a, const std::string& b, const std::string& cwd) {
    const auto normal = [&](const std::string& p) {
        fs::path path(p);
        if (path.is_relative()) path = fs::path(cwd) / path;
        std::string text = path.lexically_normal().string();
        while (text.size() > 1 && text.back() == '/') text.pop_back();
        return text;
    };
    return normal(a) == normal(b);
}

// Every line of this table is one uWSGI option (or a family of them). Order matters only for
// the documentation; an exact name wins over a prefix.
const std::vector<UwsgiOption>& uwsgi_table() {
    static const std::vector<UwsgiOption> table = {
        // What to serve.
        {"module wsgi", Treatment::maps, "TARGET",
         "module:callable, or the module with 'callable' (default 'application')",
         [](Mapper& m) {
             const std::string& v = m.value();
             if (v.find('/') != std::string::npos ||
                 (v.size() > 3 && v.compare(v.size() - 3, 3, ".py") == 0)) {
                 m.state().wsgi_file = m.located(); // uWSGI loads a path as a file
             } else {
                 m.state().module = m.located();
             }
         }},
        {"callable", Treatment::maps, "TARGET", "the attribute after the ':'",
         [](Mapper& m) { m.state().callable = m.located(); }},
        {"wsgi-file file", Treatment::maps, "TARGET",
         "a .py file under 'chdir' (or the current directory) becomes its dotted module path "
         "('app/wsgi.py' is 'app.wsgi'); a file elsewhere is refused",
         [](Mapper& m) { m.state().wsgi_file = m.located(); }},
        {"chdir", Treatment::maps, "--working-dir",
         "also put first on sys.path, as appserver does with --working-dir",
         [](Mapper& m) {
             m.state().chdir = m.located();
             m.set("working-dir");
         }},
        {"env", Treatment::maps, "--env", "", [](Mapper& m) { m.set("env"); }},
        {"lazy-apps lazy", Treatment::maps, "--lazy-apps", "",
         [](Mapper& m) { set_flag(m, "lazy-apps"); }},
        {"pythonpath python-path pp", Treatment::refused, "",
         "appserver puts only --working-dir first on sys.path: set PYTHONPATH in "
         "appserver's environment instead (accepted when it names the 'chdir' directory)",
         [](Mapper& m) {
             const auto& chdir = m.state().chdir;
             if (!same_directory(m.value(), chdir ? chdir->value : m.host().cwd, m.host().cwd)) {
                 m.refuse();
             }
         }},
        {"home virtualenv venv pyhome", Treatment::maps, "--virtualenv",
         "the virtualenv the application's packages come from (a directory with a "
         "pyvenv.cfg); the pip-installed appserver must already run from it",
         [](Mapper& m) { m.set("virtualenv"); }},
        {"plugins plugin need-plugin need-plugins plugins-dir plugin-dir", Treatment::always, "",
         "appserver serves Python WSGI and speaks HTTP itself: 'python*' and 'http' plugins "
         "need no loading; other plugins are ignored with a warning",
         [](Mapper& m) {
             std::string v = m.value();
             std::replace(v.begin(), v.end(), ',', ' ');
             std::istringstream words(v);
             for (std::string word; words >> word;) {
                 if (word.rfind("python", 0) != 0 && word != "http" && word != "0") {
                     m.warn("appserver has no plugins: '" + word + "' is not loaded");
                     return;
                 }
             }
         }},

        // Where to listen.
        {"http-socket", Treatment::maps, "--bind",
         "HOST:PORT (--host, --port), :PORT (every interface) or a unix socket path (--uds), "
         "served over HTTP by the workers themselves; one address only",
         set_listen_address},
        {"http", Treatment::maps, "--bind",
         "as 'http-socket': appserver has no separate HTTP router process, its workers speak "
         "HTTP themselves",
         set_listen_address},
        {"socket uwsgi-socket suwsgi-socket fastcgi-socket fastcgi-nph-socket scgi-socket "
         "scgi-nph-socket raw-socket puwsgi-socket zerg zerg-server shared-socket",
         Treatment::refused, "",
         "appserver speaks HTTP only, not the uwsgi, FastCGI or SCGI protocol: serve "
         "'http-socket' and point NGINX's 'proxy_pass' (not 'uwsgi_pass') at it"},
        {"protocol socket-protocol", Treatment::refused, "", "appserver speaks HTTP only",
         [](Mapper& m) {
             if (m.value() != "http") m.refuse();
         }},
        {"https https-socket https2 http2 ssl-socket ssl-* https-*", Treatment::refused, "",
         "appserver has no TLS yet: terminate it in front (a load balancer, an ingress, NGINX)"},
        {"chmod-socket chmod", Treatment::maps, "--uds-permissions",
         "an empty value means 666, as in uWSGI",
         [](Mapper& m) {
             const std::string& v = m.value();
             m.set("uds-permissions", v.empty() || v == "1" ? "666" : v);
         }},
        {"chown-socket", Treatment::refused, "",
         "appserver does not change the socket's owner: give --uds-permissions instead"},
        {"listen", Treatment::maps, "--backlog", "uWSGI's default is 100, appserver's 1024",
         [](Mapper& m) { m.set("backlog"); }},
        {"reuse-port so-keepalive tcp-nodelay tcp-fast-open", Treatment::ignored, "",
         "socket tuning appserver does not offer"},

        // Processes and threads.
        {"processes workers", Treatment::maps, "--workers", "",
         [](Mapper& m) { m.set("workers"); }},
        {"threads", Treatment::maps, "--blocking-threads",
         "threads per worker that run the application",
         [](Mapper& m) { m.set("blocking-threads"); }},
        {"master", Treatment::always, "", "appserver always runs a master process",
         always_when_true},
        {"enable-threads", Treatment::always, "", "Python threads always work under appserver",
         always_when_true},
        {"die-on-term", Treatment::always, "",
         "SIGTERM always stops appserver gracefully (SIGHUP reloads)", always_when_true},
        {"vacuum", Treatment::always, "",
         "appserver always removes its unix socket and pid file when it exits", always_when_true},
        {"need-app", Treatment::always, "",
         "appserver always exits (status 1) when the application cannot be imported",
         always_when_true},
        {"single-interpreter", Treatment::always, "",
         "appserver always runs one interpreter per process", always_when_true},
        {"no-orphans", Treatment::always, "", "workers always stop when the master dies",
         always_when_true},
        {"auto-procname", Treatment::always, "",
         "process titles are always set (appserver: master [module:attribute], appserver: "
         "worker N [module:attribute])",
         always_when_true},
        {"py-call-osafterfork", Treatment::always, "",
         "appserver always runs Python's after-fork handlers in the workers", always_when_true},
        {"strict", Treatment::maps, "--ini itself",
         "options appserver does not know are refused instead of warned about", nullptr},
        {"pidfile pidfile2 safe-pidfile safe-pidfile2", Treatment::maps, "--pid-file",
         "written once listening, removed at exit", [](Mapper& m) { m.set("pid-file"); }},
        {"uid gid", Treatment::refused, "",
         "appserver does not switch users: start it as that user (USER in a Dockerfile, User= "
         "in a systemd unit); accepted when it names the user (group) appserver runs as",
         [](Mapper& m) {
             const bool uid = m.entry().key == "uid";
             if (!names_current(m.value(), uid ? m.host().uid : m.host().gid,
                                uid ? m.host().user : m.host().group)) {
                 m.refuse();
             }
         }},
        {"cheaper cheaper-* cheap idle die-on-idle", Treatment::ignored, "",
         "appserver runs a fixed number of workers (--workers; add or remove one with "
         "SIGTTIN/SIGTTOU)"},
        {"thunder-lock", Treatment::ignored, "",
         "appserver's workers share one listening socket without an accept lock"},
        {"offload-threads", Treatment::ignored, "",
         "each worker's event loop writes responses out itself"},
        {"daemonize daemonize2", Treatment::refused, "",
         "appserver stays in the foreground: run it under a supervisor (systemd, a container)"},
        {"procname procname-prefix procname-prefix-spaced procname-append procname-master",
         Treatment::ignored, "",
         "process titles are appserver: master [module:attribute] and appserver: worker N "
         "[module:attribute]"},
        {"cpu-affinity max-fd limit-as limit-nproc umask reaper close-on-exec close-on-exec2",
         Treatment::ignored, "",
         "process settings appserver does not make (use ulimit, "
         "systemd or the container runtime)"},

        // Deadlines, recycling.
        {"harakiri", Treatment::maps, "--request-timeout",
         "seconds; uWSGI kills the worker, appserver answers 504 at once and replaces the "
         "worker only if the thread stays stuck as long again",
         [](Mapper& m) { m.set("request-timeout"); }},
        {"harakiri-verbose harakiri-graceful-timeout harakiri-graceful-signal "
         "harakiri-no-arh",
         Treatment::ignored, "",
         "appserver always logs a stuck request's Python stack (--request-timeout)"},
        {"max-requests", Treatment::maps, "--max-requests", "",
         [](Mapper& m) { m.set("max-requests"); }},
        {"max-requests-delta", Treatment::maps, "--max-requests-jitter",
         "uWSGI adds a fixed step per worker, appserver a random 0 to N",
         [](Mapper& m) { m.set("max-requests-jitter"); }},
        {"max-worker-lifetime", Treatment::maps, "--workers-lifetime",
         "appserver shortens each worker's lifetime by up to 10 % so they leave one by one",
         [](Mapper& m) { m.set("workers-lifetime"); }},
        {"max-worker-lifetime-delta min-worker-lifetime", Treatment::ignored, "",
         "--workers-lifetime already spreads the replacements"},
        {"reload-on-rss", Treatment::maps, "--workers-max-rss",
         "MiB; checked every second rather than after each request",
         [](Mapper& m) { m.set("workers-max-rss"); }},
        {"reload-on-as evil-reload-on-rss evil-reload-on-as", Treatment::ignored, "",
         "--workers-max-rss (from 'reload-on-rss') is appserver's only memory limit"},
        {"worker-reload-mercy", Treatment::maps, "--graceful-timeout",
         "how long a worker may take to finish its requests when it stops",
         [](Mapper& m) { m.set("graceful-timeout"); }},
        {"reload-mercy mule-reload-mercy", Treatment::ignored, "",
         "appserver's only such limit is --graceful-timeout (from 'worker-reload-mercy')"},
        {"socket-timeout http-timeout", Treatment::ignored, "",
         "appserver's deadlines are --header-read-timeout, --read-timeout and --write-timeout"},
        {"wsgi-manage-chunked-input", Treatment::always, "",
         "chunked request bodies always reach wsgi.input, with wsgi.input_terminated set",
         nullptr},
        {"http-keepalive", Treatment::always, "", "keep-alive is always on (--keep-alive-timeout)",
         nullptr},
        {"touch-reload touch-chain-reload touch-workers-reload fs-reload fs-brutal-reload "
         "master-fifo",
         Treatment::refused, "",
         "appserver reloads on SIGHUP to the master (kill -HUP $(cat PIDFILE)), not on a "
         "touched file or a FIFO: deploys relying on it would not reload"},
        {"py-autoreload py-auto-reload python-autoreload python-auto-reload", Treatment::maps,
         "--reload", "development only; appserver watches --reload-paths itself",
         [](Mapper& m) {
             const std::string& v = m.value();
             if (!all_digits(v)) m.refuse("is not a number of seconds");
             if (v.find_first_not_of('0') != std::string::npos) m.set("reload", "true");
         }},

        // Limits.
        {"buffer-size", Treatment::maps, "--max-header-size",
         "the largest request line and headers; uWSGI's default is 4096 bytes, appserver's "
         "64K",
         [](Mapper& m) { m.set("max-header-size"); }},
        {"limit-post", Treatment::maps, "--max-body-size", "bytes; 413 past it",
         [](Mapper& m) { m.set("max-body-size"); }},
        {"post-buffering", Treatment::maps, "--request-buffering",
         "a size turns request buffering on, 0 off; appserver reads chunked bodies whole "
         "(in memory up to 64K, past that in a temporary file) whatever the size, and lets "
         "bodies with a Content-Length stream to the application as it reads them",
         [](Mapper& m) {
             const std::string& v = m.value();
             if (!all_digits(v)) m.refuse("is not a number of bytes");
             m.set("request-buffering",
                   v.find_first_not_of('0') != std::string::npos ? "on" : "off");
         }},
        {"post-buffering-bufsize", Treatment::ignored, "",
         "appserver's buffer sizes for request bodies are fixed (64K in memory, then a "
         "temporary file)"},

        // Logging and statistics.
        {"disable-logging", Treatment::always, "",
         "appserver writes no access log unless --access-log is given", nullptr},
        {"logto logto2 logfile-chown logfile-chmod logger logger-req req-logger log-* "
         "logformat logformat-strftime",
         Treatment::ignored, "",
         "appserver logs to standard error (--log-format text|json) and writes the access log "
         "with --access-log and --access-log-format"},
        {"memory-report stats stats-http stats-server stats-minified enable-metrics "
         "metrics-dir carbon carbon-*",
         Treatment::ignored, "",
         "appserver exports Prometheus metrics with --metrics (docs/metrics.md)"},
        {"show-config", Treatment::ignored, "", "appserver --print-config shows the settings"},

        // Features appserver does not have.
        {"static-* check-static check-static-docroot offload-*", Treatment::refused, "",
         "appserver does not serve static files yet: serve them in front (NGINX) or from the "
         "application (WhiteNoise)"},
        {"mount", Treatment::refused, "",
         "appserver serves one application: give its mount point with --url-path-prefix"},
        {"manage-script-name", Treatment::ignored, "",
         "--url-path-prefix sets SCRIPT_NAME and strips it from PATH_INFO"},
        {"route route-* final-route* error-route* response-route* add-header del-header "
         "rem-header collect-header pull-header",
         Treatment::refused, "", "appserver has no internal routing or header rewriting"},
        {"hook-* exec-* call-* attach-daemon attach-daemon2 smart-attach-daemon "
         "smart-attach-daemon2 attach-control-daemon legion-* cron cron2 unique-cron "
         "legion-cron spooler* mule mules farm",
         Treatment::refused, "",
         "appserver does not run hooks, daemons, cron jobs, spoolers or mules: run them beside "
         "it (the container's or systemd's job)"},
        {"import pyimport py-import python-import shared-import shared-pyimport "
         "shared-py-import shared-python-import early-pyimport early-python-import",
         Treatment::refused, "",
         "appserver imports only the application: import the module from it"},
        {"cache cache2 cache-* queue queue-* sharedarea py-sharedarea", Treatment::refused, "",
         "uWSGI's caches, queues and shared areas (the 'uwsgi' Python module) do not exist here"},
        {"emperor emperor-* vassal-* vassals-*", Treatment::refused, "",
         "appserver has no Emperor: run one appserver per application"},
        {"ini include inherit yaml yml json xml sqlite ldap config", Treatment::refused, "",
         "one file per --ini: merge the included file into it"},
        {"if-* for for-* endfor end-for endif end-if else end", Treatment::refused, "",
         "uWSGI's configuration logic is not supported: write the resulting options"},
        {"chroot unshare namespace jail jail-* cap", Treatment::refused, "",
         "appserver does not confine itself: use the container runtime or systemd"},
        {"paste paste-logger ini-paste ini-paste-logged pecan eval", Treatment::refused, "",
         "appserver loads a module:callable TARGET only"},
        {"wsgi-disable-file-wrapper wsgi-env-behaviour wsgi-env-behavior wsgi-strict "
         "wsgi-accept-buffer wsgi-accept-buffers "
         "py-tracebacker optimize pyargv reload-os-env ignore-sigpipe ignore-write-errors "
         "disable-write-exception honour-stdin http-auto-chunked http-auto-gzip "
         "http-processes http-workers http-modifier1 http-socket-modifier1 "
         "http-socket-modifier2 add-header-* buffer-size-*",
         Treatment::ignored, "", "no meaning for appserver"},
    };
    return table;
}

const UwsgiOption* find_option(std::string_view key) {
    const UwsgiOption* prefix_match = nullptr;
    std::size_t prefix_length = 0;
    for (const auto& option : uwsgi_table()) {
        for (std::string_view name : split_names(option.names)) {
            if (name.back() == '*') {
                const auto stem = name.substr(0, name.size() - 1);
                if (key.substr(0, stem.size()) == stem && stem.size() > prefix_length) {
                    prefix_match = &option;
                    prefix_length = stem.size();
                }
            } else if (name == key) {
                return &option;
            }
        }
    }
    return prefix_match;
}

bool is_identifier(std::string_view part) {
    if (part.empty() || std::isdigit(static_cast<unsigned char>(part.front()))) return false;
    return std::all_of(part.begin(), part.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
}

[[noreturn]] void refuse_at(const State& state, const Located& at, const std::string& why) {
    throw IniError(state.display + " line " + std::to_string(at.entry->line) + ": " +
                   at.entry->key + " = " + at.entry->raw + ": " + why);
}

std::string origin_of(const State& state, const Located& at) {
    return state.display + " line " + std::to_string(at.entry->line) + ": " + at.entry->key;
}

// module/callable/wsgi-file -> TARGET.
void resolve_target(State& state, const IniHost& host) {
    if (state.module && state.wsgi_file) {
        refuse_at(state, *state.wsgi_file,
                  "the application is named twice (also '" + state.module->entry->key +
                      "' on line " + std::to_string(state.module->entry->line) + ")");
    }
    std::string module;
    const Located* from = nullptr;
    if (state.module) {
        module = state.module->value;
        from = &*state.module;
    } else if (state.wsgi_file) {
        from = &*state.wsgi_file;
        // appserver imports a module from its working directory: the file must lie under it.
        fs::path base(state.chdir ? state.chdir->value : host.cwd);
        if (base.is_relative()) base = fs::path(host.cwd) / base;
        fs::path file(state.wsgi_file->value);
        if (file.is_relative()) file = base / file;
        const fs::path relative =
            file.lexically_normal().lexically_relative(base.lexically_normal());
        std::vector<std::string> parts;
        bool ok = !relative.empty() && relative.extension() == ".py";
        for (const auto& part : relative.parent_path()) {
            ok = ok && is_identifier(part.string());
            parts.push_back(part.string());
        }
        const std::string stem = relative.stem().string();
        ok = ok && is_identifier(stem);
        if (!ok) {
            refuse_at(state, *state.wsgi_file,
                      "appserver imports the application as a module from its working directory "
                      "(" +
                          base.lexically_normal().string() +
                          "), and this file is not a module under it: set 'chdir' to the "
                          "directory the module path starts from, or use 'module ='");
        }
        if (stem != "__init__") parts.push_back(stem);
        for (const auto& part : parts) module += (module.empty() ? "" : ".") + part;
    } else {
        return;
    }
    if (module.find(':') == std::string::npos) {
        module += ":" + (state.callable ? state.callable->value : std::string("application"));
    }
    state.out.target = IniValue{"", module, origin_of(state, *from)};
}

void resolve_address(State& state) {
    if (!state.address) return;
    ListenAddress address;
    std::string error;
    if (!parse_uwsgi_address(state.address->value, address, error)) {
        refuse_at(state, *state.address, "value '" + state.address->value + "' " + error);
    }
    const std::string origin = origin_of(state, *state.address);
    if (address.kind == ListenAddress::Kind::unix_socket) {
        state.out.values.push_back({"uds", address.path, origin});
    } else {
        state.out.values.push_back({"host", address.host, origin});
        state.out.values.push_back({"port", address.port, origin});
    }
}

std::string escape_cell(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '|') out += '\\';
        out += c;
    }
    return out;
}

} // namespace

std::vector<std::string_view> split_names(std::string_view names) {
    std::vector<std::string_view> out;
    while (!names.empty()) {
        const auto space = names.find(' ');
        out.push_back(names.substr(0, space));
        names = space == std::string_view::npos ? std::string_view() : names.substr(space + 1);
    }
    return out;
}

IniHost current_host(std::function<const char*(const char*)> getenv) {
    IniHost host;
    host.getenv = std::move(getenv);
    std::error_code ec;
    host.cwd = fs::current_path(ec).string();
    std::array<char, 256> name{};
    if (::gethostname(name.data(), name.size() - 1) == 0) host.hostname = name.data();
    host.cpus = std::max(1U, std::thread::hardware_concurrency());
    host.uid = ::geteuid();
    host.gid = ::getegid();
    if (const passwd* pw = ::getpwuid(host.uid); pw != nullptr) host.user = pw->pw_name;
    if (const group* gr = ::getgrgid(host.gid); gr != nullptr) host.group = gr->gr_name;
    return host;
}

IniSettings map_uwsgi_ini(std::string_view text, const std::string& path,
                          const std::string& section, const IniHost& host) {
    State state;
    state.display = path;
    bool section_seen = false;
    std::vector<Entry> entries = section_entries(text, section, section_seen);
    if (!section_seen) {
        throw IniError(path + ": no [" + section + "] section with options");
    }
    // set / set-placeholder / set-ph: NAME=VALUE defines a placeholder (set: or an option).
    for (auto& entry : entries) {
        if (entry.key == "set" || entry.key == "set-placeholder" || entry.key == "set-ph") {
            const auto equals = entry.raw.find('=');
            if (equals == std::string::npos) continue; // reported as unknown below
            entry.placeholder_only =
                entry.key != "set" || find_option(entry.raw.substr(0, equals)) == nullptr;
            entry.key = std::string(trim(std::string_view(entry.raw).substr(0, equals)));
            entry.raw = std::string(trim(std::string_view(entry.raw).substr(equals + 1)));
        }
    }
    const FileNames names = file_names(path, host.cwd);
    Expander expander(entries, names, section, host, state.display);

    // Keys other values refer to (%(name)) are placeholders: not warned about.
    std::set<std::string> referenced;
    for (const auto& entry : entries) {
        for (auto pos = entry.raw.find("%("); pos != std::string::npos;
             pos = entry.raw.find("%(", pos + 2)) {
            const auto close = entry.raw.find(')', pos);
            if (close != std::string::npos)
                referenced.insert(entry.raw.substr(pos + 2, close - pos - 2));
        }
    }
    // strict = true takes effect for the whole file, as uWSGI's is immediate; chdir is where
    // pythonpath and wsgi-file are taken from, wherever it is in the file.
    bool strict = false;
    for (const auto& entry : entries) {
        if (entry.placeholder_only) continue;
        if (entry.key == "strict") strict = uwsgi_true(expander.expand(entry));
        if (entry.key == "chdir") state.chdir = Located{expander.expand(entry), &entry};
    }

    std::set<std::string> warned;
    for (const auto& entry : entries) {
        if (entry.placeholder_only) continue;
        const UwsgiOption* option = find_option(entry.key);
        if (option == nullptr) {
            if (referenced.count(entry.key) > 0) continue;
            const std::string where =
                state.display + " line " + std::to_string(entry.line) + ": " + entry.key;
            if (strict) {
                throw IniError(where + ": not an option appserver knows (strict = true)");
            }
            if (warned.insert(entry.key).second) {
                state.out.warnings.push_back(where + ": not an option appserver knows; ignored");
            }
            continue;
        }
        Mapper mapper(entry, *option, expander, state, host);
        switch (option->treatment) {
        case Treatment::refused:
            if (option->apply != nullptr) {
                option->apply(mapper);
            } else {
                mapper.refuse();
            }
            break;
        case Treatment::ignored:
            if (warned.insert(entry.key).second) mapper.warn();
            break;
        case Treatment::maps:
        case Treatment::always:
            if (option->apply != nullptr) option->apply(mapper);
            break;
        }
    }
    resolve_target(state, host);
    resolve_address(state);
    for (auto& warning : expander.take_warnings()) state.out.warnings.push_back(std::move(warning));
    return std::move(state.out);
}

IniSettings read_uwsgi_ini(const std::string& spec, const IniHost& host) {
    std::string path = spec;
    std::string section = "uwsgi";
    std::error_code ec;
    // FILE:SECTION, as uWSGI's --ini takes it; a file whose name has a colon still works.
    if (const auto colon = spec.rfind(':');
        colon != std::string::npos && !fs::exists(fs::path(host.cwd) / spec, ec)) {
        path = spec.substr(0, colon);
        if (colon + 1 < spec.size()) section = spec.substr(colon + 1);
    }
    fs::path full(path);
    if (full.is_relative()) full = fs::path(host.cwd) / full;
    std::ifstream in(full, std::ios::binary);
    if (!in || fs::is_directory(full, ec)) {
        const int error = errno;
        throw IniError("--ini: cannot read '" + path + "'" +
                       (error != 0 && !fs::is_directory(full, ec)
                            ? std::string(": ") + std::strerror(error)
                            : std::string(": not a file")));
    }
    std::ostringstream text;
    text << in.rdbuf();
    return map_uwsgi_ini(text.str(), path, section, host);
}

std::optional<UwsgiOptionHint> uwsgi_option_hint(std::string_view name) {
    const UwsgiOption* option = find_option(name);
    if (option == nullptr) return std::nullopt;
    UwsgiOptionHint hint;
    hint.note = option->note;
    if (option->treatment == Treatment::maps) hint.appserver = option->appserver;
    return hint;
}

std::vector<std::string> uwsgi_table_flags() {
    std::vector<std::string> flags;
    for (const auto& option : uwsgi_table()) {
        for (std::string_view text : {option.appserver, option.note}) {
            while (true) {
                const auto start = text.find("--");
                if (start == std::string_view::npos) break;
                auto end = start + 2;
                while (end < text.size() &&
                       (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '-')) {
                    ++end;
                }
                if (end > start + 2) flags.emplace_back(text.substr(start, end - start));
                text.remove_prefix(end);
            }
        }
    }
    return flags;
}

std::string markdown_uwsgi_options() {
    std::ostringstream out;
    out << "| uWSGI option | appserver | notes |\n|---|---|---|\n";
    for (const auto& option : uwsgi_table()) {
        std::string names;
        for (std::string_view name : split_names(option.names)) {
            names += (names.empty() ? "" : ", ") + ("`" + std::string(name) + "`");
        }
        std::string ours;
        switch (option.treatment) {
        case Treatment::maps:
            ours = code_flags(option.appserver);
            break;
        case Treatment::always:
            ours = "always so";
            break;
        case Treatment::ignored:
            ours = "ignored, with a warning";
            break;
        case Treatment::refused:
            ours = "refused (exit 2)";
            break;
        }
        out << "| " << names << " | " << ours << " | " << escape_cell(code_flags(option.note))
            << " |\n";
    }
    return out.str();
}

} // namespace appserver::cli
