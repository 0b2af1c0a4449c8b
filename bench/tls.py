#!/usr/bin/env python3
"""TLS benchmark (issue 13), loopback only, bounded.

One release build serves twice on 127.0.0.1: plain HTTP and TLS (`--tls-self-signed`, ECDSA
P-256 certificate, TLS 1.3). Measured side by side:
  - a 1 GiB blob pulled with curl (`-o /dev/null`, HTTP/1.1 and HTTP/2 over TLS), median of
    --runs, after one warm-up pull; GB/s = 10^9 bytes per second;
  - new TLS connections per second: `openssl s_time -new` (a full handshake per connection,
    no session resumption) for --seconds, which also fetches `/v2/` (a 401) on each;
  - manifest GET by tag with wrk (-t2 -c16, connections kept alive), plain vs TLS.

Usage: python3 bench/tls.py [--mb 1024] [--runs 3] [--seconds 5]   (BERTH_BIN overrides)
Prints a markdown report.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import ssl
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
from ecr import ENV, lua, wrk  # noqa: E402


def start(binary, data, tls):
    env = dict(os.environ, **ENV)
    args = [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data] + (["--tls-self-signed"] if tls else [])
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.match(r"berth listening on (\S+)", p.stdout.readline())
        if m:
            return p, m.group(1)
    p.kill()
    sys.exit(f"{binary} did not start")


def password(binary, data):
    pw = subprocess.run([binary, "admin", "get-login-password", "--data-dir", data], capture_output=True, text=True,
                        env=dict(os.environ, **ENV), check=True).stdout.strip()
    return "Basic " + base64.b64encode(f"AWS:{pw}".encode()).decode()


def push(url, auth, blob_path, size, ctx):
    h = hashlib.sha256()
    with open(blob_path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    # Monolithic push: POST then PUT with the body.
    req = urllib.request.Request(f"{url}/v2/bench/blobs/uploads/", method="POST", headers={"Authorization": auth})
    loc = urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ctx) if ctx else None).headers["Location"]
    if loc.startswith("/"):
        loc = url + loc
    sep = "&" if "?" in loc else "?"
    cmd = ["curl", "-sfS", "-o", "/dev/null", "-X", "PUT", "-H", f"Authorization: {auth}", "-H",
           "Content-Type: application/octet-stream", "-T", blob_path, f"{loc}{sep}digest={digest}"]
    if ctx:
        cmd[1:1] = ["--cacert", ctx]
    subprocess.run(cmd, check=True)
    cfg = b"{}"
    cd = "sha256:" + hashlib.sha256(cfg).hexdigest()
    req = urllib.request.Request(f"{url}/v2/bench/blobs/uploads/?digest={cd}", data=cfg, method="POST",
                                 headers={"Authorization": auth, "Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ctx) if ctx else None)
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}]}).encode()
    req = urllib.request.Request(f"{url}/v2/bench/manifests/v1", data=m, method="PUT",
                                 headers={"Authorization": auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ctx) if ctx else None)
    return digest


def pull_secs(url, auth, digest, ctx, http2):
    cmd = ["curl", "-sfS", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", "-H", f"Authorization: {auth}",
           "--http2" if http2 else "--http1.1", f"{url}/v2/bench/blobs/{digest}"]
    if ctx:
        cmd[1:1] = ["--cacert", ctx]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    berth = os.environ.get("BERTH_BIN", os.path.join(REPO, "target/release/berth"))
    size = args.mb << 20
    rows, extra = [], []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/tmp")) as tmp:
        blob = os.path.join(tmp, "blob")
        with open(blob, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        for name, tls in (("plain HTTP", False), ("TLS (self-signed CA, TLS 1.3)", True)):
            data = os.path.join(tmp, "tls" if tls else "plain")
            p, url = start(berth, data, tls)
            try:
                ctx = os.path.join(data, "tls", "ca.pem") if tls else None
                auth = password(berth, data)
                digest = push(url, auth, blob, size, ctx)
                for http2 in ((False, True) if tls else (False,)):
                    pull_secs(url, auth, digest, ctx, http2)  # warm-up
                    runs = []
                    for _ in range(args.runs):
                        secs, got = pull_secs(url, auth, digest, ctx, http2)
                        assert got == size, (got, size)
                        runs.append(secs)
                    s = statistics.median(runs)
                    rows.append((f"{name}, {'HTTP/2' if http2 else 'HTTP/1.1'}", s, size / s / 1e9))
                lua(f"{tmp}/mg.lua", "GET", {"Authorization": auth, "Accept": "application/vnd.oci.image.manifest.v1+json"})
                rps, p50, p99 = wrk(url + "/v2/bench/manifests/v1", f"{tmp}/mg.lua", args.seconds)
                extra.append((name, rps, p50, p99))
                if tls:
                    hostport = url.split("://", 1)[1]
                    out = subprocess.run(["openssl", "s_time", "-connect", hostport, "-new", "-time", str(args.seconds),
                                          "-CAfile", ctx, "-www", "/v2/"], capture_output=True, text=True).stdout
                    m = re.search(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", out)
                    handshakes = (int(m.group(1)) / args.seconds) if m else None
            finally:
                p.kill()
    print(f"| 1 GiB blob pull (curl, median of {args.runs}) | seconds | GB/s |")
    print("|---|---|---|")
    for name, s, gbps in rows:
        print(f"| {name} | {s:.3f} | {gbps:.2f} |")
    print("\n| Manifest GET by tag (wrk -t2 -c16, keep-alive) | req/s | p50 | p99 |")
    print("|---|---|---|---|")
    for name, rps, p50, p99 in extra:
        print(f"| {name} | {rps:,.0f} | {p50:.2f} ms | {p99:.2f} ms |")
    print(f"\nNew TLS connections (full handshake + GET /v2/, openssl s_time -new, one client): "
          f"{handshakes:,.0f}/s" if handshakes else "\nopenssl s_time gave no figure")


if __name__ == "__main__":
    main()
