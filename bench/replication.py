#!/usr/bin/env python3
"""Replication benchmark (issue 14), loopback only, bounded.

Two Berth deployments (release build): a source (us-east-1 and eu-west-1, account 111111111111)
and a peer (eu-central-1, account 222222222222) named in the source's [[replication.peers]].

1. A 1 GiB image (one random 1 GiB layer, a fresh one per run) replicated to the peer, against
   `skopeo copy --preserve-digests` of the same kind of image between the same two servers, and
   between two CNCF Distribution servers (Debian's docker-registry) for reference. Replication
   is timed from the end of the push (the manifest PUT's answer) to the status COMPLETE seen by
   DescribeImageReplicationStatus (polled every 20 ms): pickup by the event consumer, the job,
   STS/ECR calls and the copy. Runs are interleaved, median of --runs.
2. Replication lag under a steady push load: --rate small images per second for --seconds to a
   repository replicated both within the deployment (eu-west-1) and to the peer; the lag of each
   replication (push to COMPLETE, from the server's own timestamps in replication_status) as
   p50/p99 per destination.

Usage: python3 bench/replication.py [--mb 1024] [--runs 3] [--rate 10] [--seconds 30]
       (BERTH_BIN, DIST_BIN, SKOPEO override). Prints a markdown report.
"""

import argparse
import base64
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
from ecr import AKID, ENV, SECRET  # noqa: E402
from scale import start_dist  # noqa: E402

import boto3  # noqa: E402

PEER_REGION, PEER_ACCOUNT = "eu-central-1", "222222222222"
PEER_AKID, PEER_SECRET = "AKIAPEERPEERPEER0001", "peer/secret/key/for/replication/bench001"
LAYER_MT = "application/vnd.oci.image.layer.v1.tar"


def start(binary, data, env, config=None):
    args = [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data]
    if config:
        args[2:2] = ["--config", config]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.match(r"berth listening on (http://\S+)", p.stdout.readline())
        if m:
            return p, m.group(1)
    p.kill()
    sys.exit(f"{binary} did not start")


def login(binary, data, env):
    pw = subprocess.run([binary, "admin", "get-login-password", "--data-dir", data], capture_output=True,
                        text=True, env=env, check=True).stdout.strip()
    return pw


def auth_header(pw):
    return "Basic " + base64.b64encode(f"AWS:{pw}".encode()).decode() if pw else None


def push_blob(url, repo, auth, path=None, data=None):
    """Monolithic push (POST, then PUT streamed by curl -T or with `data`); the digest."""
    if path:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()
    else:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
    hdr = {"Authorization": auth} if auth else {}
    req = urllib.request.Request(f"{url}/v2/{repo}/blobs/uploads/", method="POST", headers=hdr)
    loc = urllib.request.urlopen(req).headers["Location"]
    if loc.startswith("/"):
        loc = url + loc
    sep = "&" if "?" in loc else "?"
    if path:
        cmd = ["curl", "-sfS", "-o", "/dev/null", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
               "-T", path, f"{loc}{sep}digest={digest}"]
        if auth:
            cmd[1:1] = ["-H", f"Authorization: {auth}"]
        subprocess.run(cmd, check=True)
    else:
        req = urllib.request.Request(f"{loc}{sep}digest={digest}", method="PUT", data=data,
                                     headers=dict(hdr, **{"Content-Type": "application/octet-stream"}))
        urllib.request.urlopen(req).read()
    return digest


def push_image(url, repo, tag, auth, layer_path=None, layer=None):
    """An OCI image of one layer; the manifest digest (after the manifest PUT's answer)."""
    ldig = push_blob(url, repo, auth, path=layer_path, data=layer)
    lsize = os.path.getsize(layer_path) if layer_path else len(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [ldig]},
                         "comment": f"{repo}:{tag}"}).encode()
    cdig = push_blob(url, repo, auth, data=config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": len(config)},
        "layers": [{"mediaType": LAYER_MT, "digest": ldig, "size": lsize}],
    }).encode()
    hdr = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    if auth:
        hdr["Authorization"] = auth
    req = urllib.request.Request(f"{url}/v2/{repo}/manifests/{tag}", method="PUT", data=manifest, headers=hdr)
    urllib.request.urlopen(req).read()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def wait_complete(ecr, repo, digest, want=1, limit=600):
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        st = ecr.describe_image_replication_status(repositoryName=repo, imageId={"imageDigest": digest})[
            "replicationStatuses"]
        if len(st) >= want and all(s["status"] == "COMPLETE" for s in st):
            return time.perf_counter()
        if any(s["status"] == "FAILED" for s in st):
            sys.exit(f"replication of {repo}@{digest} failed: {st}")
        time.sleep(0.02)
    sys.exit(f"replication of {repo}@{digest} did not complete within {limit} s")


def skopeo_copy(src, src_pw, dst, dst_pw, repo, tag):
    cmd = [os.environ.get("SKOPEO", "skopeo"), "copy", "--quiet", "--preserve-digests",
           "--src-tls-verify=false", "--dest-tls-verify=false"]
    if src_pw:
        cmd += ["--src-creds", f"AWS:{src_pw}"]
    if dst_pw:
        cmd += ["--dest-creds", f"AWS:{dst_pw}"]
    cmd += [f"docker://{src.split('://')[1]}/{repo}:{tag}", f"docker://{dst.split('://')[1]}/{repo}:{tag}"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q / 100 * len(v)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=int, default=30)
    a = ap.parse_args()
    berth = os.environ.get("BERTH_BIN", os.path.join(REPO, "target/release/berth"))
    dist = os.environ.get("DIST_BIN", "/usr/bin/docker-registry")
    work = tempfile.mkdtemp(prefix="berth-repl-bench-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    procs = []
    try:
        peer_env = {**os.environ, **ENV, "BERTH_REGIONS": PEER_REGION, "BERTH_ACCOUNT_ID": PEER_ACCOUNT,
                    "BERTH_ROOT_ACCESS_KEY_ID": PEER_AKID, "BERTH_ROOT_SECRET_ACCESS_KEY": PEER_SECRET}
        peer_data = os.path.join(work, "peer")
        p, peer = start(berth, peer_data, peer_env)
        procs.append(p)
        cfg = os.path.join(work, "source.toml")
        with open(cfg, "w") as f:
            f.write(f'[[replication.peers]]\nregion = "{PEER_REGION}"\nendpoint = "{peer}"\n'
                    f'access_key_id = "{PEER_AKID}"\nsecret_access_key = "{PEER_SECRET}"\n')
        src_env = {**os.environ, **ENV, "BERTH_REGIONS": "us-east-1,eu-west-1", "BERTH_JOB_POLL_MS": "100"}
        src_data = os.path.join(work, "source")
        p, source = start(berth, src_data, src_env, cfg)
        procs.append(p)
        src_pw, peer_pw = login(berth, src_data, src_env), login(berth, peer_data, peer_env)
        src_auth = auth_header(src_pw)
        ecr = boto3.client("ecr", endpoint_url=source, region_name="us-east-1", aws_access_key_id=AKID,
                           aws_secret_access_key=SECRET)
        ecr.put_replication_configuration(replicationConfiguration={"rules": [
            {"destinations": [{"region": PEER_REGION, "registryId": PEER_ACCOUNT}],
             "repositoryFilters": [{"filter": "big", "filterType": "PREFIX_MATCH"}]},
            {"destinations": [{"region": PEER_REGION, "registryId": PEER_ACCOUNT},
                              {"region": "eu-west-1", "registryId": "111111111111"}],
             "repositoryFilters": [{"filter": "lag", "filterType": "PREFIX_MATCH"}]},
        ]})
        d1, d2 = start_dist(dist, os.path.join(work, "d1")), start_dist(dist, os.path.join(work, "d2"))
        procs += [d1[0], d2[0]]

        # 1. A 1 GiB image: replication against skopeo copy.
        layer = os.path.join(work, "layer.bin")
        repl, direct, dist_copy = [], [], []
        for run in range(a.runs + 1):
            subprocess.run(["dd", "if=/dev/urandom", f"of={layer}", "bs=1M", f"count={a.mb}", "status=none"],
                           check=True)
            digest = push_image(source, f"big/r{run}", "v1", src_auth, layer_path=layer)
            t0 = time.perf_counter()
            repl_s = wait_complete(ecr, f"big/r{run}", digest) - t0
            subprocess.run(["dd", "if=/dev/urandom", f"of={layer}", "bs=1M", f"count={a.mb}", "status=none"],
                           check=True)
            push_image(source, f"direct/r{run}", "v1", src_auth, layer_path=layer)
            direct_s = skopeo_copy(source, src_pw, peer, peer_pw, f"direct/r{run}", "v1")
            push_image(d1[1], f"direct/r{run}", "v1", None, layer_path=layer)
            dist_s = skopeo_copy(d1[1], None, d2[1], None, f"direct/r{run}", "v1")
            if run == 0:
                continue  # warm-up
            repl.append(repl_s)
            direct.append(direct_s)
            dist_copy.append(dist_s)
            print(f"run {run}: replication {repl_s:.2f} s, skopeo Berth->Berth {direct_s:.2f} s, "
                  f"skopeo Distribution->Distribution {dist_s:.2f} s", file=sys.stderr)
        os.remove(layer)

        # 2. Lag under a steady push load.
        n = int(a.rate * a.seconds)
        start_t = time.perf_counter()
        pushed = []

        def one(i):
            due = start_t + i / a.rate
            time.sleep(max(0.0, due - time.perf_counter()))
            return push_image(source, "lag/app", f"t{i}", src_auth, layer=os.urandom(65536))

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            pushed = list(pool.map(one, range(n)))
        achieved = n / (time.perf_counter() - start_t)
        for d in pushed:
            wait_complete(ecr, "lag/app", d, want=2, limit=300)
        db = sqlite3.connect(f"file:{os.path.join(src_data, 'berth.db')}?mode=ro", uri=True)
        rows = db.execute("SELECT dest_region, updated_at - pushed_at FROM replication_status "
                          "WHERE repository = 'lag/app' AND status = 'COMPLETE'").fetchall()
        lags = {}
        for region, ms in rows:
            lags.setdefault(region, []).append(ms)

        gib = a.mb / 1024
        r, dc, dd = statistics.median(repl), statistics.median(direct), statistics.median(dist_copy)
        print(f"### Replication: {a.mb} MiB image to a peer deployment, median of {a.runs}\n")
        print("| path | seconds | MB/s | vs skopeo copy Berth->Berth |")
        print("|---|---|---|---|")
        print(f"| Berth replication (push answered -> COMPLETE) | {r:.2f} | {a.mb * 1.048576 / r:.0f} | {r / dc:.2f}x |")
        print(f"| skopeo copy --preserve-digests, Berth -> Berth | {dc:.2f} | {a.mb * 1.048576 / dc:.0f} | 1.00x |")
        print(f"| skopeo copy --preserve-digests, Distribution -> Distribution | {dd:.2f} | "
              f"{a.mb * 1.048576 / dd:.0f} | {dd / dc:.2f}x |")
        print(f"\n({gib:.0f} GiB of random bytes per run, a fresh layer each time; target: replication at most "
              "1.2x the direct copy.)\n")
        print(f"### Replication lag under {achieved:.1f} pushes/s for {a.seconds} s ({n} images of 64 KiB)\n")
        print("| destination | replications | lag p50 ms | lag p99 ms | max ms |")
        print("|---|---|---|---|---|")
        for region, ms in sorted(lags.items()):
            kind = "peer deployment" if region == PEER_REGION else "same deployment"
            print(f"| {region} ({kind}) | {len(ms)} | {pct(ms, 50)} | {pct(ms, 99)} | {max(ms)} |")
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
