"""Measure a testbed from Python: ping (ICMP echo over a raw socket), one-way UDP loss, and bulk
TCP throughput, between the testbed's own addresses only, always bounded in count and time.

The sockets are created inside the hosts' namespaces (netns.in_netns) and driven from this process,
so no ping/iperf binary is needed.  ICMP echo replies come from the peer's kernel.
"""

from __future__ import annotations

import os
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import TestbedError

SocketIn = Callable[[str, int, int, int], socket.socket]  # (endpoint, family, type, proto)


@dataclass(frozen=True)
class PingResult:
    sent: int
    rtts: list[float]  # seconds, of the replies that came back

    @property
    def received(self) -> int:
        return len(self.rtts)

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.rtts) if self.rtts else float("nan")

    @property
    def minimum(self) -> float:
        return min(self.rtts) if self.rtts else float("nan")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(sock_in: SocketIn, src: str, dst_ip: str, count: int = 10, interval: float = 0.05,
         timeout: float = 1.0, size: int = 56) -> PingResult:
    """count ICMP echoes from endpoint src to dst_ip, one in flight at a time (interval apart)."""
    count = min(count, 100_000)
    sock = sock_in(src, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = (os.getpid() ^ threading.get_ident()) & 0xFFFF
    rtts: list[float] = []
    try:
        for seq in range(count):
            payload = bytes(size)
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq & 0xFFFF) + payload
            t0 = time.perf_counter()
            sock.sendto(packet, (dst_ip, 0))
            deadline = t0 + timeout
            while (left := deadline - time.perf_counter()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    break
                ihl = (data[0] & 0x0F) * 4
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if kind == 0 and rid == ident and rseq == seq & 0xFFFF:
                    rtts.append(time.perf_counter() - t0)
                    break
            rest = t0 + interval - time.perf_counter()
            if rest > 0 and seq + 1 < count:
                time.sleep(rest)
    finally:
        sock.close()
    return PingResult(sent=count, rtts=rtts)


def udp_loss(sock_in: SocketIn, src: str, dst: str, dst_ip: str, count: int = 2000,
             rate_pps: float = 2000.0, settle: float = 1.0, port: int = 47123) -> float:
    """Fraction of count UDP datagrams from src to dst (one way) that never arrive."""
    count = min(count, 1_000_000)
    rx = sock_in(dst, socket.AF_INET, socket.SOCK_DGRAM, 0)
    tx = sock_in(src, socket.AF_INET, socket.SOCK_DGRAM, 0)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.bind((dst_ip, port))
        seen: set[int] = set()
        start = time.perf_counter()
        for i in range(count):
            tx.sendto(struct.pack("!I", i), (dst_ip, port))
            _drain(rx, seen)
            rest = start + (i + 1) / rate_pps - time.perf_counter()
            if rest > 0:
                time.sleep(rest)
        deadline = time.perf_counter() + settle
        while len(seen) < count and time.perf_counter() < deadline:
            rx.settimeout(max(deadline - time.perf_counter(), 0.001))
            try:
                seen.add(struct.unpack("!I", rx.recv(64)[:4])[0])
            except TimeoutError:
                break
        return 1.0 - len(seen) / count
    finally:
        rx.close()
        tx.close()


def _drain(rx: socket.socket, seen: set[int]) -> None:
    rx.setblocking(False)
    try:
        while True:
            seen.add(struct.unpack("!I", rx.recv(64)[:4])[0])
    except BlockingIOError:
        pass
    finally:
        rx.setblocking(True)


def throughput(sock_in: SocketIn, src: str, dst: str, dst_ip: str, nbytes: int, timeout: float = 60.0,
               port: int = 47124) -> float:
    """Goodput in bit/s of one TCP stream moving nbytes from src to dst (timed at the receiver, from
    its first byte to its last, so connection setup is not counted)."""
    lsock = sock_in(dst, socket.AF_INET, socket.SOCK_STREAM, 0)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((dst_ip, port))
    lsock.listen(1)
    lsock.settimeout(timeout)
    result = {"bytes": 0.0, "timed": 0.0, "seconds": 0.0}

    def receive() -> None:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(timeout)
            buf = bytearray(1 << 20)
            head, first = 0, 0.0
            try:
                while result["bytes"] < nbytes:
                    n = conn.recv_into(buf)
                    if n == 0:
                        break
                    if result["bytes"] == 0:
                        head, first = n, time.perf_counter()
                    result["bytes"] += n
                    result["timed"] = result["bytes"] - head
                    result["seconds"] = time.perf_counter() - first
            except OSError:
                pass

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    csock = sock_in(src, socket.AF_INET, socket.SOCK_STREAM, 0)
    try:
        csock.settimeout(timeout)
        csock.connect((dst_ip, port))
        chunk = bytes(1 << 20)
        left, deadline = nbytes, time.monotonic() + timeout
        while left > 0 and time.monotonic() < deadline:
            left -= csock.send(memoryview(chunk)[:min(left, len(chunk))])
        thread.join(max(deadline - time.monotonic(), 1.0))
    finally:
        csock.close()
        lsock.close()
    if result["bytes"] < nbytes:
        raise TestbedError(f"throughput: only {result['bytes']:.0f} of {nbytes} bytes arrived in {timeout}s")
    return result["timed"] * 8 / max(result["seconds"], 1e-9)
