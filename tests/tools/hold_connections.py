#!/usr/bin/env python3
"""Holds CONNS persistent HTTP/1.1 connections open: each sends one GET PATH and reads the
answer, then stays idle (the server's keep-alive and the switch's flow entry stay). Prints
one JSON line when all are open: {"held": N, "failed": N}; then waits until SECONDS have
passed or stdin closes, checks that every held connection still answers one more GET,
closes them and prints {"still_answered": N, "lost": N}. For tests that need load that
stays (the cluster's workload factor: a fuller flow table).

Usage: hold_connections.py HOST PORT PATH CONNS SECONDS"""
import http.client
import json
import select
import sys
import time


def get(c, path):
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    return r.status == 200 and len(body) == int(r.getheader("Content-Length", "-1"))


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conns, seconds = int(sys.argv[4]), float(sys.argv[5])
    held, failed = [], 0
    for _ in range(conns):
        c = http.client.HTTPConnection(host, port, timeout=5)
        try:
            if get(c, path):
                held.append(c)
                continue
        except (OSError, http.client.HTTPException):
            pass
        failed += 1
        c.close()
    print(json.dumps({"held": len(held), "failed": failed}), flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
        if ready and not sys.stdin.readline():
            break
    answered = lost = 0
    for c in held:
        try:
            ok = get(c, path)
        except (OSError, http.client.HTTPException):
            ok = False
        answered += ok
        lost += not ok
        c.close()
    print(json.dumps({"still_answered": answered, "lost": lost}), flush=True)


if __name__ == "__main__":
    main()
