// Unit tests of the wire address forms: endpoints, bare IPs and port ranges, to and from sockaddr.
#include <catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>

#include <shoal/proto/address.h>

using namespace shoal::proto;

TEST_CASE("IPv4 endpoints parse into sockaddr_in and format back")
{
	auto ss = parse_endpoint("198.51.100.10:9000");
	REQUIRE(ss.has_value());
	REQUIRE(ss->ss_family == AF_INET);
	auto *sin = reinterpret_cast<const sockaddr_in *>(&*ss);
	CHECK(ntohs(sin->sin_port) == 9000);
	CHECK(ntohl(sin->sin_addr.s_addr) == 0xC633640A);
	CHECK(endpoint_port(*ss) == 9000);
	CHECK(format_endpoint(*ss) == "198.51.100.10:9000");
	CHECK(format_ip(*ss) == "198.51.100.10");
	CHECK(format_endpoint(*parse_endpoint("0.0.0.0:0")) == "0.0.0.0:0");
	CHECK(format_endpoint(*parse_endpoint("255.255.255.255:65535")) == "255.255.255.255:65535");
}

TEST_CASE("IPv6 endpoints are bracketed and come back in canonical form")
{
	auto ss = parse_endpoint("[2001:db8::7]:443");
	REQUIRE(ss.has_value());
	REQUIRE(ss->ss_family == AF_INET6);
	auto *sin6 = reinterpret_cast<const sockaddr_in6 *>(&*ss);
	CHECK(ntohs(sin6->sin6_port) == 443);
	CHECK(sin6->sin6_addr.s6_addr[0] == 0x20);
	CHECK(sin6->sin6_addr.s6_addr[15] == 0x07);
	CHECK(format_endpoint(*ss) == "[2001:db8::7]:443");
	CHECK(format_endpoint(*parse_endpoint("[2001:DB8:0:0:0:0:0:7]:443")) == "[2001:db8::7]:443");
	CHECK(format_endpoint(*parse_endpoint("[::]:0")) == "[::]:0");
	CHECK(format_endpoint(*parse_endpoint("[::ffff:192.0.2.1]:80")) == "[::ffff:192.0.2.1]:80");
}

TEST_CASE("malformed endpoints are refused")
{
	for (const char *bad : {
		     "", ":", "198.51.100.10", "198.51.100.10:", ":80", "198.51.100.10:65536",
		     "198.51.100.10:080", "198.51.100.10:+80", "198.51.100.10:-1", "198.51.100.10: 80",
		     " 198.51.100.10:80", "198.51.100.10:80 ", "198.51.100.256:80", "01.2.3.4:80",
		     "1.2.3:80", "1.2.3.4.5:80", "0x7f.0.0.1:80", "localhost:80", "example.com:443",
		     "2001:db8::7:443", "[2001:db8::7]", "[2001:db8::7]:", "[2001:db8::7]443",
		     "[2001:db8::7]:99999", "[1.2.3.4]:80", "[2001:db8::7:443", "2001:db8::7]:443",
		     "[fe80::1%eth0]:80", "[[::1]]:80", "[::1]:80:80", "1.2.3.4:80:80", "[]:80",
		     "[2001:db8::7]:1234567",
	     }) {
		INFO(bad);
		CHECK_FALSE(parse_endpoint(bad).has_value());
	}
	/* An embedded NUL is not a terminator. */
	CHECK_FALSE(parse_endpoint(std::string_view("1.2.3.4\0:80", 11)).has_value());
	CHECK_FALSE(parse_endpoint(std::string_view("1.2.3.4:8\0", 10)).has_value());
}

TEST_CASE("bare IPs")
{
	auto v4 = parse_ip("198.51.100.10");
	REQUIRE(v4.has_value());
	CHECK(v4->ss_family == AF_INET);
	CHECK(endpoint_port(*v4) == 0);
	CHECK(format_ip(*v4) == "198.51.100.10");
	auto v6 = parse_ip("2001:db8::7");
	REQUIRE(v6.has_value());
	CHECK(v6->ss_family == AF_INET6);
	CHECK(format_ip(*v6) == "2001:db8::7");
	for (const char *bad : {"", "198.51.100.10:80", "[2001:db8::7]", "2001:db8::7/64", "198.51.100",
				"198.51.100.1/32", "fe80::1%eth0", "::g", "1.2.3.04", " 1.2.3.4",
				"2001:db8:0:0:0:0:0:0:7"}) {
		INFO(bad);
		CHECK_FALSE(parse_ip(bad).has_value());
	}
	/* Longer than any address text: refused without touching inet_pton's buffer. */
	CHECK_FALSE(parse_ip(std::string(200, '1')).has_value());
	CHECK_FALSE(parse_ip(std::string(200, ':')).has_value());
}

TEST_CASE("port ranges")
{
	auto r = parse_port_range("9000-9009");
	REQUIRE(r.has_value());
	CHECK(r->lo == 9000);
	CHECK(r->hi == 9009);
	CHECK(r->size() == 10);
	CHECK(r->contains(9000));
	CHECK(r->contains(9009));
	CHECK_FALSE(r->contains(8999));
	CHECK_FALSE(r->contains(9010));
	CHECK(format_port_range(*r) == "9000-9009");
	CHECK(parse_port_range("1-65535") == std::optional<PortRange>(PortRange{1, 65535}));
	CHECK(parse_port_range("1-65535")->size() == 65535);
	CHECK(parse_port_range("443-443") == std::optional<PortRange>(PortRange{443, 443}));
	CHECK(PortRange{0, 65535}.size() == 65536);
	for (const char *bad : {"", "-", "9000", "9000-", "-9000", "0-10", "0-0", "10-9", "1-65536",
				"09-10", "9-010", "+1-2", "1-+2", "1 -2", "1- 2", "1-2-3", "1--2", "a-b",
				"100000-100001", "1-2 "}) {
		INFO(bad);
		CHECK_FALSE(parse_port_range(bad).has_value());
	}
}

TEST_CASE("format from a kernel sockaddr with its length")
{
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_port = htons(53);
	inet_pton(AF_INET, "203.0.113.5", &sin.sin_addr);
	CHECK(format_endpoint(reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) == "203.0.113.5:53");
	CHECK(format_ip(reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) == "203.0.113.5");
	/* Too short for its family: refused rather than read past the end. */
	CHECK(format_endpoint(reinterpret_cast<sockaddr *>(&sin), sizeof(sin) - 1).empty());
	CHECK(format_endpoint(nullptr, 0).empty());

	sockaddr_in6 sin6{};
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(8443);
	inet_pton(AF_INET6, "2001:db8::1:0:0:1", &sin6.sin6_addr);
	CHECK(format_endpoint(reinterpret_cast<sockaddr *>(&sin6), sizeof(sin6)) == "[2001:db8::1:0:0:1]:8443");

	sockaddr_un sun{};
	sun.sun_family = AF_UNIX;
	CHECK(format_endpoint(reinterpret_cast<sockaddr *>(&sun), sizeof(sun)).empty());
	sockaddr_storage ss{};
	ss.ss_family = AF_UNIX;
	CHECK(format_endpoint(ss).empty());
	CHECK(format_ip(ss).empty());
	CHECK(endpoint_port(ss) == 0);
}

TEST_CASE("same_endpoint compares family, address and port")
{
	auto a = *parse_endpoint("192.0.2.1:80");
	CHECK(same_endpoint(a, *parse_endpoint("192.0.2.1:80")));
	CHECK_FALSE(same_endpoint(a, *parse_endpoint("192.0.2.1:81")));
	CHECK_FALSE(same_endpoint(a, *parse_endpoint("192.0.2.2:80")));
	CHECK_FALSE(same_endpoint(a, *parse_endpoint("[::ffff:192.0.2.1]:80")));
	CHECK(same_endpoint(*parse_endpoint("[2001:db8::7]:1"), *parse_endpoint("[2001:db8:0::7]:1")));
	sockaddr_storage u1{}, u2{};
	u1.ss_family = u2.ss_family = AF_UNIX;
	CHECK_FALSE(same_endpoint(u1, u2));
}
