// Process titles (see process_title.hpp).
#include "server/process_title.hpp"

#include <sys/prctl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace appserver::server {
namespace {

// Fields 48 and 49 of /proc/self/stat (Linux 3.5+): where the kernel reads the command
// line from. Read once; a forked child has the same addresses.
struct ArgArea {
    char* start = nullptr;
    std::size_t size = 0;
};

ArgArea arg_area() {
    static const ArgArea area = [] {
        ArgArea a;
        std::ifstream in("/proc/self/stat");
        std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        // The command name (field 2) may hold spaces: count fields after its ')'.
        const auto close = stat.rfind(')');
        if (close == std::string::npos) {
            return a;
        }
        std::istringstream fields(stat.substr(close + 2));
        std::string field;
        unsigned long long start = 0;
        unsigned long long end = 0;
        for (int n = 3; fields >> field; ++n) {
            if (n == 48) {
                start = std::strtoull(field.c_str(), nullptr, 10);
            } else if (n == 49) {
                end = std::strtoull(field.c_str(), nullptr, 10);
                break;
            }
        }
        if (start != 0 && end > start) {
            a.start = reinterpret_cast<char*>(static_cast<std::uintptr_t>(start));
            a.size = static_cast<std::size_t>(end - start);
        }
        return a;
    }();
    return area;
}

} // namespace

void set_process_title(const std::string& title, const std::string& short_name) {
    ::prctl(PR_SET_NAME, short_name.c_str(), 0, 0, 0);
    // Under valgrind the area is valgrind's own command line, which it reads again at each
    // fork (to name the child's output file): leave it alone there.
    if (const char* preload = std::getenv("LD_PRELOAD");
        preload != nullptr && std::strstr(preload, "vgpreload") != nullptr) {
        return;
    }
    const ArgArea area = arg_area();
    if (area.start == nullptr || area.size < 2) {
        return;
    }
    // The interpreter copied its arguments at start-up (sys.argv and sys.orig_argv are
    // copies), and so did the option parser, so the original area is free to reuse. All
    // of it is cleared: the kernel shows it up to the first NUL.
    const std::size_t n = std::min(title.size(), area.size - 1);
    std::memset(area.start, 0, area.size);
    std::memcpy(area.start, title.data(), n);
}

} // namespace appserver::server
