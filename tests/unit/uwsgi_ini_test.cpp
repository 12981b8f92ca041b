// Unit tests for reading uWSGI ini files (src/cli/uwsgi_ini.hpp): the dialect, placeholders,
// and the mapping of each uWSGI option to appserver's, a warning, or a refusal.
#include "cli/options.hpp"
#include "cli/uwsgi_ini.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

using appserver::cli::IniError;
using appserver::cli::IniHost;
using appserver::cli::IniSettings;
using Pairs = std::vector<std::pair<std::string, std::string>>;

IniHost fake_host(std::map<std::string, std::string> env = {}) {
    IniHost host;
    auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(env));
    host.getenv = [shared](const char* name) -> const char* {
        const auto it = shared->find(name);
        return it == shared->end() ? nullptr : it->second.c_str();
    };
    host.cwd = "/srv/app";
    host.hostname = "web-1";
    host.cpus = 8;
    host.uid = 1000;
    host.gid = 1000;
    host.user = "app";
    host.group = "app";
    return host;
}

IniSettings read(const std::string& text, const IniHost& host = fake_host(),
                 const std::string& path = "/etc/uwsgi/mysite.ini",
                 const std::string& section = "uwsgi") {
    return appserver::cli::map_uwsgi_ini(text, path, section, host);
}

// option -> text, in file order.
Pairs values_of(const IniSettings& settings) {
    Pairs out;
    for (const auto& v : settings.values) out.emplace_back(v.option, v.text);
    return out;
}

std::string error_of(const std::string& text, const IniHost& host = fake_host()) {
    try {
        read(text, host);
    } catch (const IniError& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error for:\n" << text;
    return "";
}

TEST(UwsgiIni, CommonOptionsMapToAppserversOptions) {
    const IniSettings s = read("[uwsgi]\n"
                               "chdir = /srv/app\n"
                               "module = mysite.wsgi:application\n"
                               "processes = 4\n"
                               "threads = 2\n"
                               "http-socket = 0.0.0.0:8000\n"
                               "listen = 2048\n"
                               "harakiri = 30\n"
                               "max-requests = 5000\n"
                               "max-requests-delta = 50\n"
                               "reload-on-rss = 512\n"
                               "max-worker-lifetime = 3600\n"
                               "buffer-size = 32768\n"
                               "limit-post = 10485760\n"
                               "env = DJANGO_SETTINGS_MODULE=mysite.settings\n"
                               "env = A=1\n"
                               "pidfile = /run/mysite.pid\n"
                               "lazy-apps = true\n"
                               "chmod-socket = 660\n"
                               "worker-reload-mercy = 20\n");
    const Pairs expected{{"working-dir", "/srv/app"},
                         {"workers", "4"},
                         {"blocking-threads", "2"},
                         {"backlog", "2048"},
                         {"request-timeout", "30"},
                         {"max-requests", "5000"},
                         {"max-requests-jitter", "50"},
                         {"workers-max-rss", "512"},
                         {"workers-lifetime", "3600"},
                         {"max-header-size", "32768"},
                         {"max-body-size", "10485760"},
                         {"env", "DJANGO_SETTINGS_MODULE=mysite.settings"},
                         {"env", "A=1"},
                         {"pid-file", "/run/mysite.pid"},
                         {"lazy-apps", "true"},
                         {"uds-permissions", "660"},
                         {"graceful-timeout", "20"},
                         {"host", "0.0.0.0"},
                         {"port", "8000"}};
    EXPECT_EQ(values_of(s), expected);
    ASSERT_TRUE(s.target);
    EXPECT_EQ(s.target->text, "mysite.wsgi:application");
    EXPECT_EQ(s.target->origin, "/etc/uwsgi/mysite.ini line 3: module");
    EXPECT_EQ(s.values[1].origin, "/etc/uwsgi/mysite.ini line 4: processes");
    EXPECT_TRUE(s.warnings.empty()) << s.warnings.front();
}

TEST(UwsgiIni, PostBufferingTurnsRequestBufferingOnOrOff) {
    EXPECT_EQ(values_of(read("[uwsgi]\nmodule = app\npost-buffering = 8192\n")),
              (Pairs{{"request-buffering", "on"}}));
    EXPECT_EQ(values_of(read("[uwsgi]\nmodule = app\npost-buffering = 0\n")),
              (Pairs{{"request-buffering", "off"}}));
    EXPECT_NE(error_of("[uwsgi]\nmodule = app\npost-buffering = lots\n").find("post-buffering"),
              std::string::npos);
}

TEST(UwsgiIni, WhatAppserverAlwaysDoesNeedsNoWarning) {
    const IniSettings s = read("[uwsgi]\nmodule = app\nmaster = true\nenable-threads = 1\n"
                               "die-on-term = yes\nvacuum = on\nneed-app\nsingle-interpreter = "
                               "true\nplugins = python3,http\nhttp-keepalive = 1\n");
    EXPECT_TRUE(s.warnings.empty()) << s.warnings.front();
    EXPECT_TRUE(s.values.empty());
}

TEST(UwsgiIni, TheOppositeIsWarnedAbout) {
    const IniSettings s = read("[uwsgi]\nmodule = app\nmaster = false\ndie-on-term = 0\n");
    ASSERT_EQ(s.warnings.size(), 2U);
    EXPECT_EQ(s.warnings[0], "/etc/uwsgi/mysite.ini line 3: master = false: appserver always "
                             "runs a master process; ignored");
    EXPECT_EQ(s.warnings[1].rfind("/etc/uwsgi/mysite.ini line 4: die-on-term = 0: SIGTERM", 0), 0U);
}

TEST(UwsgiIni, OptionsWithoutMeaningHereWarnOnceEach) {
    const IniSettings s = read("[uwsgi]\nmodule = app\nthunder-lock = true\ncheaper = 2\n"
                               "thunder-lock = true\nlogto = /var/log/uwsgi.log\n"
                               "post-buffering-bufsize = 8192\nnot-an-option = 1\n");
    ASSERT_EQ(s.warnings.size(), 5U);
    EXPECT_EQ(s.warnings[0], "/etc/uwsgi/mysite.ini line 3: thunder-lock = true: appserver's "
                             "workers share one listening socket without an accept lock; ignored");
    EXPECT_EQ(s.warnings[1].rfind("/etc/uwsgi/mysite.ini line 4: cheaper = 2: appserver runs a "
                                  "fixed number of workers",
                                  0),
              0U);
    EXPECT_EQ(s.warnings[2].rfind("/etc/uwsgi/mysite.ini line 6: logto = /var/log/uwsgi.log: "
                                  "appserver logs to standard error",
                                  0),
              0U);
    EXPECT_EQ(s.warnings[3].rfind("/etc/uwsgi/mysite.ini line 7: post-buffering-bufsize = 8192: ", 0),
              0U);
    EXPECT_EQ(s.warnings[4], "/etc/uwsgi/mysite.ini line 8: not-an-option: not an option "
                             "appserver knows; ignored");
}

TEST(UwsgiIni, StrictRefusesUnknownOptions) {
    EXPECT_EQ(error_of("[uwsgi]\nnot-an-option = 1\nstrict = true\nmodule = app\n"),
              "/etc/uwsgi/mysite.ini line 2: not-an-option: not an option appserver knows "
              "(strict = true)");
}

TEST(UwsgiIni, RefusedOptionsNameTheLineAndSayWhy) {
    const std::string error = error_of("[uwsgi]\nmodule = app\nuid = www-data\n");
    EXPECT_EQ(error.rfind("/etc/uwsgi/mysite.ini line 3: uid = www-data: appserver does not "
                          "switch users",
                          0),
              0U)
        << error;
    for (const char* refused :
         {"socket = :3031", "uwsgi-socket = /tmp/a.sock", "https = :443,a,b", "gid = www-data",
          "protocol = uwsgi", "static-map = /s=/srv/s", "touch-reload = /srv/reload",
          "daemonize = /var/log/u.log", "mount = /app=app.py", "hook-pre-app = exec:true",
          "attach-daemon = celery", "import = tasks", "pythonpath = /elsewhere",
          "ini = other.ini", "if-env = X", "route = ^/x break:404", "cache2 = name=a,items=1"}) {
        SCOPED_TRACE(refused);
        const std::string key = std::string(refused).substr(0, std::string(refused).find(' '));
        EXPECT_EQ(error_of(std::string("[uwsgi]\nmodule = app\n") + refused + "\n")
                      .rfind("/etc/uwsgi/mysite.ini line 3: " + key + " = ", 0),
                  0U);
    }
}

TEST(UwsgiIni, SomeRefusalsDependOnTheValue) {
    // The user and group appserver already runs as, by name or number.
    EXPECT_NO_THROW(read("[uwsgi]\nmodule = app\nuid = app\ngid = 1000\n"));
    EXPECT_NO_THROW(read("[uwsgi]\nmodule = app\nprotocol = http\n"));
    // pythonpath naming the working directory.
    EXPECT_NO_THROW(read("[uwsgi]\nmodule = app\npythonpath = /srv/app/\n"));
    EXPECT_NO_THROW(read("[uwsgi]\npythonpath = /opt/site\nchdir = /opt/site\nmodule = app\n"));
}

TEST(UwsgiIni, HomeIsTheVirtualenv) {
    EXPECT_EQ(values_of(read("[uwsgi]\nmodule = app\nhome = /srv/venv\n")),
              (Pairs{{"virtualenv", "/srv/venv"}}));
    EXPECT_EQ(values_of(read("[uwsgi]\nmodule = app\nvirtualenv = /srv/venv\n")),
              (Pairs{{"virtualenv", "/srv/venv"}}));
}

TEST(UwsgiIni, TargetFromModuleCallableOrWsgiFile) {
    EXPECT_EQ(read("[uwsgi]\nmodule = mysite.wsgi\n").target->text, "mysite.wsgi:application");
    EXPECT_EQ(read("[uwsgi]\nwsgi = mysite.wsgi\ncallable = app\n").target->text,
              "mysite.wsgi:app");
    EXPECT_EQ(read("[uwsgi]\ncallable = app\nmodule = a.b:c\n").target->text, "a.b:c");
    EXPECT_EQ(read("[uwsgi]\nwsgi-file = mysite/wsgi.py\n").target->text,
              "mysite.wsgi:application");
    EXPECT_EQ(read("[uwsgi]\nchdir = /opt/site\nwsgi-file = /opt/site/app.py\ncallable = app\n")
                  .target->text,
              "app:app");
    EXPECT_EQ(read("[uwsgi]\nfile = pkg/__init__.py\n").target->text, "pkg:application");
    EXPECT_EQ(read("[uwsgi]\nmodule = mysite/wsgi.py\n").target->text, "mysite.wsgi:application");
    EXPECT_FALSE(read("[uwsgi]\nprocesses = 2\n").target);
    const std::string elsewhere = error_of("[uwsgi]\nwsgi-file = /opt/other/wsgi.py\n");
    EXPECT_NE(elsewhere.find("wsgi-file = /opt/other/wsgi.py: appserver imports the application "
                             "as a module from its working directory (/srv/app)"),
              std::string::npos)
        << elsewhere;
    EXPECT_NE(error_of("[uwsgi]\nwsgi-file = my-site/wsgi.py\n").find("not a module"),
              std::string::npos);
    EXPECT_NE(error_of("[uwsgi]\nmodule = a\nwsgi-file = b.py\n")
                  .find("the application is named twice (also 'module' on line 2)"),
              std::string::npos);
}

TEST(UwsgiIni, ListeningAddresses) {
    EXPECT_EQ(values_of(read("[uwsgi]\nhttp = :9090\n")),
              (Pairs{{"host", "0.0.0.0"}, {"port", "9090"}}));
    EXPECT_EQ(values_of(read("[uwsgi]\nhttp-socket = /run/app.sock\n")),
              (Pairs{{"uds", "/run/app.sock"}}));
    EXPECT_EQ(values_of(read("[uwsgi]\nhttp-socket = [::1]:80\n")),
              (Pairs{{"host", "::1"}, {"port", "80"}}));
    EXPECT_NE(error_of("[uwsgi]\nhttp = :80\nhttp-socket = :81\n")
                  .find("line 3: http-socket = :81: a second address (line 2 has one); appserver "
                        "listens on one socket"),
              std::string::npos);
    EXPECT_NE(error_of("[uwsgi]\nhttp-socket = @abstract\n")
                  .find("value '@abstract' is an abstract unix socket"),
              std::string::npos);
    EXPECT_EQ(values_of(read("[uwsgi]\nchmod-socket\n")), (Pairs{{"uds-permissions", "666"}}));
}

TEST(UwsgiIni, TheDialect) {
    // Comments are whole lines; quotes and ';' stay in values; keys and values are trimmed;
    // a key without '=' is an empty value (true for a flag); other sections are skipped.
    const IniSettings s = read("; comment\n# comment\n[other]\nprocesses = 9\n[uwsgi]\n"
                               "  env =  A=\"x;y\" # not a comment  \r\n"
                               "lazy-apps\n"
                               "processes=3\n"
                               "processes = 5\n"
                               "[more]\nthreads = 7\n");
    EXPECT_EQ(values_of(s), (Pairs{{"env", "A=\"x;y\" # not a comment"},
                                   {"lazy-apps", "true"},
                                   {"workers", "3"},
                                   {"workers", "5"}}));
    for (const char* no : {"false", "FALSE", "off", "no", "0"}) {
        EXPECT_EQ(read(std::string("[uwsgi]\nlazy-apps = ") + no + "\n").values[0].text, "false");
    }
    EXPECT_EQ(read("[uwsgi]\nlazy-apps = whatever\n").values[0].text, "true"); // as uWSGI
    EXPECT_EQ(error_of("[other]\nprocesses = 2\n"),
              "/etc/uwsgi/mysite.ini: no [uwsgi] section with options");
    EXPECT_EQ(
        values_of(read("[prod]\nprocesses = 2\n", fake_host(), "/etc/uwsgi/mysite.ini", "prod")),
        (Pairs{{"workers", "2"}}));
}

TEST(UwsgiIni, MagicVariables) {
    const IniSettings s = read("[uwsgi]\n"
                               "env = D=%d\nenv = P=%p\nenv = S=%s\nenv = N=%n\nenv = E=%e\n"
                               "env = C=%c\nenv = ZERO=%0\nenv = ONE=%1\nenv = H=%h\nenv = K=%k\n"
                               "env = U=%u %U\nenv = G=%g %G\nenv = V=%v\nenv = PCT=100%%\n"
                               "env = X=%x\nenv = UNKNOWN=a%zb\nenv = END=5%\n");
    EXPECT_EQ(values_of(s), (Pairs{{"env", "D=/etc/uwsgi/"},
                                   {"env", "P=/etc/uwsgi/mysite.ini"},
                                   {"env", "S=mysite.ini"},
                                   {"env", "N=mysite"},
                                   {"env", "E=ini"},
                                   {"env", "C=uwsgi"},
                                   {"env", "ZERO=etc"},
                                   {"env", "ONE=uwsgi"},
                                   {"env", "H=web-1"},
                                   {"env", "K=8"},
                                   {"env", "U=1000 app"},
                                   {"env", "G=1000 app"},
                                   {"env", "V=/srv/app"},
                                   {"env", "PCT=100%"},
                                   {"env", "X="},
                                   {"env", "UNKNOWN=ab"},
                                   {"env", "END=5%"}}));
    EXPECT_EQ(values_of(read("[prod]\nenv = X=%x\n", fake_host(), "/etc/uwsgi/mysite.ini", "prod")),
              (Pairs{{"env", "X=prod"}}));
    // A relative file name is taken from the current directory.
    EXPECT_EQ(values_of(read("[uwsgi]\nchdir = %d\n", fake_host(), "conf/app.ini")),
              (Pairs{{"working-dir", "/srv/app/conf/"}}));
    EXPECT_NE(error_of("[uwsgi]\nenv = V=%V\n").find("the placeholder %V is uWSGI's own"),
              std::string::npos);
}

TEST(UwsgiIni, EnvironmentReferencesAndFiles) {
    const auto host = fake_host({{"PORT", "9000"}, {"EMPTY", ""}});
    const IniSettings s = read("[uwsgi]\n"
                               "base = /opt/%n\n"
                               "set-placeholder = release=42\n"
                               "chdir = %(base)/releases/%(release)\n"
                               "http-socket = :$(PORT)\n"
                               "env = A=$(EMPTY:-fallback)\n"
                               "env = B=$(EMPTY-fallback)\n"
                               "env = C=$(MISSING-other)\n"
                               "env = D=$(MISSING)\n",
                               host);
    EXPECT_EQ(values_of(s), (Pairs{{"working-dir", "/opt/mysite/releases/42"},
                                   {"env", "A=fallback"},
                                   {"env", "B="},
                                   {"env", "C=other"},
                                   {"env", "D=$(MISSING)"},
                                   {"host", "0.0.0.0"},
                                   {"port", "9000"}}));
    // base and release are placeholders, not unknown options; an unset variable is a warning.
    ASSERT_EQ(s.warnings.size(), 1U) << s.warnings.front();
    EXPECT_EQ(s.warnings[0], "/etc/uwsgi/mysite.ini line 9: env: $(MISSING) is not set; left "
                             "as it is, as uWSGI does");
    EXPECT_NE(error_of("[uwsgi]\nchdir = %(nowhere)\n")
                  .find("%(nowhere) names no key of the [uwsgi] section"),
              std::string::npos);
    EXPECT_NE(error_of("[uwsgi]\na = %(b)\nb = %(a)\nchdir = %(a)\n").find("go round in a circle"),
              std::string::npos);
    EXPECT_NE(error_of("[uwsgi]\nprocesses = %(k * 2)\n").find("arithmetic"), std::string::npos);
    EXPECT_NE(error_of("[uwsgi]\nenv = A=@(exec://date)\n").find("only plain files"),
              std::string::npos);

    const auto dir =
        std::filesystem::temp_directory_path() / ("appserver-ini-at-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "secret") << "s3cret\n";
    EXPECT_EQ(values_of(read("[uwsgi]\nenv = KEY=@(" + (dir / "secret").string() + ")\n")),
              (Pairs{{"env", "KEY=s3cret"}}));
    std::filesystem::remove_all(dir);
}

TEST(UwsgiIni, PlaceholdersOnlyWhereTheValueIsUsed) {
    // An ignored option's value is never expanded, so its placeholders cannot fail.
    const IniSettings s = read("[uwsgi]\nmodule = app\nlogto = /var/log/%V.log\n");
    ASSERT_EQ(s.warnings.size(), 1U);
}

TEST(UwsgiIni, ReadsFilesAndSections) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("appserver-ini-read-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "app.ini") << "[uwsgi]\nmodule = first\n[prod]\nmodule = second\n";
    IniHost host = fake_host();
    host.cwd = dir.string();
    EXPECT_EQ(appserver::cli::read_uwsgi_ini("app.ini", host).target->text, "first:application");
    EXPECT_EQ(appserver::cli::read_uwsgi_ini("app.ini:prod", host).target->text,
              "second:application");
    EXPECT_EQ(appserver::cli::read_uwsgi_ini("app.ini:", host).target->text, "first:application");
    try {
        appserver::cli::read_uwsgi_ini("missing.ini", host);
        ADD_FAILURE() << "no error";
    } catch (const IniError& e) {
        EXPECT_EQ(std::string(e.what()),
                  "--ini: cannot read 'missing.ini': No such file or directory");
    }
    std::filesystem::remove_all(dir);
}

TEST(UwsgiIni, HintsForUwsgiFlags) {
    const auto processes = appserver::cli::uwsgi_option_hint("processes");
    ASSERT_TRUE(processes);
    EXPECT_EQ(processes->appserver, "--workers");
    const auto thunder = appserver::cli::uwsgi_option_hint("thunder-lock");
    ASSERT_TRUE(thunder);
    EXPECT_EQ(thunder->appserver, "");
    EXPECT_FALSE(appserver::cli::uwsgi_option_hint("no-such-uwsgi-option"));
    EXPECT_TRUE(appserver::cli::uwsgi_option_hint("hook-as-root")); // a prefix family
}

TEST(UwsgiIni, EveryAppserverFlagNamedExists) {
    static const std::regex flag(R"(--[a-z][a-z0-9-]*)");
    const std::string reference = appserver::cli::markdown_reference();
    std::set<std::string> ours;
    for (auto it = std::sregex_iterator(reference.begin(), reference.end(), flag);
         it != std::sregex_iterator(); ++it) {
        ours.insert(it->str());
    }
    for (const auto& named : appserver::cli::uwsgi_table_flags()) {
        EXPECT_EQ(ours.count(named), 1U) << named;
    }
}

} // namespace
