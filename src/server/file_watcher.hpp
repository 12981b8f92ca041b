// --reload: watches the application's source trees (inotify) and, when a file changes,
// asks this process for a reload by sending it SIGHUP (after 200 ms without further
// changes, so one save or a git checkout is one reload). For development.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace appserver::server {

class FileWatcher {
public:
    // Names (a file's or any directory's on its path) never watched, in fnmatch(3) syntax:
    // hidden files and directories, editor and Python caches, logs and SQLite databases
    // (written by the app itself).
    static const std::vector<std::string>& default_ignore_patterns();

    // Watches every directory under `paths` (recursively, not following symbolic links),
    // except ignored ones. nullptr and error set when nothing can be watched.
    static std::unique_ptr<FileWatcher> start(const std::vector<std::string>& paths,
                                              const std::vector<std::string>& ignore,
                                              std::string& error);
    ~FileWatcher();
    FileWatcher(const FileWatcher&) = delete;
    FileWatcher& operator=(const FileWatcher&) = delete;

    // The last file whose change caused the last SIGHUP, once ("" when none: the signal came
    // from elsewhere).
    std::string take_changed();
    // In a forked worker: close the watcher's descriptors (its thread is not there).
    void after_fork_child();
    std::size_t watched_directories() const { return watched_; }

private:
    FileWatcher(int inotify_fd, int wake_fd, std::vector<std::string> ignore);
    bool ignored(const std::string& name) const;
    void add_tree(const std::string& root);
    void run();

    int inotify_fd_;
    int wake_fd_;
    std::vector<std::string> ignore_;
    std::vector<std::string> dirs_; // by watch descriptor (index); thread only after start
    std::size_t watched_ = 0;
    std::mutex changed_mutex_;
    std::string changed_; // guarded by changed_mutex_
    std::thread thread_;
};

} // namespace appserver::server
