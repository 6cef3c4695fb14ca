#!/usr/bin/env python3
"""Concurrent paced transfers through a VIP, for failover tests (issue 17: paper 001's run
scaled to the testbed).

    transfers.py HOST GETS PUTS GET_PATH PUT_BYTES RATE TAG

Starts GETS downloads of GET_PATH and PUTS uploads of PUT_BYTES random bytes to
/upload/TAG-<i> at once, each paced to RATE bytes/s (so an event can fall in the middle
of them), every one on its own connection. Prints one JSON object: per transfer its kind,
outcome, sha256 (of what was received, or of what was sent), the X-Backend that answered,
its bytes and seconds; and the aggregate bytes moved per 100 ms over the whole run
(`timeline`, from the first transfer's start), from which a caller reads a dip.

A transfer that fails (reset, timeout, short body, bad status) is reported with its error;
the tool never retries one. Every socket has a timeout, so the tool always ends.
"""
import hashlib
import http.client
import json
import os
import sys
import threading
import time

CHUNK = 16 * 1024
TIMEOUT = 30.0
BIN = 0.1


class Meter:
    def __init__(self):
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.bins = []

    def add(self, n):
        i = int((time.monotonic() - self.start) / BIN)
        with self.lock:
            if len(self.bins) <= i:
                self.bins.extend([0] * (i + 1 - len(self.bins)))
            self.bins[i] += n


def pace(done, rate, t0):
    ahead = done / rate - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)


def get(host, path, rate, meter, out):
    t0 = time.monotonic()
    h = hashlib.sha256()
    got = 0
    try:
        c = http.client.HTTPConnection(host, 80, timeout=TIMEOUT)
        c.connect()
        out["port"] = c.sock.getsockname()[1]
        c.request("GET", path)
        r = c.getresponse()
        out["backend"] = r.getheader("X-Backend", "")
        want = int(r.getheader("Content-Length", "-1"))
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
        while True:
            b = r.read(CHUNK)
            if not b:
                break
            h.update(b)
            got += len(b)
            meter.add(len(b))
            pace(got, rate, t0)
        if got != want:
            raise RuntimeError(f"short body: {got} of {want}")
        c.close()
        out["ok"] = True
    except Exception as e:  # reported, never retried
        out["error"] = f"{type(e).__name__}: {e}"
    out.update(sha256=h.hexdigest(), bytes=got, seconds=time.monotonic() - t0)


def put(host, path, size, rate, meter, out):
    t0 = time.monotonic()
    body = os.urandom(size)
    out["sha256"] = hashlib.sha256(body).hexdigest()
    sent = 0
    try:
        c = http.client.HTTPConnection(host, 80, timeout=TIMEOUT)
        c.connect()
        out["port"] = c.sock.getsockname()[1]
        c.putrequest("PUT", path)
        c.putheader("Content-Length", str(size))
        c.endheaders()
        while sent < size:
            n = min(CHUNK, size - sent)
            c.send(body[sent:sent + n])
            sent += n
            meter.add(n)
            pace(sent, rate, t0)
        r = c.getresponse()
        r.read()
        out["backend"] = r.getheader("X-Backend", "")
        if r.status not in (201, 204):
            raise RuntimeError(f"status {r.status}")
        c.close()
        out["ok"] = True
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out.update(bytes=sent, seconds=time.monotonic() - t0)


def main():
    host, gets, puts, get_path, put_bytes, rate, tag = sys.argv[1:8]
    gets, puts, put_bytes, rate = int(gets), int(puts), int(put_bytes), float(rate)
    meter = Meter()
    results, threads = [], []
    for i in range(gets):
        out = {"kind": "get", "path": get_path, "ok": False}
        results.append(out)
        threads.append(threading.Thread(target=get, args=(host, get_path, rate, meter, out)))
    for i in range(puts):
        path = f"/upload/{tag}-{i}"
        out = {"kind": "put", "path": path, "ok": False}
        results.append(out)
        threads.append(
            threading.Thread(target=put, args=(host, path, put_bytes, rate, meter, out))
        )
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT * 20)
    print(json.dumps({"transfers": results, "bin_s": BIN, "timeline": meter.bins}))


if __name__ == "__main__":
    main()
