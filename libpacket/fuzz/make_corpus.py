#!/usr/bin/env python3
# Regenerates the seed corpus of fuzz_packet: raw IPv4/IPv6 packets, valid and malformed.
"""Usage: make_corpus.py [CORPUS_DIR]   (default: the corpus/ beside this script)

Writes seed-*.bin files only; crash-* files (inputs that once broke something) are kept.
Checksums are computed here independently of libpacket, so valid seeds are valid by RFC.
"""
import ipaddress
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

seeds = {}


def add(name, data):
    assert name not in seeds, name
    seeds[name] = bytes(data)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def a4(text):
    return ipaddress.IPv4Address(text).packed


def a6(text):
    return ipaddress.IPv6Address(text).packed


TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# MSS 1460, SACK permitted, timestamps, NOP, window scale 7: what Linux puts in a SYN.
LINUX_SYN_OPTS = bytes.fromhex("020405b40402080a9b3c1a200000000001030307")

C4, S4 = a4("192.0.2.10"), a4("198.51.100.20")
C6, S6 = a6("2001:db8::10"), a6("2001:db8:1::20")


def tcp(sport, dport, seq, ack, flags, payload=b"", opts=b"", doff=None):
    if doff is None:
        doff = (20 + len(opts)) // 4
    return TCP, struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 64240, 0, 0) + opts + payload


def udp(sport, dport, payload=b"", length=None):
    if length is None:
        length = 8 + len(payload)
    return UDP, struct.pack("!HHHH", sport, dport, length, 0) + payload


def icmp(v6, typ, code, rest=0, payload=b""):
    return (ICMP6 if v6 else ICMP), struct.pack("!BBHI", typ, code, 0, rest) + payload


def echo(v6, reply, ident, seq, payload=b"abcdefgh"):
    typ = (129 if reply else 128) if v6 else (0 if reply else 8)
    return icmp(v6, typ, 0, ident << 16 | seq, payload)


CHECK_AT = {TCP: 16, UDP: 6, ICMP: 2, ICMP6: 2}


def fill_l4(proto, l4, src, dst, keep_zero=False):
    """The transport with its checksum (pseudo-header for all but ICMPv4)."""
    at = CHECK_AT[proto]
    l4 = bytearray(l4)
    l4[at:at + 2] = b"\0\0"
    if keep_zero:
        return bytes(l4)
    # A UDP checksum covers the datagram as its length field says, not any padding after it.
    n = min(len(l4), struct.unpack("!H", l4[4:6])[0]) if proto == UDP else len(l4)
    if proto == ICMP:
        pseudo = b""
    elif len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, n)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", n, proto)
    c = csum(pseudo + bytes(l4[:n]))
    if proto == UDP and c == 0:
        c = 0xFFFF
    l4[at:at + 2] = struct.pack("!H", c)
    return bytes(l4)


def ip4(src, dst, t, ttl=64, frag=0x4000, opts=b"", total=None, ident=0x1c46, ihl=None, tos=0,
        good_l4=True, good_ip=True, zero_udp=False):
    proto, l4 = t
    if good_l4 and proto in CHECK_AT:
        l4 = fill_l4(proto, l4, src, dst, keep_zero=zero_udp)
    if ihl is None:
        ihl = (20 + len(opts)) // 4
    if total is None:
        total = 20 + len(opts) + len(l4)
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, total & 0xFFFF, ident, frag, ttl, proto, 0, src, dst) + opts)
    if good_ip:
        h[10:12] = struct.pack("!H", csum(bytes(h)))
    return bytes(h) + l4


def ext_opts(units=0):
    body = bytearray((units + 1) * 8)
    body[1] = units
    off = 2
    while off < len(body):  # PadN options (at most 257 bytes each) filling the header
        n = min(257, len(body) - off)
        if n == 1:
            body[off] = 0  # Pad1
        else:
            body[off], body[off + 1] = 1, n - 2
        off += n
    return body


def ip6(src, dst, t, exts=(), hlim=64, plen=None, good_l4=True, zero_udp=False):
    """exts: list of (type, body) with body[0] patched to the next header."""
    proto, l4 = t
    if good_l4 and proto in CHECK_AT:
        l4 = fill_l4(proto, l4, src, dst, keep_zero=zero_udp)
    chain = b""
    for i, (typ, body) in enumerate(exts):
        body = bytearray(body)
        body[0] = exts[i + 1][0] if i + 1 < len(exts) else proto
        chain += bytes(body)
    first = exts[0][0] if exts else proto
    if plen is None:
        plen = len(chain) + len(l4)
    return struct.pack("!IHBB16s16s", 0x60000000 | 0x12345, plen & 0xFFFF, first, hlim, src, dst) + chain + l4


HBH, ROUTING, FRAG, DEST, AH, ESP, NONE = 0, 43, 44, 60, 51, 50, 59


def routing(segments_left, n=1):
    body = bytearray(8 + 16 * n)
    body[1] = 2 * n
    body[2] = 4
    body[3] = segments_left
    return ROUTING, body


def frag6(offset, more):
    return FRAG, bytearray(struct.pack("!BBHI", 0, 0, offset << 3 | more, 0xabcdef01))


def fix_ip4_checksum(p):
    p = bytearray(p)
    ihl = (p[0] & 0xF) * 4
    p[10:12] = b"\0\0"
    p[10:12] = struct.pack("!H", csum(bytes(p[:ihl])))
    return bytes(p)


# ---- valid IPv4 TCP ----
syn4 = ip4(C4, S4, tcp(46712, 443, 0x6b2b6f1a, 0, SYN, opts=LINUX_SYN_OPTS))
add("v4-tcp-syn", syn4)
add("v4-tcp-synack", ip4(S4, C4, tcp(443, 46712, 0x11111111, 0x6b2b6f1b, SYN | ACK, opts=bytes.fromhex("020405b40101040201030307"))))
add("v4-tcp-ack-data", ip4(C4, S4, tcp(46712, 443, 1, 2, PSH | ACK, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")))
add("v4-tcp-fin", ip4(C4, S4, tcp(46712, 443, 100, 200, FIN | ACK)))
add("v4-tcp-rst", ip4(S4, C4, tcp(443, 46712, 0, 0x6b2b6f1b, RST | ACK), frag=0x4000, ident=0))
add("v4-tcp-rst-noack", ip4(S4, C4, tcp(443, 46712, 5555, 0, RST)))
add("v4-tcp-syn-fin-data", ip4(C4, S4, tcp(1, 2, 0xFFFFFFFF, 0, SYN | FIN, b"x" * 10)))
add("v4-tcp-ip-options", ip4(C4, S4, tcp(1000, 80, 5, 6, ACK, b"hi"), opts=bytes([1, 1, 1, 0]), ttl=1))
add("v4-tcp-ip-options-max", ip4(C4, S4, tcp(1000, 80, 5, 6, ACK), opts=bytes([7, 39, 4]) + bytes(37)))
add("v4-tcp-all-flags", ip4(C4, S4, tcp(1, 1, 1, 1, 0xFF, b"\xff" * 3)))
add("v4-tcp-bad-l4-checksum", ip4(C4, S4, tcp(1, 2, 3, 4, ACK, b"zz"), good_l4=False))
add("v4-tcp-1460", ip4(C4, S4, tcp(443, 46712, 7, 8, ACK, bytes(range(256)) * 5 + bytes(180))))
add("v4-tcp-trailing", syn4 + b"\xee" * 18)

# ---- valid IPv4 UDP and ICMP ----
dns = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")
add("v4-udp-dns", ip4(C4, a4("192.0.2.53"), udp(53000, 53, dns)))
add("v4-udp-zero-checksum", ip4(C4, S4, udp(5000, 6000, b"no checksum"), zero_udp=True))
add("v4-udp-empty", ip4(C4, S4, udp(1, 2)))
add("v4-udp-padded", ip4(C4, S4, udp(7, 7, b"abcd", length=10)))
add("v4-udp-multicast", ip4(C4, a4("224.0.0.251"), udp(5353, 5353, b"\0" * 12), ttl=255, frag=0))
add("v4-udp-ports-zero-ffff", ip4(a4("0.0.0.0"), a4("255.255.255.255"), udp(0, 65535, b"\xff\xff")))
add("v4-icmp-echo", ip4(C4, a4("8.8.8.8"), echo(False, False, 0x1234, 1, bytes(range(56)))))
add("v4-icmp-echo-reply", ip4(a4("8.8.8.8"), C4, echo(False, True, 0x1234, 1, bytes(range(56)))))
add("v4-icmp-echo-zero", ip4(C4, S4, echo(False, True, 0, 0, b"")))
add("v4-icmp-timestamp", ip4(C4, S4, icmp(False, 13, 0, 0x00010001, bytes(12))))
add("v4-icmp-redirect", ip4(S4, C4, icmp(False, 5, 1, 0xC0000201, syn4[:28])))

# ---- IPv4 ICMP errors quoting packets ----
udp4 = ip4(C4, S4, udp(40000, 33434, b"traceroute probe" * 2))
echo4 = ip4(C4, S4, echo(False, False, 0xBEEF, 7))
R4 = a4("203.0.113.1")
add("v4-err-unreach-port-udp", ip4(S4, C4, icmp(False, 3, 3, 0, udp4), tos=0xC0))
add("v4-err-unreach-host-syn", ip4(R4, C4, icmp(False, 3, 1, 0, syn4)))
add("v4-err-frag-needed", ip4(R4, C4, icmp(False, 3, 4, 1400, syn4[:28])))
add("v4-err-time-exceeded-28", ip4(R4, C4, icmp(False, 11, 0, 0, udp4[:28])))
add("v4-err-time-exceeded-echo", ip4(R4, C4, icmp(False, 11, 0, 0, echo4)))
add("v4-err-param-problem", ip4(R4, C4, icmp(False, 12, 0, 20 << 24, syn4[:40])))
add("v4-err-quote-27", ip4(R4, C4, icmp(False, 3, 3, 0, udp4[:27])))
add("v4-err-quote-header-only", ip4(R4, C4, icmp(False, 3, 3, 0, udp4[:20])))
add("v4-err-quote-empty", ip4(R4, C4, icmp(False, 3, 3, 0, b"")))
add("v4-err-quote-tcp-14", ip4(R4, C4, icmp(False, 3, 0, 0, syn4[:34])))
add("v4-err-quote-first-fragment", ip4(R4, C4, icmp(False, 11, 1, 0, ip4(C4, S4, udp(5000, 53, b"q" * 100), frag=0x2000))))
add("v4-err-quote-later-fragment", ip4(R4, C4, icmp(False, 11, 1, 0, ip4(C4, S4, udp(5000, 53, b"q" * 100), frag=0x2010))))
add("v4-err-quote-error", ip4(R4, C4, icmp(False, 3, 3, 0, ip4(C4, S4, icmp(False, 3, 3, 0, udp4[:28])))))
add("v4-err-quote-v6", ip4(R4, C4, icmp(False, 3, 3, 0, ip6(C6, S6, udp(1, 2)))))
add("v4-err-quote-bad-ihl", ip4(R4, C4, icmp(False, 3, 3, 0, bytes([0x44]) + udp4[1:])))
add("v4-err-quote-gre", ip4(R4, C4, icmp(False, 3, 2, 0, fix_ip4_checksum(udp4[:9] + b"\x2f" + udp4[10:]))))
add("v4-err-quote-long-total", ip4(R4, C4, icmp(False, 3, 3, 0, udp4[:2] + b"\x05\xdc" + udp4[4:])))
add("v4-err-rfc4884", ip4(R4, C4, icmp(False, 11, 0, 32 << 16, (udp4 + bytes(128))[:128] + bytes.fromhex("20000000"))))

# ---- valid IPv6 ----
syn6 = ip6(C6, S6, tcp(50000, 443, 0xdeadbeef, 0, SYN, opts=LINUX_SYN_OPTS))
udp6 = ip6(C6, S6, udp(5353, 53, dns))
add("v6-tcp-syn", syn6)
add("v6-tcp-data", ip6(S6, C6, tcp(443, 50000, 1, 0xdeadbef0, PSH | ACK, b"HTTP/1.1 200 OK\r\n\r\n")))
add("v6-tcp-rst", ip6(S6, C6, tcp(443, 50000, 0, 0xdeadbef0, RST | ACK)))
add("v6-udp-dns", udp6)
add("v6-udp-zero-checksum", ip6(C6, S6, udp(1, 2, b"invalid in v6"), zero_udp=True))
add("v6-udp-padded", ip6(C6, S6, udp(7, 7, b"abcdef", length=12)))
add("v6-icmp-echo", ip6(C6, a6("2001:4860:4860::8888"), echo(True, False, 77, 1)))
add("v6-icmp-echo-reply", ip6(a6("2001:4860:4860::8888"), C6, echo(True, True, 77, 1)))
add("v6-icmp-ns", ip6(a6("fe80::1"), a6("ff02::1:ff00:2"), icmp(True, 135, 0, 0, a6("fe80::2") + bytes.fromhex("0101020000000001")), hlim=255))
add("v6-ext-hbh", ip6(C6, S6, udp(1, 2, b"x"), exts=[(HBH, ext_opts())]))
add("v6-ext-hbh-dest-routing-dest", ip6(C6, S6, tcp(1000, 80, 5, 6, ACK), exts=[(HBH, ext_opts()), (DEST, ext_opts(1)), routing(0), (DEST, ext_opts())]))
add("v6-ext-eight", ip6(C6, S6, udp(1, 2), exts=[(DEST, ext_opts())] * 8))
add("v6-ext-nine", ip6(C6, S6, udp(1, 2), exts=[(DEST, ext_opts())] * 9))
add("v6-ext-hbh-second", ip6(C6, S6, udp(1, 2), exts=[(DEST, ext_opts()), (HBH, ext_opts())]))
add("v6-ext-routing-segments-left", ip6(C6, S6, udp(1, 2), exts=[routing(1, 2)]))
add("v6-ext-big", ip6(C6, S6, echo(True, False, 1, 1), exts=[(DEST, ext_opts(255))]))
add("v6-fragment-first", ip6(C6, S6, udp(1, 2, b"y" * 64), exts=[frag6(0, 1)]))
add("v6-fragment-atomic", ip6(C6, S6, udp(1, 2, b"y" * 64), exts=[frag6(0, 0)]))
add("v6-fragment-later", ip6(C6, S6, (UDP, b"y" * 64), exts=[(HBH, ext_opts()), frag6(100, 0)], good_l4=False))
add("v6-ah", ip6(C6, S6, udp(1, 2), exts=[(AH, bytearray(16))]))
add("v6-esp", ip6(C6, S6, (ESP, bytes(40)), good_l4=False))
add("v6-no-next", ip6(C6, S6, (NONE, b""), good_l4=False))
add("v6-icmpv4-inside", ip6(C6, S6, (ICMP, bytes(8)), good_l4=False))
add("v6-trailing", udp6 + b"\0" * 7)

# ---- ICMPv6 errors ----
R6 = a6("2001:db8:ffff::1")
big6 = ip6(C6, S6, udp(5353, 53, b"z" * 1300), exts=[(HBH, ext_opts()), (DEST, ext_opts())])
add("v6-err-unreach", ip6(R6, C6, icmp(True, 1, 4, 0, syn6)))
add("v6-err-too-big", ip6(R6, C6, icmp(True, 2, 0, 1280, big6[:1232])))
add("v6-err-time-exceeded", ip6(R6, C6, icmp(True, 3, 0, 0, udp6)))
add("v6-err-param-problem", ip6(R6, C6, icmp(True, 4, 1, 40, ip6(C6, S6, echo(True, False, 5, 5)))))
add("v6-err-quote-48", ip6(R6, C6, icmp(True, 1, 0, 0, syn6[:48])))
add("v6-err-quote-47", ip6(R6, C6, icmp(True, 1, 0, 0, syn6[:47])))
add("v6-err-quote-ext-cut", ip6(R6, C6, icmp(True, 1, 0, 0, big6[:50])))
add("v6-err-quote-first-fragment", ip6(R6, C6, icmp(True, 3, 1, 0, ip6(C6, S6, tcp(7, 8, 9, 10, ACK), exts=[frag6(0, 1)]))))
add("v6-err-quote-later-fragment", ip6(R6, C6, icmp(True, 3, 1, 0, ip6(C6, S6, tcp(7, 8, 9, 10, ACK), exts=[frag6(3, 1)]))))
add("v6-err-quote-v4", ip6(R6, C6, icmp(True, 1, 4, 0, udp4)))
add("v6-err-quote-error", ip6(R6, C6, icmp(True, 1, 4, 0, ip6(C6, S6, icmp(True, 1, 4, 0, syn6[:48])))))

# ---- malformed ----
add("bad-empty", b"")
add("bad-one-byte-v4", b"\x45")
add("bad-one-byte-v6", b"\x60")
add("bad-version-0", b"\x05" + syn4[1:])
add("bad-version-5", b"\x55" + syn4[1:])
add("bad-version-f", b"\xff" * 40)
add("bad-v4-19-bytes", syn4[:19])
add("bad-v6-39-bytes", syn6[:39])
add("bad-v4-ihl-4", fix_ip4_checksum(b"\x44" + syn4[1:]))
add("bad-v4-ihl-15-short", fix_ip4_checksum(b"\x4f" + syn4[1:40]))
add("bad-v4-total-long", fix_ip4_checksum(syn4[:2] + struct.pack("!H", len(syn4) + 1) + syn4[4:]))
add("bad-v4-total-short", fix_ip4_checksum(syn4[:2] + struct.pack("!H", 19) + syn4[4:]))
add("bad-v4-total-cuts-tcp", fix_ip4_checksum(syn4[:2] + struct.pack("!H", 30) + syn4[4:]))
add("bad-v4-truncated-buffer", syn4[:50])
add("bad-v4-header-checksum", syn4[:10] + b"\x00\x00" + syn4[12:])
add("bad-v4-mf", ip4(C4, S4, udp(1, 2, b"m" * 16), frag=0x2000))
add("bad-v4-offset", ip4(C4, S4, (UDP, b"m" * 16), frag=0x0003, good_l4=False))
add("bad-v4-gre", ip4(C4, S4, (47, bytes(8)), good_l4=False))
add("bad-v4-sctp", ip4(C4, S4, (132, bytes(12)), good_l4=False))
add("bad-v4-icmpv6", ip4(C4, S4, (ICMP6, bytes(8)), good_l4=False))
add("bad-tcp-doff-4", ip4(C4, S4, tcp(1, 2, 3, 4, ACK, doff=4)))
add("bad-tcp-doff-15", ip4(C4, S4, tcp(1, 2, 3, 4, ACK, b"0123", doff=15)))
add("bad-tcp-19", ip4(C4, S4, (TCP, bytes(19)), good_l4=False))
add("bad-udp-length-7", ip4(C4, S4, udp(1, 2, b"abc", length=7)))
add("bad-udp-length-long", ip4(C4, S4, udp(1, 2, b"abc", length=12)))
add("bad-udp-7", ip4(C4, S4, (UDP, bytes(7)), good_l4=False))
add("bad-icmp-7", ip4(C4, S4, (ICMP, bytes(7)), good_l4=False))
add("bad-v6-plen-long", syn6[:4] + struct.pack("!H", len(syn6) - 39) + syn6[6:])
add("bad-v6-plen-zero-hbh", ip6(C6, S6, udp(1, 2), exts=[(HBH, ext_opts())], plen=0))
ext_past_end = bytearray(ip6(C6, S6, udp(1, 2), exts=[(DEST, ext_opts())]))
ext_past_end[41] = 5  # claims 48 bytes, 16 follow
add("bad-v6-ext-past-end", ext_past_end)
add("bad-v6-udp-length", ip6(C6, S6, udp(1, 2, b"abc", length=99)))

os.makedirs(OUT, exist_ok=True)
for name in os.listdir(OUT):
    if name.startswith("seed-"):
        os.unlink(os.path.join(OUT, name))
for name, data in sorted(seeds.items()):
    with open(os.path.join(OUT, f"seed-{name}.bin"), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {OUT}")
