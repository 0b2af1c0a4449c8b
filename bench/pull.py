#!/usr/bin/env python3
"""Minimal HTTP/1.1 GET client for bench/run.sh: reads the body into one reused 1 MiB buffer and
discards it, so the client costs as little CPU as possible (curl -o /dev/null tops out around
1 GB/s on a small machine, which hides the difference between servers).

Usage: pull.py URL EXPECTED_BYTES   ->  prints the wall time in seconds (connect to last byte)
Exits non-zero with a message on any status other than 200 or a body of the wrong size.
"""
import os
import socket
import sys
import time
from urllib.parse import urlsplit


def main():
    url, expected = sys.argv[1], int(sys.argv[2])
    u = urlsplit(url)
    path = u.path + (f"?{u.query}" if u.query else "")
    t0 = time.perf_counter()
    s = socket.create_connection((u.hostname, u.port or 80))
    auth = os.environ.get("BENCH_AUTH")
    auth = f"Authorization: {auth}\r\n" if auth else ""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\n{auth}Accept: */*\r\nConnection: close\r\n\r\n".encode())
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    head = b""
    while b"\r\n\r\n" not in head:
        n = s.recv_into(mv)
        if not n:
            sys.exit(f"pull.py: {url}: connection closed before the end of the response headers")
        head += bytes(mv[:n])
    h, _, rest = head.partition(b"\r\n\r\n")
    lines = h.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "200":
        sys.exit(f"pull.py: {url}: {lines[0]!r}, expected 200")
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    if "chunked" in fields.get("transfer-encoding", "").lower():
        sys.exit(f"pull.py: {url}: chunked response; this client only reads Content-Length bodies")
    if "content-length" not in fields:
        sys.exit(f"pull.py: {url}: no Content-Length")
    length = int(fields["content-length"])
    if length != expected:
        sys.exit(f"pull.py: {url}: Content-Length {length}, expected {expected}")
    got = len(rest)
    while got < length:
        n = s.recv_into(mv)
        if not n:
            break
        got += n
    t = time.perf_counter() - t0
    s.close()
    if got != length:
        sys.exit(f"pull.py: {url}: body ended after {got} of {length} bytes")
    print(f"{t:.4f}")


if __name__ == "__main__":
    main()
