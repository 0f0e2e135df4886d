// Mailbox unit tests: per-owner and owner-count bounds, order, TTL expiry closing descriptors.
#include <catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include "mailbox.h"

using namespace shoal;
using namespace shoal::service;
using namespace std::chrono_literals;

namespace {

OutMessage letter(const std::string &text, int nfds = 0)
{
	OutMessage m{text, {}};
	for (int i = 0; i < nfds; i++)
		m.fds.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	return m;
}

} // namespace

TEST_CASE("letters come out in order and limits refuse without losing the message", "[mailbox]")
{
	std::size_t fds = count_open_fds();
	{
		Mailbox box({2, 3, 1000ms});
		REQUIRE(box.post("a", letter("1", 1)));
		REQUIRE(box.post("a", letter("2")));
		REQUIRE(box.post("a", letter("3")));
		auto full = box.post("a", letter("4", 2));
		REQUIRE_FALSE(full);
		CHECK(full.error().error == ENOBUFS);
		CHECK(full.error().message.fds.size() == 2); /* handed back, still open */
		CHECK(full.error().message.fds[0].is_valid());
		REQUIRE(box.post("b", letter("b1")));
		auto owners = box.post("c", letter("c1"));
		REQUIRE_FALSE(owners);
		CHECK(owners.error().error == ENOSPC);
		CHECK(box.messages() == 4);
		CHECK(box.owners() == 2);

		auto a = box.take("a");
		REQUIRE(a.size() == 3);
		CHECK(a[0].message.data == "1");
		CHECK(a[2].message.data == "3");
		a.pop_front();
		REQUIRE(box.post("a", letter("newer")));
		box.put_back("a", std::move(a));
		auto again = box.take("a");
		REQUIRE(again.size() == 3);
		CHECK(again[0].message.data == "2");
		CHECK(again[1].message.data == "3");
		CHECK(again[2].message.data == "newer");
	}
	CHECK(count_open_fds() == fds);
}

TEST_CASE("expired letters are dropped and their descriptors closed", "[mailbox]")
{
	std::size_t fds = count_open_fds();
	Mailbox box({8, 8, 1000ms});
	auto now = Mailbox::Clock::now();
	REQUIRE(box.post("a", letter("old", 3), now - 1ms));
	REQUIRE(box.post("a", letter("fresh", 1), now + 1h));
	REQUIRE(box.post("b", letter("old", 1), now - 1ms));
	CHECK(count_open_fds() == fds + 5);
	CHECK(box.expire(now) == 2);
	CHECK(box.messages() == 1);
	CHECK(box.owners() == 1);
	CHECK(box.count("a") == 1);
	CHECK(count_open_fds() == fds + 1);
	box.clear();
	CHECK(count_open_fds() == fds);
}
