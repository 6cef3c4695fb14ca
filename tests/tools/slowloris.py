#!/usr/bin/env python3
"""Slow and idle clients against a VIP, and a real client beside them (issue 15 point 6).

  slowloris.py attack VIP FIRST_ADDR ADDRS PER_ADDR IDLE_ADDR IDLE HOLD_S READY_FILE
      From each of ADDRS source addresses (FIRST_ADDR, FIRST_ADDR+1, ...) opens PER_ADDR
      connections that send a request head one header line at a time, every 250 ms, and
      never finish it; from IDLE_ADDR opens IDLE keep-alive connections that make one
      request and then sit idle. Touches READY_FILE once all are open, trickles for HOLD_S
      seconds, then reports per connection what the switch did: answered 408 (the head
      deadline), reset without an answer (refused: the per-client cap), or nothing yet.
      The idle connections must still answer a second request at the end.
  slowloris.py real VIP N
      N new connections one after another, each one GET /whoami: how many were answered
      200, and the time to first byte (p50, p99, in microseconds).

Prints one JSON object.
"""
import ipaddress
import json
import resource
import select
import socket
import sys
import time

TRICKLE_S = 0.25


def read_response(s, deadline):
    """One HTTP response with a Content-Length body: (status, bytes), or (None, what came)."""
    data = b""
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(body) >= length:
                return int(head.split(b" ")[1]), data
    return None, data


def attack(vip, first, addrs, per_addr, idle_addr, idle, hold_s, ready_file):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = ipaddress.IPv4Address(first)
    slow = []  # (address, socket or None, state)
    for a in range(addrs):
        src = str(base + a)
        for _ in range(per_addr):
            s = socket.socket()
            s.bind((src, 0))
            s.settimeout(2)
            try:
                s.connect((vip, 80))
                s.sendall(b"GET /whoami HTTP/1.1\r\nHost: slow\r\n")
                slow.append([src, s, "open", b""])
            except OSError:
                # A RST for the handshake's ACK can beat connect()'s return.
                s.close()
                slow.append([src, None, "reset", b""])
    idlers = []
    for _ in range(idle):
        s = socket.socket()
        s.bind((idle_addr, 0))
        s.settimeout(2)
        s.connect((vip, 80))
        s.sendall(b"GET /whoami HTTP/1.1\r\nHost: idle\r\n\r\n")
        status, _ = read_response(s, time.time() + 5)
        idlers.append((s, status))
    open(ready_file, "w").close()
    end = time.time() + hold_s
    n = 0
    while time.time() < end:
        n += 1
        live = [c for c in slow if c[2] == "open"]
        for c in live:
            try:
                c[1].send(b"X-Trickle-%d: x\r\n" % n)
            except OSError:
                pass  # read below tells a reset from an answer
        readable, _, _ = select.select([c[1] for c in live], [], [], 0) if live else ([], [], [])
        ready = set(readable)
        for c in live:
            if c[1] not in ready:
                continue
            try:
                chunk = c[1].recv(4096)
            except OSError:
                c[2] = "answered" if c[3] else "reset"
                continue
            if chunk:
                c[3] += chunk
            else:
                c[2] = "answered" if c[3] else "reset"
        time.sleep(TRICKLE_S)
    per_addr_report = {}
    for src, s, state, got in slow:
        r = per_addr_report.setdefault(src, {"408": 0, "other_answer": 0, "reset": 0, "open": 0})
        if got.startswith(b"HTTP/1.1 408"):
            r["408"] += 1
        elif got:
            r["other_answer"] += 1
        elif state == "reset":
            r["reset"] += 1
        else:
            r["open"] += 1
        if s is not None:
            s.close()
    idle_ok = 0
    first_ok = sum(1 for _, st in idlers if st == 200)
    for s, _ in idlers:
        try:
            s.sendall(b"GET /whoami HTTP/1.1\r\nHost: idle\r\n\r\n")
            status, _ = read_response(s, time.time() + 5)
            idle_ok += status == 200
        except OSError:
            pass
        s.close()
    print(json.dumps({"per_addr": per_addr_report, "idle_first_ok": first_ok, "idle_after_ok": idle_ok}))


def real(vip, n):
    ttfb, ok, failed = [], 0, 0
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            s = socket.create_connection((vip, 80), timeout=5)
            s.sendall(b"GET /whoami HTTP/1.1\r\nHost: real\r\nConnection: close\r\n\r\n")
            first = s.recv(1)
            t1 = time.perf_counter()
            _, after_first = read_response(s, time.time() + 5)
            s.close()
            if (first + after_first).startswith(b"HTTP/1.1 200"):
                ok += 1
                ttfb.append((t1 - t0) * 1e6)
            else:
                failed += 1
        except OSError:
            failed += 1
    ttfb.sort()
    pick = lambda q: int(ttfb[min(len(ttfb) - 1, int(q * len(ttfb)))]) if ttfb else None
    print(json.dumps({"ok": ok, "failed": failed, "ttfb_p50_us": pick(0.5), "ttfb_p99_us": pick(0.99)}))


if __name__ == "__main__":
    if sys.argv[1] == "attack":
        a = sys.argv[2:]
        attack(a[0], a[1], int(a[2]), int(a[3]), a[4], int(a[5]), float(a[6]), a[7])
    elif sys.argv[1] == "real":
        real(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: slowloris.py attack|real ...")
