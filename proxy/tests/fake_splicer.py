#!/usr/bin/env python3
# A scripted stand-in for splicer (SOCK_SEQPACKET + SCM_RIGHTS) to drive shoal-proxy's error paths.
"""Usage: fake_splicer.py --socket PATH --record FILE --mode refuse|bounce

Answers hello with welcome. For each splice:
  refuse  answer error busy and close the fds (what splicer does at its task limit);
  bounce  answer accepted, then send junk the proxy must shrug off (a malformed datagram,
          an unknown op, a done with the wrong fd count), then the real done with both
          sockets back, reason eof and byte counts 0.
Every message received is appended to FILE as one JSON line: {"msg":…,"nfds":N}.
"""
import argparse
import array
import json
import os
import select
import signal
import socket
import sys


def send(conn, obj, fds=()):
    data = json.dumps(obj, separators=(",", ":")).encode()
    if fds:
        socket.send_fds(conn, [data], list(fds))
    else:
        conn.send(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--mode", choices=["refuse", "bounce"], required=True)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(args.socket)
    srv.listen(16)
    record = open(args.record, "a", buffering=1)
    conns = []
    tasks = 0
    while True:
        ready, _, _ = select.select([srv] + conns, [], [])
        for s in ready:
            if s is srv:
                c, _ = srv.accept()
                conns.append(c)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(s, 70000, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                conns.remove(s)
                s.close()
                continue
            msg = json.loads(data)
            record.write(json.dumps({"msg": msg, "nfds": len(fds)}) + "\n")
            op, mid = msg.get("op"), msg.get("id")
            if op == "hello":
                send(s, {"v": 1, "op": "welcome", "id": mid, "owner": msg["owner"], "mailbox": 0})
            elif op == "splice" and args.mode == "refuse":
                for fd in fds:
                    os.close(fd)
                send(s, {"v": 1, "op": "error", "id": mid, "code": "busy",
                         "message": "tasks: the limit of 0 is reached"})
            elif op == "splice":
                tasks += 1
                task = "fake-%d" % tasks
                send(s, {"v": 1, "op": "accepted", "id": mid, "task": task})
                s.send(b'{"v":1,"op":')  # not JSON
                send(s, {"v": 1, "op": "frobnicated", "id": mid})
                send(s, {"v": 1, "op": "done", "id": mid, "task": task,
                         "metadata": msg.get("metadata"), "reason": "eof",
                         "bytes_a_to_b": 0, "bytes_b_to_a": 0, "duration_ms": 0}, fds[:1])
                send(s, {"v": 1, "op": "done", "id": mid, "task": task,
                         "metadata": msg.get("metadata"), "reason": "eof",
                         "bytes_a_to_b": 0, "bytes_b_to_a": 0, "duration_ms": 1}, fds)
                for fd in fds:
                    os.close(fd)
            else:
                for fd in fds:
                    os.close(fd)
                send(s, {"v": 1, "op": "error", "id": mid, "code": "unknown_op",
                         "message": "op: unknown operation"})


if __name__ == "__main__":
    main()
