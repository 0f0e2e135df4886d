// Logging for daemons: one named spdlog logger per component, plain lines that read well in journald.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace shoal::service {

/*
 * Sends every logger's output to stderr. Under journald (JOURNAL_STREAM names our stderr)
 * each line starts with a "<N>" syslog priority so journald keeps the level; elsewhere lines
 * read "LEVEL component: message". Call once at start-up.
 */
void setup_logging(std::string_view level);

/* The logger for one component ("splicer", "runtime", "handoff"), created on first use. */
std::shared_ptr<spdlog::logger> logger(const std::string &component);

/* "ECONNRESET" for ECONNRESET: errno names are what people grep logs and replies for. */
std::string errno_name(int error);

} // namespace shoal::service
