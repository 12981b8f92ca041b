// Re-executing the master (see reexec.hpp).
#include "server/reexec.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace appserver::server {
namespace {

struct CommandLine {
    std::string exe;
    std::vector<std::string> args;
    std::string cwd;
};

CommandLine& command_line() {
    static CommandLine line;
    return line;
}

std::vector<char*> argv_of(std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    return argv;
}

} // namespace

std::string logical_current_directory() {
    const char* pwd = std::getenv("PWD");
    struct stat here {};
    struct stat named {};
    if (pwd != nullptr && pwd[0] == '/' && ::stat(".", &here) == 0 && ::stat(pwd, &named) == 0 &&
        here.st_dev == named.st_dev && here.st_ino == named.st_ino) {
        return pwd;
    }
    char* cwd = ::getcwd(nullptr, 0);
    std::string out = cwd != nullptr ? cwd : "";
    std::free(cwd);
    return out;
}

void remember_command_line() {
    CommandLine& line = command_line();
    if (!line.exe.empty()) {
        return;
    }
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string cwd = logical_current_directory();
    if (n <= 0 || raw.empty() || cwd.empty()) {
        return;
    }
    line.exe.assign(buf, static_cast<std::size_t>(n));
    line.cwd = cwd;
    std::size_t start = 0;
    while (start < raw.size()) {
        const std::size_t end = raw.find('\0', start);
        line.args.push_back(raw.substr(start, end == std::string::npos ? end : end - start));
        if (end == std::string::npos) {
            break;
        }
        start = end + 1;
    }
}

bool can_reexec() {
    return !command_line().exe.empty();
}

pid_t start_import_check() {
    CommandLine line = command_line();
    if (line.exe.empty()) {
        return -1;
    }
    std::vector<char*> argv = argv_of(line.args);
    const pid_t pid = ::fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
        ::setenv(import_check_variable, "1", 1);
        ::unsetenv(inherit_variable);
        // The start directory as it was named (a shell's $PWD): --working-dir since
        // changed the variable, and a symbolic link must be followed afresh.
        ::setenv("PWD", line.cwd.c_str(), 1);
        // Not to outlive a master that stops meanwhile.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::chdir(line.cwd.c_str()) == 0) {
            ::execv(line.exe.c_str(), argv.data());
        }
        ::_exit(127);
    }
    if (pid < 0) {
        spdlog::error("cannot start the import check: {}", std::strerror(errno));
    }
    return pid;
}

std::string reexec(const Inheritance& state) {
    CommandLine line = command_line();
    if (line.exe.empty()) {
        return "the command line this process started with is unknown";
    }
    std::ostringstream value;
    value << "listen=" << state.listen_fd << ";owned=" << (state.listen_owned ? 1 : 0)
          << ";stats=" << state.stats_fd << ";positions=" << state.positions << ";workers=";
    for (std::size_t i = 0; i < state.workers.size(); ++i) {
        const auto& w = state.workers[i];
        value << (i == 0 ? "" : ",") << w.pid << ':' << w.slot << ':' << w.position << ':'
              << (w.draining ? 'd' : 's');
    }
    ::setenv(inherit_variable, value.str().c_str(), 1);
    std::vector<char*> argv = argv_of(line.args);
    // The signals stay blocked across the exec: the new image handles what arrives
    // meanwhile once its master loop runs (a stop is not lost, a worker's exit is reaped).
    const int here = ::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char* pwd = std::getenv("PWD");
    const std::string saved_pwd = pwd != nullptr ? pwd : "";
    if (::chdir(line.cwd.c_str()) != 0) {
        const std::string reason = std::string("chdir ") + line.cwd + ": " + std::strerror(errno);
        if (here >= 0) {
            ::close(here);
        }
        ::unsetenv(inherit_variable);
        return reason;
    }
    ::setenv("PWD", line.cwd.c_str(), 1);
    ::execv(line.exe.c_str(), argv.data());
    const std::string reason = std::string("exec ") + line.exe + ": " + std::strerror(errno);
    // Still this image: back where it was.
    ::unsetenv(inherit_variable);
    ::setenv("PWD", saved_pwd.c_str(), 1);
    if (here >= 0) {
        (void)::fchdir(here);
        ::close(here);
    }
    return reason;
}

std::optional<Inheritance> take_inheritance() {
    const char* raw = std::getenv(inherit_variable);
    if (raw == nullptr) {
        return std::nullopt;
    }
    const std::string text = raw;
    ::unsetenv(inherit_variable);
    Inheritance state;
    std::istringstream fields(text);
    std::string field;
    auto number = [&](const std::string& v) {
        char* end = nullptr;
        const long long n = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || n < 0) {
            throw std::runtime_error(std::string("malformed ") + inherit_variable + ": " + text);
        }
        return n;
    };
    while (std::getline(fields, field, ';')) {
        const auto eq = field.find('=');
        if (eq == std::string::npos) {
            throw std::runtime_error(std::string("malformed ") + inherit_variable + ": " + text);
        }
        const std::string key = field.substr(0, eq);
        const std::string v = field.substr(eq + 1);
        if (key == "listen") {
            state.listen_fd = static_cast<int>(number(v));
        } else if (key == "owned") {
            state.listen_owned = number(v) != 0;
        } else if (key == "stats") {
            state.stats_fd = static_cast<int>(number(v));
        } else if (key == "positions") {
            state.positions = static_cast<std::size_t>(number(v));
        } else if (key == "workers") {
            std::istringstream list(v);
            std::string item;
            while (std::getline(list, item, ',')) {
                std::istringstream parts(item);
                std::string pid, slot, position, mode;
                if (!std::getline(parts, pid, ':') || !std::getline(parts, slot, ':') ||
                    !std::getline(parts, position, ':') || !std::getline(parts, mode)) {
                    throw std::runtime_error(std::string("malformed ") + inherit_variable +
                                             ": " + text);
                }
                state.workers.push_back({static_cast<pid_t>(number(pid)),
                                         static_cast<unsigned>(number(slot)),
                                         static_cast<unsigned>(number(position)), mode == "d"});
            }
        }
    }
    if (state.listen_fd < 0 || state.stats_fd < 0 || state.positions == 0) {
        throw std::runtime_error(std::string("incomplete ") + inherit_variable + ": " + text);
    }
    return state;
}

} // namespace appserver::server
