#!/usr/bin/env python3
# Regenerates the seed corpus of fuzz_request: byte 0 % 8 is the fd count, the rest the message.
"""Usage: make_corpus.py [CORPUS_DIR]   (default: the corpus/ beside this script)

Writes seed-*.bin files only; crash-* files (inputs that once broke something) are kept.
"""
import json
import os
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

seeds = {}


def add(name, nfds, payload):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    assert name not in seeds, name
    seeds[name] = bytes([nfds]) + payload


def msg(op, id_="r1", **fields):
    m = {"v": 1, "op": op, "id": id_}
    m.update(fields)
    return m


FLOW = {"protocol": "tcp", "src": "192.0.2.7:40000", "dst": "203.0.113.5:443"}
FLOW6 = {"protocol": "udp", "src": "[2001:db8::1]:5353", "dst": "[2001:db8::7]:53"}
META = {"conn": 42, "route": ["a", "b"], "tls": {"sni": "example.com"}, "ok": True, "x": None, "f": 1.5}

# ---- valid requests, one or more per op ----
add("valid-hello", 0, msg("hello", owner="proxy-1@host:a.b_c"))
add("valid-status", 0, msg("status"))
add("valid-list", 0, msg("list"))
add("valid-upgrade-daemon", 0, msg("upgrade_daemon"))
add("valid-splice-min", 2, msg("splice"))
add("valid-splice-full", 2, msg("splice", metadata=META, idle_timeout_ms=30000))
add("valid-splice-meta-string", 2, msg("splice", metadata="just a string \u00e9\u4e2d\U0001f600"))
add("valid-cancel", 0, msg("cancel", task="t-17"))
add("valid-upgrade-min", 1, msg("upgrade"))
add("valid-upgrade-full", 1, msg("upgrade", metadata=META, protocol="udp", timeout_ms=600000, confirm=True))
add("valid-confirm", 0, msg("confirm", task="b-3", accept=False))
add("valid-lease-min", 1, msg("lease"))
add("valid-lease-v4", 1, msg("lease", ip="198.51.100.10", ports="9000-9009", metadata={"client": 7}))
add("valid-lease-v6", 1, msg("lease", ip="2001:db8::7", ports="1-65535"))
add("valid-release", 0, msg("release", lease="l-1"))

# ---- valid replies and events ----
add("reply-welcome", 0, msg("welcome", owner="proxy-1", mailbox=3))
add("reply-status", 0, msg("status", daemon="splicer", version="0.1.0", protocol=1, uptime_ms=12,
                           counters={"tasks": 1}))
add("reply-list", 0, msg("list", tasks=[{"task": "t-1", "owner": "p"}, {"task": "t-2"}], total=2, next_offset=None))
add("valid-list-offset", 0, msg("list", offset=200))
add("reply-handed-over", 0, msg("handed_over", old_pid=100, new_pid=200, tasks=5, duration_ms=40))
add("reply-error", 0, msg("error", code="busy", message="tasks: limit of 10000 reached"))
add("reply-error-null-id", 0, {"v": 1, "op": "error", "id": None, "code": "bad_request",
                               "message": "message: not valid JSON (syntax error at byte 3)"})
add("reply-accepted", 0, msg("accepted", task="t-1"))
add("reply-done", 2, msg("done", task="t-1", metadata=META, reason="eof", bytes_a_to_b=10,
                         bytes_b_to_a=18446744073709551615, duration_ms=5))
add("reply-done-error", 2, msg("done", task="t-1", metadata=None, reason="error", error="ECONNRESET",
                               bytes_a_to_b=0, bytes_b_to_a=0, duration_ms=0))
add("reply-cancelling", 0, msg("cancelling", task="t-1"))
add("reply-upgraded", 1, msg("upgraded", task="b-1", flow=FLOW))
add("reply-upgraded-v6", 1, msg("upgraded", task="b-1", flow=FLOW6))
add("reply-syn", 0, msg("syn", task="b-1", flow=FLOW))
add("reply-confirmed", 0, msg("confirmed", task="b-1"))
add("reply-ended", 0, msg("ended", task="b-1", metadata=META, reason="rejected", bytes_in=1, bytes_out=2,
                          packets_in=3, packets_out=4, duration_ms=5))
add("reply-leased", 0, msg("leased", lease="l-1", ip="198.51.100.10", ports="9000-9009"))
add("reply-released", 0, msg("released", lease="l-1"))
add("reply-lease-ended", 0, msg("lease_ended", lease="l-1", metadata={}, reason="released", flows=2,
                                packets_out=9, packets_in=8))

# ---- bare addresses (exercise the address parsers directly) ----
for i, a in enumerate(["198.51.100.10:9000", "[2001:db8::7]:443", "9000-9009", "198.51.100.10",
                       "2001:db8::7", "[::ffff:192.0.2.1]:0", "[2001:db8::7]443", "1.2.3.4:65536",
                       "01.2.3.4:80", "[1.2.3.4]:80", "2001:db8::7:443", "0-1", "9-8", "09-10",
                       "1.2.3.4:080", "[fe80::1%eth0]:80", "1-65535", "65535-65535"]):
    add(f"addr-{i:02d}", 0, a)

# ---- malformed envelopes ----
add("bad-empty", 0, b"")
add("bad-whitespace", 0, b" \n\t ")
add("bad-truncated", 0, b'{"v":1,"op":"status","id":"r')
add("bad-truncated-2", 2, b'{"v":1,"op":"splice","id":"r","metadata":{"a":[1,2')
add("bad-trailing", 0, b'{"v":1,"op":"status","id":"r"} x')
add("bad-two-objects", 0, b'{"v":1,"op":"status","id":"r"}{"v":1}')
add("bad-array", 0, [1, 2, 3])
add("bad-string", 0, '"hello"')
add("bad-null", 0, "null")
add("bad-utf8-lone-cont", 0, b'{"v":1,"op":"status","id":"\x80"}')
add("bad-utf8-overlong", 0, b'{"v":1,"op":"status","id":"\xc0\xaf"}')
add("bad-utf8-surrogate", 0, b'{"v":1,"op":"status","id":"\xed\xa0\x80"}')
add("bad-utf8-too-big", 0, b'{"v":1,"op":"status","id":"\xf4\x90\x80\x80"}')
add("bad-utf8-truncated", 0, b'{"v":1,"op":"status","id":"\xe2\x82"}')
add("bad-utf8-key", 0, b'{"v":1,"op":"status","id":"r","\xff":1}')
add("bad-escape-lone-surrogate", 0, b'{"v":1,"op":"status","id":"\\ud800"}')
add("bad-escape-invalid", 0, b'{"v":1,"op":"status","id":"\\x41"}')
add("bad-control-char", 0, b'{"v":1,"op":"status","id":"a\x01b"}')
add("bad-nul", 0, b'{"v":1,"op":"status","id":"a\x00b"}')
add("bad-comment", 0, b'{"v":1,/*c*/"op":"status","id":"r"}')
add("bad-bom", 0, b'\xef\xbb\xbf{"v":1,"op":"status","id":"r"}')
add("bad-deep-arrays", 0, b"[" * 60000)
add("bad-deep-objects", 0, b'{"a":' * 10000)
add("bad-deep-metadata", 2, b'{"v":1,"op":"splice","id":"r","metadata":' + b"[" * 63 + b"]" * 63 + b"}")
add("ok-deep-metadata-62", 2, b'{"v":1,"op":"splice","id":"r","metadata":' + b"[" * 62 + b"]" * 62 + b"}")
add("bad-oversize", 0, b'{"v":1,"op":"status","id":"r","pad":"' + b"x" * 70000 + b'"}')
add("bad-oversize-deep", 0, b"[" * 100000)
add("bad-huge-float", 0, b'{"v":1e400,"op":"status","id":"r"}')
add("bad-huge-neg-float", 2, b'{"v":1,"op":"splice","id":"r","metadata":-1e400}')
add("bad-huge-int", 2, b'{"v":1,"op":"splice","id":"r","idle_timeout_ms":99999999999999999999999}')
add("bad-neg-int", 2, b'{"v":1,"op":"splice","id":"r","idle_timeout_ms":-1}')
add("bad-float-timeout", 2, b'{"v":1,"op":"splice","id":"r","idle_timeout_ms":5.0}')
add("bad-zero-timeout", 2, msg("splice", idle_timeout_ms=0))
add("bad-big-timeout", 2, msg("splice", idle_timeout_ms=86400001))
add("bad-string-timeout", 2, msg("splice", idle_timeout_ms="100"))
add("bad-null-timeout", 2, msg("splice", idle_timeout_ms=None))
add("bad-v-missing", 0, {"op": "status", "id": "r"})
add("bad-v-string", 0, {"v": "1", "op": "status", "id": "r"})
add("bad-v-float", 0, b'{"v":1.0,"op":"status","id":"r"}')
add("bad-v-2", 0, msg("status") | {"v": 2})
add("bad-v-neg", 0, msg("status") | {"v": -1})
add("bad-v-huge", 0, msg("status") | {"v": 18446744073709551615})
add("bad-op-missing", 0, {"v": 1, "id": "r"})
add("bad-op-empty", 0, msg(""))
add("bad-op-number", 0, {"v": 1, "op": 7, "id": "r"})
add("bad-op-long", 0, msg("x" * 65))
add("bad-op-unknown", 0, msg("frobnicate"))
add("bad-id-missing", 0, {"v": 1, "op": "status"})
add("bad-id-null", 0, {"v": 1, "op": "status", "id": None})
add("bad-id-number", 0, {"v": 1, "op": "status", "id": 5})
add("bad-id-long", 0, msg("status", id_="i" * 129))
add("ok-id-128", 0, msg("status", id_="i" * 128))
add("ok-id-empty", 0, msg("status", id_=""))
add("bad-dup-id", 0, b'{"v":1,"op":"status","id":"a","id":"b"}')
add("bad-dup-op", 0, b'{"v":1,"op":"status","id":"a","op":"list"}')
add("bad-dup-nested", 2, b'{"v":1,"op":"splice","id":"a","metadata":{"k":1,"k":2}}')
add("bad-too-many-fds", 5, msg("status"))
add("bad-seven-fds", 7, msg("splice"))

# ---- malformed op fields ----
add("bad-unknown-field", 0, msg("status", verbose=True))
add("bad-unknown-field-typo", 2, msg("splice", idle_timeout=5))
add("bad-unknown-field-long", 0, msg("list", **{"k" * 5000: 1}))
add("bad-hello-missing", 0, msg("hello"))
add("bad-hello-empty", 0, msg("hello", owner=""))
add("bad-hello-space", 0, msg("hello", owner="a b"))
add("bad-hello-long", 0, msg("hello", owner="o" * 129))
add("bad-hello-number", 0, msg("hello", owner=1))
add("bad-splice-one-fd", 1, msg("splice"))
add("bad-splice-no-fd", 0, msg("splice", metadata=META))
add("bad-splice-meta-large", 2, msg("splice", metadata="m" * 16383))
add("ok-splice-meta-limit", 2, msg("splice", metadata="m" * 16382))
add("bad-cancel-missing", 0, msg("cancel"))
add("bad-cancel-empty", 0, msg("cancel", task=""))
add("bad-cancel-number", 0, msg("cancel", task=17))
add("bad-cancel-fd", 1, msg("cancel", task="t"))
add("bad-upgrade-proto", 1, msg("upgrade", protocol="sctp"))
add("bad-upgrade-timeout", 1, msg("upgrade", timeout_ms=600001))
add("bad-upgrade-confirm", 1, msg("upgrade", confirm="yes"))
add("bad-upgrade-fds", 2, msg("upgrade"))
add("bad-confirm-accept", 0, msg("confirm", task="b", accept=1))
add("bad-confirm-missing", 0, msg("confirm", task="b"))
add("bad-lease-ip", 1, msg("lease", ip="198.51.100.300"))
add("bad-lease-ip-port", 1, msg("lease", ip="198.51.100.1:80"))
add("bad-lease-ports-zero", 1, msg("lease", ports="0-10"))
add("bad-lease-ports-reversed", 1, msg("lease", ports="10-9"))
add("bad-lease-ports-single", 1, msg("lease", ports="9000"))
add("bad-lease-ports-number", 1, msg("lease", ports=9000))
add("bad-release-missing", 0, msg("release"))
add("bad-done-reason", 2, msg("done", task="t", metadata=None, reason="timeout", bytes_a_to_b=0,
                              bytes_b_to_a=0, duration_ms=0))
add("bad-done-error-missing", 2, msg("done", task="t", metadata=None, reason="error", bytes_a_to_b=0,
                                     bytes_b_to_a=0, duration_ms=0))
add("bad-done-error-extra", 2, msg("done", task="t", metadata=None, reason="eof", error="EIO",
                                   bytes_a_to_b=0, bytes_b_to_a=0, duration_ms=0))
add("bad-upgraded-mixed-family", 1, msg("upgraded", task="b", flow={"protocol": "tcp",
                                                                   "src": "192.0.2.1:1", "dst": "[2001:db8::1]:2"}))
add("bad-upgraded-flow-extra", 1, msg("upgraded", task="b", flow=FLOW | {"x": 1}))
add("bad-error-code", 0, msg("error", code="oops", message="m"))

os.makedirs(OUT, exist_ok=True)
for name in os.listdir(OUT):
    if name.startswith("seed-"):
        os.unlink(os.path.join(OUT, name))
for name, data in sorted(seeds.items()):
    with open(os.path.join(OUT, f"seed-{name}.bin"), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {OUT}")
