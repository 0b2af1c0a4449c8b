#!/usr/bin/env python3
"""Encryption at rest benchmark (issue 13), loopback only, bounded.

Side by side in one run, on the same filesystem, with the same random blob:
  - Distribution 2.8.2 (Debian's docker-registry, filesystem storage);
  - Berth with encryption off (BERTH_ENCRYPT_AT_REST=false);
  - Berth, AES256 repository (the default: the Berth-managed key);
  - Berth, KMS repository (a customer KMS key made with CreateKey).
Each run pushes the blob monolithically (POST, then PUT with the body streamed by curl -T) and
pulls it (curl -o /dev/null); runs are interleaved across servers, median of --runs after a
warm-up pull. Floors of the push: single-core `openssl dgst -sha256` of the file and
`dd conv=fsync` of it.

Usage: python3 bench/encryption.py [--mb 1024] [--runs 3]   (BERTH_BIN, DIST_BIN override)
Prints a markdown report.
"""

import argparse
import base64
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
from ecr import AKID, ENV, SECRET, start  # noqa: E402
from scale import start_dist  # noqa: E402

import boto3  # noqa: E402


def login(binary, data, env):
    pw = subprocess.run([binary, "admin", "get-login-password", "--data-dir", data], capture_output=True, text=True,
                        env=env, check=True).stdout.strip()
    return "Basic " + base64.b64encode(f"AWS:{pw}".encode()).decode()


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def push(url, repo, auth, blob, digest):
    """Monolithic push of the blob; seconds."""
    h = {"Authorization": auth} if auth else {}
    t = time.perf_counter()
    req = urllib.request.Request(f"{url}/v2/{repo}/blobs/uploads/", method="POST", headers=h)
    loc = urllib.request.urlopen(req).headers["Location"]
    if loc.startswith("/"):
        loc = url + loc
    sep = "&" if "?" in loc else "?"
    cmd = ["curl", "-sfS", "-o", "/dev/null", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
           "-T", blob, f"{loc}{sep}digest={digest}"]
    if auth:
        cmd[1:1] = ["-H", f"Authorization: {auth}"]
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def pull(url, repo, auth, digest):
    cmd = ["curl", "-sfS", "-o", "/dev/null", f"{url}/v2/{repo}/blobs/{digest}"]
    if auth:
        cmd[1:1] = ["-H", f"Authorization: {auth}"]
    return timed(cmd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    berth = os.environ.get("BERTH_BIN", os.path.join(REPO, "target/release/berth"))
    dist = os.environ.get("DIST_BIN", "/usr/bin/docker-registry")
    work = tempfile.mkdtemp(prefix="berth-enc-bench-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    procs = []
    try:
        blob = os.path.join(work, "blob.bin")
        subprocess.run(["dd", "if=/dev/urandom", f"of={blob}", "bs=1M", f"count={a.mb}", "status=none"], check=True)
        size = os.path.getsize(blob)
        h = hashlib.sha256()
        with open(blob, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()

        servers = {}
        p, url = start_dist(dist, work)
        procs.append(p)
        servers["Distribution"] = (url, "bench", None)
        for name, enc in [("Berth, encryption off", "false"), ("Berth, AES256 + KMS", "true")]:
            data = os.path.join(work, f"berth-{enc}")
            env = dict(os.environ, **ENV, BERTH_ENCRYPT_AT_REST=enc)
            os.environ.update({"BERTH_ENCRYPT_AT_REST": enc})
            p, url = start(berth, data)
            del os.environ["BERTH_ENCRYPT_AT_REST"]
            procs.append(p)
            auth = login(berth, data, env)
            if enc == "false":
                servers[name] = (url, "bench", auth)
                continue
            servers["Berth, AES256"] = (url, "aes", auth)
            kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=AKID,
                               aws_secret_access_key=SECRET)
            ecr = boto3.client("ecr", endpoint_url=url, region_name="us-east-1", aws_access_key_id=AKID,
                               aws_secret_access_key=SECRET)
            key = kms.create_key(Description="bench")["KeyMetadata"]["Arn"]
            ecr.create_repository(repositoryName="kms",
                                  encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key})
            servers["Berth, KMS"] = (url, "kms", auth)

        floors = {
            "openssl dgst -sha256": statistics.median(timed(["openssl", "dgst", "-sha256", blob]) for _ in range(a.runs)),
            "dd conv=fsync": statistics.median(
                timed(["dd", f"if={blob}", f"of={work}/floor.bin", "bs=4M", "conv=fsync", "status=none"])
                for _ in range(a.runs)),
        }
        os.remove(f"{work}/floor.bin")
        pushes = {n: [] for n in servers}
        pulls = {n: [] for n in servers}
        for n, (url, repo, auth) in servers.items():
            push(url, repo, auth, blob, digest)
            pull(url, repo, auth, digest)
        for _ in range(a.runs):
            for n, (url, repo, auth) in servers.items():
                pushes[n].append(push(url, repo, auth, blob, digest))
                pulls[n].append(pull(url, repo, auth, digest))

        gb = size / 1e9
        floor = max(floors.values())
        off_push = statistics.median(pushes["Berth, encryption off"])
        off_pull = statistics.median(pulls["Berth, encryption off"])
        print(f"### Encryption at rest: {a.mb} MiB blob, median of {a.runs}\n")
        print("| server | push s | push GB/s | push / floor | push vs off | pull s | pull GB/s | pull vs off |")
        print("|---|---|---|---|---|---|---|---|")
        for n in servers:
            ps, pl = statistics.median(pushes[n]), statistics.median(pulls[n])
            print(f"| {n} | {ps:.2f} | {gb / ps:.2f} | {ps / floor:.2f}x | {off_push / ps:.2f}x | {pl:.2f} | "
                  f"{gb / pl:.2f} | {off_pull / pl:.2f}x |")
        print()
        print("Floors: " + ", ".join(f"{k} {v:.2f} s" for k, v in floors.items())
              + f"; push / floor uses the slower ({floor:.2f} s). 'vs off' is throughput relative to Berth with "
              "encryption off (1.00x = no cost).")
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
