#!/usr/bin/env python3
"""Garbage collection benchmark (issue 11): how fast unreferenced blobs are reclaimed, Berth's
online `berth gc` next to a running server vs CNCF Distribution's offline `garbage-collect`,
in the same run, on the filesystem store, loopback only.

Both registries get the same content through the OCI API: --blobs small distinct blobs (1 KiB),
uploaded (POST, then PUT ?digest= with the bytes) into one repository by --threads threads,
that no manifest references, plus --keep images (a config and a layer each, tagged) that must
survive. Then:

  Berth: `berth gc --grace-period 0 --output json` on the server's data dir while the server
  keeps running (the blobs' links are removed, the blobs found unlinked and deleted in the same
  pass: rows, then bytes, then tombstones), wall time of the process.
  Distribution: the server is stopped (its GC is offline: running it on a live registry corrupts
  concurrent pushes), then `docker-registry garbage-collect <config>` (with --delete-untagged),
  wall time.

Checks: each GC reports/leaves exactly --blobs deleted, and every kept image still pulls with its
digests verified. Prints a markdown table (blobs/s, ratio) and the raw numbers as JSON.

With --get-load, one client GETs the kept images' manifests back to back for 3 s before and 3 s
after Berth's GC (idle) and for the whole pass: p50/p99 of both, to see what the pass does to
serving.

Usage: python3 bench/gc.py [--bin target/release/berth] [--dist-bin /usr/bin/docker-registry]
       [--blobs 20000] [--keep 20] [--threads 8] [--no-dist]
Berth on S3 (s3s-fs): add --s3 (needs BERTH_S3_ENDPOINT and credentials, e.g. from
scripts/s3.sh start DIR); Distribution is then not run.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import scale  # noqa: E402


def blob(i):
    return hashlib.sha256(f"gc-bench-{i}".encode()).digest() * 32  # 1 KiB, distinct


def upload(conn, repo, data):
    """POST a session, then PUT the bytes with their digest (both registries take it;
    Distribution 2.8 answers a monolithic POST with 202 and ignores its body)."""
    status, h, body = conn.call("POST", f"/v2/{repo}/blobs/uploads/")
    scale.expect(f"POST /v2/{repo}/blobs/uploads/", status, body, ok=(202,))
    loc = urllib.parse.urlparse(h["Location"])
    q = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(scale.sha256(data))
    status, _, body = conn.call("PUT", f"{loc.path}?{q}", data, {"Content-Type": "application/octet-stream"})
    scale.expect(f"PUT blob {scale.sha256(data)}", status, body, ok=(201,))


def seed(base, auth, repo, n, threads, label):
    return scale.parallel(n, threads, base, auth, lambda conn, k: upload(conn, repo, blob(k)), label)


def push_kept(base, auth, repo, keep):
    conn = scale.Conn(base, auth)
    kept = []
    for i in range(keep):
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "keep": i}).encode()
        layer = hashlib.sha256(f"kept-layer-{i}".encode()).digest() * 64
        for data in (cfg, layer):
            upload(conn, repo, data)
        m = json.dumps({"schemaVersion": 2, "mediaType": scale.MT,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": scale.sha256(cfg), "size": len(cfg)},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                    "digest": scale.sha256(layer), "size": len(layer)}]}).encode()
        scale.put_manifest(conn, repo, f"keep-{i}", m, scale.sha256(m))
        kept.append((f"keep-{i}", [scale.sha256(cfg), scale.sha256(layer)]))
    return kept


def check_kept(base, auth, repo, kept):
    conn = scale.Conn(base, auth)
    for tag, digests in kept:
        status, _, body = conn.call("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": scale.MT})
        scale.expect(f"GET {repo}:{tag}", status, body, ok=(200,))
        for d in digests:
            status, _, body = conn.call("GET", f"/v2/{repo}/blobs/{d}")
            scale.expect(f"GET blob {d}", status, body, ok=(200,))
            scale.must(scale.sha256(body) == d, f"blob {d} intact")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/berth")
    ap.add_argument("--dist-bin", default="/usr/bin/docker-registry")
    ap.add_argument("--blobs", type=int, default=20000)
    ap.add_argument("--keep", type=int, default=20)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--no-dist", action="store_true")
    ap.add_argument("--s3", action="store_true")
    ap.add_argument("--get-load", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="berth-gc-bench-")
    repo = "bench/gc"
    results = {}
    try:
        data = os.path.join(work, "berth-data")
        extra = {"BERTH_GC_INTERVAL_SECS": "604800"}
        if args.s3:
            extra["BERTH_STORAGE"] = f"s3://gc-bench-{int(time.time())}/p"
        proc, base = scale.start_berth(args.bin, data, extra, os.path.join(work, "berth.log"))
        try:
            auth = scale.berth_auth(base)
            kept = push_kept(base, auth, repo, args.keep)
            secs = seed(base, auth, repo, args.blobs, args.threads, "berth: seeding")
            scale.log(f"berth: {args.blobs} blobs seeded in {secs:.0f} s")
            env = dict(os.environ, BERTH_ACCOUNT_ID=scale.ACCOUNT, BERTH_SERVER_KEY=scale.SERVER_KEY,
                       BERTH_LOG="warn,berth_registry::gc=debug", **extra)
            cmd = [args.bin, "gc", "--grace-period", "0", "--output", "json", "--data-dir", data]
            timed = {}

            def gc_run():
                t0 = time.perf_counter()
                r = subprocess.run(cmd, env=env, capture_output=True, text=True)
                timed["t"] = time.perf_counter() - t0
                return r

            if args.get_load:
                paths = [f"/v2/{repo}/manifests/{tag}" for tag, _ in kept]
                _, base_lat = scale.with_get_load(base, auth, paths, lambda: time.sleep(3))
                res, gc_lat = scale.with_get_load(base, auth, paths, gc_run)
                _, after_lat = scale.with_get_load(base, auth, paths, lambda: time.sleep(3))
                base_lat += after_lat  # idle: the windows before and after the pass together
                results["get_p99"] = {"baseline": scale.lat_summary(base_lat), "during_gc": scale.lat_summary(gc_lat)}
                scale.log(f"manifest GETs: {json.dumps(results['get_p99'])}")
            else:
                res = gc_run()
            t = timed["t"]
            scale.must(res.returncode == 0, f"berth gc failed: {res.stderr}")
            scale.log(f"berth gc phases: {res.stderr.strip()[-600:]}")
            out = json.loads(res.stdout)
            scale.must(out["blobsDeleted"] == args.blobs, f"berth gc deleted {out['blobsDeleted']}")
            check_kept(base, auth, repo, kept)
            results["berth"] = {"seconds": t, "blobs": out["blobsDeleted"], "rate": out["blobsDeleted"] / t,
                                "store": "s3" if args.s3 else "filesystem"}
            scale.log(f"berth gc: {json.dumps(results['berth'])}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if not args.no_dist and not args.s3 and os.path.exists(args.dist_bin):
            dwork = os.path.join(work, "dist")
            os.makedirs(dwork)
            proc, base = scale.start_dist(args.dist_bin, dwork)
            try:
                kept = push_kept(base, None, repo, args.keep)
                secs = seed(base, None, repo, args.blobs, args.threads, "distribution: seeding")
                scale.log(f"distribution: {args.blobs} blobs seeded in {secs:.0f} s")
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            blobs_dir = os.path.join(dwork, "dist-data", "docker", "registry", "v2", "blobs")
            before = sum(len(f) for _, _, f in os.walk(blobs_dir))
            t0 = time.perf_counter()
            res = subprocess.run([args.dist_bin, "garbage-collect", "--delete-untagged",
                                  os.path.join(dwork, "dist.yml")], capture_output=True, text=True)
            t = time.perf_counter() - t0
            scale.must(res.returncode == 0, f"garbage-collect failed: {res.stderr[-2000:]}")
            after = sum(len(f) for _, _, f in os.walk(blobs_dir))
            deleted = before - after
            scale.must(deleted == args.blobs, f"distribution deleted {deleted} blob files")
            proc, base = scale.start_dist(args.dist_bin, dwork)
            try:
                check_kept(base, None, repo, kept)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            results["distribution"] = {"seconds": t, "blobs": deleted, "rate": deleted / t, "online": False}
            scale.log(f"distribution garbage-collect: {json.dumps(results['distribution'])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    b = results["berth"]
    print(f"| registry | blobs reclaimed | time | blobs/s |")
    print("|---|---|---|---|")
    print(f"| Berth `berth gc` (online, {b['store']}) | {b['blobs']:,} | {b['seconds']:.2f} s | {b['rate']:,.0f} |")
    if "distribution" in results:
        d = results["distribution"]
        print(f"| Distribution `garbage-collect` (offline) | {d['blobs']:,} | {d['seconds']:.2f} s | {d['rate']:,.0f} |")
        print(f"\nBerth / Distribution: {b['rate'] / d['rate']:.2f}x")
    if "get_p99" in results:
        g = results["get_p99"]
        print(f"\nmanifest GET while idle: p50 {g['baseline']['p50_ms']:.2f} ms, p99 {g['baseline']['p99_ms']:.2f} ms "
              f"({g['baseline']['requests']} requests); during the pass: p50 {g['during_gc']['p50_ms']:.2f} ms, "
              f"p99 {g['during_gc']['p99_ms']:.2f} ms ({g['during_gc']['requests']} requests)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
