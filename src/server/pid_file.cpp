// The master's pid file (see pid_file.hpp).
#include "server/pid_file.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace appserver::server {
namespace {

// The pid the file names, or 0 when it names none (missing, empty, not a number).
pid_t read_pid(const std::string& path) {
    std::ifstream in(path);
    long pid = 0;
    if (!(in >> pid) || pid <= 0) {
        return 0;
    }
    return static_cast<pid_t>(pid);
}

bool process_exists(pid_t pid) {
    return ::kill(pid, 0) == 0 || errno == EPERM;
}

} // namespace

std::string check_pid_file(const std::string& path) {
    const pid_t pid = read_pid(path);
    if (pid != 0 && pid != ::getpid() && process_exists(pid)) {
        return "--pid-file: " + path + " names process " + std::to_string(pid) +
               ", which is still running (another server?); stop it or remove the file";
    }
    return {}; // missing, or stale: it will be replaced
}

std::string write_pid_file(const std::string& path, pid_t pid) {
    const std::string tmp = path + ".tmp." + std::to_string(pid);
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) {
        return "--pid-file: cannot write " + tmp + ": " + std::strerror(errno);
    }
    const bool written = std::fprintf(f, "%d\n", static_cast<int>(pid)) > 0;
    const bool closed = std::fclose(f) == 0;
    if (!written || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        return "--pid-file: cannot write " + path + ": " + why;
    }
    return {};
}

void remove_pid_file(const std::string& path, pid_t pid) {
    if (read_pid(path) == pid) {
        ::unlink(path.c_str());
    }
}

} // namespace appserver::server
