// PrometheusWriter: renders counters and gauges in the Prometheus text format 0.0.4.
#include <shoal/service/metrics.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace shoal::service {

namespace {

bool name_char(char c, bool first, bool colon_ok)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
		return true;
	if (c == ':')
		return colon_ok;
	return !first && c >= '0' && c <= '9';
}

/* A scrape that fails to parse loses every metric, so a bad name is mended, not passed on. */
std::string sanitize_name(std::string_view name, bool colon_ok)
{
	std::string out(name.empty() ? "_" : name);
	for (std::size_t i = 0; i < out.size(); ++i)
		if (!name_char(out[i], i == 0, colon_ok))
			out[i] = '_';
	return out;
}

void append_help(std::string &out, std::string_view help)
{
	for (char c : help) {
		if (c == '\\')
			out += "\\\\";
		else if (c == '\n')
			out += "\\n";
		else
			out += c;
	}
}

void append_label_value(std::string &out, std::string_view value)
{
	for (char c : value) {
		if (c == '\\')
			out += "\\\\";
		else if (c == '"')
			out += "\\\"";
		else if (c == '\n')
			out += "\\n";
		else
			out += c;
	}
}

} // namespace

std::string format_metric_value(double value)
{
	if (std::isnan(value))
		return "NaN";
	if (std::isinf(value))
		return value > 0 ? "+Inf" : "-Inf";
	if (value == 0)
		return "0"; /* also for -0.0 */
	char buf[400];
	/* Integral values below 1e21 print every digit; shortest round-trip form otherwise. */
	std::chars_format fmt = (std::trunc(value) == value && std::fabs(value) < 1e21)
					? std::chars_format::fixed
					: std::chars_format::general;
	auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, fmt);
	if (ec != std::errc())
		return "NaN";
	return std::string(buf, end);
}

void PrometheusWriter::counter(std::string_view name, std::string_view help, double value,
			       const Labels &labels)
{
	sample("counter", name, help, value, labels);
}

void PrometheusWriter::gauge(std::string_view name, std::string_view help, double value,
			     const Labels &labels)
{
	sample("gauge", name, help, value, labels);
}

void PrometheusWriter::sample(const char *type, std::string_view name, std::string_view help,
			      double value, const Labels &labels)
{
	std::string family_name = sanitize_name(name, true);
	auto it = std::find_if(families_.begin(), families_.end(),
			       [&](const Family &f) { return f.name == family_name; });
	if (it == families_.end()) {
		families_.push_back(Family{family_name, std::string(help), type, {}});
		it = families_.end() - 1;
	}
	std::string &out = it->samples;
	out += family_name;
	if (!labels.empty()) {
		out += '{';
		for (std::size_t i = 0; i < labels.size(); ++i) {
			if (i)
				out += ',';
			out += sanitize_name(labels[i].first, false);
			out += "=\"";
			append_label_value(out, labels[i].second);
			out += '"';
		}
		out += '}';
	}
	out += ' ';
	out += format_metric_value(value);
	out += '\n';
}

std::string PrometheusWriter::take()
{
	std::string out;
	for (const Family &f : families_) {
		out += "# HELP " + f.name + " ";
		append_help(out, f.help);
		out += "\n# TYPE " + f.name + " " + f.type + "\n";
		out += f.samples;
	}
	families_.clear();
	return out;
}

} // namespace shoal::service
