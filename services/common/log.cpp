// spdlog set-up shared by every daemon: stderr sink with journald priority prefixes when under systemd.
#include <shoal/service/log.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sys/stat.h>

#include <spdlog/sinks/base_sink.h>

namespace shoal::service {

namespace {

/* Writes "<prio>text" for journald or "text" for a terminal, one write per line. */
class StderrSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
	explicit StderrSink(bool journal) : journal_(journal) {}

protected:
	void sink_it_(const spdlog::details::log_msg &msg) override
	{
		spdlog::memory_buf_t buf;
		if (journal_) {
			static const char *prio[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", "<6>"};
			buf.append(std::string_view(prio[msg.level]));
		}
		formatter_->format(msg, buf);
		std::fwrite(buf.data(), 1, buf.size(), stderr);
	}
	void flush_() override { std::fflush(stderr); }

private:
	bool journal_;
};

/* JOURNAL_STREAM is "dev:ino" of the journal socket; it counts only if stderr is that socket. */
bool stderr_is_journal()
{
	const char *e = std::getenv("JOURNAL_STREAM");
	if (!e)
		return false;
	unsigned long long dev = 0, ino = 0;
	if (std::sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	struct stat st {};
	return ::fstat(2, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

std::shared_ptr<spdlog::sinks::sink> &shared_sink()
{
	static std::shared_ptr<spdlog::sinks::sink> sink;
	return sink;
}

spdlog::level::level_enum current_level = spdlog::level::info;

} // namespace

void setup_logging(std::string_view level)
{
	bool journal = stderr_is_journal();
	auto sink = std::make_shared<StderrSink>(journal);
	/* journald stamps time and pid itself; a terminal wants them. */
	sink->set_pattern(journal ? "%n: %v" : "%Y-%m-%d %H:%M:%S.%e %l %n[%P]: %v");
	shared_sink() = sink;
	current_level = spdlog::level::from_str(std::string(level));
	spdlog::drop_all();
	spdlog::set_default_logger(logger("shoal"));
}

std::shared_ptr<spdlog::logger> logger(const std::string &component)
{
	if (auto l = spdlog::get(component))
		return l;
	if (!shared_sink())
		setup_logging("info");
	auto l = std::make_shared<spdlog::logger>(component, shared_sink());
	l->set_level(current_level);
	l->flush_on(spdlog::level::warn);
	spdlog::register_logger(l);
	return l;
}

std::string errno_name(int error)
{
	if (const char *n = ::strerrorname_np(error))
		return n;
	return "E" + std::to_string(error);
}

} // namespace shoal::service
