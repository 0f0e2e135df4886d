#!/usr/bin/env python3
# Test peer for shoal-proxy: an upstream server with checksummed, rate-limited payloads, a probe, free ports.
"""Subcommands:

  serve --listen HOST:PORT --record FILE --plan SIZE[@RATE][,…] [--seed N]
        Accepts connections; connection i (from 0) is served plan[min(i, len-1)]: it is sent
        SIZE bytes of payload(seed, SIZE) at RATE bytes/s (no limit without @RATE) and then
        shut down for writing, while everything it sends is read to EOF and hashed. One JSON
        line per finished connection goes to FILE: conn, peer, sent, sent_sha256, received,
        received_sha256.
  gen --size N --seed S --out FILE    write payload(S, N) to FILE
  probe --connect HOST:PORT [--timeout S]
        Connects and waits: exit 0 if the peer closes (EOF or reset) without sending a byte
        within the timeout, 1 otherwise (data arrived, connect failed, or it stayed open).
  free-port                           print a TCP port free on both 127.0.0.1 and ::1
"""
import argparse
import hashlib
import json
import random
import socket
import sys
import threading
import time


def payload(seed, size):
    return random.Random(seed).randbytes(size)


def split_hostport(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve(args):
    plans = []
    for item in args.plan.split(","):
        size, _, rate = item.partition("@")
        plans.append((int(size), int(rate) if rate else 0))
    host, port = split_hostport(args.listen)
    srv = socket.socket(family_of(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(128)
    lock = threading.Lock()
    record = open(args.record, "a", buffering=1)

    def handle(conn, peer, index):
        size, rate = plans[min(index, len(plans) - 1)]
        data = payload(args.seed, size)
        received = [0, hashlib.sha256()]

        def reader():
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                received[0] += len(chunk)
                received[1].update(chunk)

        t = threading.Thread(target=reader)
        t.start()
        start = time.monotonic()
        sent = 0
        try:
            while sent < size:
                n = conn.send(data[sent:sent + 16384])
                sent += n
                if rate:
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        t.join()
        conn.close()
        line = {"conn": index, "peer": "%s:%d" % peer[:2], "sent": sent,
                "sent_sha256": hashlib.sha256(data[:sent]).hexdigest(),
                "received": received[0], "received_sha256": received[1].hexdigest()}
        with lock:
            record.write(json.dumps(line) + "\n")

    index = 0
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=handle, args=(conn, peer, index), daemon=True).start()
        index += 1


def gen(args):
    with open(args.out, "wb") as f:
        f.write(payload(args.seed, args.size))


def probe(args):
    host, port = split_hostport(args.connect)
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    try:
        s.connect((host, port))
    except OSError as e:
        print("probe: connect failed: %s" % e)
        return 1
    try:
        data = s.recv(1)
    except ConnectionResetError:
        print("probe: reset by peer")
        return 0
    except socket.timeout:
        print("probe: still open after %.1f s" % args.timeout)
        return 1
    if data:
        print("probe: peer sent data")
        return 1
    print("probe: closed by peer")
    return 0


def free_port(_args):
    for _ in range(100):
        a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        b = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            b.bind(("::1", port))
        except OSError:
            continue
        finally:
            a.close()
            b.close()
        print(port)
        return 0
    return 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--listen", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("gen")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--connect", required=True)
    p.add_argument("--timeout", type=float, default=3.0)
    sub.add_parser("free-port")
    args = ap.parse_args()
    return {"serve": serve, "gen": gen, "probe": probe, "free-port": free_port}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
