// What a scrape of /metrics returns: the metric families built from the shared StatsPage,
// /proc and the listening socket, and their text in Prometheus 0.0.4 or OpenMetrics 1.0.
#pragma once

#include "metrics/stats_page.hpp"

#include <prometheus/metric_family.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace appserver::metrics {

struct ScrapeSources {
    const StatsPage* page = nullptr;
    std::size_t active_slots = 0;   // slots 0..active_slots-1 are reported (--workers)
    int listen_fd = -1;             // the server's listening socket
    bool listen_tcp = false;        // TCP_INFO is only meaningful on a TCP listener
    std::string version;            // appserver version
    std::string python_version;     // e.g. "3.11.7"
    pid_t master_pid = 0;           // for the process_* metrics of the serving process
};

// Reads everything now. Slot values and retired totals are read under page->mutex(), so a
// concurrent retire() is seen entirely or not at all; /proc is read after the lock is let go.
std::vector<prometheus::MetricFamily> collect(const ScrapeSources& sources);

enum class ExpositionFormat { prometheus, openmetrics };

// OpenMetrics when the Accept header names application/openmetrics-text (version 1.0.0,
// 0.0.1 or none) with a q-value at least as high as any range the 0.0.4 text matches
// (text/plain, text/*, */*); otherwise (including no header) the 0.0.4 text.
ExpositionFormat negotiate(std::string_view accept_header);

// "text/plain; version=0.0.4; charset=utf-8" or
// "application/openmetrics-text; version=1.0.0; charset=utf-8".
std::string_view content_type(ExpositionFormat format);

// Counter families are named with their "_total" suffix (as the 0.0.4 text shows them);
// the OpenMetrics text names the family without it and its samples with it. HELP texts
// must not contain a backslash or a line feed (prometheus-cpp's 0.0.4 serializer writes
// them unescaped).
std::string serialize(const std::vector<prometheus::MetricFamily>& families,
                      ExpositionFormat format);

} // namespace appserver::metrics
