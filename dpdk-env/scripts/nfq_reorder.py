#!/usr/bin/env python3
"""nfq_reorder.py: NFQUEUE consumer that reorders and delays TCP packets for the webswitch testbed.

Started by `testbed.sh impair --reorder PCT` and/or `--delay MS` inside a testbed namespace (P-cli or P-br); see
docs/testbed.md. Standard library only: it speaks nfnetlink_queue over a raw netlink socket, so it
needs neither libnetfilter_queue nor pip packages.

For every queued packet, with probability PCT % (from a random.Random seeded with --seed and the
role, so the decision stream is reproducible), the verdict is withheld: the packet is "held" until
--gap later packets of the same TCP flow (same 5-tuple, same direction) have been accepted, or
--max-ms milliseconds have passed, whichever comes first; then it is accepted. A held packet that
at least one later packet of its flow overtook counts as "reordered". Nothing is ever dropped here.

With --delay-ms D > 0 every TCP packet also waits D ms in a FIFO "delay line" before its verdict:
a packet enters the line when it would otherwise be accepted (at once, or when a reorder hold ends),
so the line keeps the reordering and adds D ms to every packet ("delayed" counts them, and
"delay_ms_sum" the time from their arrival here to their verdict, reorder holds included).

--steal-queue Q (role cli, the client's own OUTPUT): packets of queue Q are copied whole and dropped
at once, and the copy is sent from a raw socket (marked --mark, which the queue rule skips) when it
would have been accepted. A packet the sender's own stack holds still counts against its socket
(TCP small queues: at most ~1 ms of the pacing rate below TCP), which throttles a sender whose own
packets wait for their delay ~5-fold or more; netem orphans them for the same reason. So delay and
reordering of the client's packets happen off its socket, as they would in the network.

Roles decide which link and direction a packet belongs to (for the counters):
  cli  queue in P-cli: hook LOCAL_OUT (OUTPUT -o cli0) = client/to_switch,
       hook LOCAL_IN (INPUT) = client/from_switch
  br   queue in P-br (FORWARD with bridge-nf-call-iptables=1): physical out-port to-sw =
       <physical in-port>/to_switch, otherwise <physical out-port>/from_switch

Counters go to --stats FILE (JSON, written atomically, with a "seq" that grows by one each time):
every 0.5 s while they change, at once on SIGUSR1, and at exit. SIGTERM/SIGINT: accept every held packet and whatever is still queued, unbind,
write the counters, exit 0.
"""
import argparse
import collections
import errno
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 1
NLM_F_ACK = 4

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 1

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_IFINDEX_PHYSINDEV = 7
NFQA_IFINDEX_PHYSOUTDEV = 8
NFQA_PAYLOAD = 10

NF_DROP = 0
NF_ACCEPT = 1
NF_INET_LOCAL_IN = 1
NF_INET_LOCAL_OUT = 3

# IPv4 header (up to 60 bytes) + TCP ports: all a flow key needs
COPY_RANGE = 64
COUNTERS = ("packets", "held", "reordered", "overtakes", "released_by_gap", "released_by_timeout", "delayed",
            "stolen")


def nlmsg(msg_type, flags, seq, payload):
    return struct.pack("=IHHII", 16 + len(payload), msg_type, flags, seq, 0) + payload


def nfgen(res_id, family=socket.AF_UNSPEC):
    return struct.pack("=BBH", family, 0, socket.htons(res_id))


def nla(kind, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * (-n % 4)


def attrs(buf, off, end):
    while off + 4 <= end:
        n, kind = struct.unpack_from("=HH", buf, off)
        if n < 4:
            return
        yield kind & 0x3FFF, off + 4, off + n
        off += (n + 3) & ~3


class Reorderer:
    def __init__(self, args):
        self.args = args
        self.role = args.role
        self.queues = args.queue
        self.pct = args.pct
        self.gap = max(1, args.gap)
        self.max_s = args.max_ms / 1000.0
        self.delay_s = max(0.0, args.delay_ms) / 1000.0
        # the delay line: (due, res_id, pkt_id, stats, arrived), due times in arrival order
        self.line = collections.deque()
        self.rng = random.Random(f"{args.seed}:{args.role}")
        self.stats = {}
        self.held = {}  # flow key -> list of held entries
        self.nheld = 0
        self.verdicts = bytearray()
        self.seq = 0
        self.stats_seq = 0
        self.dirty = True
        self.errors = {"enobufs": 0, "bad_messages": 0, "not_tcp": 0, "netlink_errors": 0, "resend_errors": 0}
        self.ifnames = {}
        self.stop = False
        self.want_stats = False
        # signals wake the select() below through this pair (handlers only set flags)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.started = time.time()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self.steal = set(args.steal_queue or [])
        self.raw = None
        if self.steal:
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, args.mark)
            try:
                self.raw.setsockopt(socket.SOL_SOCKET, 32, 16 << 20)  # SO_SNDBUFFORCE
            except OSError:
                self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
            self.raw.setblocking(False)

    # ---- netlink configuration ----------------------------------------------------------
    def request(self, payload_type, payload):
        self.seq += 1
        seq = self.seq
        self.sock.send(nlmsg((NFNL_SUBSYS_QUEUE << 8) | payload_type, NLM_F_REQUEST | NLM_F_ACK, seq, payload))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            buf = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(buf):
                n, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", buf, off)
                if n < 16:
                    break
                if kind == NLMSG_ERROR and mseq == seq:
                    (err,) = struct.unpack_from("=i", buf, off + 16)
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    return
                off += (n + 3) & ~3
        raise TimeoutError("no netlink ack")

    def bind(self):
        for q in self.queues + sorted(self.steal):
            self.request(NFQNL_MSG_CONFIG,
                         nfgen(q) + nla(NFQA_CFG_CMD, struct.pack("=BB", NFQNL_CFG_CMD_BIND, 0)
                                        + struct.pack(">H", socket.AF_INET)))
            self.request(NFQNL_MSG_CONFIG,
                         nfgen(q)
                         + nla(NFQA_CFG_PARAMS, struct.pack(">IB", 65535 if q in self.steal else COPY_RANGE,
                                                             NFQNL_COPY_PACKET))
                         + nla(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 65536))
                         + nla(NFQA_CFG_MASK, struct.pack(">I", NFQA_CFG_F_FAIL_OPEN))
                         + nla(NFQA_CFG_FLAGS, struct.pack(">I", NFQA_CFG_F_FAIL_OPEN)))

    def unbind(self):
        for q in self.queues + sorted(self.steal):
            try:
                self.request(NFQNL_MSG_CONFIG,
                             nfgen(q) + nla(NFQA_CFG_CMD, struct.pack("=BB", NFQNL_CFG_CMD_UNBIND, 0)
                                            + struct.pack(">H", socket.AF_INET)))
            except OSError:
                pass

    # ---- verdicts -----------------------------------------------------------------------
    def accept(self, res_id, pkt_id, verdict=NF_ACCEPT):
        """Lets a packet go: its verdict, or (res_id None) sends the stolen copy pkt_id."""
        if res_id is None:
            self.resend(pkt_id)
            return
        self.verdicts += nlmsg((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0,
                               nfgen(res_id) + nla(NFQA_VERDICT_HDR, struct.pack(">II", verdict, pkt_id)))
        if len(self.verdicts) > 32768:
            self.flush()

    def resend(self, data):
        dst = socket.inet_ntoa(data[16:20])
        for _ in range(100):
            try:
                self.raw.sendto(data, (dst, 0))
                return
            except (BlockingIOError, InterruptedError):
                time.sleep(0.0002)
            except OSError:
                break
        self.errors["resend_errors"] += 1

    def flush(self):
        if not self.verdicts:
            return
        data = bytes(self.verdicts)
        self.verdicts.clear()
        # one datagram may carry many messages; netlink processes them in order
        while True:
            try:
                self.sock.send(data)
                return
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno in (errno.ENOBUFS, errno.EAGAIN):
                    time.sleep(0.001)
                    continue
                raise

    # ---- classification -----------------------------------------------------------------
    def ifname(self, idx):
        name = self.ifnames.get(idx)
        if name is None:
            try:
                name = socket.if_indextoname(idx)
            except OSError:
                name = f"if{idx}"
            self.ifnames[idx] = name
        return name

    def linkdir(self, hook, physin, physout):
        if self.role == "cli":
            if hook == NF_INET_LOCAL_OUT:
                key = ("client", "to_switch")
            elif hook == NF_INET_LOCAL_IN:
                key = ("client", "from_switch")
            else:
                key = ("client", f"hook{hook}")
        else:
            pin = self.ifname(physin) if physin else "?"
            pout = self.ifname(physout) if physout else "?"
            # to-sw, or on a cluster testbed to-sw2 / to-sw3 (the other instances)
            if pout.startswith("to-sw"):
                key = (pin, "to_switch")
            else:
                key = (pout, "from_switch")
        st = self.stats.get(key)
        if st is None:
            st = self.stats[key] = dict.fromkeys(COUNTERS, 0)
            st["max_held_at_once"] = 0
            st["delay_ms_sum"] = 0.0
        return st

    # ---- packets ------------------------------------------------------------------------
    def on_packet(self, buf, off, end, res_id, now):
        pkt_id = hook = None
        physin = physout = 0
        payload = None
        for kind, a, b in attrs(buf, off, end):
            if kind == NFQA_PACKET_HDR:
                pkt_id, _proto, hook = struct.unpack_from(">IHB", buf, a)
            elif kind == NFQA_PAYLOAD:
                payload = (a, b)
            elif kind == NFQA_IFINDEX_PHYSINDEV:
                (physin,) = struct.unpack_from(">I", buf, a)
            elif kind == NFQA_IFINDEX_PHYSOUTDEV:
                (physout,) = struct.unpack_from(">I", buf, a)
        if pkt_id is None:
            self.errors["bad_messages"] += 1
            return
        st = self.linkdir(hook, physin, physout)
        st["packets"] += 1
        self.dirty = True
        key = None
        if payload is not None:
            a, b = payload
            if b - a >= 20 and buf[a] >> 4 == 4 and buf[a + 9] == 6:
                ihl = (buf[a] & 15) * 4
                if b - a >= ihl + 4:
                    key = bytes(buf[a + 12:a + 20]) + bytes(buf[a + ihl:a + ihl + 4])
        if key is None:
            self.errors["not_tcp"] += 1
            self.accept(res_id, pkt_id)
            return
        if res_id in self.steal:
            # the sender's stack lets go of it now; the copy goes out when it is due
            a, b = payload
            self.accept(res_id, pkt_id, NF_DROP)
            res_id, pkt_id = None, bytes(buf[a:b])
            st["stolen"] += 1
        if self.pct > 0 and self.nheld < self.args.max_held and self.rng.random() * 100.0 < self.pct:
            entry = [pkt_id, res_id, self.gap, now + self.max_s, 0, st, now]
            self.held.setdefault(key, []).append(entry)
            self.nheld += 1
            st["held"] += 1
            if self.nheld > st["max_held_at_once"]:
                st["max_held_at_once"] = self.nheld
            return
        # let go now: it overtakes every packet of its flow that is held
        self.forward(res_id, pkt_id, st, now, now)
        entries = self.held.get(key)
        if entries:
            keep = []
            for e in entries:
                e[2] -= 1
                e[4] += 1
                if e[2] <= 0:
                    self.release(e, "released_by_gap", now)
                else:
                    keep.append(e)
            if keep:
                self.held[key] = keep
            else:
                del self.held[key]

    def forward(self, res_id, pkt_id, st, arrived, now):
        """A packet no longer held for reordering: accepted now, or after the delay."""
        if self.delay_s <= 0:
            self.accept(res_id, pkt_id)
            return
        self.line.append((now + self.delay_s, res_id, pkt_id, st, arrived))

    def pump(self, now, everything=False):
        """Accepts what is due in the delay line; returns the next due time (or None)."""
        line = self.line
        while line and (everything or line[0][0] <= now):
            _due, res_id, pkt_id, st, arrived = line.popleft()
            self.accept(res_id, pkt_id)
            st["delayed"] += 1
            st["delay_ms_sum"] += (now - arrived) * 1000.0
            self.dirty = True
        return line[0][0] if line else None

    def release(self, e, why, now):
        self.forward(e[1], e[0], e[5], e[6], now)
        self.nheld -= 1
        st = e[5]
        st[why] += 1
        if e[4]:
            st["reordered"] += 1
            st["overtakes"] += e[4]
        self.dirty = True

    def expire(self, now, everything=False):
        if not self.nheld:
            return None
        nearest = None
        for key in list(self.held):
            keep = []
            for e in self.held[key]:
                if everything or e[3] <= now:
                    self.release(e, "released_by_timeout", now)
                else:
                    keep.append(e)
                    if nearest is None or e[3] < nearest:
                        nearest = e[3]
            if keep:
                self.held[key] = keep
            else:
                del self.held[key]
        return nearest

    def receive(self, buf, n, now):
        off = 0
        while off + 16 <= n:
            length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", buf, off)
            if length < 16 or off + length > n:
                self.errors["bad_messages"] += 1
                return
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET and length >= 20:
                (res_be,) = struct.unpack_from("=H", buf, off + 18)
                self.on_packet(buf, off + 20, off + length, socket.ntohs(res_be), now)
            elif kind == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", buf, off + 16)
                if err:
                    self.errors["netlink_errors"] += 1
            off += (length + 3) & ~3

    def drain(self, buf, limit=512):
        """Reads up to `limit` queued packets, timing each; with a delay line, what falls due
        meanwhile is let go every 32 packets (a busy consumer must not add its own delay)."""
        for i in range(limit):
            try:
                n = self.sock.recv_into(buf, len(buf), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.errors["enobufs"] += 1
                    continue
                raise
            now = time.monotonic()
            self.receive(buf, n, now)
            if self.line and i % 32 == 31:
                self.pump(now)
                self.flush()

    # ---- counters -----------------------------------------------------------------------
    def kernel_queues(self):
        out = {}
        try:
            with open("/proc/net/netfilter/nfnetlink_queue") as f:
                for line in f:
                    v = line.split()
                    if len(v) >= 8 and (int(v[0]) in self.queues or int(v[0]) in self.steal):
                        out[v[0]] = {"portid": int(v[1]), "waiting": int(v[2]),
                                     "queue_dropped": int(v[5]), "user_dropped": int(v[6]),
                                     "id_sequence": int(v[7])}
        except OSError:
            pass
        return out

    def write_stats(self, final=False):
        self.stats_seq += 1
        links = {}
        for (link, d), st in sorted(self.stats.items()):
            links.setdefault(link, {})[d] = dict(st, delay_ms_sum=round(st["delay_ms_sum"], 3))
        doc = {"role": self.role, "pid": os.getpid(), "queues": self.queues, "pct": self.pct,
               "gap": self.gap, "max_ms": self.args.max_ms, "delay_ms": self.args.delay_ms,
               "seed": self.args.seed, "in_delay_line": len(self.line),
               "seq": self.stats_seq, "final": final, "time": time.time(),
               "uptime_s": round(time.time() - self.started, 3), "held_now": self.nheld,
               "errors": self.errors, "kernel": self.kernel_queues(), "links": links}
        tmp = f"{self.args.stats}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.args.stats)
        self.dirty = False

    # ---- main loop ----------------------------------------------------------------------
    def run(self):
        buf = bytearray(262144)
        nearest = None
        last_write = 0.0
        while not self.stop:
            now = time.monotonic()
            if self.line and (nearest is None or self.line[0][0] < nearest):
                nearest = self.line[0][0]
            timeout = 0.2 if nearest is None else min(0.2, max(0.0, nearest - now))
            try:
                ready, _, _ = select.select([self.sock, self.wake_r], [], [], timeout)
            except InterruptedError:
                ready = []
            if self.wake_r in ready:
                try:
                    while self.wake_r.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            self.drain(buf)
            now = time.monotonic()
            nearest = self.expire(now)
            due = self.pump(now)
            if due is not None and (nearest is None or due < nearest):
                nearest = due
            self.flush()
            if self.want_stats or (self.dirty and now - last_write >= 0.5):
                self.want_stats = False
                self.write_stats()
                last_write = now
        # shutdown: let everything through, including what is still queued
        end = time.monotonic() + 0.1
        while True:
            now = time.monotonic()
            self.expire(now, everything=True)
            self.drain(buf)
            self.expire(now, everything=True)
            self.pump(now, everything=True)
            self.flush()
            if now >= end:
                break
            time.sleep(0.01)
        self.unbind()
        self.write_stats(final=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=("cli", "br"), required=True)
    ap.add_argument("--queue", type=int, action="append", required=True, help="queue number (repeatable)")
    ap.add_argument("--pct", type=float, default=0.0, help="hold this percentage of packets")
    ap.add_argument("--gap", type=int, default=3, help="release after this many later packets of the flow")
    ap.add_argument("--max-ms", type=float, default=10.0, help="release after this many ms at the latest")
    ap.add_argument("--delay-ms", type=float, default=0.0,
                    help="hold every packet this many ms before its verdict (after any reorder hold)")
    ap.add_argument("--steal-queue", type=int, action="append",
                    help="queue whose packets are dropped and re-sent from a raw socket (repeatable)")
    ap.add_argument("--mark", type=lambda v: int(v, 0), default=0x5753, help="SO_MARK of the re-sent copies")
    ap.add_argument("--max-held", type=int, default=4096, help="hold no more than this many at once")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--stats", required=True, help="JSON counters file")
    ap.add_argument("--pidfile", required=True, help="written once the queues are bound")
    args = ap.parse_args()

    r = Reorderer(args)

    def on_term(_sig, _frm):
        r.stop = True

    def on_usr1(_sig, _frm):
        r.want_stats = True

    signal.set_wakeup_fd(r.wake_w.fileno(), warn_on_full_buffer=False)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, on_usr1)
    try:
        r.bind()
    except OSError as e:
        print(f"nfq_reorder: cannot bind queue(s) {args.queue}: {e}", file=sys.stderr)
        return 1
    r.write_stats()
    tmp = f"{args.pidfile}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, args.pidfile)
    print(f"nfq_reorder[{args.role}]: pid {os.getpid()} bound queue(s) {args.queue}, hold {args.pct}% "
          f"for {r.gap} packets or {args.max_ms} ms, delay every packet {args.delay_ms} ms, seed {args.seed}",
          flush=True)
    r.run()
    print(f"nfq_reorder[{args.role}]: exiting", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
