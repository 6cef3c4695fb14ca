#!/usr/bin/env python3
"""Writes instance I's config for the cluster testbed (testbed.sh up --cluster) from
examples/cluster.json: the testbed's addresses (10.NET.x.x), the instance's own front
(10.NET.4.30+I) and backend (10.NET.1.I) addresses, its DPDK file prefix PREFIX-I and its
BIRD control socket (/tmp/TESTBED-testbed/cluster.d/swI.ctl).

Usage: cluster-config.py I NET TESTBED PREFIX OUT [WORKERS] [STORE]

STORE: `memcached` to share splice state through the testbed's memcached (on the router,
10.NET.4.254:11211: `cluster.state_store`) instead of pushing it to the members."""
import json
import sys


def main():
    i, net, tb, prefix, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    workers = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    store = sys.argv[7] if len(sys.argv) > 7 else ""
    text = open("examples/cluster.json").read().replace("10.99.", f"10.{net}.")
    text = text.replace("/tmp/wst-testbed/", f"/tmp/{tb}-testbed/")
    c = json.loads(text)
    c["eal"]["file_prefix"] = f"{prefix}-{i}"
    c["ports"][0]["addresses"] = [f"10.{net}.4.{30 + i}/24"]
    c["ports"][1]["addresses"] = [f"10.{net}.1.{i}/24"]
    for k in ("announce", "withdraw"):
        c["cluster"][k] = [a.replace("sw1.ctl", f"sw{i}.ctl") for a in c["cluster"][k]]
    # One VM stands for two appliances: instance 1's worker on CPU 1, instance 2's on CPU 0,
    # so the two poll loops do not take turns on one CPU (each would wait out the other's
    # time slice on every hand-over).
    c["lcores"]["cpus"] = {"0": 0, "1": 1 if i == 1 else 0}
    if workers == 2:
        c["lcores"] = {"main": 0, "workers": [1, 2], "cpus": {"0": 0, "1": 1, "2": 0}}

        for p in c["ports"]:
            p["device"] = p["device"].replace("qpairs=1", "qpairs=2")
    if store == "memcached":
        c["cluster"]["state_store"] = {"memcached": f"10.{net}.4.254:11211"}
    elif store:
        sys.exit(f"cluster-config.py: unknown store {store!r}")
    json.dump(c, open(out, "w"), indent=2)


if __name__ == "__main__":
    main()
