#!/usr/bin/env python3
"""Tables for bench/scripts/compare.sh from its raw outputs: compare_report.py OUTDIR SETUP..."""
import json
import os
import re
import statistics
import sys

OUT = sys.argv[1]
SETUPS = sys.argv[2:]
HZ = os.sysconf("SC_CLK_TCK")
TESTS = [
    ("ka_small", "keep-alive /whoami"),
    ("ka_js", "keep-alive /static/app.js"),
    ("close", "new connection per request, /whoami"),
    ("ka_mix", "keep-alive, requests rotating over 3 pools (mix.lua)"),
]


def read_kv(path):
    out = {}
    if not os.path.exists(path):
        return out
    for line in open(path):
        if "=" in line:
            k, v = line.strip().split("=", 1)
            out[k] = v
    return out


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return None
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]


def parse_wrk(path):
    r = {"rps": None, "requests": 0, "lat": {}, "errors": []}
    if not os.path.exists(path):
        return r
    for line in open(path):
        s = line.strip()
        m = re.match(r"(\d+) requests in", s)
        if m:
            r["requests"] = int(m.group(1))
        m = re.match(r"Requests/sec:\s+([\d.]+)", s)
        if m:
            r["rps"] = float(m.group(1))
        m = re.match(r"(50|75|90|99)%\s+(\S+)", s)
        if m:
            r["lat"][m.group(1)] = to_ms(m.group(2))
        if s.startswith("Socket errors") or s.startswith("Non-2xx"):
            r["errors"].append(s)
    return r


def tsc_hz():
    for s in SETUPS:
        path = os.path.join(OUT, f"{s}.log")
        if s.startswith("webswitch") and os.path.exists(path):
            m = re.search(r"TSC (\d+) Hz", open(path).read())
            if m:
                return int(m.group(1))
    return None


def ws_counters(path):
    try:
        e = json.loads(open(path).read().strip().splitlines()[-1])
        return e["total"]
    except (OSError, IndexError, ValueError, KeyError):
        return None


IDLE_POLL = "idle polling (ws_pause, ws_rdtsc)"
OTHERS = "other processes"
ORDER = ["middle user space", IDLE_POLL, "kernel in the middle's context", "kernel, other contexts", OTHERS]
KERNEL_THREADS = ("ksoftirqd", "swapper", "kworker", "kdamond", "rcu", "migration", "cpuhp")


def perf_split(path):
    """CPU1's perf samples of a run by where they went (percent of all samples)."""
    cats = {}
    for line in open(path):
        f = [x.strip() for x in line.split("|")]
        if line.startswith("#") or len(f) < 4 or not f[0].endswith("%"):
            continue
        pct, comm, dso, sym = float(f[0].rstrip("%")), f[1], f[2], f[3]
        middle = comm == "haproxy" or comm.startswith("rte-") or comm in ("webswitch", "eal-intr-thread")
        if middle and dso == "[kernel.kallsyms]":
            c = "kernel in the middle's context"
        elif middle and sym.split()[-1] in ("ws_pause", "ws_rdtsc"):
            c = IDLE_POLL
        elif middle:
            c = "middle user space"
        elif comm.startswith(KERNEL_THREADS):
            c = "kernel, other contexts"
        else:
            c = OTHERS
        cats[c] = cats.get(c, 0.0) + pct
    return cats


def window(setup, name):
    """Middle-box CPU over a run: seconds of process CPU, busy cycles, CPU1, backend accepts."""
    b = read_kv(os.path.join(OUT, f"{setup}.{name}.before"))
    a = read_kv(os.path.join(OUT, f"{setup}.{name}.after"))
    w = {}
    if "proc" in a and "proc" in b:
        w["proc_s"] = (int(a["proc"]) - int(b["proc"])) / HZ
    # The kernel router's work is softirq on an otherwise idle CPU1: with tick-based accounting
    # and the tick stopped while idle it is mostly not counted at all, so not attributable.
    if "cpu1" in a and "cpu1" in b and setup != "direct":
        w["cpu1_s"] = (int(a["cpu1"]) - int(b["cpu1"])) / HZ
        w["cpu1_softirq_s"] = (int(a["cpu1_softirq"]) - int(b["cpu1_softirq"])) / HZ
    if "accepts" in a and "accepts" in b:
        # Each snapshot's own stub_status request is one accept per backend.
        w["accepts"] = int(a["accepts"]) - int(b["accepts"]) - 3
    for k in ("cli_TcpExtTCPSynRetrans", "cli_TcpRetransSegs"):
        if k in a and k in b:
            w[k] = int(a[k]) - int(b[k])
    w["builds"] = int(a.get("heavy") or 0)
    perf = os.path.join(OUT, f"perf.{setup}.{name}.full")
    if os.path.exists(perf) and os.path.getsize(perf) and setup != "direct":
        w["perf"] = perf_split(perf)
        if "cpu1_s" in w:
            waste = w["perf"].get(IDLE_POLL, 0.0) + w["perf"].get(OTHERS, 0.0)
            w["cpu1_work_s"] = w["cpu1_s"] * (1 - waste / 100)
    if setup.startswith("webswitch"):
        cb = ws_counters(os.path.join(OUT, f"{setup}.{name}.before.ws"))
        ca = ws_counters(os.path.join(OUT, f"{setup}.{name}.after.ws"))
        hz = tsc_hz()
        if cb and ca and hz:
            w["busy_s"] = (ca["busy_cycles"] - cb["busy_cycles"]) / hz
            w["ws"] = {k: ca[k] - cb[k] for k in ca if isinstance(ca[k], int) and isinstance(cb.get(k), int)}
            w["ws_drops"] = {k: ca["drops"][k] - cb["drops"].get(k, 0) for k in ca.get("drops", {})
                             if isinstance(ca["drops"][k], int) and ca["drops"][k] - cb["drops"].get(k, 0)}
    return w


def us_per(x, n):
    return "n/a" if x is None or not n else f"{1e6 * x / n:.1f}"


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


meta = read_kv(os.path.join(OUT, "meta"))
print(f"date {meta.get('date')}, commit {meta.get('commit')} (uncommitted source files: "
      f"{meta.get('dirty')}), binary {meta.get('binary')}, kernel {meta.get('kernel')}, {meta.get('cpus')} CPUs, "
      f"{meta.get('haproxy')}, {meta.get('nginx')}, {meta.get('wrk')}; wrk {meta.get('params')}")
print(f"webswitch TSC: {tsc_hz()} Hz")
print()
results = {"meta": meta, "tsc_hz": tsc_hz(), "wrk": {}, "download": {}}
print("| test | setup | requests/s | vs direct | p50 ms | p90 ms | p99 ms | middle CPU µs/req | "
      "process CPU µs/req | CPU1 µs/req | CPU1 work µs/req | backend conns/req | client retransmits (SYN) | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, label in TESTS:
    base = None
    for setup in SETUPS:
        if not os.path.exists(os.path.join(OUT, f"{setup}.{name}.wrk")):
            continue
        r = parse_wrk(os.path.join(OUT, f"{setup}.{name}.wrk"))
        w = window(setup, name)
        n = r["requests"]
        if setup == "direct":
            base = r["rps"]
        middle = w.get("busy_s") if setup.startswith("webswitch") else w.get("proc_s")
        ratio = f"{r['rps'] / base:.2f}" if base and r["rps"] else "n/a"
        conns = f"{w['accepts'] / n:.3f}" if "accepts" in w and n else "n/a"
        print(f"| {label} | {setup} | {fmt(r['rps'], '.0f')} | {ratio} | {fmt(r['lat'].get('50'), '.2f')} | "
              f"{fmt(r['lat'].get('90'), '.2f')} | {fmt(r['lat'].get('99'), '.2f')} | {us_per(middle, n)} | "
              f"{us_per(w.get('proc_s'), n)} | {us_per(w.get('cpu1_s'), n)} | {us_per(w.get('cpu1_work_s'), n)} | {conns} | "
              f"{w.get('cli_TcpRetransSegs', 'n/a')} ({w.get('cli_TcpExtTCPSynRetrans', 'n/a')}) | "
              f"{'; '.join(r['errors'] + (['other heavy jobs ran'] if w.get('builds') else [])) or '-'} |")
        results["wrk"][f"{setup}.{name}"] = {"wrk": r, "window": w}
print()
print("CPU per request, webswitch / HAProxy:")
PAIRS = [(ws, hp) for ws in SETUPS if ws.startswith("webswitch") for hp in SETUPS if hp.startswith("haproxy")]
for (name, label), (ws, hp) in [(t, p) for t in TESTS for p in PAIRS]:
    h = results["wrk"].get(f"{hp}.{name}")
    s = results["wrk"].get(f"{ws}.{name}")
    if not h or not s or not h["wrk"]["requests"] or not s["wrk"]["requests"]:
        continue
    if (ws, hp) != ("webswitch", "haproxy"):
        label = f"{label} [{ws} / {hp}]"
    hn, sn = h["wrk"]["requests"], s["wrk"]["requests"]
    parts = []
    if "proc_s" in h["window"] and h["window"]["proc_s"] > 0:
        hp = h["window"]["proc_s"] / hn
        if "busy_s" in s["window"]:
            parts.append(f"busy cycles {s['window']['busy_s'] / sn / hp:.2f}")
        if "proc_s" in s["window"]:
            parts.append(f"process CPU {s['window']['proc_s'] / sn / hp:.2f}")
    for k in ("cpu1_s", "cpu1_work_s"):
        if h["window"].get(k) and k in s["window"]:
            parts.append(f"{'CPU1' if k == 'cpu1_s' else 'CPU1 work'} {s['window'][k] / sn / (h['window'][k] / hn):.2f}")
    print(f"  {label}: " + ", ".join(parts))
for key, v in results["wrk"].items():
    if v["window"].get("ws_drops"):
        print(f"  {key}: webswitch drops {v['window']['ws_drops']}")
print()
print("webswitch counters per request (between the stats events around each run):")
for key, v in results["wrk"].items():
    c, n = v["window"].get("ws"), v["wrk"]["requests"]
    if not c or not n:
        continue
    parts = [f"{k} {c.get(k, 0) / n:.3f}" for k in
             ("requests_routed", "presplice_rounds", "backend_connects", "conns_accepted", "rst_sent")]
    # Warm pools (presplice): requests spliced onto a warm connection, connections given back,
    # opened ahead and let go.
    parts += [f"{k} {c[k] / n:.3f} ({c[k]})" for k in
              ("warm_attached", "warm_returned", "warm_opened", "warm_closed") if c.get(k)]
    parts += [f"{k} {c[k]}" for k in ("presplice_fallbacks", "backend_connect_failures",
                                      "http_5xx_sent", "retries", "linger_recycled", "tuple_reused") if c.get(k)]
    print(f"  {key}: " + ", ".join(parts))
for setup in SETUPS:
    path = os.path.join(OUT, f"{setup}.route_check")
    if os.path.exists(path):
        print(f"  routing check {setup} (path>X-Backend(status,connects)): " + " ".join(
            f"{f[0].split('/', 3)[-1]}>{f[1]}({f[2]},{f[3].split('=')[-1]})"
            for f in (ln.split() for ln in open(path, errors="replace")) if len(f) >= 4))
print()
print("| 100 MB download | MB/s (median) | runs MB/s | vs direct | middle CPU ms/100 MB | "
      "process CPU ms/100 MB | CPU1 ms/100 MB | CPU1 work ms/100 MB |")
print("|---|---|---|---|---|---|---|---|")
base = None
for setup in SETUPS:
    path = os.path.join(OUT, f"{setup}.dl.curl")
    if not os.path.exists(path):
        continue
    runs = []
    ok = 0
    for line in open(path):
        f = line.split()
        if len(f) == 3:
            runs.append(float(f[0]) / 1e6)
            ok += f[1] == "104857600" and f[2] == "200"
    med = statistics.median(runs) if runs else None
    if setup == "direct":
        base = med
    w = window(setup, "dl")
    middle = w.get("busy_s") if setup.startswith("webswitch") else w.get("proc_s")
    k = len(runs) or None

    def ms(x):
        return "n/a" if x is None or not k else f"{1e3 * x / k:.0f}"

    wk = w.get("cpu1_work_s")
    print(f"| {setup} | {fmt(med, '.1f')} | {' '.join(f'{x:.1f}' for x in runs)}"
          f"{'' if ok == len(runs) else f' ({len(runs) - ok} incomplete)'} | "
          f"{f'{med / base:.2f}' if base and med else 'n/a'} | {ms(middle)} | {ms(w.get('proc_s'))} | "
          f"{ms(w.get('cpu1_s'))} | {ms(wk)} |{' (other heavy jobs ran)' if w.get('builds') else ''}")
    results["download"][setup] = {"runs_MBps": runs, "complete": ok, "window": w}

rows = [(k, v["window"]["perf"]) for k, v in results["wrk"].items() if "perf" in v["window"]]
rows += [(f"{k}.dl", v["window"]["perf"]) for k, v in results["download"].items() if "perf" in v["window"]]
if rows:
    print()
    print("| CPU1 samples (perf cpu-clock) | " + " | ".join(ORDER) + " |")
    print("|---|" + "---|" * len(ORDER))
    for k, cats in rows:
        print(f"| {k} | " + " | ".join(f"{cats.get(c, 0.0):.1f}%" for c in ORDER) + " |")
with open(os.path.join(OUT, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
