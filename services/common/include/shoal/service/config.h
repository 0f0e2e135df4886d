// Every daemon's command line and JSON-with-comments config file, described once by a schema.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal::service {

/* A config file that cannot be used; what() reads "FILE: key.path: what is wrong". */
class ConfigError : public std::runtime_error {
public:
	using std::runtime_error::runtime_error;
};

/*
 * What values an option takes. Auto takes the type from the default: a string, a bool, an
 * array of strings, an integer (unsigned when the default is >= 0, so `1024` means an
 * unsigned limit; say Signed to allow negatives), a floating-point Number. A `nullptr`
 * default makes the option null-able, of type String unless another type is named.
 */
enum class OptionType { Auto, String, Unsigned, Signed, Bool, Number, StringArray };

/* Returns an error ("must be one of ...") or nothing when the value is acceptable. */
using OptionCheck = std::function<std::optional<std::string>(const nlohmann::json &)>;

struct Option {
	std::string key;              /* dotted path in the config: "socket", "limits.max_clients" */
	nlohmann::json default_value; /* fixes the type (see OptionType); nullptr for "none" */
	std::string comment;          /* one line: shown by --print-config and --help */
	std::string flag = {};        /* "--socket", or empty when only the file sets it */
	std::string metavar = {};     /* "PATH", "LEVEL", "N" for --help */
	bool repeatable = false;      /* the flag may repeat; the value is an array of strings */
	OptionCheck check = {};       /* run on file and flag values, after the type check */
	OptionType type = OptionType::Auto; /* resolved by ConfigSchema::add, never Auto after */

	bool nullable() const { return default_value.is_null(); }
};

/* The options of one daemon, in the order --help and --print-config show them. */
class ConfigSchema {
public:
	/*
	 * Adds an option; a schema that contradicts itself (duplicate key or flag, a key that is
	 * also a section, a default of the wrong type or failing its check, a reserved flag such
	 * as --config) throws std::invalid_argument, since that is a bug in the daemon.
	 */
	ConfigSchema &add(Option o);
	const std::vector<Option> &options() const { return options_; }
	const Option *find(std::string_view key) const;
	const Option *find_flag(std::string_view flag) const;

private:
	std::vector<Option> options_;
};

struct ProgramInfo {
	std::string name;        /* "splicer": used in messages and --help */
	std::string version;     /* printed by --version */
	std::string summary;     /* one line under the usage */
	std::string description; /* extra --help paragraphs, may be empty */
};

/*
 * Either a config to run with, or something to print and an exit code: --help, --version and
 * --print-config give 0 with output for stdout; errors give 2 with "NAME: ..." and a hint to
 * --help for stderr.
 */
struct CommandLine {
	std::optional<nlohmann::json> config;
	int exit_code = 0;
	std::string output;
	bool to_stderr = false;
};

/*
 * NAME [--flag VALUE | --flag=VALUE]... [--config FILE] | --help | --version | --print-config.
 * Flags override the file, the file overrides the defaults. Never throws for bad input: every
 * problem comes back in the CommandLine.
 */
CommandLine parse_command_line(const ProgramInfo &info, const ConfigSchema &schema, int argc,
			       char **argv);

/* Writes output to stdout or stderr as the CommandLine says. */
void write_output(const CommandLine &cl);

/* Nested objects from dotted keys: {"socket": ..., "limits": {"max_clients": ...}}. */
nlohmann::json default_config(const ConfigSchema &schema);

/* JSON with a // comment above every key; parses (ignore_comments) back to default_config. */
std::string render_default_config(const ProgramInfo &info, const ConfigSchema &schema);

std::string render_help(const ProgramInfo &info, const ConfigSchema &schema);

/*
 * Reads FILE (JSON with // comments) over base. Throws ConfigError for an unreadable file,
 * malformed JSON, an unknown key, a value of the wrong type or one its check refuses.
 */
nlohmann::json merge_config_file(const ConfigSchema &schema, nlohmann::json base,
				 const std::string &path);

/* The value at a dotted key of a config; throws ConfigError when it is not there. */
const nlohmann::json &config_value(const nlohmann::json &config, std::string_view key);

/* Checks for Option::check. Each lets null through, so they suit null-able options too. */
OptionCheck check_one_of(std::vector<std::string> allowed);
OptionCheck check_unsigned_range(std::uint64_t min, std::uint64_t max);
OptionCheck check_signed_range(std::int64_t min, std::int64_t max);
OptionCheck check_not_empty();

/* spdlog's level names, in order of verbosity. */
inline const std::vector<std::string> &log_level_names()
{
	static const std::vector<std::string> names = {"trace", "debug", "info",    "warn",
						       "error", "critical", "off"};
	return names;
}

/* The two options every daemon has: "socket" (--socket PATH) and "log_level" (--log-level). */
Option socket_option(std::string default_path, std::string comment = "Path of the control socket");
Option log_level_option(std::string default_level = "info");

} // namespace shoal::service
