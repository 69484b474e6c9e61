"""Unary gRPC latency measured with h2load (nghttp2's HTTP/2 load generator, written in C).

A Python gRPC client spends about as much CPU per call as the server does, and on a small
machine its own scheduling shows up in the tail latency. h2load sends the same bytes a gRPC
client would — a length-prefixed request message on a POST with `content-type:
application/grpc` — from one connection with up to M concurrent streams, and logs each
request's latency. It does not read gRPC status trailers, so callers check the number of
response bytes instead (a NOT_FOUND answer carries no message).

Debian/Ubuntu: `apt-get install nghttp2-client`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
from dataclasses import dataclass
from typing import List, Optional


def find_h2load() -> Optional[str]:
    return shutil.which("h2load")


def write_grpc_body(path: str, serialized_request: bytes) -> None:
    """The request as it travels in a gRPC DATA frame: uncompressed flag, length, message."""
    with open(path, "wb") as f:
        f.write(b"\x00" + struct.pack(">I", len(serialized_request)) + serialized_request)


@dataclass
class H2loadRun:
    latencies_s: List[float]
    succeeded: int
    data_bytes: int


_SUCCEEDED = re.compile(r"requests: .*?(\d+) succeeded")
_DATA_BYTES = re.compile(r"traffic: .*\((\d+)\) data")


async def run_h2load(
    h2load: str,
    address: str,
    method_path: str,
    body_path: str,
    log_path: str,
    requests: int,
    concurrency: int,
) -> H2loadRun:
    """`requests` POSTs of `body_path` to `method_path` on one connection, `concurrency` at a time."""
    if os.path.exists(log_path):
        os.unlink(log_path)  # h2load appends to its log file
    process = await asyncio.create_subprocess_exec(
        h2load,
        "--requests",
        str(requests),
        "--clients",
        "1",
        "--max-concurrent-streams",
        str(concurrency),
        "--data",
        body_path,
        "--log-file",
        log_path,
        "--header",
        "content-type: application/grpc",
        "--header",
        "te: trailers",
        f"http://{address}{method_path}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output_bytes, _ = await process.communicate()
    output = output_bytes.decode("utf-8", "replace")
    succeeded = _SUCCEEDED.search(output)
    data_bytes = _DATA_BYTES.search(output)
    if process.returncode != 0 or succeeded is None or data_bytes is None:
        raise RuntimeError(f"h2load failed (status {process.returncode}):\n{output}")
    latencies = []
    with open(log_path) as log:
        for line in log:  # start time (µs since epoch), HTTP status, µs until the response ended
            fields = line.split()
            if len(fields) >= 3:
                latencies.append(int(fields[2]) / 1e6)
    return H2loadRun(latencies, int(succeeded.group(1)), int(data_bytes.group(1)))
