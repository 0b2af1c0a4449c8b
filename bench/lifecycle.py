#!/usr/bin/env python3
"""Lifecycle benchmark (issue 11): how long evaluating and applying a lifecycle policy takes as a
repository grows, on a release build, loopback only.

For each of --sizes, one repository (bench/lifecycle) is filled (with scale.py's seeding: small
OCI manifests, nine in ten pushed by tag, one in ten untagged) to that many images, a policy is
put that keeps the --keep most recent images, behind a tagged-prefix rule that matches no tag (so
every image's tags are tested against it and the count rule ranks the whole repository; an
untagged rule in front would claim the untagged images and keep them out of the count, as ECR
does), and then:

  1. preview: StartLifecyclePolicyPreview (the whole evaluation of every image, synchronous,
     result stored) timed end to end over HTTP, --samples times; GetLifecyclePolicyPreview of the
     first page once, checked against the expected count;
  2. dry run: `berth lifecycle run --repository ... --dry-run` (a separate process on the same
     data, as an operator runs it), wall time;
  3. run (only at the largest size, unless --no-run): `berth lifecycle run` expiring everything
     beyond --keep, wall time and images expired per second; the repository is checked to hold
     exactly --keep images afterwards.

CNCF Distribution has no lifecycle policies (its nearest tool is an offline `garbage-collect`,
which removes nothing by age or count), so there is no side-by-side ratio here; the target is
the issue's: evaluation of a 100,000-image repository under 5 s.

Usage: python3 bench/lifecycle.py [--bin target/release/berth] [--sizes 1000,10000,100000]
       [--keep 100] [--samples 3] [--threads 8] [--no-run]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import scale  # noqa: E402


def policy(keep):
    rules = [
        {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["release-"],
                                          "countType": "imageCountMoreThan", "countNumber": 10},
         "action": {"type": "expire"}},
        {"rulePriority": 3, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                          "countNumber": keep},
         "action": {"type": "expire"}},
    ]
    return json.dumps({"rules": rules})


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/berth")
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--keep", type=int, default=100)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--no-run", action="store_true")
    ap.add_argument("--get-load", action="store_true",
                    help="GET a manifest of another repository back to back for 3 s before and after the "
                         "run (idle) and during it: p50/p99 of both")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = tempfile.mkdtemp(prefix="berth-lifecycle-bench-")
    data = os.path.join(work, "data")
    proc, base = scale.start_berth(args.bin, data, {"BERTH_LIFECYCLE_INTERVAL_SECS": "604800"},
                                   os.path.join(work, "berth.log"))
    rows = []
    try:
        auth = scale.berth_auth(base)
        conn = scale.Conn(base, auth)
        repo = "bench/lifecycle"
        images = scale.Images()
        scale.push_blobs(conn, repo, images)
        # The manifest GETs measured next to the run (--get-load) read another repository.
        other = scale.Images()
        scale.push_blobs(conn, "bench/other", other)
        body, _ = other.manifest("kept")
        scale.put_manifest(conn, "bench/other", "v1", body, scale.sha256(body))
        get_paths = ["/v2/bench/other/manifests/v1"]
        text = policy(args.keep)
        for size in sizes:
            n, secs = scale.seed_images(base, auth, repo, images, size, args.threads, "lifecycle")
            scale.log(f"{size} images ({n} pushed in {secs:.0f} s)")
            scale.ecr_call(conn, base, "PutLifecyclePolicy",
                           {"repositoryName": repo, "lifecyclePolicyText": text})
            times = []
            for _ in range(args.samples):
                t, out = timed(lambda: scale.ecr_call(conn, base, "StartLifecyclePolicyPreview",
                                                      {"repositoryName": repo}))
                scale.must(out["status"] == "COMPLETE", f"preview status {out['status']}")
                times.append(t)
            prev = scale.ecr_call(conn, base, "GetLifecyclePolicyPreview", {"repositoryName": repo})
            expiring = prev["summary"]["expiringImageTotalCount"]
            scale.must(expiring == size - args.keep, f"preview expires {expiring}, expected {size - args.keep}")
            env = dict(os.environ, BERTH_ACCOUNT_ID=scale.ACCOUNT, BERTH_SERVER_KEY=scale.SERVER_KEY,
                       BERTH_LOG="warn")
            cmd = [args.bin, "lifecycle", "run", "--repository", repo, "--data-dir", data, "--output", "json"]
            dry_t, res = timed(lambda: subprocess.run(cmd + ["--dry-run"], env=env, capture_output=True, text=True))
            scale.must(res.returncode == 0, f"dry run failed: {res.stderr}")
            scale.must(json.loads(res.stdout)["expired"] == size - args.keep, "dry run count")
            row = {"images": size, "preview_s": sorted(times), "dry_run_s": dry_t, "expiring": expiring}
            if size == sizes[-1] and not args.no_run:
                def run():
                    return timed(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True))

                if args.get_load:
                    _, idle = scale.with_get_load(base, auth, get_paths, lambda: time.sleep(3))
                    (run_t, res), busy = scale.with_get_load(base, auth, get_paths, run)
                    _, idle2 = scale.with_get_load(base, auth, get_paths, lambda: time.sleep(3))
                    # Idle: the windows before and after the run together.
                    row["get"] = {"idle": scale.lat_summary(idle + idle2), "during_run": scale.lat_summary(busy)}
                else:
                    run_t, res = run()
                scale.must(res.returncode == 0, f"run failed: {res.stderr}")
                done = json.loads(res.stdout)["expired"]
                scale.must(done == size - args.keep, f"run expired {done}")
                left = scale.ecr_call(conn, base, "DescribeImages", {"repositoryName": repo, "maxResults": 1000})
                scale.must(len(left["imageDetails"]) == args.keep and "nextToken" not in left, "images left")
                row.update(run_s=run_t, expired_per_s=done / run_t)
            rows.append(row)
            scale.log(json.dumps(row))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print("| images | StartLifecyclePolicyPreview (min / median / max) | `lifecycle run --dry-run` (process) | `lifecycle run` (expire all but %d) |" % args.keep)
    print("|---|---|---|---|")
    for r in rows:
        p = r["preview_s"]
        run = f"{r['run_s']:.1f} s ({r['expired_per_s']:.0f} images/s)" if "run_s" in r else "-"
        print(f"| {r['images']:,} | {p[0]:.2f} / {p[len(p) // 2]:.2f} / {p[-1]:.2f} s | {r['dry_run_s']:.2f} s | {run} |")
    for r in rows:
        if "get" in r:
            g = r["get"]
            print(f"\nmanifest GET of another repository, idle: p50 {g['idle']['p50_ms']:.2f} ms, p99 "
                  f"{g['idle']['p99_ms']:.2f} ms ({g['idle']['requests']} requests); during the run: p50 "
                  f"{g['during_run']['p50_ms']:.2f} ms, p99 {g['during_run']['p99_ms']:.2f} ms "
                  f"({g['during_run']['requests']} requests)")


if __name__ == "__main__":
    main()
