#!/usr/bin/env python3
"""Bounded benchmark: concurrent tag writes to many repositories through two nodes on PostgreSQL.

Two Berth nodes share one PostgreSQL database and one data directory (filesystem blobs). Each of
--repos repositories gets one config blob; then, for each client count in --clients, that many
threads write tags for --seconds: client i writes through node i % 2 to repositories
i, i + C, i + 2C, ... in turn, each write a PUT of a new small manifest (a unique annotation) by
tag. Every answer must be 201, else the run fails. Reports writes/s per client count, the
scaling against one client, and (sampled every ~50 ms from pg_stat_activity) how many PostgreSQL
backends were waiting on a lock: the direct measure of writes queueing behind a row lock.

What it shows: when every manifest or tag write updates one global row (the old data epoch),
PostgreSQL serializes all repositories' writes behind that row lock, and throughput flattens as
clients are added; with per-repository invalidation, writes to different repositories do not
wait for each other.

Usage: python3 bench/tag_writes.py [--bin target/release/berth] [--clients 1,2,4,8,16]
       [--repos 50] [--seconds 8] [--label after]
Needs PostgreSQL binaries (scripts/postgres.sh). PostgreSQL runs with fsync on unless
--no-fsync (scripts/postgres.sh starts it with fsync off; the benchmark restarts it with fsync on,
since a commit's flush is what a row lock is held across).
"""

import argparse
import concurrent.futures as cf
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import boto3
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AKID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SERVER_KEY = "cd" * 32
MT = "application/vnd.oci.image.manifest.v1+json"


def master_key_file(data):
    """One master key for every node of the run (they share the metadata and the storage)."""
    path = os.path.join(os.path.dirname(os.path.abspath(data)), "master.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"ef" * 32 + b"\n")
        os.close(fd)
    return path


def start_berth(binary, data, env_extra, log):
    env = dict(os.environ, BERTH_ACCOUNT_ID="111111111111", BERTH_ROOT_ACCESS_KEY_ID=AKID,
               BERTH_ROOT_SECRET_ACCESS_KEY=SECRET, BERTH_CREATE_ON_PUSH="true", BERTH_LOG="warn",
               BERTH_SERVER_KEY=SERVER_KEY, BERTH_MASTER_KEY_FILE=master_key_file(data), **env_extra)
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                         stdout=subprocess.PIPE, stderr=open(log, "w"), env=env, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.match(r"berth listening on (http://\S+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return p, m.group(1)
        if not line and p.poll() is not None:
            break
    p.kill()
    sys.exit(f"{binary} did not start; see {log}")


def auth_header(url):
    ecr = boto3.client("ecr", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    return {"Authorization": "Basic " + ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]}


def manifest(cfg_digest, cfg_len, note):
    return json.dumps({
        "schemaVersion": 2, "mediaType": MT,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg_digest, "size": cfg_len},
        "layers": [], "annotations": {"n": note},
    }).encode()


def lock_sampler(url, stop, samples):
    """Every ~50 ms: how many PostgreSQL backends wait on a heavyweight lock (a row lock held
    by another transaction shows up as wait_event_type 'Lock')."""
    q = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    while not stop.is_set():
        r = subprocess.run(["psql", url, "-Atc", q], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip().isdigit():
            samples.append(int(r.stdout.strip()))
        stop.wait(0.05)


def client(i, n_clients, bases, hdr, repos, cfg, deadline, counts, errors):
    sess = requests.Session()
    base = bases[i % len(bases)]
    mine = [r for k, r in enumerate(repos) if k % n_clients == i] or [repos[i % len(repos)]]
    k = 0
    while time.perf_counter() < deadline:
        repo = mine[k % len(mine)]
        body = manifest(cfg[0], cfg[1], f"{i}-{k}")
        r = sess.put(f"{base}/v2/{repo}/manifests/t{k % 4}", data=body, timeout=60,
                     headers=dict(hdr, **{"Content-Type": MT}))
        if r.status_code != 201:
            errors.append(f"client {i}: PUT {repo}:t{k % 4} -> {r.status_code} {r.text[:200]}")
            return
        k += 1
    counts[i] = k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/berth"))
    ap.add_argument("--clients", default="1,2,4,8,16")
    ap.add_argument("--repos", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--label", default="")
    ap.add_argument("--no-fsync", action="store_true")
    args = ap.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    if args.seconds <= 0 or args.seconds > 120 or args.repos < 1 or args.repos > 1000:
        sys.exit("--seconds must be in (0, 120], --repos in [1, 1000]")
    work = tempfile.mkdtemp(prefix="berth-tagbench-")
    os.chmod(work, 0o755)  # scripts/postgres.sh runs the server as the postgres user
    procs, pg_dir = [], os.path.join(work, "pg")
    url = subprocess.run(["bash", os.path.join(REPO, "scripts/postgres.sh"), "start", pg_dir],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        if not args.no_fsync:
            # scripts/postgres.sh passes -c fsync=off on the command line: restart without it.
            import glob
            pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
            port = url.rsplit(":", 1)[1].split("/")[0]
            opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {pg_dir} -c fsync=on"
            cmd = f"'{pg_ctl}' -D '{pg_dir}/data' -l '{pg_dir}/server.log' -w -t 60 -o '{opts}' restart"
            argv = ["su", "postgres", "-s", "/bin/sh", "-c", cmd] if os.getuid() == 0 else ["sh", "-c", cmd]
            subprocess.run(argv, check=True, capture_output=True)
        fsync = subprocess.run(["psql", url, "-Atc", "SHOW fsync"], check=True, capture_output=True,
                               text=True).stdout.strip()
        data = os.path.join(work, "data")
        env = {"BERTH_METADATA": url}
        bases = []
        for n in range(2):
            p, base = start_berth(args.bin, data, env, os.path.join(work, f"node{n}.log"))
            procs.append(p)
            bases.append(base)
        hdr = auth_header(bases[0])
        repos = [f"bench/r{k:03}" for k in range(args.repos)]
        cfg_bytes = b"{}"
        cfg = ("sha256:" + hashlib.sha256(cfg_bytes).hexdigest(), len(cfg_bytes))
        for repo in repos:
            r = requests.post(f"{bases[0]}/v2/{repo}/blobs/uploads/?digest={cfg[0]}", data=cfg_bytes,
                              headers=hdr, timeout=60)
            if r.status_code != 201:
                sys.exit(f"blob upload to {repo}: {r.status_code} {r.text[:200]}")
        results = []
        for c in client_counts:
            counts, errors, samples, stop = [0] * c, [], [], threading.Event()
            sampler = threading.Thread(target=lock_sampler, args=(url, stop, samples))
            start = time.perf_counter()
            deadline = start + args.seconds
            sampler.start()
            with cf.ThreadPoolExecutor(c) as ex:
                list(ex.map(lambda i: client(i, c, bases, hdr, repos, cfg, deadline, counts, errors), range(c)))
            secs = time.perf_counter() - start
            stop.set()
            sampler.join()
            if errors:
                sys.exit("errors:\n" + "\n".join(errors[:10]))
            waiting = sum(samples) / max(len(samples), 1)
            with_waiters = sum(1 for x in samples if x) / max(len(samples), 1)
            results.append((c, sum(counts), sum(counts) / secs, waiting, with_waiters))
            print(f"[{args.label}] clients={c:3d} writes={sum(counts):6d} writes/s={sum(counts) / secs:8.1f}",
                  file=sys.stderr)
        one = results[0][2]
        print(f"\n{args.label} ({args.bin}; PostgreSQL fsync={fsync}; {args.repos} repositories; "
              f"{args.seconds:g} s per step; two nodes)\n")
        print("| clients | tag writes | writes/s | vs 1 client | backends waiting on a lock (mean) | samples with a waiter |")
        print("|---|---|---|---|---|---|")
        for c, n, rate, waiting, with_waiters in results:
            print(f"| {c} | {n} | {rate:.1f} | {rate / one:.2f}x | {waiting:.2f} | {with_waiters:.0%} |")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["bash", os.path.join(REPO, "scripts/postgres.sh"), "stop", pg_dir], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
