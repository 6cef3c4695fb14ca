#!/usr/bin/env python3
"""Send hand-built Ethernet frames out of an interface (AF_PACKET), so an end-to-end
test knows exactly how many frames of each kind the switch received.

Usage (inside the client namespace):
  rawframes.py IFACE DST_MAC SRC_IP VIP OTHER_IP KIND=COUNT [KIND=COUNT ...]

Kinds:
  echo            valid ICMP echo request to VIP
  echo_other      valid ICMP echo request to OTHER_IP, sent to the switch's MAC
  not_our_mac     valid echo to VIP but to a foreign unicast MAC
  bad_ip_csum     echo to VIP with a wrong IPv4 header checksum
  bad_icmp_csum   echo to VIP with a wrong ICMP checksum
  truncated_ip    IPv4 ethertype with only 10 bytes of header
  truncated_arp   ARP ethertype with 12 bytes of ARP
  ipv6            an IPv6 ethertype frame
  udp             UDP datagram to VIP:80
  fragment        first fragment of an echo (MF set)
  ip_options      echo with a 4-byte IP option (NOP x4)
  icmp_other      ICMP timestamp request (type 13) to VIP
  tcp_syn         TCP SYN to VIP:80 from source port 40000+i
  arp_req         broadcast ARP request from SRC_IP for VIP

Options (before IFACE): --gap-us N  sleep N microseconds between frames.

Prints one JSON line: {"sent": {kind: count}, "tcp_sports": [...]}.
"""
import json
import socket
import struct
import sys
import time


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def ipv4(src, dst, proto, payload, ident=1, flags_frag=0x4000, options=b"", bad_csum=False):
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, flags_frag, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst)) + options
    c = csum(hdr)
    if bad_csum:
        c ^= 0x5A5A
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def icmp_echo(ident, seq, bad_csum=False, msg_type=8):
    body = struct.pack("!BBHHH", msg_type, 0, 0, ident, seq) + b"webswitch-e2e-" + bytes(range(32))
    c = csum(body)
    if bad_csum:
        c ^= 0x1234
    return body[:2] + struct.pack("!H", c) + body[4:]


def tcp_syn(src, dst, sport, dport, seq):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    c = csum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def main():
    argv = sys.argv[1:]
    gap = 0.0
    if argv[0] == "--gap-us":
        gap = int(argv[1]) / 1e6
        argv = argv[2:]
    iface, dst_mac, src_ip, vip, other = argv[:5]
    wants = [a.split("=") for a in argv[5:]]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    our = s.getsockname()[4]
    dmac = mac(dst_mac)
    sent = {}
    sports = []

    def eth(dst, ethertype, payload):
        return dst + our + struct.pack("!H", ethertype) + payload

    for kind, count in wants:
        for i in range(int(count)):
            if kind == "echo":
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 1, icmp_echo(0x77, i)))
            elif kind == "echo_other":
                f = eth(dmac, 0x0800, ipv4(src_ip, other, 1, icmp_echo(0x78, i)))
            elif kind == "not_our_mac":
                f = eth(mac("02:de:ad:be:ef:01"), 0x0800, ipv4(src_ip, vip, 1, icmp_echo(0x79, i)))
            elif kind == "bad_ip_csum":
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 1, icmp_echo(0x7A, i), bad_csum=True))
            elif kind == "bad_icmp_csum":
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 1, icmp_echo(0x7B, i, bad_csum=True)))
            elif kind == "truncated_ip":
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 1, icmp_echo(0x7C, i))[:10])
            elif kind == "truncated_arp":
                f = eth(dmac, 0x0806, bytes(12))
            elif kind == "ipv6":
                f = eth(dmac, 0x86DD, bytes(40))
            elif kind == "udp":
                udp = struct.pack("!HHHH", 5353, 80, 12, 0) + b"ping"
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 17, udp))
            elif kind == "fragment":
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 1, icmp_echo(0x7D, i), flags_frag=0x2000))
            elif kind == "ip_options":
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 1, icmp_echo(0x7E, i), options=b"\x01\x01\x01\x01"))
            elif kind == "icmp_other":
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 1, icmp_echo(0x7F, i, msg_type=13)))
            elif kind == "tcp_syn":
                sport = 40000 + i
                sports.append(sport)
                f = eth(dmac, 0x0800, ipv4(src_ip, vip, 6, tcp_syn(src_ip, vip, sport, 80, 1000 + i)))
            elif kind == "arp_req":
                arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, our, socket.inet_aton(src_ip), bytes(6),
                                  socket.inet_aton(vip))
                f = eth(b"\xff" * 6, 0x0806, arp)
            else:
                raise SystemExit(f"unknown kind {kind}")
            s.send(f)
            if gap:
                time.sleep(gap)
        sent[kind] = int(count)
    print(json.dumps({"sent": sent, "tcp_sports": sports}))


if __name__ == "__main__":
    main()
