// The master's pid file (--pid-file), for scripts that signal the server by pid (as
// gunicorn's --pid, uWSGI's pidfile and Granian's --pid-file are used).
#pragma once

#include <sys/types.h>

#include <string>

namespace appserver::server {

// Before anything else: "" when path may be used, else why not (it names a process that
// is still running: another server, most likely).
std::string check_pid_file(const std::string& path);

// Writes pid (atomically: a temporary file renamed over it). "" or the error.
std::string write_pid_file(const std::string& path, pid_t pid);

// At exit: removes the file if it still names pid (a newer server may have replaced it).
void remove_pid_file(const std::string& path, pid_t pid);

} // namespace appserver::server
