#!/usr/bin/env python3
"""Bounded load test: N concurrent clients pushing and pulling (loopback only).

Configurations, each measured in the same run on the same machine:
  - two-node: two Berth nodes sharing PostgreSQL metadata and an S3 bucket (s3s-fs); client i
    pushes through node i%2 and pulls through the other node;
  - one-node S3: one Berth node on the same PostgreSQL + S3;
  - embedded: one Berth node on SQLite + filesystem;
  - Distribution on the same S3 server (Debian's docker-registry, s3 storage driver), when installed.

Each client repeats, --iterations times: push an image (a random --layer-kib layer and a config,
monolithic POST+PUT uploads, then the manifest by tag), then pull it back (manifest by tag, both
blobs) and check every digest. The test fails (exit 1) on any error or mismatch; it reports
images/s (push + pull of one image = one operation) and MB/s moved.

Usage: python3 bench/load.py [--clients 16] [--iterations 20] [--layer-kib 1024] [--s3 s3s-fs|moto]
       (BERTH_BIN, DIST_BIN; needs s3s-fs and PostgreSQL binaries: bash scripts/install-test-deps.sh)
--s3 moto runs the S3 server of PyPI's moto (`pip install "moto[server]"`) instead of s3s-fs:
Distribution's S3 driver needs ListMultipartUploads, which s3s-fs does not implement.
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
import time

import boto3
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AKID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SERVER_KEY = "ab" * 32
MT = "application/vnd.oci.image.manifest.v1+json"


def sh_exports(text):
    return dict(re.findall(r"export (\w+)=(\S+)", text))


def master_key_file(data):
    """One master key for every node of the run (they share the metadata and the storage)."""
    path = os.path.join(os.path.dirname(os.path.abspath(data)), "master.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"ef" * 32 + b"\n")
        os.close(fd)
    return path


def start_berth(binary, data, extra_env):
    env = dict(os.environ, BERTH_ACCOUNT_ID="111111111111", BERTH_ROOT_ACCESS_KEY_ID=AKID,
               BERTH_ROOT_SECRET_ACCESS_KEY=SECRET, BERTH_CREATE_ON_PUSH="true", BERTH_LOG="warn",
               BERTH_SERVER_KEY=SERVER_KEY, BERTH_MASTER_KEY_FILE=master_key_file(data), **extra_env)
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.match(r"berth listening on (http://\S+)", p.stdout.readline())
        if m:
            return p, m.group(1)
    p.kill()
    sys.exit(f"{binary} did not start")


def berth_auth(url):
    ecr = boto3.client("ecr", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    return "Basic " + ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]


def start_dist(binary, work, s3):
    port = free_port()
    cfg = f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  s3:
    accesskey: {s3['BERTH_S3_ACCESS_KEY_ID']}
    secretkey: {s3['BERTH_S3_SECRET_ACCESS_KEY']}
    region: us-east-1
    regionendpoint: {s3['BERTH_S3_ENDPOINT']}
    bucket: dist
    secure: false
    v4auth: true
    rootdirectory: /registry
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: true
http:
  addr: 127.0.0.1:{port}
"""
    with open(f"{work}/dist.yml", "w") as f:
        f.write(cfg)
    boto3.client("s3", endpoint_url=s3["BERTH_S3_ENDPOINT"], region_name="us-east-1",
                 aws_access_key_id=s3["BERTH_S3_ACCESS_KEY_ID"],
                 aws_secret_access_key=s3["BERTH_S3_SECRET_ACCESS_KEY"]).create_bucket(Bucket="dist")
    # The AWS SDK in Distribution refuses a custom CA bundle with its transport: drop AWS_* settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    p = subprocess.Popen([binary, "serve", f"{work}/dist.yml"], stdout=subprocess.DEVNULL,
                         stderr=open(f"{work}/dist.log", "w"), env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if requests.get(url + "/v2/", timeout=1).status_code == 200:
                return p, url
        except requests.RequestException:
            pass
        time.sleep(0.05)
    p.kill()
    sys.exit("docker-registry did not start:\n" + open(f"{work}/dist.log").read()[:1500])


def start_moto(work):
    """moto's S3 server on 127.0.0.1 (in memory); returns the process and the BERTH_S3_* settings."""
    port = free_port()
    p = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                         stderr=open(f"{work}/moto.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(url, timeout=1)
            return p, {"BERTH_S3_ENDPOINT": url, "BERTH_S3_REGION": "us-east-1",
                       "BERTH_S3_ACCESS_KEY_ID": "testing", "BERTH_S3_SECRET_ACCESS_KEY": "testing"}
        except requests.RequestException:
            time.sleep(0.05)
    p.kill()
    sys.exit("moto_server did not start")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def push_blob(sess, base, repo, data, auth):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = sess.post(f"{base}/v2/{repo}/blobs/uploads/", headers=auth, timeout=60)
    if r.status_code != 202:
        raise RuntimeError(f"POST upload {r.status_code} {r.text[:200]}")
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    sep = "&" if "?" in loc else "?"
    r = sess.put(f"{loc}{sep}digest={d}", data=data, timeout=120,
                 headers=dict(auth, **{"Content-Type": "application/octet-stream"}))
    if r.status_code != 201:
        raise RuntimeError(f"PUT upload {r.status_code} {r.text[:200]}")
    return d


def one_client(i, push_base, pull_base, auth, iterations, layer_kib):
    sess = requests.Session()
    hdr = {"Authorization": auth} if auth else {}
    moved = 0
    for it in range(iterations):
        repo = f"load/c{i}"
        layer = os.urandom(layer_kib * 1024)
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "client": i, "it": it}).encode()
        ld = push_blob(sess, push_base, repo, layer, hdr)
        cd = push_blob(sess, push_base, repo, cfg, hdr)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MT,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld,
                        "size": len(layer)}]}).encode()
        r = sess.put(f"{push_base}/v2/{repo}/manifests/t{it}", data=manifest, timeout=60,
                     headers=dict(hdr, **{"Content-Type": MT}))
        if r.status_code != 201:
            raise RuntimeError(f"PUT manifest {r.status_code} {r.text[:200]}")
        r = sess.get(f"{pull_base}/v2/{repo}/manifests/t{it}", headers=dict(hdr, Accept=MT), timeout=60)
        if r.status_code != 200 or r.content != manifest:
            raise RuntimeError(f"GET manifest {r.status_code} (bytes differ: {r.content != manifest})")
        for d in (cd, ld):
            r = sess.get(f"{pull_base}/v2/{repo}/blobs/{d}", headers=hdr, timeout=120)
            if r.status_code != 200 or "sha256:" + hashlib.sha256(r.content).hexdigest() != d:
                raise RuntimeError(f"GET blob {d}: {r.status_code}")
        moved += 2 * (len(layer) + len(cfg) + len(manifest))
    return moved


def run_load(name, push_bases, pull_bases, auth, args):
    start = time.perf_counter()
    errors, moved = [], 0
    with cf.ThreadPoolExecutor(args.clients) as ex:
        futs = [ex.submit(one_client, i, push_bases[i % len(push_bases)], pull_bases[i % len(pull_bases)],
                          auth, args.iterations, args.layer_kib) for i in range(args.clients)]
        for f in futs:
            try:
                moved += f.result()
            except Exception as e:  # noqa: BLE001 - every failure is reported
                errors.append(str(e))
    secs = time.perf_counter() - start
    ops = args.clients * args.iterations
    return {"name": name, "secs": secs, "images_per_s": ops / secs, "mb_per_s": moved / secs / 1e6,
            "errors": errors, "ops": ops}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--layer-kib", type=int, default=1024)
    ap.add_argument("--s3", choices=["s3s-fs", "moto"], default="s3s-fs")
    args = ap.parse_args()
    berth = os.environ.get("BERTH_BIN", os.path.join(REPO, "target/release/berth"))
    dist = os.environ.get("DIST_BIN", "/usr/bin/docker-registry")
    results, procs = [], []
    work = tempfile.mkdtemp(prefix="berth-load-")
    os.chmod(work, 0o755)
    try:
        pg_url = subprocess.run(["bash", f"{REPO}/scripts/postgres.sh", "start", f"{work}/pg"],
                                capture_output=True, text=True, check=True).stdout.strip()
        if args.s3 == "moto":
            m, s3 = start_moto(work)
            procs.append(m)
        else:
            s3 = sh_exports(subprocess.run(["bash", f"{REPO}/scripts/s3.sh", "start", f"{work}/s3"],
                                           capture_output=True, text=True, check=True).stdout)
        dist_env = dict(s3, BERTH_METADATA=pg_url, BERTH_STORAGE="s3://berth-load/two")
        a, url_a = start_berth(berth, f"{work}/a", dist_env)
        b, url_b = start_berth(berth, f"{work}/b", dist_env)
        procs += [a, b]
        auth = berth_auth(url_a)
        results.append(run_load("Berth, two nodes (PostgreSQL + S3), push on one, pull on the other",
                                [url_a, url_b], [url_b, url_a], auth, args))
        b.kill()
        results.append(run_load("Berth, one node (PostgreSQL + S3)", [url_a], [url_a], auth, args))
        a.kill()
        e, url_e = start_berth(berth, f"{work}/e", {})
        procs.append(e)
        results.append(run_load("Berth, one node (SQLite + filesystem)", [url_e], [url_e], berth_auth(url_e), args))
        e.kill()
        if os.path.exists(dist) and not os.environ.get("BENCH_SKIP_DIST"):
            d, url_d = start_dist(dist, work, s3)
            procs.append(d)
            results.append(run_load(f"Distribution 2.8 (S3 driver, same {args.s3})", [url_d], [url_d], None, args))
            d.kill()
        else:
            print(f"note: {dist} not installed; Distribution not measured", file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
        subprocess.run(["bash", f"{REPO}/scripts/s3.sh", "stop", f"{work}/s3"], check=False)
        subprocess.run(["bash", f"{REPO}/scripts/postgres.sh", "stop", f"{work}/pg"], check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.clients} clients x {args.iterations} images of one {args.layer_kib} KiB layer; "
          f"each image pushed then pulled back and verified; S3 server: {args.s3}\n")
    print("| Configuration | images/s | MB/s | failed clients |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['images_per_s']:.1f} | {r['mb_per_s']:.1f} | {len(r['errors'])} / {args.clients} |")
    for r in results:
        if r["errors"]:
            print(f"\n{r['name']}: first errors: {r['errors'][:3]}", file=sys.stderr)
    # Berth must see no error; Distribution's failures are reported (its S3 driver needs
    # ListMultipartUploads, which s3s-fs does not implement).
    sys.exit(1 if any(r["errors"] for r in results if r["name"].startswith("Berth")) else 0)


if __name__ == "__main__":
    main()
