// Source-tree watcher for --reload (see file_watcher.hpp). The kernel's inotify interface,
// used directly: a recursive watch is a short walk, and it keeps the master free of a
// library with global state.
#include "server/file_watcher.hpp"

#include <fnmatch.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

namespace appserver::server {
namespace {

constexpr std::uint32_t watch_mask = IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                     IN_MOVED_TO | IN_MODIFY | IN_ONLYDIR;
constexpr int quiet_ms = 200;

} // namespace

const std::vector<std::string>& FileWatcher::default_ignore_patterns() {
    static const std::vector<std::string> patterns{
        ".*",     "*~",          "#*#",   "*.swp",   "*.swx",      "*.pyc",   "*.pyo",
        "__pycache__", "*.log",  "*.sqlite3", "*.sqlite3-journal", "*.db", "*.db-journal",
        "node_modules", "4913"};
    return patterns;
}

std::unique_ptr<FileWatcher> FileWatcher::start(const std::vector<std::string>& paths,
                                                const std::vector<std::string>& ignore,
                                                std::string& error) {
    const int ifd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    const int wfd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ifd < 0 || wfd < 0) {
        error = std::string("--reload: cannot watch files: ") + std::strerror(errno);
        if (ifd >= 0) {
            ::close(ifd);
        }
        if (wfd >= 0) {
            ::close(wfd);
        }
        return nullptr;
    }
    std::vector<std::string> patterns = default_ignore_patterns();
    patterns.insert(patterns.end(), ignore.begin(), ignore.end());
    std::unique_ptr<FileWatcher> watcher(new FileWatcher(ifd, wfd, std::move(patterns)));
    for (const auto& path : paths) {
        std::error_code ec;
        if (!std::filesystem::is_directory(path, ec)) {
            error = "--reload-paths: " + path + " is not a directory";
            return nullptr;
        }
        watcher->add_tree(path);
    }
    if (watcher->watched_ == 0) {
        error = "--reload: nothing to watch";
        return nullptr;
    }
    watcher->thread_ = std::thread([w = watcher.get()] { w->run(); });
    return watcher;
}

FileWatcher::FileWatcher(int inotify_fd, int wake_fd, std::vector<std::string> ignore)
    : inotify_fd_(inotify_fd), wake_fd_(wake_fd), ignore_(std::move(ignore)) {}

FileWatcher::~FileWatcher() {
    if (thread_.joinable()) {
        const std::uint64_t one = 1;
        (void)::write(wake_fd_, &one, sizeof one);
        thread_.join();
    }
    ::close(inotify_fd_);
    ::close(wake_fd_);
}

void FileWatcher::after_fork_child() {
    ::close(inotify_fd_);
    ::close(wake_fd_);
    inotify_fd_ = wake_fd_ = -1;
    thread_.detach(); // the thread is the parent's; nothing to join here
}

bool FileWatcher::ignored(const std::string& name) const {
    for (const auto& pattern : ignore_) {
        if (::fnmatch(pattern.c_str(), name.c_str(), 0) == 0) {
            return true;
        }
    }
    return false;
}

void FileWatcher::add_tree(const std::string& root) {
    const int wd = ::inotify_add_watch(inotify_fd_, root.c_str(), watch_mask);
    if (wd < 0) {
        return; // vanished, or no permission: nothing to watch there
    }
    if (static_cast<std::size_t>(wd) >= dirs_.size()) {
        dirs_.resize(static_cast<std::size_t>(wd) + 1);
    }
    if (dirs_[static_cast<std::size_t>(wd)].empty()) {
        ++watched_;
    }
    dirs_[static_cast<std::size_t>(wd)] = root;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(root, ec), end; !ec && it != end;
         it.increment(ec)) {
        const auto& entry = *it;
        std::error_code type_ec;
        if (entry.is_directory(type_ec) && !entry.is_symlink(type_ec) &&
            !ignored(entry.path().filename().string())) {
            add_tree(entry.path().string());
        }
    }
}

void FileWatcher::run() {
    alignas(inotify_event) char buf[16 * 1024];
    std::string change;
    for (;;) {
        pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        // Waiting for the first change: no timeout. After one: until the tree is quiet.
        const int n = ::poll(fds, 2, change.empty() ? -1 : quiet_ms);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 || (fds[1].revents & POLLIN) != 0) {
            return; // stopping
        }
        if (n == 0) {
            {
                std::lock_guard lock(changed_mutex_);
                changed_ = change;
            }
            change.clear();
            ::kill(::getpid(), SIGHUP);
            continue;
        }
        const ssize_t len = ::read(inotify_fd_, buf, sizeof buf);
        for (ssize_t at = 0; len > 0 && at < len;) {
            const auto* event = reinterpret_cast<const inotify_event*>(buf + at);
            at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
            if ((event->mask & IN_Q_OVERFLOW) != 0) {
                change = "(too many changes to list)"; // lost events: reload to be safe
                continue;
            }
            if (event->len == 0 || event->wd < 0 ||
                static_cast<std::size_t>(event->wd) >= dirs_.size()) {
                continue;
            }
            const std::string name = event->name;
            if (ignored(name)) {
                continue;
            }
            const std::string path = dirs_[static_cast<std::size_t>(event->wd)] + "/" + name;
            if ((event->mask & IN_ISDIR) != 0) {
                if ((event->mask & (IN_CREATE | IN_MOVED_TO)) != 0) {
                    add_tree(path); // a new package: watch it too
                }
                continue;
            }
            change = path; // the last one is named (an editor saves via a temp file)
        }
    }
}

std::string FileWatcher::take_changed() {
    std::lock_guard lock(changed_mutex_);
    return std::exchange(changed_, std::string());
}

} // namespace appserver::server
