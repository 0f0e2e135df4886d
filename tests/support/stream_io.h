// Blocking stream helpers for tests: write everything, read exactly n bytes, read to EOF, each with a 10 s limit.
#pragma once

#include <string>

namespace shoal::test {

/* Writes all of data (blocking, with a 10 s limit). */
bool write_all(int fd, const std::string &data);
/* Reads exactly n bytes, or until EOF/error/10 s; returns what arrived. */
std::string read_n(int fd, std::size_t n);
/* Reads until EOF (or 10 s); returns what arrived. */
std::string read_to_eof(int fd);

} // namespace shoal::test
