// Tests for the daemons' shared command line and config file handling.
#include <catch.hpp>

#include <shoal/service/config.h>

#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using nlohmann::json;
using namespace shoal::service;

namespace {

const ProgramInfo kInfo{"testd", "1.2.3", "Does one thing well.", "It also has a paragraph.\n"};

ConfigSchema test_schema()
{
	ConfigSchema s;
	s.add(socket_option("/run/shoal/testd.sock"));
	s.add(log_level_option());
	s.add({.key = "limits.max_clients",
	       .default_value = 1024,
	       .comment = "Most clients connected at once",
	       .flag = "--max-clients",
	       .metavar = "N"});
	s.add({.key = "limits.idle_timeout_ms",
	       .default_value = 30000u,
	       .comment = "How long a result waits for its owner, in milliseconds"});
	s.add({.key = "offset",
	       .default_value = 0,
	       .comment = "A signed adjustment",
	       .flag = "--offset",
	       .metavar = "N",
	       .type = OptionType::Signed});
	s.add({.key = "foreground",
	       .default_value = false,
	       .comment = "Stay in the foreground",
	       .flag = "--foreground",
	       .metavar = "BOOL"});
	s.add({.key = "space",
	       .default_value = json::array(),
	       .comment = "Soft-unicast space this host owns",
	       .flag = "--space",
	       .metavar = "IP:LO-HI",
	       .repeatable = true});
	s.add({.key = "metrics.listen",
	       .default_value = nullptr,
	       .comment = "Where to serve /metrics, or null for nowhere",
	       .flag = "--metrics-listen",
	       .metavar = "ADDR"});
	s.add({.key = "ratio", .default_value = 0.5, .comment = "A fraction", .flag = "--ratio"});
	s.add({.key = "access.allowed_groups",
	       .default_value = json::array({"shoal"}),
	       .comment = "Groups whose members may connect"});
	return s;
}

/* argv as main() gets it, from strings. */
class Args {
public:
	Args(std::initializer_list<std::string> args) : store_{"testd"}
	{
		store_.insert(store_.end(), args);
		for (std::string &s : store_)
			ptrs_.push_back(s.data());
		ptrs_.push_back(nullptr);
	}
	int argc() const { return static_cast<int>(store_.size()); }
	char **argv() { return ptrs_.data(); }

private:
	std::vector<std::string> store_;
	std::vector<char *> ptrs_;
};

CommandLine parse(std::initializer_list<std::string> args)
{
	Args a(args);
	return parse_command_line(kInfo, test_schema(), a.argc(), a.argv());
}

/* A file in /tmp removed when the test is done. */
class TempFile {
public:
	explicit TempFile(const std::string &content)
	{
		char tmpl[] = "/tmp/shoal-test-config-XXXXXX";
		int fd = ::mkstemp(tmpl);
		REQUIRE(fd >= 0);
		::close(fd);
		path_ = tmpl;
		std::ofstream(path_) << content;
	}
	~TempFile() { ::unlink(path_.c_str()); }
	const std::string &path() const { return path_; }

private:
	std::string path_;
};

/* The message an invalid command line gives, after checking it is reported as an error. */
std::string error_of(const CommandLine &cl)
{
	CHECK_FALSE(cl.config.has_value());
	CHECK(cl.exit_code == 2);
	CHECK(cl.to_stderr);
	CHECK(cl.output.rfind("testd: ", 0) == 0);
	CHECK(cl.output.find("Try 'testd --help'") != std::string::npos);
	return cl.output;
}

std::string config_error(const std::string &content)
{
	TempFile f(content);
	try {
		merge_config_file(test_schema(), default_config(test_schema()), f.path());
	} catch (const ConfigError &e) {
		std::string msg = e.what();
		CHECK(msg.rfind(f.path() + ": ", 0) == 0);
		return msg.substr(f.path().size() + 2);
	}
	FAIL("no ConfigError for: " << content);
	return {};
}

bool contains(const std::string &haystack, const std::string &needle)
{
	return haystack.find(needle) != std::string::npos;
}

} // namespace

TEST_CASE("defaults give a nested config that works out of the box", "[config]")
{
	CommandLine cl = parse({});
	REQUIRE(cl.config);
	CHECK(cl.exit_code == 0);
	CHECK(cl.output.empty());
	const json &cfg = *cl.config;
	CHECK(cfg == default_config(test_schema()));
	CHECK(cfg["socket"].get<std::string>() == "/run/shoal/testd.sock");
	CHECK(cfg["log_level"].get<std::string>() == "info");
	CHECK(cfg["limits"]["max_clients"].get<unsigned>() == 1024);
	CHECK(cfg["limits"]["max_clients"].is_number_unsigned());
	CHECK(cfg["limits"]["idle_timeout_ms"].get<unsigned>() == 30000);
	CHECK(cfg["offset"].get<int>() == 0);
	CHECK(cfg["foreground"].get<bool>() == false);
	CHECK(cfg["space"] == json::array());
	CHECK(cfg["metrics"]["listen"].is_null());
	CHECK(cfg["ratio"].get<double>() == 0.5);
	CHECK(cfg["access"]["allowed_groups"] == json::array({"shoal"}));
	CHECK(config_value(cfg, "limits.max_clients").get<unsigned>() == 1024);
	CHECK_THROWS_AS(config_value(cfg, "limits.nope"), ConfigError);
}

TEST_CASE("a config file overrides the defaults it names and keeps the rest", "[config]")
{
	TempFile f(R"(// a comment at the top
{
	// the socket
	"socket": "/tmp/x.sock",
	"limits": { "max_clients": 7 }, // trailing comment
	"space": ["198.51.100.10:9000-9099"],
	"metrics": {"listen": "127.0.0.1:9101"},
	"offset": -3,
	"ratio": 2
})");
	CommandLine cl = parse({"--config", f.path()});
	REQUIRE(cl.config);
	const json &cfg = *cl.config;
	CHECK(cfg["socket"] == "/tmp/x.sock");
	CHECK(cfg["limits"]["max_clients"].get<unsigned>() == 7);
	CHECK(cfg["limits"]["idle_timeout_ms"].get<unsigned>() == 30000);
	CHECK(cfg["space"] == json::array({"198.51.100.10:9000-9099"}));
	CHECK(cfg["metrics"]["listen"] == "127.0.0.1:9101");
	CHECK(cfg["offset"].get<int>() == -3);
	CHECK(cfg["ratio"].get<double>() == 2.0);
	CHECK(cfg["log_level"] == "info");

	TempFile nulls(R"({"metrics": {"listen": null}, "limits": {}})");
	json merged = merge_config_file(test_schema(), cfg, nulls.path());
	CHECK(merged["metrics"]["listen"].is_null());
	CHECK(merged["limits"]["max_clients"].get<unsigned>() == 7);
}

TEST_CASE("flags override the config file", "[config]")
{
	TempFile f(R"({"limits": {"max_clients": 10}, "socket": "/from/file",
		"space": ["file-a", "file-b"], "log_level": "warn"})");
	CommandLine cl = parse({"--max-clients", "20", "--config", f.path(), "--space",
				"flag-a", "--log-level=debug"});
	REQUIRE(cl.config);
	const json &cfg = *cl.config;
	CHECK(cfg["limits"]["max_clients"].get<unsigned>() == 20);
	CHECK(cfg["socket"] == "/from/file");
	/* A repeatable flag replaces the file's list rather than adding to it. */
	CHECK(cfg["space"] == json::array({"flag-a"}));
	CHECK(cfg["log_level"] == "debug");
}

TEST_CASE("repeatable flags collect every value, in order", "[config]")
{
	CommandLine cl = parse({"--space", "a:1-2", "--space=b:3-4", "--space", "c:5-6"});
	REQUIRE(cl.config);
	CHECK((*cl.config)["space"] == json::array({"a:1-2", "b:3-4", "c:5-6"}));
}

TEST_CASE("--flag=value and --flag value are the same", "[config]")
{
	CommandLine a = parse({"--socket=/a/b.sock", "--max-clients=5", "--offset=-9",
			       "--metrics-listen=[::1]:9101", "--ratio=0.25", "--foreground=yes"});
	CommandLine b = parse({"--socket", "/a/b.sock", "--max-clients", "5", "--offset", "-9",
			       "--metrics-listen", "[::1]:9101", "--ratio", "0.25", "--foreground",
			       "yes"});
	REQUIRE(a.config);
	REQUIRE(b.config);
	CHECK(*a.config == *b.config);
	CHECK((*a.config)["socket"] == "/a/b.sock");
	CHECK((*a.config)["offset"].get<int>() == -9);
	CHECK((*a.config)["metrics"]["listen"] == "[::1]:9101");
	CHECK((*a.config)["foreground"] == true);
	/* Only the first '=' splits. */
	CommandLine eq = parse({"--socket=/odd=name"});
	REQUIRE(eq.config);
	CHECK((*eq.config)["socket"] == "/odd=name");
}

TEST_CASE("booleans take true/false/1/0/yes/no", "[config]")
{
	for (const char *t : {"true", "1", "yes", "YES", "True"}) {
		CommandLine cl = parse({"--foreground", t});
		REQUIRE(cl.config);
		CHECK((*cl.config)["foreground"] == true);
	}
	for (const char *f : {"false", "0", "no", "No"}) {
		CommandLine cl = parse({"--foreground", f});
		REQUIRE(cl.config);
		CHECK((*cl.config)["foreground"] == false);
	}
	CHECK(contains(error_of(parse({"--foreground", "maybe"})), "'maybe' is not a boolean"));
	CHECK(contains(error_of(parse({"--foreground=2"})), "'2' is not a boolean"));
}

TEST_CASE("integers are parsed strictly and range-checked", "[config]")
{
	CommandLine max = parse({"--max-clients", "18446744073709551615"});
	REQUIRE(max.config);
	CHECK((*max.config)["limits"]["max_clients"].get<std::uint64_t>() == UINT64_MAX);

	CHECK(contains(error_of(parse({"--max-clients", "12x"})),
		       "--max-clients: '12x' is not an unsigned integer"));
	CHECK(contains(error_of(parse({"--max-clients", "-1"})), "is not an unsigned integer"));
	CHECK(contains(error_of(parse({"--max-clients", "+1"})), "is not an unsigned integer"));
	CHECK(contains(error_of(parse({"--max-clients", " 1"})), "is not an unsigned integer"));
	CHECK(contains(error_of(parse({"--max-clients", "0x10"})), "is not an unsigned integer"));
	CHECK(contains(error_of(parse({"--max-clients="})), "'' is not an unsigned integer"));
	CHECK(contains(error_of(parse({"--max-clients", "18446744073709551616"})),
		       "'18446744073709551616' is out of range"));
	CHECK(contains(error_of(parse({"--offset", "9223372036854775808"})), "is out of range"));
	CHECK(contains(error_of(parse({"--offset", "1.5"})), "'1.5' is not an integer"));
	CHECK(contains(error_of(parse({"--ratio", "abc"})), "'abc' is not a number"));
	CHECK(contains(error_of(parse({"--ratio", "inf"})), "is not a number"));
}

TEST_CASE("command line errors exit 2 on stderr with a hint", "[config]")
{
	CHECK(contains(error_of(parse({"--bogus"})), "unknown option '--bogus'"));
	CHECK(contains(error_of(parse({"--bogus=1"})), "unknown option '--bogus'"));
	CHECK(contains(error_of(parse({"-x"})), "unknown option '-x'"));
	CHECK(contains(error_of(parse({"stray"})), "unexpected argument 'stray'"));
	CHECK(contains(error_of(parse({"--"})), "unexpected argument '--'"));
	CHECK(contains(error_of(parse({"--socket"})), "option '--socket' needs a value (PATH)"));
	CHECK(contains(error_of(parse({"--socket", "--log-level", "debug"})),
		       "option '--socket' needs a value"));
	CHECK(contains(error_of(parse({"--config"})), "option '--config' needs a value (FILE)"));
	CHECK(contains(error_of(parse({"--socket", "a", "--socket", "b"})),
		       "option '--socket' given more than once"));
	CHECK(contains(error_of(parse({"--config", "a", "--config", "b"})),
		       "option '--config' given more than once"));
	CHECK(contains(error_of(parse({"--help=yes"})), "option '--help' takes no value"));
	CHECK(contains(error_of(parse({"--log-level", "verbose"})),
		       "--log-level 'verbose': must be one of trace, debug, info, warn, error, "
		       "critical, off"));
	CHECK(contains(error_of(parse({"--socket="})), "--socket '': must not be empty"));
	CHECK(contains(error_of(parse({"--config", "/nonexistent/shoal.json"})),
		       "/nonexistent/shoal.json: cannot open: No such file or directory"));
	/* Arguments are taken in order: an error before --help is still an error. */
	error_of(parse({"--bogus", "--help"}));
}

TEST_CASE("config file errors name the file and the key", "[config]")
{
	CHECK(config_error(R"({"limits": {"max_clientz": 5}})") == "limits.max_clientz: unknown key");
	CHECK(config_error(R"({"sockets": "/x"})") == "sockets: unknown key");
	CHECK(config_error(R"({"limits": {"max_clients": "5"}})") ==
	      "limits.max_clients: must be an unsigned integer");
	CHECK(config_error(R"({"limits": {"max_clients": -5}})") ==
	      "limits.max_clients: must be an unsigned integer");
	CHECK(config_error(R"({"limits": {"max_clients": 5.5}})") ==
	      "limits.max_clients: must be an unsigned integer");
	CHECK(config_error(R"({"limits": {"max_clients": null}})") ==
	      "limits.max_clients: must be an unsigned integer");
	CHECK(config_error(R"({"limits": 5})") == "limits: must be an object");
	CHECK(config_error(R"({"socket": 5})") == "socket: must be a string");
	CHECK(config_error(R"({"foreground": "yes"})") == "foreground: must be true or false");
	CHECK(config_error(R"({"offset": 9223372036854775808})") == "offset: must be an integer");
	CHECK(config_error(R"({"space": ["a", 1]})") == "space: must be an array of strings");
	CHECK(config_error(R"({"metrics": {"listen": 9101}})") ==
	      "metrics.listen: must be a string or null");
	CHECK(config_error(R"({"ratio": "half"})") == "ratio: must be a number");
	CHECK(config_error(R"({"log_level": "loud"})") ==
	      "log_level: must be one of trace, debug, info, warn, error, critical, off");
	CHECK(config_error(R"(["not", "an", "object"])") == "must be a JSON object");
	CHECK(contains(config_error(R"({"socket": "/x",})"), "invalid JSON: "));
	CHECK(contains(config_error(R"({"socket": "/x")"), "invalid JSON: "));
	CHECK(contains(config_error(""), "invalid JSON: "));
	/* The JSON error says where, and not which exception class. */
	std::string where = config_error("{\n\"socket\": \"/x\"\n\"log_level\": \"info\"}");
	CHECK(contains(where, "line 3"));
	CHECK_FALSE(contains(where, "[json.exception"));

	char dir[] = "/tmp/shoal-test-dir-XXXXXX";
	REQUIRE(::mkdtemp(dir));
	try {
		merge_config_file(test_schema(), json::object(), dir);
		FAIL("a directory was read as a config file");
	} catch (const ConfigError &e) {
		CHECK(contains(e.what(), "Is a directory"));
	}
	::rmdir(dir);
}

TEST_CASE("a bad config file fails the command line with its message", "[config]")
{
	TempFile f(R"({"limits": {"max_clients": "many"}})");
	std::string out = error_of(parse({"--config", f.path()}));
	CHECK(contains(out, "testd: " + f.path() + ": limits.max_clients: must be an unsigned integer"));
	/* A flag does not excuse a bad file. */
	error_of(parse({"--config", f.path(), "--max-clients", "3"}));
}

TEST_CASE("--print-config parses back to the defaults with a comment on every key", "[config]")
{
	ConfigSchema schema = test_schema();
	std::string text = render_default_config(kInfo, schema);
	json parsed = json::parse(text, nullptr, true, true);
	CHECK(parsed == default_config(schema));

	CommandLine cl = parse({"--print-config"});
	CHECK_FALSE(cl.config);
	CHECK(cl.exit_code == 0);
	CHECK_FALSE(cl.to_stderr);
	CHECK(cl.output == text);

	std::vector<std::string> lines;
	std::istringstream in(text);
	for (std::string line; std::getline(in, line);)
		lines.push_back(line);
	for (const Option &o : schema.options()) {
		std::string leaf = o.key.substr(o.key.rfind('.') + 1);
		std::string needle = "\"" + leaf + "\": ";
		bool found = false;
		for (std::size_t i = 0; i < lines.size(); ++i) {
			std::size_t at = lines[i].find(needle);
			if (at == std::string::npos || lines[i].back() == '{')
				continue;
			found = true;
			INFO("key " << o.key);
			REQUIRE(i > 0);
			std::string above = lines[i - 1];
			above.erase(0, above.find_first_not_of('\t'));
			CHECK(above.rfind("//", 0) == 0);
			/* The option's own comment is among the lines above it. */
			bool has_comment = false;
			for (std::size_t j = i; j-- > 0 && lines[j].find("//") != std::string::npos;)
				has_comment = has_comment || contains(lines[j], o.comment);
			CHECK(has_comment);
		}
		INFO("key " << o.key);
		CHECK(found);
	}
	/* Tabs for indentation, nesting follows the dotted keys. */
	CHECK(contains(text, "\t\"limits\": {\n"));
	CHECK(contains(text, "\t\t\"max_clients\": 1024"));
	CHECK(contains(text, "--max-clients N"));
	CHECK(contains(text, "\"listen\": null"));

	/* A config file written from --print-config is a valid config file. */
	TempFile f(text);
	CHECK(merge_config_file(schema, json::object(), f.path()) == default_config(schema));
}

TEST_CASE("--help lists every flag, --version prints the version", "[config]")
{
	ConfigSchema schema = test_schema();
	CommandLine cl = parse({"--help"});
	CHECK_FALSE(cl.config);
	CHECK(cl.exit_code == 0);
	CHECK_FALSE(cl.to_stderr);
	CHECK(cl.output == render_help(kInfo, schema));
	CHECK(cl.output.rfind("Usage: testd ", 0) == 0);
	CHECK(contains(cl.output, kInfo.summary));
	CHECK(contains(cl.output, "It also has a paragraph."));
	for (const Option &o : schema.options()) {
		INFO("option " << o.key);
		if (!o.flag.empty())
			CHECK(contains(cl.output, o.flag + " " + (o.metavar.empty() ? "VALUE" : o.metavar)));
		else
			CHECK(contains(cl.output, o.key));
		CHECK(contains(cl.output, o.comment));
	}
	for (const char *builtin : {"--config FILE", "--print-config", "--version", "--help"})
		CHECK(contains(cl.output, builtin));
	CHECK(parse({"-h"}).output == cl.output);

	CommandLine v = parse({"--socket", "/x", "--version"});
	CHECK(v.exit_code == 0);
	CHECK_FALSE(v.config);
	CHECK(v.output == "testd 1.2.3\n");
}

TEST_CASE("a schema that contradicts itself is refused", "[config]")
{
	auto add = [](Option o) {
		ConfigSchema s = test_schema();
		s.add(std::move(o));
	};
	CHECK_THROWS_AS(add({.key = "socket", .default_value = "x", .comment = "dup"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "limits", .default_value = 1, .comment = "section"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "socket.inner", .default_value = 1, .comment = "under a value"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "bad..key", .default_value = 1, .comment = "c"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "obj", .default_value = json::object(), .comment = "c"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "arr", .default_value = json::array({1}), .comment = "c"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "c", .default_value = "x", .comment = "c", .flag = "--config"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "d", .default_value = "x", .comment = "c", .flag = "--socket"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "e", .default_value = "x", .comment = "c", .flag = "-e"}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "f",
			     .default_value = "x",
			     .comment = "c",
			     .flag = "--f",
			     .repeatable = true}),
			std::invalid_argument);
	CHECK_THROWS_AS(add({.key = "g", .default_value = "x", .comment = "c",
			     .type = OptionType::Unsigned}),
			std::invalid_argument);
	CHECK_THROWS_AS(add(log_level_option("chatty")), std::invalid_argument);
	/* An explicit type normalises a default written loosely. */
	ConfigSchema s;
	s.add({.key = "n", .default_value = 5, .comment = "c", .type = OptionType::Unsigned});
	CHECK(default_config(s)["n"].is_number_unsigned());
	CHECK(s.find("n")->type == OptionType::Unsigned);
	CHECK(s.find("missing") == nullptr);
}

TEST_CASE("range and choice checks", "[config]")
{
	ConfigSchema s;
	s.add({.key = "port",
	       .default_value = 9101,
	       .comment = "A port",
	       .flag = "--port",
	       .check = check_unsigned_range(1, 65535)});
	s.add({.key = "nice",
	       .default_value = 0,
	       .comment = "Niceness",
	       .flag = "--nice",
	       .check = check_signed_range(-20, 19),
	       .type = OptionType::Signed});
	auto run = [&](std::initializer_list<std::string> args) {
		Args a(args);
		return parse_command_line(kInfo, s, a.argc(), a.argv());
	};
	CHECK(run({"--port", "65535"}).config);
	CHECK(contains(run({"--port", "65536"}).output, "--port 65536: must be between 1 and 65535"));
	CHECK(contains(run({"--port", "0"}).output, "must be between 1 and 65535"));
	CHECK(run({"--nice", "-20"}).config);
	CHECK(run({"--nice", "19"}).config);
	CHECK(contains(run({"--nice", "20"}).output, "must be between -20 and 19"));
	CHECK(contains(run({"--nice", "-21"}).output, "must be between -20 and 19"));
}
