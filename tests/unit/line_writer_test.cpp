// Unit tests for the buffered line writer (src/log/line_writer.hpp) and the server log
// built on it (src/log/log.hpp): order, drops, flush, reopen, pipes; text and JSON lines,
// request ids.
#include "log/line_writer.hpp"
#include "log/log.hpp"

#include <gtest/gtest.h>
#include <pybind11/embed.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace py = pybind11;
using appserver::log::LineWriter;

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/line_writer_test.XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = tmpl;
    }
    ~TempDir() {
        for (const auto& f : files_) {
            ::unlink(f.c_str());
        }
        ::rmdir(path_.c_str());
    }
    std::string file(const std::string& name) {
        files_.push_back(path_ + "/" + name);
        return files_.back();
    }

private:
    std::string path_;
    std::vector<std::string> files_;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string numbered(int i) {
    return "line " + std::to_string(i) + "\n";
}

std::unique_ptr<LineWriter> open(const std::string& path, std::size_t capacity) {
    std::string error;
    auto w = LineWriter::open_path(path, error, capacity);
    EXPECT_NE(w, nullptr) << error;
    return w;
}

TEST(LineWriter, WritesLinesInOrder) {
    TempDir dir;
    const std::string path = dir.file("a.log");
    auto w = open(path, LineWriter::default_capacity);
    w->start();
    std::string expected;
    for (int i = 0; i < 20000; ++i) {
        EXPECT_TRUE(w->push(numbered(i)));
        expected += numbered(i);
    }
    w->flush();
    EXPECT_EQ(read_file(path), expected);
    EXPECT_EQ(w->dropped(), 0U);
}

TEST(LineWriter, LinesOfConcurrentThreadsStayWholeAndInOrder) {
    TempDir dir;
    const std::string path = dir.file("a.log");
    auto w = open(path, LineWriter::default_capacity);
    w->start();
    constexpr int threads = 4, lines = 5000;
    std::vector<std::thread> pushers;
    for (int t = 0; t < threads; ++t) {
        pushers.emplace_back([&, t] {
            for (int i = 0; i < lines; ++i) {
                w->push("t" + std::to_string(t) + " " + std::to_string(i) + "\n");
            }
        });
    }
    for (auto& p : pushers) {
        p.join();
    }
    w->flush();
    std::istringstream in(read_file(path));
    std::vector<int> next(threads, 0);
    std::string line;
    int count = 0;
    while (std::getline(in, line)) {
        int t = -1, i = -1;
        ASSERT_EQ(std::sscanf(line.c_str(), "t%d %d", &t, &i), 2) << line;
        ASSERT_EQ(i, next[t]) << line;
        ++next[t];
        ++count;
    }
    EXPECT_EQ(count, threads * lines);
}

TEST(LineWriter, DropsAndCountsWhenFull) {
    TempDir dir;
    const std::string path = dir.file("a.log");
    auto w = open(path, 100); // not started: nothing drains until flush()
    std::atomic<std::uint64_t> counter{0};
    w->set_drop_counter(&counter);
    const std::string line(29, 'x');
    for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(w->push(line + "\n"));
    }
    EXPECT_FALSE(w->push(line + "\n"));         // 120 > 100
    EXPECT_FALSE(w->push("a\nb\n" + line + "\n")); // three lines in one push
    EXPECT_TRUE(w->push("tail\n"));             // 95 bytes: still fits
    EXPECT_EQ(w->dropped(), 4U);
    EXPECT_EQ(counter.load(), 4U);
    w->flush();
    EXPECT_EQ(read_file(path), line + "\n" + line + "\n" + line + "\ntail\n");
    EXPECT_TRUE(w->push(line + "\n")); // room again
    EXPECT_EQ(w->dropped(), 4U);
}

TEST(LineWriter, FlushPutsEverythingOnDisk) {
    // The writer would otherwise wait for its batch window before writing.
    TempDir dir;
    const std::string path = dir.file("a.log");
    auto w = open(path, LineWriter::default_capacity);
    w->start();
    std::string expected;
    for (int round = 0; round < 50; ++round) {
        w->push(numbered(round));
        expected += numbered(round);
        w->flush();
        ASSERT_EQ(read_file(path), expected) << round;
    }
}

TEST(LineWriter, WithoutAThreadFlushWritesOnTheCaller) {
    TempDir dir;
    const std::string path = dir.file("a.log");
    auto w = open(path, LineWriter::default_capacity);
    w->push("one\n");
    EXPECT_EQ(read_file(path), ""); // buffered, not written by push
    w->flush();
    EXPECT_EQ(read_file(path), "one\n");
}

TEST(LineWriter, StopWritesWhatIsLeftAndLaterLinesStillArrive) {
    TempDir dir;
    const std::string path = dir.file("a.log");
    auto w = open(path, LineWriter::default_capacity);
    w->start();
    w->push("one\n");
    w->stop();
    EXPECT_EQ(read_file(path), "one\n");
    w->push("two\n");
    w->flush();
    EXPECT_EQ(read_file(path), "one\ntwo\n");
    w->push("three\n");
    w.reset(); // the destructor writes too
    EXPECT_EQ(read_file(path), "one\ntwo\nthree\n");
}

void check_reopen(bool started) {
    TempDir dir;
    const std::string path = dir.file("access.log");
    const std::string rotated = dir.file("access.log.1");
    auto w = open(path, LineWriter::default_capacity);
    if (started) {
        w->start();
    }
    std::string before, after;
    for (int i = 0; i < 1000; ++i) {
        w->push(numbered(i));
        before += numbered(i);
    }
    ASSERT_EQ(::rename(path.c_str(), rotated.c_str()), 0); // logrotate's move...
    w->reopen();                                            // ...and its SIGUSR1
    for (int i = 1000; i < 2000; ++i) {
        w->push(numbered(i));
        after += numbered(i);
    }
    w->flush();
    EXPECT_EQ(read_file(rotated), before);
    EXPECT_EQ(read_file(path), after);
    struct stat st{};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644U & ~[] {
        const mode_t m = ::umask(0);
        ::umask(m);
        return m;
    }());
    EXPECT_EQ(::fcntl(w->fd(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST(LineWriter, ReopenAfterRenameLosesNoLine) {
    check_reopen(true);
}

TEST(LineWriter, ReopenWithoutAThread) {
    check_reopen(false);
}

TEST(LineWriter, ReopenIsANoOpForAnFdItDoesNotOwn) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    {
        auto w = LineWriter::for_fd(p[1]);
        w->push("x\n");
        w->reopen();
        w->flush();
        EXPECT_EQ(w->fd(), p[1]);
    }
    EXPECT_NE(::fcntl(p[1], F_GETFD), -1); // not closed either
    char buf[8] = {};
    EXPECT_EQ(::read(p[0], buf, sizeof buf), 2);
    EXPECT_STREQ(buf, "x\n");
    ::close(p[0]);
    ::close(p[1]);
}

TEST(LineWriter, OpenPath) {
    std::string error;
    EXPECT_EQ(LineWriter::open_path("/nonexistent-dir/x.log", error), nullptr);
    EXPECT_EQ(error, "cannot open access log /nonexistent-dir/x.log: No such file or directory");
    auto out = LineWriter::open_path("-", error);
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(out->fd(), STDOUT_FILENO);
}

// Two writers (as two worker processes would) share one small pipe read slowly: each line
// must come out whole, which takes writes of whole lines of at most PIPE_BUF bytes (a
// longer write blocks half done when the pipe is full, and the other writer's bytes go in
// between).
TEST(LineWriter, PipeWritesNeverSplitALine) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    ::fcntl(p[1], F_SETPIPE_SZ, 4096); // the smallest: writes block often
    std::string received;
    std::thread reader([&] {
        char buf[997];
        for (;;) {
            const ssize_t n = ::read(p[0], buf, sizeof buf);
            if (n <= 0) {
                break;
            }
            received.append(buf, static_cast<std::size_t>(n));
        }
    });
    const auto line = [](char who, int i) {
        return std::string(1, who) + std::to_string(i) + ":" +
               std::string(static_cast<std::size_t>(37 + i * 131 % 1900), who) + "\n";
    };
    constexpr int rounds = 40, lines_per_round = 50, lines = rounds * lines_per_round;
    {
        auto a = LineWriter::for_fd(p[1]);
        auto b = LineWriter::for_fd(p[1]);
        a->start();
        b->start();
        // Flushing after every round makes both writers write often, and at the same time.
        const auto pusher = [&](LineWriter& w, char who) {
            for (int r = 0; r < rounds; ++r) {
                for (int i = r * lines_per_round; i < (r + 1) * lines_per_round; ++i) {
                    w.push(line(who, i));
                }
                w.flush();
            }
        };
        std::thread pa(pusher, std::ref(*a), 'a');
        std::thread pb(pusher, std::ref(*b), 'b');
        pa.join();
        pb.join();
        EXPECT_EQ(a->dropped() + b->dropped(), 0U);
    }
    ::close(p[1]);
    reader.join();
    ::close(p[0]);
    std::istringstream in(received);
    std::string got;
    int next_a = 0, next_b = 0;
    while (std::getline(in, got)) {
        ASSERT_FALSE(got.empty());
        int& next = got[0] == 'a' ? next_a : next_b;
        ASSERT_EQ(got + "\n", line(got[0], next)) << "a line was split";
        ++next;
    }
    EXPECT_EQ(next_a, lines);
    EXPECT_EQ(next_b, lines);
}

TEST(LineWriter, ALineLongerThanPipeBufIsWrittenWhole) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    const std::string small = "small\n";
    const std::string big = std::string(10000, 'x') + "\n";
    auto w = LineWriter::for_fd(p[1]);
    w->start();
    w->push(small);
    w->push(big);
    w->push(small);
    w->flush();
    std::string got(small.size() * 2 + big.size(), '\0');
    std::size_t done = 0;
    while (done < got.size()) {
        const ssize_t n = ::read(p[0], got.data() + done, got.size() - done);
        ASSERT_GT(n, 0);
        done += static_cast<std::size_t>(n);
    }
    EXPECT_EQ(got, small + big + small);
    w.reset();
    ::close(p[0]);
    ::close(p[1]);
}

TEST(LineWriter, AFailedWriteCountsItsLinesAndGoesOn) {
    const auto previous = std::signal(SIGPIPE, SIG_IGN); // as the server does
    for (const bool started : {false, true}) {
        int p[2];
        ASSERT_EQ(::pipe(p), 0);
        ::close(p[0]); // nobody reads: EPIPE
        std::atomic<std::uint64_t> counter{0};
        auto w = LineWriter::for_fd(p[1]);
        w->set_drop_counter(&counter);
        if (started) {
            w->start();
        }
        EXPECT_TRUE(w->push("one\ntwo\n"));
        EXPECT_TRUE(w->push("three\n"));
        w->flush();
        EXPECT_EQ(w->dropped(), 3U) << started;
        EXPECT_EQ(counter.load(), 3U) << started;
        w.reset();
        ::close(p[1]);
    }
    std::signal(SIGPIPE, previous);
}

// A worker is a forked copy of a process whose writer may have a thread: the copy has no
// thread, so it must be neither flushed nor joined (that would hang), and a new writer in
// the child works.
TEST(LineWriter, AForkedChildLeavesTheParentsWriterAlone) {
    TempDir dir;
    const std::string path = dir.file("a.log");
    auto w = open(path, LineWriter::default_capacity);
    w->start();
    w->push("parent 1\n");
    w->flush(); // (then its thread waits for lines, on a condition variable)
    w->push("parent 2\n"); // (and this one is copied into the child's buffer)
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::alarm(10); // a hang fails the test rather than blocking it
        w.reset();
        std::string error;
        auto mine = LineWriter::open_path(path, error);
        mine->start();
        mine->push("child\n");
        mine->flush();
        ::_exit(mine->dropped() == 0 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    w->push("parent 3\n");
    w->flush();
    const std::string content = read_file(path);
    EXPECT_NE(content.find("parent 1\n"), std::string::npos);
    EXPECT_NE(content.find("parent 2\n"), std::string::npos);
    EXPECT_NE(content.find("parent 3\n"), std::string::npos);
    EXPECT_NE(content.find("child\n"), std::string::npos);
    EXPECT_EQ(content.size(), 3 * std::string("parent 1\n").size() + 6); // nothing twice
}

// ---- the server log ------------------------------------------------------------------

// Points fd 2 at a file for the test's duration (the server log's writer writes fd 2).
class StderrCapture {
public:
    StderrCapture() : path_(dir_.file("stderr")) {
        std::fflush(stderr);
        saved_ = ::dup(STDERR_FILENO);
        const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(fd, STDERR_FILENO);
        ::close(fd);
    }
    ~StderrCapture() { restore(); }
    std::string take() {
        appserver::log::flush();
        std::fflush(stderr);
        restore();
        return read_file(path_);
    }

private:
    void restore() {
        if (saved_ >= 0) {
            ::dup2(saved_, STDERR_FILENO);
            ::close(saved_);
            saved_ = -1;
        }
    }
    TempDir dir_;
    std::string path_;
    int saved_ = -1;
};

class LogTest : public ::testing::Test {
protected:
    void TearDown() override {
        // Back to what the other tests expect: synchronous text on stderr.
        appserver::log::set_dropped_counter(nullptr);
        appserver::log::init(appserver::LogLevel::info, "test");
    }
};

const std::string stamp = R"(\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d\])";

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

TEST_F(LogTest, TextLinesAreUnchangedWithoutARequestId) {
    for (const bool background : {false, true}) {
        StderrCapture capture;
        appserver::log::init(appserver::LogLevel::info, "worker.7",
                             appserver::LogFormat::text, background);
        spdlog::info("hello {}", 1);
        spdlog::debug("filtered out");
        appserver::log::app_output().info("from the app");
        const auto lines = lines_of(capture.take());
        ASSERT_EQ(lines.size(), 2U) << background;
        const std::string pid = std::to_string(::getpid());
        EXPECT_TRUE(std::regex_match(lines[0],
                                     std::regex(stamp + R"( \[worker\.7\] \[)" + pid +
                                                R"(\] \[info\] hello 1)")))
            << lines[0];
        EXPECT_TRUE(std::regex_match(
            lines[1], std::regex(stamp + R"( \[worker\.7\] \[)" + pid +
                                 R"(\] \[wsgi\.errors\] from the app)")))
            << lines[1];
    }
}

TEST_F(LogTest, TextLinesCarryTheRequestId) {
    StderrCapture capture;
    appserver::log::init(appserver::LogLevel::info, "worker.0", appserver::LogFormat::text,
                         true);
    {
        appserver::log::RequestIdScope id("abc-123");
        spdlog::error("boom");
        appserver::log::app_output().info("app line");
        {
            appserver::log::RequestIdScope forged("x]\n[request_id=y");
            spdlog::warn("nested");
        }
        EXPECT_EQ(appserver::log::current_request_id(), "abc-123");
    }
    EXPECT_EQ(appserver::log::current_request_id(), "");
    spdlog::info("after");
    const auto lines = lines_of(capture.take());
    ASSERT_EQ(lines.size(), 4U);
    EXPECT_NE(lines[0].find("] [error] [request_id=abc-123] boom"), std::string::npos)
        << lines[0];
    EXPECT_NE(lines[1].find("] [wsgi.errors] [request_id=abc-123] app line"), std::string::npos)
        << lines[1];
    EXPECT_NE(lines[2].find("] [warning] [request_id=x\\x5d\\x0a[request_id=y] nested"),
              std::string::npos)
        << lines[2];
    EXPECT_NE(lines[3].find("] [info] after"), std::string::npos) << lines[3];
    EXPECT_EQ(lines[3].find("request_id"), std::string::npos) << lines[3];
}

TEST_F(LogTest, JsonLines) {
    for (const bool background : {false, true}) {
        StderrCapture capture;
        appserver::log::init(appserver::LogLevel::info, "worker.2",
                             appserver::LogFormat::json, background);
        spdlog::warn("plain");
        {
            appserver::log::RequestIdScope id("rid\"7");
            spdlog::error("Traceback:\n  File \"x\"\tcaf\xc3\xa9 \xff\x01");
            appserver::log::app_output().info("printed by the app");
        }
        const auto lines = lines_of(capture.take());
        ASSERT_EQ(lines.size(), 3U) << background;
        const std::string pid = std::to_string(::getpid());
        EXPECT_TRUE(std::regex_match(
            lines[0], std::regex(R"(\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d",)"
                                 R"("level":"warning","process":"worker\.2","pid":)" +
                                 pid + R"(,"message":"plain"\})")))
            << lines[0];
        EXPECT_NE(lines[1].find(R"("level":"error","process":"worker.2","pid":)" + pid +
                                R"(,"message":"Traceback:\n  File \"x\"\tcaf)"
                                "\xc3\xa9"
                                R"( \u00ff\u0001","request_id":"rid\"7"})"),
                  std::string::npos)
            << lines[1];
        EXPECT_NE(lines[2].find(R"("level":"app","process":"worker.2")"), std::string::npos)
            << lines[2];
        const auto loads = py::module_::import("json").attr("loads");
        for (const auto& line : lines) {
            py::dict parsed = loads(py::bytes(line));
            EXPECT_EQ(parsed["pid"].cast<int>(), ::getpid());
        }
        py::dict tb = loads(py::bytes(lines[1]));
        EXPECT_EQ(tb["message"].cast<std::string>(),
                  "Traceback:\n  File \"x\"\tcaf\xc3\xa9 \xc3\xbf\x01");
        EXPECT_EQ(tb["request_id"].cast<std::string>(), "rid\"7");
    }
}

TEST_F(LogTest, BackgroundLinesWaitForTheWriterOrAFlush) {
    // Lines reach fd 2 through the writer thread (after its batch window) or log::flush(),
    // not from the logging call itself; a re-init writes out the previous writer's lines.
    StderrCapture capture;
    appserver::log::init(appserver::LogLevel::info, "worker.1", appserver::LogFormat::text,
                         true);
    std::atomic<std::uint64_t> dropped{0};
    appserver::log::set_dropped_counter(&dropped);
    for (int i = 0; i < 100; ++i) {
        spdlog::info("line {}", i);
    }
    appserver::log::init(appserver::LogLevel::info, "worker.1b", appserver::LogFormat::text,
                         true);
    spdlog::info("renamed");
    const auto lines = lines_of(capture.take());
    ASSERT_EQ(lines.size(), 101U);
    EXPECT_NE(lines[99].find("[worker.1] ["), std::string::npos);
    EXPECT_NE(lines[99].find("line 99"), std::string::npos);
    EXPECT_NE(lines[100].find("[worker.1b] ["), std::string::npos);
    EXPECT_EQ(dropped.load(), 0U);
}

TEST_F(LogTest, BackgroundCallersNeverWriteThemselves) {
    // stderr is a full non-blocking pipe: a write on the logging thread would fail (the
    // line lost) or, blocking, hang it. The writer thread waits for room instead.
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    ::fcntl(p[1], F_SETFL, O_NONBLOCK);
    const std::string filler(4096, 'f');
    while (::write(p[1], filler.data(), filler.size()) > 0) {
    }
    std::fflush(stderr);
    const int saved = ::dup(STDERR_FILENO);
    ::dup2(p[1], STDERR_FILENO);
    appserver::log::init(appserver::LogLevel::info, "worker.3", appserver::LogFormat::text,
                         true);
    spdlog::info("written while the pipe was full");
    std::string received;
    std::thread reader([&] {
        char buf[4096];
        for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) {
            received.append(buf, static_cast<std::size_t>(n));
        }
    });
    appserver::log::flush();
    ::dup2(saved, STDERR_FILENO);
    ::close(saved);
    appserver::log::init(appserver::LogLevel::info, "test"); // lets go of the pipe
    ::close(p[1]);
    reader.join();
    ::close(p[0]);
    EXPECT_NE(received.find("] [worker.3] ["), std::string::npos);
    EXPECT_NE(received.find("] [info] written while the pipe was full\n"), std::string::npos);
}

TEST_F(LogTest, AForkedChildReinitialises) {
    StderrCapture capture;
    appserver::log::init(appserver::LogLevel::info, "master", appserver::LogFormat::text,
                         true);
    spdlog::info("before the fork");
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::alarm(10);
        appserver::log::init(appserver::LogLevel::info, "worker.5", appserver::LogFormat::json,
                             true);
        spdlog::info("from the child");
        appserver::log::flush();
        ::_exit(appserver::log::process_id() == ::getpid() ? 0 : 3);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    const std::string text = capture.take();
    EXPECT_NE(text.find("] [master] [" + std::to_string(::getpid()) + "] [info] before the fork"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find(R"("process":"worker.5","pid":)" + std::to_string(child) +
                        R"(,"message":"from the child"})"),
              std::string::npos)
        << text;
}

TEST_F(LogTest, ProcessIdIsCached) {
    EXPECT_EQ(appserver::log::process_id(), ::getpid());
    EXPECT_EQ(appserver::log::process_id(), ::getpid());
}

} // namespace
