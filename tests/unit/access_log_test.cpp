// Unit tests for the access log (src/log/access_log.hpp): every atom, the common, combined
// and JSON formats for a fixed record, escaping of what clients send, format errors, and
// lines reaching the file through AccessLog.
#include "log/access_log.hpp"

#include <gtest/gtest.h>
#include <pybind11/embed.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace py = pybind11;
using appserver::log::AccessLog;
using appserver::log::AccessLogFormat;
using appserver::log::AccessRecord;
using appserver::log::LineWriter;
using namespace std::chrono;

using Fields = std::vector<std::pair<std::string, std::string>>;

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i]))) {
            return false;
        }
    }
    return true;
}

struct Exchange {
    Fields request;
    Fields response;
};

std::optional<std::string_view> find(const Fields& fields, std::string_view name) {
    for (const auto& [n, v] : fields) {
        if (iequals(n, name)) {
            return std::string_view(v);
        }
    }
    return std::nullopt;
}

// 2000-10-10T13:55:36.789Z, the example of the Common Log Format's documentation.
const system_clock::time_point example_time =
    sys_days(year(2000) / October / 10) + hours(13) + minutes(55) + seconds(36) +
    milliseconds(789);

AccessRecord record_for(const Exchange& ex) {
    AccessRecord r;
    r.remote_addr = "192.0.2.1";
    r.remote_port = 54321;
    r.method = "GET";
    r.target = "/a/b?x=1&y=2";
    r.status = 200;
    r.request_body_bytes = 10;
    r.response_body_bytes = 1234;
    r.start = example_time;
    r.duration = microseconds(1234567);
    r.request_id = "rid-1";
    r.worker = 3;
    r.context = &ex;
    r.request_header = [](const void* c, std::string_view name) {
        return find(static_cast<const Exchange*>(c)->request, name);
    };
    r.response_header = [](const void* c, std::string_view name) {
        return find(static_cast<const Exchange*>(c)->response, name);
    };
    return r;
}

Exchange example_exchange() {
    return {{{"Host", "example.com"},
             {"User-Agent", "curl/8.0"},
             {"Referer", "http://ref/"},
             {"Authorization", "Basic YWxpY2U6c2VjcmV0"}, // alice:secret
             {"X-Custom", "v"}},
            {{"Content-Type", "text/plain"}}};
}

AccessLogFormat compile(std::string_view spec) {
    std::string error;
    auto f = AccessLogFormat::compile(spec, error);
    EXPECT_TRUE(f.has_value()) << spec << ": " << error;
    return std::move(*f);
}

std::string format(std::string_view spec, const AccessRecord& r) {
    std::string out;
    compile(spec).format(r, out);
    return out;
}

std::string compile_error(std::string_view spec) {
    std::string error;
    EXPECT_FALSE(AccessLogFormat::compile(spec, error).has_value()) << spec;
    return error;
}

std::string pid_string() {
    return std::to_string(::getpid());
}

class AccessLogTest : public ::testing::Test {
protected:
    // Fixed local time zone: the expected lines hold a fixed offset.
    static void SetUpTestSuite() {
        if (const char* tz = std::getenv("TZ"); tz != nullptr) {
            saved_tz_ = tz;
        }
        ::setenv("TZ", "UTC", 1);
        ::tzset();
    }
    static void TearDownTestSuite() {
        if (saved_tz_) {
            ::setenv("TZ", saved_tz_->c_str(), 1);
        } else {
            ::unsetenv("TZ");
        }
        ::tzset();
    }
    static inline std::optional<std::string> saved_tz_;
};

TEST_F(AccessLogTest, CommonFormat) {
    const Exchange ex = example_exchange();
    EXPECT_EQ(format("common", record_for(ex)),
              "192.0.2.1 - alice [10/Oct/2000:13:55:36 +0000] \"GET /a/b?x=1&y=2 HTTP/1.1\" "
              "200 1234\n");
}

TEST_F(AccessLogTest, CombinedFormat) {
    const Exchange ex = example_exchange();
    EXPECT_EQ(format("combined", record_for(ex)),
              "192.0.2.1 - alice [10/Oct/2000:13:55:36 +0000] \"GET /a/b?x=1&y=2 HTTP/1.1\" "
              "200 1234 \"http://ref/\" \"curl/8.0\"\n");
}

TEST_F(AccessLogTest, JsonFormat) {
    const Exchange ex = example_exchange();
    EXPECT_EQ(format("json", record_for(ex)),
              R"({"time":"2000-10-10T13:55:36.789+00:00","remote_addr":"192.0.2.1",)"
              R"("remote_port":54321,"method":"GET","path":"/a/b","query":"x=1&y=2",)"
              R"("protocol":"HTTP/1.1","status":200,"request_bytes":10,"response_bytes":1234,)"
              R"("duration_ms":1234.567,"request_id":"rid-1","user_agent":"curl/8.0",)"
              R"("referer":"http://ref/","worker":3,"pid":)" +
                  pid_string() + "}\n");
}

TEST_F(AccessLogTest, EveryAtom) {
    const Exchange ex = example_exchange();
    AccessRecord r = record_for(ex);
    r.version_minor = 0;
    EXPECT_EQ(format("%(h)s|%(l)s|%(u)s|%(t)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|"
                     "%(f)s|%(a)s|%(T)s|%(M)s|%(D)s|%(L)s|%(p)s|%({x-custom}i)s|"
                     "%({CONTENT-TYPE}o)s|%(rid)s|%(w)s|%%|100%%",
                     r),
              "192.0.2.1|-|alice|[10/Oct/2000:13:55:36 +0000]|GET /a/b?x=1&y=2 HTTP/1.0|GET|"
              "/a/b|x=1&y=2|HTTP/1.0|200|1234|1234|http://ref/|curl/8.0|1|1234|1234567|"
              "1.234567|<" +
                  pid_string() + ">|v|text/plain|rid-1|3|%|100%\n");
}

TEST_F(AccessLogTest, MissingValuesAreDashes) {
    // A connection that sent no parsable head and got no response, from a unix socket.
    AccessRecord r;
    r.start = example_time;
    EXPECT_EQ(format("%(h)s|%(u)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(f)s|%(a)s|"
                     "%(L)s|%({x-custom}i)s|%({x-custom}o)s|%(rid)s|%(w)s",
                     r),
              "-|-|-|-|-|-|-|-|0|-|-|-|0.000000|-|-|-|0\n");
    EXPECT_EQ(format("json", r),
              R"({"time":"2000-10-10T13:55:36.789+00:00","remote_addr":null,)"
              R"("remote_port":null,"method":null,"path":null,"query":null,"protocol":null,)"
              R"("status":null,"request_bytes":0,"response_bytes":0,"duration_ms":0.000,)"
              R"("request_id":null,"user_agent":null,"referer":null,"worker":0,"pid":)" +
                  pid_string() + "}\n");
}

TEST_F(AccessLogTest, TimeHasTheLocalOffsetAndEnglishMonths) {
    ::setenv("TZ", "EST5", 1); // UTC-5, no daylight saving time
    ::tzset();
    AccessRecord r;
    r.start = sys_days(year(2021) / January / 2) + hours(3) + milliseconds(5);
    const std::string clf = format("%(t)s", r);
    const std::string json = format("json", r);
    ::setenv("TZ", "UTC", 1);
    ::tzset();
    EXPECT_EQ(clf, "[01/Jan/2021:22:00:00 -0500]\n");
    EXPECT_EQ(json.substr(0, 39), R"({"time":"2021-01-01T22:00:00.005-05:00")");
}

TEST_F(AccessLogTest, DurationsTruncate) {
    AccessRecord r;
    r.duration = nanoseconds(2'999'999'999);
    EXPECT_EQ(format("%(T)s %(M)s %(D)s %(L)s", r), "2 2999 2999999 2.999999\n");
    r.duration = microseconds(123);
    EXPECT_EQ(format("%(T)s %(M)s %(D)s %(L)s", r), "0 0 123 0.000123\n");
}

TEST_F(AccessLogTest, UserComesOnlyFromBasicCredentialsWithAColon) {
    const auto user = [](std::string authorization) {
        Exchange ex{{{"Authorization", std::move(authorization)}}, {}};
        return format("%(u)s", record_for(ex));
    };
    EXPECT_EQ(user("Basic YWxpY2U6c2VjcmV0"), "alice\n");
    EXPECT_EQ(user("basic   YWxpY2U6c2VjcmV0"), "alice\n");
    EXPECT_EQ(user("Basic YSJi/zpwdw=="), "a\\x22b\\xff\n"); // a"b\xff:pw, escaped
    EXPECT_EQ(user("Basic Ym9i"), "-\n");                     // "bob": no password part
    EXPECT_EQ(user("Basic OnB3"), "-\n");                     // ":pw": no user
    EXPECT_EQ(user("Basic !!!!"), "-\n");
    EXPECT_EQ(user("Bearer YWxpY2U6c2VjcmV0"), "-\n");
}

TEST_F(AccessLogTest, TextFormatsEscapeWhatAClientSent) {
    Exchange ex = example_exchange();
    ex.request[1].second = "evil\"\n127.0.0.1 - - [forged]\x7f";
    AccessRecord r = record_for(ex);
    r.target = "/x\n\"\x01\xff\\y";
    const std::string line = format("combined", r);
    EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
    EXPECT_EQ(line,
              "192.0.2.1 - alice [10/Oct/2000:13:55:36 +0000] "
              "\"GET /x\\x0a\\x22\\x01\\xff\\x5cy HTTP/1.1\" 200 1234 \"http://ref/\" "
              "\"evil\\x22\\x0a127.0.0.1 - - [forged]\\x7f\"\n");
}

TEST_F(AccessLogTest, JsonEscapesAndIsAlwaysValid) {
    Exchange ex = example_exchange();
    ex.request[1].second = "caf\xe9 \"agent\"\t\\";
    AccessRecord r = record_for(ex);
    r.target = "/x\n\"\x01\xff\\y?q=\x80";
    const std::string line = format("json", r);
    ASSERT_EQ(line.find('\n'), line.size() - 1);
    EXPECT_NE(line.find(R"("path":"/x\n\"\u0001\u00ff\\y")"), std::string::npos) << line;
    EXPECT_NE(line.find(R"("user_agent":"caf\u00e9 \"agent\"\t\\")"), std::string::npos)
        << line;
    // Python's json (strict UTF-8, RFC 8259) reads it back, bytes as latin-1.
    py::dict parsed = py::module_::import("json").attr("loads")(py::bytes(line));
    EXPECT_EQ(parsed["path"].cast<std::string>(), "/x\n\"\x01\xc3\xbf\\y");
    EXPECT_EQ(parsed["query"].cast<std::string>(), "q=\xc2\x80");
    EXPECT_EQ(parsed["user_agent"].cast<std::string>(), "caf\xc3\xa9 \"agent\"\t\\");
    EXPECT_EQ(parsed["status"].cast<int>(), 200);
    EXPECT_DOUBLE_EQ(parsed["duration_ms"].cast<double>(), 1234.567);
}

TEST_F(AccessLogTest, CompileErrorsNameTheAtom) {
    EXPECT_NE(compile_error("%(h)s %(zz)s").find("%(zz)s"), std::string::npos);
    const std::string environ = compile_error("%({REMOTE_USER}e)s");
    EXPECT_NE(environ.find("%({REMOTE_USER}e)s"), std::string::npos) << environ;
    EXPECT_NE(environ.find("environ"), std::string::npos) << environ;
    const std::string unterminated = compile_error("%(h)s %(t");
    EXPECT_NE(unterminated.find("unterminated '%(t'"), std::string::npos) << unterminated;
    EXPECT_NE(compile_error("%(h)d").find("%(h)"), std::string::npos);
    EXPECT_NE(compile_error("100%").find("%%"), std::string::npos);
    EXPECT_NE(compile_error("%x").find("%%"), std::string::npos);
    EXPECT_NE(compile_error("%({bad name}i)s").find("bad name"), std::string::npos);
    EXPECT_NE(compile_error("%({}o)s").find("%({}o)s"), std::string::npos);
}

TEST_F(AccessLogTest, CheckFormatForTheCommandLine) {
    EXPECT_EQ(appserver::log::check_access_log_format("combined"), "");
    EXPECT_EQ(appserver::log::check_access_log_format("common"), "");
    EXPECT_EQ(appserver::log::check_access_log_format("json"), "");
    EXPECT_EQ(appserver::log::check_access_log_format("%(h)s %({X-Real-IP}i)s %(rid)s"), "");
    EXPECT_EQ(appserver::log::check_access_log_format("plain text, no atoms"), "");
    EXPECT_NE(appserver::log::check_access_log_format("%(nope)s"), "");
}

TEST_F(AccessLogTest, FormatAppendsToTheBuffer) {
    const Exchange ex = example_exchange();
    const AccessLogFormat f = compile("%(s)s");
    std::string out = "before\n";
    f.format(record_for(ex), out);
    f.format(record_for(ex), out);
    EXPECT_EQ(out, "before\n200\n200\n");
}

TEST_F(AccessLogTest, WritesThroughTheLineWriter) {
    char dir_template[] = "/tmp/access_log_test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    const std::string path = std::string(dir_template) + "/access.log";
    std::string error;
    auto writer = LineWriter::open_path(path, error);
    ASSERT_NE(writer, nullptr) << error;
    AccessLog log(std::move(writer), compile("%(m)s %(U)s %(s)s"));
    log.start();
    const Exchange ex = example_exchange();
    AccessRecord r = record_for(ex);
    for (int i = 0; i < 100; ++i) {
        r.status = 200 + i;
        log.write(r);
    }
    log.flush();
    std::ifstream in(path);
    std::stringstream content;
    content << in.rdbuf();
    std::string expected;
    for (int i = 0; i < 100; ++i) {
        expected += "GET /a/b " + std::to_string(200 + i) + "\n";
    }
    EXPECT_EQ(content.str(), expected);
    EXPECT_EQ(log.writer().dropped(), 0U);
    ::unlink(path.c_str());
    ::rmdir(dir_template);
}

} // namespace
