// Starting this program again: the master re-executes itself to load new code on a reload
// (SIGHUP, with the app imported in the master), keeping its pid, its listening socket,
// its workers and its counters, as NGINX does on a binary upgrade. Before that, a child
// run of the same command line checks that the new code imports.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace appserver::server {

// The command line, executable and directory this process started with. Call once at
// start-up, before anything changes the directory or overwrites the command line (the
// process title does).
void remember_command_line();

// The current directory as the user named it: $PWD when it is this directory (a symbolic
// link such as /srv/app/current -> releases/42 is kept, so a reload finds the release the
// link points to then), else getcwd(). Empty if neither can be read.
std::string logical_current_directory();
bool can_reexec();

// Environment variables between a master and its next image (not options: no APPSERVER_
// prefix, so the typo check of APPSERVER_* variables never sees them).
inline constexpr const char* import_check_variable = "_APPSERVER_IMPORT_CHECK";
inline constexpr const char* inherit_variable = "_APPSERVER_INHERIT";

// Starts the same command line with import_check_variable=1, from the first directory,
// with no signal blocked: it imports the app and exits 0, or prints why not and exits 1.
// Returns its pid, or -1 (logged).
pid_t start_import_check();

// What a master hands its next image.
struct Inheritance {
    int listen_fd = -1;
    bool listen_owned = false; // the socket file (unix) was bound by us: remove it at exit
    int stats_fd = -1;
    std::size_t positions = 0;
    struct Worker {
        pid_t pid = 0;
        unsigned slot = 0;
        unsigned position = 0;
        bool draining = false;
    };
    std::vector<Worker> workers;
};

// Replaces this process's image with the same command line, handing `state` over in
// inherit_variable (the descriptors must already be inheritable). Returns only on
// failure, with the reason.
std::string reexec(const Inheritance& state);

// In the new image: the inherited state (the variable is removed from the environment),
// or nullopt when this process was started afresh. Throws std::runtime_error when the
// variable is malformed.
std::optional<Inheritance> take_inheritance();

} // namespace appserver::server
