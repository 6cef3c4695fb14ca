#!/usr/bin/env python3
"""Keep-alive load for the cluster tests: CONNS client threads, each on one persistent
HTTP/1.1 connection, sending GET PATH in a loop for SECONDS and checking every answer
(status 200, a body of the announced length). A connection that fails is counted, and
the thread reconnects and goes on. Prints one JSON line:
{"requests": N, "failures": N, "reconnects": N, "errors": {"kind": count}}.

With an argument `close`, every request goes on a new connection (`Connection: close`):
a client whose connections all end, as in a rolling upgrade's drain.

PATH may list several paths, comma-separated: each connection asks for them in turn. With
an argument `expect=PREFIX:BACKEND[,PREFIX:BACKEND...]`, an answer to a path that starts
with PREFIX must come from BACKEND (its X-Backend header), else it counts as a failure of
kind `Misrouted` (per-request routing on one keep-alive connection).

Usage: keepalive_load.py HOST PORT PATH[,PATH...] CONNS SECONDS [close] [expect=...]"""
import http.client
import json
import sys
import threading
import time


def main():
    host, port, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    conns, seconds = int(sys.argv[4]), float(sys.argv[5])
    extra = sys.argv[6:]
    close = "close" in extra
    expect = []
    for a in extra:
        if a.startswith("expect="):
            expect = [tuple(e.split(":", 1)) for e in a[len("expect="):].split(",")]
    headers = {"Connection": "close"} if close else {}
    lock = threading.Lock()
    totals = {"requests": 0, "failures": 0, "reconnects": 0, "errors": {}}
    deadline = time.monotonic() + seconds

    class Misrouted(Exception):
        pass

    def worker():
        c = None
        done = failed = reconnects = sent = 0
        errors = {}
        while time.monotonic() < deadline:
            try:
                if c is None:
                    c = http.client.HTTPConnection(host, port, timeout=5)
                path = paths[sent % len(paths)]
                sent += 1
                c.request("GET", path, headers=headers)
                r = c.getresponse()
                body = r.read()
                if r.status != 200 or len(body) != int(r.getheader("Content-Length", "-1")):
                    raise RuntimeError(f"status {r.status}")
                for prefix, backend in expect:
                    if path.startswith(prefix) and r.getheader("X-Backend") != backend:
                        raise Misrouted(f"{path} from {r.getheader('X-Backend')}")
                done += 1
                if close:
                    c.close()
                    c = None
            except Exception as e:  # noqa: BLE001 - every failure is counted by kind
                failed += 1
                kind = type(e).__name__
                errors[kind] = errors.get(kind, 0) + 1
                if c is not None:
                    c.close()
                c = None
                reconnects += 1
                time.sleep(0.05)
            time.sleep(0.01)
        if c is not None:
            c.close()
        with lock:
            totals["requests"] += done
            totals["failures"] += failed
            totals["reconnects"] += reconnects
            for k, v in errors.items():
                totals["errors"][k] = totals["errors"].get(k, 0) + v

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
