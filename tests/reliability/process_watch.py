"""Watching a server process from the outside: memory, liveness, listening sockets, its log.

    watch = ProcessWatch(pid)            # samples /proc/PID/status every 20 ms on a thread
    ...
    watch.stop()
    watch.peak_rss_bytes, watch.died_at  # VmHWM (the kernel's own peak), when it vanished

Everything here reads /proc (Linux) and never touches the process.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

MIB = 1024 * 1024


def status_field_kib(pid: int, field: str) -> Optional[int]:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...), None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def rss_bytes(pid: int) -> Optional[int]:
    kib = status_field_kib(pid, "VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes(pid: int) -> Optional[int]:
    """VmHWM: the highest RSS the kernel has seen for the process (no sampling gaps)."""
    kib = status_field_kib(pid, "VmHWM")
    return None if kib is None else kib * 1024


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


class ProcessWatch:
    """Samples a process's RSS on a thread until stop(); notes when it disappears."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.start_rss_bytes = rss_bytes(pid) or 0
        self.samples: List[Tuple[float, int]] = []
        self.died_at: Optional[float] = None
        self._peak_hwm = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{pid}", daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            if not is_alive(self.pid):
                self.died_at = time.monotonic() - self._started
                return
            rss = rss_bytes(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic() - self._started, rss))
            hwm = peak_rss_bytes(self.pid)
            if hwm:
                self._peak_hwm = max(self._peak_hwm, hwm)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        hwm = peak_rss_bytes(self.pid)
        if hwm:
            self._peak_hwm = max(self._peak_hwm, hwm)

    @property
    def peak_rss_bytes(self) -> int:
        sampled = max((rss for _, rss in self.samples), default=0)
        return max(self._peak_hwm, sampled)

    @property
    def last_rss_bytes(self) -> int:
        return self.samples[-1][1] if self.samples else self.start_rss_bytes


# --- the server's log ---------------------------------------------------------------------

_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) ", re.MULTILINE)
_ALARMING = re.compile(
    r"Traceback \(most recent call last\)|failed unexpectedly|Segmentation fault|core dumped|Fatal Python error"
)

# grpc.aio logs this (ERROR, with a traceback) when a handler sends on a call that has
# already ended: the client cancelled or its deadline passed while a Read was streaming,
# or grpc core itself refused a message over the receive limit. The client got its status
# and the server is fine, but the log looks alarming (reported to the lead; counted apart).
KNOWN_GRPC_AIO_NOISE = re.compile(
    r"ERROR grpc\._cython\.cygrpc: ExecuteBatchError raised in core by servicer method \[[^\]]+\]\n"
    r"Traceback \(most recent call last\):\n(?:  .*\n)*grpc\._cython\.cygrpc\.ExecuteBatchError: Failed \"execute_batch\""
)


def log_records(text: str) -> List[str]:
    """The log split into records (a record runs until the next timestamped line)."""
    starts = [m.start() for m in _RECORD_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return [text[a:b].rstrip("\n") for a, b in zip(starts, starts[1:] + [len(text)]) if text[a:b].strip()]


def unexpected_log_records(text: str, known_noise: Sequence["re.Pattern[str]"] = ()) -> Tuple[List[str], List[str]]:
    """(alarming records, known-noise records): records at ERROR/CRITICAL or holding a
    traceback or a crash message; those matching `known_noise` are set apart."""
    alarming: List[str] = []
    noise: List[str] = []
    for record in log_records(text):
        match = _RECORD_START.match(record)
        level = match.group("level") if match else ""
        if level in ("ERROR", "CRITICAL") or _ALARMING.search(record):
            (noise if any(p.search(record) for p in known_noise) else alarming).append(record)
    return alarming, noise


# --- listening sockets ----------------------------------------------------------------------


def socket_inodes(pid: int) -> set:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode_address(hex_address: str, family: int) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc/net/tcp{,6} print addresses as host-order (little-endian here) 32-bit words.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw)


def listening_tcp_sockets(pid: int) -> List[Tuple[str, int]]:
    """(address, port) of each TCP socket in LISTEN state that process `pid` holds
    (IPv4-mapped IPv6 addresses are shown as IPv4; "::" is every interface, v4 and v6)."""
    inodes = socket_inodes(pid)
    found: List[Tuple[str, int]] = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = TCP_LISTEN
                continue
            address_hex, port_hex = local.split(":")
            address = _decode_address(address_hex, family)
            if address.startswith("::ffff:") and "." in address:  # IPv4-mapped, on a dual-stack socket
                address = address[len("::ffff:") :]
            found.append((address, int(port_hex, 16)))
    return sorted(found)


def is_loopback(address: str) -> bool:
    if address.startswith("::ffff:"):
        address = address[len("::ffff:") :]
    return address == "::1" or address.startswith("127.")


__all__ = [
    "MIB",
    "ProcessWatch",
    "is_alive",
    "is_loopback",
    "listening_tcp_sockets",
    "peak_rss_bytes",
    "rss_bytes",
    "KNOWN_GRPC_AIO_NOISE",
    "log_records",
    "unexpected_log_records",
]
