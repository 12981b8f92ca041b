// Process titles: what `ps` and `top` show for the master and each worker
// ("appserver: master [mysite.wsgi]", "appserver: worker 3 [mysite.wsgi]"), so an
// operator can tell them apart, as with gunicorn and uWSGI.
#pragma once

#include <string>

namespace appserver::server {

// Overwrites this process's command line as /proc/PID/cmdline shows it (within the space
// the original arguments took; a longer title is cut) and its short name (comm, 15
// bytes). Works the same under the standalone executable and `python -m appserver`: the
// argument area is found through /proc/self/stat, not argv. Best effort: does nothing
// where that is not possible.
void set_process_title(const std::string& title, const std::string& short_name);

} // namespace appserver::server
