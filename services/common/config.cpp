// Command-line parsing, config files, --help and --print-config for every daemon.
#include <shoal/service/config.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace shoal::service {

using nlohmann::json;

namespace {

/* Flags the parser handles itself; a schema may not take them. */
constexpr std::string_view kReservedFlags[] = {"--config", "--help", "--version",
					       "--print-config"};

std::vector<std::string_view> split_key(std::string_view key)
{
	std::vector<std::string_view> parts;
	std::size_t start = 0;
	for (;;) {
		std::size_t dot = key.find('.', start);
		parts.push_back(key.substr(start, dot == std::string_view::npos ? dot : dot - start));
		if (dot == std::string_view::npos)
			return parts;
		start = dot + 1;
	}
}

bool valid_key(std::string_view key)
{
	if (key.empty())
		return false;
	for (std::string_view part : split_key(key)) {
		if (part.empty())
			return false;
		for (char c : part)
			if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
				return false;
	}
	return true;
}

bool valid_flag(std::string_view flag)
{
	if (flag.size() < 3 || flag.substr(0, 2) != "--" || flag[2] == '-')
		return false;
	return std::all_of(flag.begin() + 2, flag.end(), [](char c) {
		return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
	});
}

const char *type_name(const Option &o)
{
	switch (o.type) {
	case OptionType::String:
		return o.nullable() ? "a string or null" : "a string";
	case OptionType::Unsigned:
		return o.nullable() ? "an unsigned integer or null" : "an unsigned integer";
	case OptionType::Signed:
		return o.nullable() ? "an integer or null" : "an integer";
	case OptionType::Bool:
		return o.nullable() ? "true, false or null" : "true or false";
	case OptionType::Number:
		return o.nullable() ? "a number or null" : "a number";
	case OptionType::StringArray:
		return o.nullable() ? "an array of strings or null" : "an array of strings";
	case OptionType::Auto:
		break;
	}
	return "a value";
}

/*
 * Checks a value's type and normalises it so the daemon's get<>() sees what it expects
 * (a non-negative signed JSON integer becomes unsigned, say). Returns the error, if any.
 */
std::optional<std::string> coerce(const Option &o, json &v)
{
	bool ok = false;
	if (v.is_null()) {
		ok = o.nullable();
	} else {
		switch (o.type) {
		case OptionType::String:
			ok = v.is_string();
			break;
		case OptionType::Unsigned:
			if (v.is_number_unsigned()) {
				ok = true;
			} else if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
				v = static_cast<std::uint64_t>(v.get<std::int64_t>());
				ok = true;
			}
			break;
		case OptionType::Signed:
			if (v.is_number_unsigned()) {
				auto u = v.get<std::uint64_t>();
				if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
					v = static_cast<std::int64_t>(u);
					ok = true;
				}
			} else {
				ok = v.is_number_integer();
			}
			break;
		case OptionType::Bool:
			ok = v.is_boolean();
			break;
		case OptionType::Number:
			if (v.is_number()) {
				v = v.get<double>();
				ok = true;
			}
			break;
		case OptionType::StringArray:
			ok = v.is_array() &&
			     std::all_of(v.begin(), v.end(), [](const json &e) { return e.is_string(); });
			break;
		case OptionType::Auto:
			break;
		}
	}
	if (ok)
		return std::nullopt;
	return std::string("must be ") + type_name(o);
}

/* Type check then the option's own check; the error, if any. */
std::optional<std::string> validate(const Option &o, json &v)
{
	if (auto err = coerce(o, v))
		return err;
	if (o.check) {
		try {
			return o.check(v);
		} catch (const std::exception &e) {
			return std::string("rejected: ") + e.what();
		}
	}
	return std::nullopt;
}

void set_at(json &root, std::string_view key, json value)
{
	json *node = &root;
	for (std::string_view part : split_key(key)) {
		if (!node->is_object())
			*node = json::object();
		node = &(*node)[std::string(part)];
	}
	*node = std::move(value);
}

/* True when key names a section: some option lives beneath it. */
bool is_section(const ConfigSchema &schema, std::string_view key)
{
	for (const Option &o : schema.options())
		if (o.key.size() > key.size() && o.key.compare(0, key.size(), key) == 0 &&
		    o.key[key.size()] == '.')
			return true;
	return false;
}

std::string lower(std::string_view s)
{
	std::string out(s);
	for (char &c : out)
		c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
	return out;
}

std::string in_quotes(std::string_view s)
{
	return "'" + std::string(s) + "'";
}

/* Parses one flag's text into out (appending for arrays); the error, if any. */
std::optional<std::string> parse_flag_value(const Option &o, const std::string &text, json &out)
{
	switch (o.type) {
	case OptionType::String:
		out = text;
		return std::nullopt;
	case OptionType::StringArray:
		if (!out.is_array())
			out = json::array();
		out.push_back(text);
		return std::nullopt;
	case OptionType::Unsigned: {
		std::uint64_t n = 0;
		auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
		if (ec == std::errc::result_out_of_range)
			return in_quotes(text) + " is out of range";
		if (ec != std::errc() || p != text.data() + text.size())
			return in_quotes(text) + " is not an unsigned integer";
		out = n;
		return std::nullopt;
	}
	case OptionType::Signed: {
		std::int64_t n = 0;
		auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
		if (ec == std::errc::result_out_of_range)
			return in_quotes(text) + " is out of range";
		if (ec != std::errc() || p != text.data() + text.size())
			return in_quotes(text) + " is not an integer";
		out = n;
		return std::nullopt;
	}
	case OptionType::Number: {
		/* strtod would also take hex, "inf" and leading spaces; config values are decimal. */
		double d = 0;
		auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
		if (ec == std::errc::result_out_of_range)
			return in_quotes(text) + " is out of range";
		if (ec != std::errc() || p != text.data() + text.size() || !std::isfinite(d))
			return in_quotes(text) + " is not a number";
		out = d;
		return std::nullopt;
	}
	case OptionType::Bool: {
		std::string l = lower(text);
		if (l == "true" || l == "1" || l == "yes") {
			out = true;
			return std::nullopt;
		}
		if (l == "false" || l == "0" || l == "no") {
			out = false;
			return std::nullopt;
		}
		return in_quotes(text) + " is not a boolean (true, false, yes, no, 1 or 0)";
	}
	case OptionType::Auto:
		break;
	}
	return std::string("cannot be set from the command line");
}

void merge_object(const ConfigSchema &schema, const std::string &path, const std::string &prefix,
		  const json &obj, json &base)
{
	for (auto it = obj.begin(); it != obj.end(); ++it) {
		std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
		if (const Option *o = schema.find(key)) {
			json v = it.value();
			if (auto err = validate(*o, v))
				throw ConfigError(path + ": " + key + ": " + *err);
			set_at(base, key, std::move(v));
		} else if (is_section(schema, key)) {
			if (!it.value().is_object())
				throw ConfigError(path + ": " + key + ": must be an object");
			merge_object(schema, path, key, it.value(), base);
		} else {
			throw ConfigError(path + ": " + key + ": unknown key");
		}
	}
}

std::string flag_usage(const Option &o)
{
	std::string s = o.flag;
	if (!o.metavar.empty())
		s += " " + o.metavar;
	else
		s += " VALUE";
	return s;
}

std::string describe_default(const Option &o)
{
	if (o.default_value.is_null())
		return "none";
	if (o.default_value.is_array() && o.default_value.empty())
		return "none";
	return o.default_value.dump();
}

/* Each line of text as a // comment at the given indentation. */
void comment_lines(std::string &out, const std::string &indent, std::string_view text)
{
	std::size_t start = 0;
	for (;;) {
		std::size_t nl = text.find('\n', start);
		std::string_view line = text.substr(start, nl == std::string_view::npos ? nl : nl - start);
		out += indent + "//";
		if (!line.empty())
			out += " " + std::string(line);
		out += "\n";
		if (nl == std::string_view::npos)
			return;
		start = nl + 1;
	}
}

/* The schema as a tree of sections in first-mention order, for --print-config. */
struct Node {
	std::string name;
	const Option *option = nullptr;
	std::vector<Node> children;
};

Node build_tree(const ConfigSchema &schema)
{
	Node root;
	for (const Option &o : schema.options()) {
		Node *node = &root;
		for (std::string_view part : split_key(o.key)) {
			auto it = std::find_if(node->children.begin(), node->children.end(),
					       [&](const Node &n) { return n.name == part; });
			if (it == node->children.end()) {
				node->children.push_back(Node{std::string(part), nullptr, {}});
				it = node->children.end() - 1;
			}
			node = &*it;
		}
		node->option = &o;
	}
	return root;
}

void render_node(std::string &out, const Node &node, int depth)
{
	std::string indent(static_cast<std::size_t>(depth), '\t');
	for (std::size_t i = 0; i < node.children.size(); ++i) {
		const Node &child = node.children[i];
		if (i > 0)
			out += "\n";
		std::string name = json(child.name).dump();
		if (const Option *o = child.option) {
			std::string text = o->comment.empty() ? o->key : o->comment;
			if (o->nullable() || (o->default_value.is_array() && o->default_value.empty()))
				text += std::string(" (") + type_name(*o) + ")";
			comment_lines(out, indent, text);
			if (!o->flag.empty())
				comment_lines(out, indent,
					      "Flag: " + flag_usage(*o) + (o->repeatable ? " (repeatable)" : ""));
			out += indent + name + ": " + o->default_value.dump();
		} else {
			out += indent + name + ": {\n";
			render_node(out, child, depth + 1);
			out += indent + "}";
		}
		out += i + 1 < node.children.size() ? ",\n" : "\n";
	}
}

void two_columns(std::string &out, const std::string &left, const std::string &right)
{
	constexpr std::size_t kColumn = 28;
	std::string line = "  " + left;
	if (line.size() + 2 > kColumn) {
		out += line + "\n";
		line.clear();
	}
	line.resize(kColumn, ' ');
	out += line + right + "\n";
}

/* The whole file; a config larger than this is surely a mistake (say /dev/zero). */
constexpr std::size_t kMaxConfigFile = 16 * 1024 * 1024;

std::string read_file(const std::string &path)
{
	int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		throw ConfigError(path + ": cannot open: " + std::strerror(errno));
	std::string text;
	int err = 0;
	struct stat st {};
	if (::fstat(fd, &st) < 0) {
		err = errno;
	} else if (S_ISDIR(st.st_mode)) {
		err = EISDIR;
	} else {
		char buf[16384];
		for (;;) {
			ssize_t n = ::read(fd, buf, sizeof buf);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				err = errno;
				break;
			}
			if (n == 0)
				break;
			text.append(buf, static_cast<std::size_t>(n));
			if (text.size() > kMaxConfigFile) {
				err = EFBIG;
				break;
			}
		}
	}
	::close(fd);
	if (err)
		throw ConfigError(path + ": cannot read: " + std::strerror(err));
	return text;
}

CommandLine error_result(const ProgramInfo &info, const std::string &message)
{
	CommandLine cl;
	cl.exit_code = 2;
	cl.to_stderr = true;
	cl.output = info.name + ": " + message + "\nTry '" + info.name +
		    " --help' for more information.\n";
	return cl;
}

CommandLine print_result(std::string text)
{
	CommandLine cl;
	cl.exit_code = 0;
	cl.output = std::move(text);
	return cl;
}

} // namespace

ConfigSchema &ConfigSchema::add(Option o)
{
	if (!valid_key(o.key))
		throw std::invalid_argument("config option: invalid key '" + o.key + "'");
	if (find(o.key))
		throw std::invalid_argument("config option " + o.key + ": duplicate key");
	for (const Option &other : options_) {
		const std::string &a = o.key.size() < other.key.size() ? o.key : other.key;
		const std::string &b = o.key.size() < other.key.size() ? other.key : o.key;
		if (b.compare(0, a.size(), a) == 0 && b.size() > a.size() && b[a.size()] == '.')
			throw std::invalid_argument("config option " + b + ": " + a +
						    " cannot be both a value and a section");
	}
	const json &d = o.default_value;
	if (o.type == OptionType::Auto) {
		if (d.is_null() || d.is_string())
			o.type = OptionType::String;
		else if (d.is_boolean())
			o.type = OptionType::Bool;
		else if (d.is_number_unsigned())
			o.type = OptionType::Unsigned;
		else if (d.is_number_integer())
			o.type = d.get<std::int64_t>() >= 0 ? OptionType::Unsigned : OptionType::Signed;
		else if (d.is_number_float())
			o.type = OptionType::Number;
		else if (d.is_array())
			o.type = OptionType::StringArray;
		else
			throw std::invalid_argument("config option " + o.key +
						    ": the default must be a string, number, bool, "
						    "array of strings or null");
	}
	if (!o.flag.empty()) {
		if (!valid_flag(o.flag))
			throw std::invalid_argument("config option " + o.key + ": invalid flag '" +
						    o.flag + "'");
		for (std::string_view reserved : kReservedFlags)
			if (o.flag == reserved)
				throw std::invalid_argument("config option " + o.key + ": " + o.flag +
							    " is reserved");
		if (find_flag(o.flag))
			throw std::invalid_argument("config option " + o.key + ": duplicate flag " +
						    o.flag);
		/* An array can only be given on the command line one element per flag. */
		if (o.type == OptionType::StringArray)
			o.repeatable = true;
	}
	if (o.repeatable && o.type != OptionType::StringArray)
		throw std::invalid_argument("config option " + o.key +
					    ": only an array of strings can have a repeatable flag");
	if (o.repeatable && o.flag.empty())
		throw std::invalid_argument("config option " + o.key + ": repeatable without a flag");
	json v = o.default_value;
	if (auto err = validate(o, v))
		throw std::invalid_argument("config option " + o.key + ": default " + *err);
	o.default_value = std::move(v);
	options_.push_back(std::move(o));
	return *this;
}

const Option *ConfigSchema::find(std::string_view key) const
{
	for (const Option &o : options_)
		if (o.key == key)
			return &o;
	return nullptr;
}

const Option *ConfigSchema::find_flag(std::string_view flag) const
{
	if (flag.empty())
		return nullptr;
	for (const Option &o : options_)
		if (o.flag == flag)
			return &o;
	return nullptr;
}

json default_config(const ConfigSchema &schema)
{
	json cfg = json::object();
	for (const Option &o : schema.options())
		set_at(cfg, o.key, o.default_value);
	return cfg;
}

std::string render_default_config(const ProgramInfo &info, const ConfigSchema &schema)
{
	std::string out;
	comment_lines(out, "", info.name + " " + info.version + ": the default configuration.");
	comment_lines(out, "",
		      "JSON with // comments. Every key may be left out to keep the default shown "
		      "here;\ncommand-line flags override this file. Use it with --config FILE.");
	out += "{\n";
	render_node(out, build_tree(schema), 1);
	out += "}\n";
	return out;
}

std::string render_help(const ProgramInfo &info, const ConfigSchema &schema)
{
	std::string out = "Usage: " + info.name + " [OPTION]...\n";
	if (!info.summary.empty())
		out += info.summary + "\n";
	out += "\nOptions:\n";
	bool file_only = false;
	for (const Option &o : schema.options()) {
		if (o.flag.empty()) {
			file_only = true;
			continue;
		}
		two_columns(out, flag_usage(o), o.comment);
		std::string extra = "(default: " + describe_default(o) + "; config key: " + o.key;
		if (o.repeatable)
			extra += "; repeatable";
		two_columns(out, "", extra + ")");
	}
	two_columns(out, "--config FILE",
		    "Read settings from FILE, JSON with // comments (see --print-config)");
	two_columns(out, "--print-config",
		    "Print the default configuration, every key commented, and exit");
	two_columns(out, "--version", "Print the version and exit");
	two_columns(out, "-h, --help", "Print this help and exit");
	if (file_only) {
		out += "\nSet only in the config file:\n";
		for (const Option &o : schema.options()) {
			if (!o.flag.empty())
				continue;
			two_columns(out, o.key, o.comment);
			two_columns(out, "", "(default: " + describe_default(o) + ")");
		}
	}
	if (!info.description.empty()) {
		out += "\n" + info.description;
		if (info.description.back() != '\n')
			out += "\n";
	}
	out += "\nFlags override the config file, which overrides the built-in defaults.\n";
	return out;
}

json merge_config_file(const ConfigSchema &schema, json base, const std::string &path)
{
	std::string text = read_file(path);
	json doc;
	try {
		doc = json::parse(text, nullptr, true, true);
	} catch (const json::parse_error &e) {
		/* e.what() begins with "[json.exception.parse_error.101] " - noise for a user. */
		std::string msg = e.what();
		if (auto pos = msg.find("] "); msg.rfind("[json.exception", 0) == 0 && pos != std::string::npos)
			msg.erase(0, pos + 2);
		throw ConfigError(path + ": invalid JSON: " + msg);
	}
	if (!doc.is_object())
		throw ConfigError(path + ": must be a JSON object");
	if (!base.is_object())
		base = json::object();
	merge_object(schema, path, "", doc, base);
	return base;
}

const json &config_value(const json &config, std::string_view key)
{
	const json *node = &config;
	for (std::string_view part : split_key(key)) {
		if (!node->is_object())
			throw ConfigError(std::string(key) + ": not in the config");
		auto it = node->find(std::string(part));
		if (it == node->end())
			throw ConfigError(std::string(key) + ": not in the config");
		node = &*it;
	}
	return *node;
}

CommandLine parse_command_line(const ProgramInfo &info, const ConfigSchema &schema, int argc,
			       char **argv)
{
	try {
		std::optional<std::string> config_path;
		/* Everything the flags set; applied over the file once all of argv is read. */
		std::map<const Option *, json> given;
		for (int i = 1; i < argc; ++i) {
			std::string arg = argv[i] ? argv[i] : "";
			if (arg == "--help" || arg == "-h")
				return print_result(render_help(info, schema));
			if (arg == "--version")
				return print_result(info.name + " " + info.version + "\n");
			if (arg == "--print-config")
				return print_result(render_default_config(info, schema));
			if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
				if (!arg.empty() && arg[0] == '-' && arg != "-" && arg != "--")
					return error_result(info, "unknown option " + in_quotes(arg));
				return error_result(info, "unexpected argument " + in_quotes(arg));
			}
			std::string name = arg;
			std::optional<std::string> value;
			if (auto eq = arg.find('='); eq != std::string::npos) {
				name = arg.substr(0, eq);
				value = arg.substr(eq + 1);
			}
			if (name == "--help" || name == "--version" || name == "--print-config")
				return error_result(info, "option " + in_quotes(name) + " takes no value");
			const Option *opt = nullptr;
			if (name != "--config") {
				opt = schema.find_flag(name);
				if (!opt)
					return error_result(info, "unknown option " + in_quotes(name));
			}
			if (!value) {
				/* "--socket --log-level debug" is a forgotten value, not a path. */
				if (i + 1 >= argc || !argv[i + 1] ||
				    std::string_view(argv[i + 1]).substr(0, 2) == "--") {
					std::string metavar = opt ? opt->metavar : "FILE";
					return error_result(info, "option " + in_quotes(name) + " needs a value" +
								  (metavar.empty() ? "" : " (" + metavar + ")"));
				}
				value = argv[++i];
			}
			if (!opt) {
				if (config_path)
					return error_result(info, "option '--config' given more than once");
				if (value->empty())
					return error_result(info, "option '--config' needs a file name");
				config_path = *value;
				continue;
			}
			auto [it, fresh] = given.try_emplace(opt, json());
			if (!fresh && !opt->repeatable)
				return error_result(info, "option " + in_quotes(name) + " given more than once");
			if (auto err = parse_flag_value(*opt, *value, it->second))
				return error_result(info, name + ": " + *err);
		}

		json cfg = default_config(schema);
		if (config_path) {
			try {
				cfg = merge_config_file(schema, std::move(cfg), *config_path);
			} catch (const ConfigError &e) {
				return error_result(info, e.what());
			}
		}
		for (const Option &o : schema.options()) {
			auto it = given.find(&o);
			if (it == given.end())
				continue;
			json v = std::move(it->second);
			if (auto err = validate(o, v)) {
				std::string shown = v.is_string() ? in_quotes(v.get<std::string>()) : v.dump();
				return error_result(info, o.flag + " " + shown + ": " + *err);
			}
			set_at(cfg, o.key, std::move(v));
		}
		CommandLine cl;
		cl.config = std::move(cfg);
		return cl;
	} catch (const std::exception &e) {
		/* Only allocation failure or a throwing check gets here; still an answer, not a crash. */
		return error_result(info, e.what());
	}
}

void write_output(const CommandLine &cl)
{
	std::FILE *f = cl.to_stderr ? stderr : stdout;
	std::fwrite(cl.output.data(), 1, cl.output.size(), f);
	std::fflush(f);
}

OptionCheck check_one_of(std::vector<std::string> allowed)
{
	return [allowed = std::move(allowed)](const json &v) -> std::optional<std::string> {
		if (v.is_null())
			return std::nullopt;
		if (v.is_string() &&
		    std::find(allowed.begin(), allowed.end(), v.get<std::string>()) != allowed.end())
			return std::nullopt;
		std::string msg = "must be one of ";
		for (std::size_t i = 0; i < allowed.size(); ++i)
			msg += (i ? ", " : "") + allowed[i];
		return msg;
	};
}

OptionCheck check_unsigned_range(std::uint64_t min, std::uint64_t max)
{
	return [min, max](const json &v) -> std::optional<std::string> {
		if (v.is_null())
			return std::nullopt;
		if (v.is_number_unsigned() && v.get<std::uint64_t>() >= min && v.get<std::uint64_t>() <= max)
			return std::nullopt;
		if (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() >= 0 &&
		    static_cast<std::uint64_t>(v.get<std::int64_t>()) >= min &&
		    static_cast<std::uint64_t>(v.get<std::int64_t>()) <= max)
			return std::nullopt;
		return "must be between " + std::to_string(min) + " and " + std::to_string(max);
	};
}

OptionCheck check_signed_range(std::int64_t min, std::int64_t max)
{
	return [min, max](const json &v) -> std::optional<std::string> {
		if (v.is_null())
			return std::nullopt;
		if (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() >= min &&
		    v.get<std::int64_t>() <= max)
			return std::nullopt;
		if (v.is_number_unsigned() && max >= 0 &&
		    v.get<std::uint64_t>() <= static_cast<std::uint64_t>(max) &&
		    static_cast<std::int64_t>(v.get<std::uint64_t>()) >= min)
			return std::nullopt;
		return "must be between " + std::to_string(min) + " and " + std::to_string(max);
	};
}

OptionCheck check_not_empty()
{
	return [](const json &v) -> std::optional<std::string> {
		/* json::empty() is false for every string, so ask the string itself. */
		if ((v.is_string() && v.get_ref<const std::string &>().empty()) ||
		    (v.is_array() && v.empty()))
			return std::string("must not be empty");
		return std::nullopt;
	};
}

Option socket_option(std::string default_path, std::string comment)
{
	return Option{
		.key = "socket",
		.default_value = std::move(default_path),
		.comment = std::move(comment),
		.flag = "--socket",
		.metavar = "PATH",
		.check = check_not_empty(),
	};
}

Option log_level_option(std::string default_level)
{
	return Option{
		.key = "log_level",
		.default_value = std::move(default_level),
		.comment = "Least severe messages to log: trace, debug, info, warn, error, critical or off",
		.flag = "--log-level",
		.metavar = "LEVEL",
		.check = check_one_of(log_level_names()),
	};
}

} // namespace shoal::service
