#!/usr/bin/env python3
"""Inject hand-built TCP segments into a connection from outside it (AF_PACKET), as a
blind attacker would: the right 4-tuple, a sequence number far from the window.

Usage: inject.py IFACE DST_MAC SRC_IP SPORT DST_IP DPORT SEQ FLAGS COUNT [PAYLOAD_LEN]
FLAGS: a string of letters from "FSRPA" (FIN SYN RST PSH ACK).
SEQ "far": sniff one segment the real sender sends on this tuple and use its sequence
number plus 2^31, the farthest point from the window (so the test cannot hit it by chance).
"""
import socket
import struct
import sys


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def main():
    iface, dst_mac, src, sport, dst, dport, seq, flags, count = sys.argv[1:10]
    plen = int(sys.argv[10]) if len(sys.argv) > 10 else 0
    bits = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}
    fl = sum(bits[c] for c in flags)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    our = s.getsockname()[4]
    dmac = bytes(int(x, 16) for x in dst_mac.split(":"))
    if seq == "far":
        sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        sniff.bind((iface, 0))
        sniff.settimeout(8)
        while True:
            f = sniff.recv(65535)
            if f[12:14] != b"\x08\x00" or f[23] != 6:
                continue
            ihl = (f[14] & 0x0F) * 4
            t = 14 + ihl
            if socket.inet_ntoa(f[26:30]) == src and struct.unpack("!H", f[t:t + 2])[0] == int(sport):
                seq = str((struct.unpack("!I", f[t + 4:t + 8])[0] + (1 << 31)) & 0xFFFFFFFF)
                break
    for i in range(int(count)):
        payload = bytes([0x41 + i % 26]) * plen
        tcp = struct.pack("!HHIIBBHHH", int(sport), int(dport), (int(seq) + i * 1000) & 0xFFFFFFFF,
                          0, 5 << 4, fl, 1000, 0, 0) + payload
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
        c = csum(pseudo + tcp)
        tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 7, 0x4000, 64, 6, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        s.send(dmac + our + b"\x08\x00" + ip + tcp)
    print(f"injected {count}")


if __name__ == "__main__":
    main()
