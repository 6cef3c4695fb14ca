#!/usr/bin/env python3
"""A raw-socket TCP client for the TCP-edge tests (issue 14, point 7): it speaks TCP by
hand to the VIP so that it can announce a zero window, send an inexact or an exact RST, a
SYN on an established connection, or a request with its FIN in one segment, and report
exactly what came back.

Usage (inside the client namespace, as root):
  rawtcp.py VIP SCENARIO [PATH]

Scenarios: zero_window, zero_window_own (the switch's own 400), rst_inexact, rst_exact,
syn_established, request_fin, pipeline_bound (pipelined requests past what the switch
holds: it acknowledges what it holds and closes its window at the bound), corrupt
(segments of every kind with a bad checksum: none is acted on). `rawtcp.py VIP adopted
PATH [COUNT]`: the edges on connections a cluster member adopts (see `adopted`);
`rawtcp.py VIP reopened PATH [COUNT]`: new connections on a gone member's tuples (see
`reopened`).

Every segment it sends has IP TTL 77, so the test can drop the kernel's own RSTs for
these flows (it knows no socket for them) with
  iptables-legacy -A OUTPUT -p tcp --tcp-flags RST RST -m ttl ! --ttl-eq 77 -j DROP
Prints one JSON object with what was seen; exits non-zero only on a usage error.
"""
import json
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawframes import csum  # noqa: E402  (the one Internet checksum of the test tools)

TTL = 77
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
WSCALE = 7
OPEN_WINDOW = 502  # 64256 bytes at scale 7


class Conn:
    def __init__(self, vip: str, port: int = 80):
        self.vip, self.dport = vip, port
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect((vip, port))
        self.src = probe.getsockname()[0]
        probe.close()
        self.sport = random.randint(20000, 60000)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        self.rx.settimeout(0.05)
        self.iss = random.randint(1, 2**31)
        self.snd_nxt = self.iss
        self.rcv_nxt = 0
        self.ts_recent = 0
        self.peer_ws = 0  # the window scale the switch announced in its SYN-ACK
        self.t0 = time.monotonic()
        self.data = bytearray()
        self.fin_seen = False
        self.seen = []  # every segment received: dicts
        self.syn_sent = 0  # SYNs the handshake sent (more than one: one was lost)

    def tsval(self) -> int:
        return int((time.monotonic() - self.t0) * 1000) + 1000

    def send(self, flags, seq=None, ack=None, window=OPEN_WINDOW, payload=b"", syn_opts=False,
             corrupt=False):
        seq = self.snd_nxt if seq is None else seq
        ack = self.rcv_nxt if ack is None else ack
        if syn_opts:
            opts = struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02" + struct.pack("!BBII", 8, 10, self.tsval(), 0) \
                + b"\x01" + struct.pack("!BBB", 3, 3, WSCALE)
        else:
            opts = b"\x01\x01" + struct.pack("!BBII", 8, 10, self.tsval(), self.ts_recent)
        off = (20 + len(opts)) // 4
        hdr = struct.pack("!HHIIBBHHH", self.sport, self.dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          off << 4, flags, window, 0, 0) + opts
        seg = hdr + payload
        pseudo = socket.inet_aton(self.src) + socket.inet_aton(self.vip) + struct.pack("!BBH", 0, 6, len(seg))
        c = csum(pseudo + seg)
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
        if corrupt:
            # One bit flipped after the checksum was computed: in the payload if there is
            # one (a link's bit error), else in the checksum field itself.
            at = len(hdr) + len(payload) // 2 if payload else 16
            seg = seg[:at] + bytes([seg[at] ^ 0x04]) + seg[at + 1:]
        self.tx.sendto(seg, (self.vip, 0))

    def recv(self, timeout: float):
        """The next segment of this flow within `timeout` seconds, or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                pkt = self.rx.recv(65535)
            except socket.timeout:
                continue
            ihl = (pkt[0] & 0x0F) * 4
            src = socket.inet_ntoa(pkt[12:16])
            tcp = pkt[ihl:]
            sport, dport, seq, ack, off, flags, window = struct.unpack("!HHIIBBH", tcp[:16])
            if src != self.vip or sport != self.dport or dport != self.sport:
                continue
            hl = (off >> 4) * 4
            opts = tcp[20:hl]
            i = 0
            while i < len(opts):
                kind = opts[i]
                if kind == 0:
                    break
                if kind == 1:
                    i += 1
                    continue
                ln = opts[i + 1] if i + 1 < len(opts) else 0
                if ln < 2:
                    break
                if kind == 8 and ln == 10:
                    self.ts_recent = struct.unpack("!I", opts[i + 2:i + 6])[0]
                if kind == 3 and ln == 3 and flags & SYN:
                    self.peer_ws = min(opts[i + 2], 14)
                i += ln
            s = {"seq": seq, "ack": ack, "flags": flags, "window": window, "payload": tcp[hl:],
                 "t": round(time.monotonic() - self.t0, 3)}
            self.seen.append(s)
            return s
        return None

    def request_with_fin(self, path: str) -> bool:
        """Sends a request and its FIN in one segment, never again; takes the answer and
        the peer's FIN (up to 8 s). Returns whether our FIN was acknowledged."""
        self.request(path, extra_flags=FIN)
        end = time.monotonic() + 8
        fin_acked = False
        while time.monotonic() < end and not (self.fin_seen and fin_acked):
            s = self.recv(end - time.monotonic())
            if s is None:
                break
            if s["flags"] & ACK and s["ack"] == self.snd_nxt:
                fin_acked = True
            self.take(s)
        return fin_acked

    def challenged(self, timeout: float) -> bool:
        """Whether a bare ACK of exactly our next byte comes within `timeout`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.recv(end - time.monotonic())
            if s is None:
                return False
            if s["flags"] & ACK and not s["payload"] and s["ack"] == self.snd_nxt \
                    and not s["flags"] & (SYN | RST):
                return True
            self.take(s)
        return False

    def handshake(self):
        """Connects, sending the SYN again after 1 s and 2 s as Linux does (its initial
        RTO, doubled): a SYN lost on the way must not fail a scenario about something
        else. `syn_sent` says how many it took."""
        s = None
        for wait in (1, 2, 4):
            self.send(SYN, seq=self.iss, ack=0, window=65535, syn_opts=True)
            self.syn_sent += 1
            end = time.monotonic() + wait
            while time.monotonic() < end:
                s = self.recv(end - time.monotonic())
                if s is None or s["flags"] & (SYN | ACK) == SYN | ACK:
                    break
            if s is not None and s["flags"] & (SYN | ACK) == SYN | ACK:
                break
        else:
            raise SystemExit(json.dumps({"error": "no SYN-ACK", "syn_sent": self.syn_sent}))
        self.snd_nxt = self.iss + 1
        self.rcv_nxt = (s["seq"] + 1) & 0xFFFFFFFF
        self.send(ACK)

    def take(self, s, window=OPEN_WINDOW, ack_it=True):
        """Accepts in-order data (and FIN) of `s` and acks it."""
        n = len(s["payload"])
        if n and s["seq"] == self.rcv_nxt:
            self.data += s["payload"]
            self.rcv_nxt = (self.rcv_nxt + n) & 0xFFFFFFFF
        if s["flags"] & FIN and (s["seq"] + n) & 0xFFFFFFFF == self.rcv_nxt:
            self.fin_seen = True
            self.rcv_nxt = (self.rcv_nxt + 1) & 0xFFFFFFFF
        if ack_it and (n or s["flags"] & FIN):
            self.send(ACK, window=window)

    def request(self, path: str, extra_flags=0, window=OPEN_WINDOW, close=False):
        head = f"GET {path} HTTP/1.1\r\nHost: edge\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
        self.send_raw_request(head.encode(), extra_flags, window)

    def send_raw_request(self, head: bytes, extra_flags=0, window=OPEN_WINDOW):
        self.send(ACK | PSH | extra_flags, payload=head, window=window)
        self.snd_nxt += len(head) + (1 if extra_flags & FIN else 0)

    def response_complete(self, start: int) -> bool:
        body = bytes(self.data[start:])
        if b"\r\n\r\n" not in body:
            return False
        head, rest = body.split(b"\r\n\r\n", 1)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return len(rest) >= int(line.split(b":")[1])
        return False

    def read_response(self, timeout: float, start: int = 0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self.response_complete(start):
            s = self.recv(end - time.monotonic())
            if s is None:
                break
            self.take(s)
        return self.response_complete(start)


def status_of(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode("latin-1") if data else ""


def zero_window(c: Conn, path: str, own: bool):
    c.handshake()
    if own:
        c.send_raw_request(b"BLAH\r\n\r\n", window=0)
    else:
        c.request(path, window=0, close=True)
    # Closed for 3 s: count what comes; answer every segment with a zero window.
    bytes_in_closed = 0
    probes = 0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        s = c.recv(end - time.monotonic())
        if s is None:
            break
        n = len(s["payload"])
        bytes_in_closed += n
        if n == 0 and not s["flags"] & (SYN | RST | FIN) and s["seq"] != c.rcv_nxt:
            probes += 1
        c.send(ACK, window=0)
    probe_times = [s["t"] for s in c.seen
                   if not s["payload"] and not s["flags"] & SYN and s["seq"] != c.rcv_nxt]
    # Open: the whole answer, then its FIN.
    c.send(ACK, window=OPEN_WINDOW)
    end = time.monotonic() + 10
    while time.monotonic() < end and not c.fin_seen:
        s = c.recv(end - time.monotonic())
        if s is None:
            break
        c.take(s)
    c.send(ACK | FIN)
    return {"bytes_in_closed_window": bytes_in_closed, "probes": probes, "probe_times": probe_times,
            "status": status_of(bytes(c.data)), "complete": c.response_complete(0),
            "fin": c.fin_seen, "len": len(c.data)}


def rst(c: Conn, path: str, exact: bool):
    c.handshake()
    c.request(path)
    first = c.read_response(5)
    mark = len(c.data)
    challenge = None
    c.send(RST, seq=c.snd_nxt + (0 if exact else 1000))
    end = time.monotonic() + 1
    while time.monotonic() < end:
        s = c.recv(end - time.monotonic())
        if s is None:
            break
        if s["flags"] & ACK and not s["payload"] and s["ack"] == c.snd_nxt:
            challenge = s
            break
    c.request(path)
    second = c.read_response(3, mark)
    after = [s["flags"] for s in c.seen if s["t"] > 0 and s["flags"] & RST]
    return {"first": first, "challenge_ack": challenge is not None, "second": second,
            "second_status": status_of(bytes(c.data[mark:])), "rst_from_switch": bool(after)}


def syn_established(c: Conn, path: str):
    c.handshake()
    c.request(path)
    first = c.read_response(5)
    mark = len(c.data)
    c.send(SYN, seq=random.randint(1, 2**31), ack=0, window=65535, syn_opts=True)
    challenge, synack = None, False
    end = time.monotonic() + 1
    while time.monotonic() < end:
        s = c.recv(end - time.monotonic())
        if s is None:
            break
        if s["flags"] & SYN:
            synack = True
        elif s["flags"] & ACK and s["ack"] == c.snd_nxt and not s["payload"]:
            challenge = s
            break
    c.request(path)
    second = c.read_response(3, mark)
    return {"first": first, "challenge_ack": challenge is not None, "syn_ack": synack, "second": second}


def request_fin(c: Conn, path: str):
    c.handshake()
    fin_acked = c.request_with_fin(path)
    return {"status": status_of(bytes(c.data)), "complete": c.response_complete(0), "fin": c.fin_seen,
            "our_fin_acked": fin_acked, "len": len(c.data)}


def pipeline_bound(c: Conn, path: str):
    """One request, then twenty pipelined ones of about 1 KB, more than the switch holds
    (one head buffer). While the first response is not acknowledged (so no round ends),
    the client sends only what the switch's window allows: the switch must acknowledge
    what it holds and close its window at the bound, never leave sent bytes unacked.
    Then the client acknowledges everything and sends the rest as the window opens:
    every request is answered, in order."""
    c.handshake()
    c.request(path)
    req_end = c.snd_nxt
    pad = "x" * 950
    pending = b"".join(f"GET {path}?n={i} HTTP/1.1\r\nHost: edge\r\nX-Pad: {pad}\r\n\r\n".encode()
                       for i in range(20))
    total = len(pending)
    sent = 0
    ack, right = req_end, req_end  # the switch's latest acknowledgment and right edge
    bound = 0

    trace = []

    def seen_window(s):
        nonlocal ack, right, bound
        if len(trace) < 20:
            trace.append(((s["ack"] - req_end) & 0xFFFFFFFF, s["window"] << c.peer_ws, len(s["payload"]), s["flags"], (c.snd_nxt - req_end) & 0xFFFFFFFF, s["t"]))
        if s["flags"] & ACK and ((s["ack"] - ack) & 0xFFFFFFFF) < 2**31:
            ack = s["ack"]
            right = (ack + (s["window"] << c.peer_ws)) & 0xFFFFFFFF
            bound = max(bound, (right - req_end) & 0xFFFFFFFF)

    def send_what_fits():
        nonlocal sent
        while sent < total:
            room = (right - c.snd_nxt) & 0xFFFFFFFF
            if room >= 2**31 or room == 0:
                return
            n = min(1000, room, total - sent)
            c.send(ACK | PSH, payload=pending[sent:sent + n])
            c.snd_nxt += n
            sent += n

    # Closed phase: the first response is never acknowledged.
    unacked_data = []
    # Until the window is closed with nothing unacknowledged (the backend's retransmissions
    # of the response carry the switch's acks, at growing intervals: up to 3.2 s).
    end = time.monotonic() + 5
    while time.monotonic() < end and not (sent > 0 and ack == right == c.snd_nxt):
        s = c.recv(0.2)
        if s is None:
            continue
        unacked_data.append(s)
        seen_window(s)
        send_what_fits()
    closed = {"sent": sent, "acked": (ack - req_end) & 0xFFFFFFFF, "bound": bound,
              "unacked": (c.snd_nxt - ack) & 0xFFFFFFFF, "right_edge": (right - req_end) & 0xFFFFFFFF}
    # Open: acknowledge everything and send the rest as the window allows.
    closed["trace"] = trace[:]  # (ack, window, payload, flags, sent, t), relative to the request's end
    for s in unacked_data:
        c.take(s, ack_it=False)
    c.send(ACK)
    end = time.monotonic() + 15
    while time.monotonic() < end and c.data.count(b"HTTP/1.1 200 ") < 21:
        s = c.recv(0.2)
        if s is None:
            c.send(ACK)
            continue
        seen_window(s)
        c.take(s)
        send_what_fits()
    answers = bytes(c.data).count(b"HTTP/1.1 ")
    c.send(ACK | FIN)
    return {"closed": closed, "total": total, "sent": sent,
            "answers": answers, "all_200": answers == bytes(c.data).count(b"HTTP/1.1 200 ")}


def dechunked(data: bytes):
    """The body of a complete chunked response in `data`, or None."""
    if b"\r\n\r\n" not in data:
        return None
    rest = data.split(b"\r\n\r\n", 1)[1]
    body = b""
    while True:
        if b"\r\n" not in rest:
            return None
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            return body if rest.startswith(b"\r\n") else None
        if len(rest) < size + 2:
            return None
        body += rest[:size]
        rest = rest[size + 2:]


def corrupt(c: Conn, path: str):
    """Segments with a wrong TCP checksum, of every kind the switch acts on, then the
    same segments right: only the right ones count. A body segment carried through a
    splice unverified reaches the backend, which drops it; the echo is byte-exact."""
    r = {}

    def quiet(seconds, want):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s = c.recv(end - time.monotonic())
            if s is None:
                return None
            if want(s):
                return s
        return None

    # A SYN: no SYN-ACK.
    c.send(SYN, seq=c.iss, ack=0, window=65535, syn_opts=True, corrupt=True)
    r["synack_to_bad_syn"] = quiet(1, lambda s: s["flags"] & SYN) is not None
    c.handshake()
    # A request: not read (no answer); then right: answered.
    head = f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode()
    c.send(ACK | PSH, payload=head, corrupt=True)
    r["answer_to_bad_request"] = quiet(1, lambda s: len(s["payload"]) > 0) is not None
    c.request(path)
    r["first"] = c.read_response(5)
    mark = len(c.data)
    # An exact RST, a SYN on the established connection, an ACK of unsent data, a FIN:
    # none acted on (no challenge ACK, no reset, no close).
    c.send(RST, seq=c.snd_nxt, corrupt=True)
    c.send(SYN, seq=random.randint(1, 2**31), ack=0, window=65535, syn_opts=True, corrupt=True)
    c.send(ACK, ack=c.rcv_nxt + 100000, corrupt=True)
    c.send(ACK | FIN, corrupt=True)
    r["reply_to_bad_control"] = quiet(1, lambda s: True) is not None
    c.request(path)
    r["second"] = c.read_response(5, mark)
    mark = len(c.data)
    # A POST whose middle body segment first arrives corrupt (carried to the backend,
    # which drops it), then right.
    body = bytes(random.getrandbits(8) for _ in range(3000))
    c.send_raw_request(f"POST /echo HTTP/1.1\r\nHost: edge\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    base = c.snd_nxt
    time.sleep(0.3)  # spliced by now: the corrupt segment is one the switch only carries
    c.send(ACK | PSH, seq=base + 1000, payload=body[1000:2000], corrupt=True)
    time.sleep(0.2)
    for off in (0, 1000, 2000):
        c.send(ACK | PSH, seq=base + off, payload=body[off:off + 1000])
    c.snd_nxt = base + len(body)
    end = time.monotonic() + 8
    while time.monotonic() < end and dechunked(bytes(c.data[mark:])) is None:
        s = c.recv(end - time.monotonic())
        if s is None:
            break
        c.take(s)
    echoed = dechunked(bytes(c.data[mark:]))
    r["echo_complete"] = echoed is not None
    r["echo_exact"] = echoed == body
    c.send(ACK | FIN)
    c.snd_nxt += 1
    return r


def adopted(vip: str, path: str, count: int):
    """Issue 17: TCP edges on connections a cluster member adopted. Opens `count`
    connections (each a handshake, a request and its answer), prints one JSON line with
    their client ports and waits for a line on stdin: meanwhile the test kills the member
    that spliced some of them. Then, on every connection in turn: a request (the first
    segment the survivor sees adopts it), an in-window RST that is not exact and a SYN
    (each a challenge ACK, the connection answering after), a request under a zero window
    (probes only, then the whole answer) and a request sent with its FIN (the answer, FIN
    both ways). Prints one JSON object per connection, in a list."""
    conns = []
    for _ in range(count):
        c = Conn(vip)
        c.handshake()
        c.request(path)
        ok = c.read_response(5)
        conns.append((c, ok))
    print(json.dumps({"ports": [c.sport for c, _ in conns], "answered": [ok for _, ok in conns]}),
          flush=True)
    sys.stdin.readline()
    out = []
    for c, ok in conns:
        r = {"port": c.sport, "before": ok}
        mark = len(c.data)
        c.request(path)
        r["after_kill"] = c.read_response(8, mark)
        # An in-window RST that is not exact: a challenge ACK, and the connection lives on.
        c.send(RST, seq=c.snd_nxt + 1000)
        r["rst_challenged"] = c.challenged(1.5)
        mark = len(c.data)
        c.request(path)
        r["after_rst"] = c.read_response(5, mark)
        # A SYN on the connection: a challenge ACK, never a SYN-ACK.
        c.send(SYN, seq=random.randint(1, 2**31), ack=0, window=65535, syn_opts=True)
        r["syn_challenged"] = c.challenged(1.5)
        r["syn_ack"] = any(s["flags"] & SYN for s in c.seen[-4:])
        mark = len(c.data)
        c.request(path)
        r["after_syn"] = c.read_response(5, mark)
        # A zero window: nothing but probes while it stays closed, then the whole answer.
        mark = len(c.data)
        c.request(path, window=0)
        closed_bytes, end = 0, time.monotonic() + 1.5
        while time.monotonic() < end:
            s = c.recv(end - time.monotonic())
            if s is None:
                break
            closed_bytes += len(s["payload"])
            c.send(ACK, window=0)
        r["bytes_in_closed_window"] = closed_bytes
        c.send(ACK, window=OPEN_WINDOW)
        r["after_zero_window"] = c.read_response(8, mark)
        # The last request with its FIN: answered in full, FIN both ways.
        mark = len(c.data)
        fin_acked = c.request_with_fin(path)
        r["after_fin"] = c.response_complete(mark)
        r["fin"] = c.fin_seen
        r["our_fin_acked"] = fin_acked
        out.append(r)
    return out


def reopened(vip: str, path: str, count: int):
    """Issue 17: a new connection on the tuple of a gone member's connection. Opens `count`
    connections (each a handshake, a request and its answer), prints one JSON line with
    their client ports and reads one line from stdin: a JSON list of the ports the test
    wants reopened (those of the member it then killed). From each such port it opens a
    new connection with a new ISN, as a client that lost the old one (or reused its port)
    would: its SYN must be answered by a SYN-ACK, not by a challenge ACK for the old
    connection, and the new connection must serve a request. Prints one JSON object per
    port, in a list."""
    conns = []
    for _ in range(count):
        c = Conn(vip)
        c.handshake()
        c.request(path)
        conns.append((c, c.read_response(5)))
    print(json.dumps({"ports": [c.sport for c, _ in conns], "answered": [ok for _, ok in conns]}),
          flush=True)
    ports = json.loads(sys.stdin.readline())
    out = []
    for port in ports:
        c = Conn(vip)
        c.sport = port
        r = {"port": port}
        try:
            c.handshake()
        except SystemExit as e:
            r.update({"syn_ack": False, "error": str(e), "seen_before": len(c.seen)})
            out.append(r)
            continue
        r["syn_ack"] = True
        r["syn_sent"] = c.syn_sent
        # Anything but the SYN-ACK before it: a challenge ACK for the old connection.
        r["challenged"] = any(not s["flags"] & SYN for s in c.seen[:-1])
        c.request(path)
        r["answered"] = c.read_response(5)
        c.send(ACK | FIN)
        c.snd_nxt += 1
        out.append(r)
    return out


def main():
    if len(sys.argv) >= 3 and sys.argv[2] in ("adopted", "reopened"):
        count = int(sys.argv[4]) if len(sys.argv) > 4 else 8
        run = adopted if sys.argv[2] == "adopted" else reopened
        print(json.dumps(run(sys.argv[1], sys.argv[3], count)))
        return
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    vip, scenario = sys.argv[1], sys.argv[2]
    path = sys.argv[3] if len(sys.argv) > 3 else "/whoami"
    c = Conn(vip)
    if scenario == "zero_window":
        r = zero_window(c, path, False)
    elif scenario == "zero_window_own":
        r = zero_window(c, path, True)
    elif scenario in ("rst_inexact", "rst_exact"):
        r = rst(c, path, scenario == "rst_exact")
    elif scenario == "syn_established":
        r = syn_established(c, path)
    elif scenario == "request_fin":
        r = request_fin(c, path)
    elif scenario == "pipeline_bound":
        r = pipeline_bound(c, path)
    elif scenario == "corrupt":
        r = corrupt(c, path)
    else:
        print(__doc__)
        sys.exit(2)
    r["scenario"] = scenario
    r["syn_sent"] = c.syn_sent
    print(json.dumps(r))


if __name__ == "__main__":
    main()
