#!/usr/bin/env python3
"""Scale benchmark (issue 16): what one request costs as the registry grows (loopback, bounded).

For each backend (--backend sqlite, postgres or both), one Berth release build is started on
127.0.0.1 with a fresh data directory (and, for postgres, a throwaway PostgreSQL from
scripts/postgres.sh, metadata in it, blobs on the filesystem). Then:

  1. Images. One repository (bench/images) gets one config blob and one layer blob, then is
     filled step by step to each of --sizes images: small OCI image manifests that differ only by
     an annotation, PUT through the OCI API by tag, except every tenth, PUT by digest (untagged),
     by --threads threads each with its own keep-alive connection. At each size, the latency
     (p50/p99 over --samples requests, after warm-ups, one request at a time on one keep-alive
     connection) of: DescribeImages of one tag, BatchGetImage of one tag, DescribeImages by
     digest, ListImages first page (100; also tagStatus TAGGED and UNTAGGED), ListImages second
     page, DescribeImages first page (100; also UNTAGGED), BatchCheckLayerAvailability, PutImage
     of a new manifest by tag (ECR API), a manifest PUT by tag (OCI API), GET tags/list?n=100,
     GET manifest by tag, and GET /v2/ as the floor (client + HTTP + token check, no data).
     Tags and digests are picked at random over the whole repository, not only the newest.
  2. Repositories. The account is filled to each of --repo-sizes repositories (push-creates:
     mount of the two blobs from bench/images, then one manifest PUT by tag, so each repository
     holds one tiny image), and measured: DescribeRepositories first page (maxResults 100),
     DescribeRepositories of one name, GET /v2/_catalog?n=100, both first pages also with 10
     items (a page as full at 10 repositories as at 10,000), a manifest PUT into one
     repository.
  3. Unless --no-dist, CNCF Distribution (Debian's docker-registry; filesystem storage, no auth,
     configured as in bench/run.sh) filled the same way (its sizes count tags in one repository;
     its repositories hold one tiny image each) and measured on tags/list?n=100 and _catalog?n=100,
     with the Berth/Distribution ratio.

ECR requests are SigV4-signed by botocore before the timer starts and sent over http.client; the
timer covers sending the request and reading the whole answer, nothing else (boto3's own per-call
cost, 1-2 ms, is not in the numbers). Before each size, and before each operation, the script
waits until the servers are idle (the seeding's audit records and events written; the aftermath
of a costlier operation, such as freeing its memory, over), and measures each operation in a
block of its own, pushes last. p99 is the nearest-rank percentile. An operation stops early (at
least 20 samples) once it has used --max-op-seconds; the report gives the sample count then.

Every answer is checked: a non-2xx status (or an answer that is not what was asked for: a
BatchGetImage failure, a short page, a manifest whose digest differs) aborts the run and prints
the answer's body. Prints a markdown report (per backend: operation x size, p50/p99 and the ratio
largest/smallest size, against the issue's within-2x rule; seeding rate; server RSS) and writes it
with the raw numbers to bench/out/scale-<date>.md and .json.

Usage: python3 bench/scale.py [--bin target/release/berth] [--backend sqlite|postgres|both]
       [--sizes 1000,10000,100000] [--repo-sizes 10,10000] [--samples 200] [--threads 8]
       [--pg-analyze] [--no-dist] [--dist-bin /usr/bin/docker-registry] [--max-op-seconds 120] [--keep]
Small check run: --sizes 200,2000 --repo-sizes 10,300 --samples 30
Needs PostgreSQL binaries for postgres (scripts/postgres.sh), docker-registry for Distribution.
"""

import argparse
import base64
import hashlib
import http.client
import itertools
import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AKID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCOUNT = "111111111111"
SERVER_KEY = "5c" * 32
MT = "application/vnd.oci.image.manifest.v1+json"
IMAGES_REPO = "bench/images"
WARMUP = 5
MIN_SAMPLES = 20
ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
CREDS = Credentials(AKID, SECRET)


class BenchError(Exception):
    """A request failed or answered something unexpected: the run stops."""


def log(msg):
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- HTTP


class Conn:
    """One keep-alive HTTP/1.1 connection; call() returns (status, headers, body)."""

    def __init__(self, base, auth=None):
        u = urllib.parse.urlparse(base)
        self.host, self.port, self.auth = u.hostname, u.port, auth
        self.c = None

    def call(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.auth and "Authorization" not in h and "X-Amz-Target" not in h:
            h["Authorization"] = self.auth
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                self.c.request(method, path, body=body, headers=h)
                r = self.c.getresponse()
                data = r.read()
                if r.will_close:
                    self.close()
                return r.status, r.headers, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: one retry on a new one.
                self.close()
                if attempt:
                    raise

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def expect(what, status, body, ok=(200, 201, 202)):
    if status not in ok:
        raise BenchError(f"{what}: HTTP {status}, body: {body[:2000].decode('utf-8', 'replace')}")


def ecr_request(base, target, payload):
    """A signed ECR JSON request (method, path, body, headers). Signing happens here, before
    any timer starts."""
    body = json.dumps(payload).encode()
    req = AWSRequest(method="POST", url=base + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": ECR_TARGET + target})
    SigV4Auth(CREDS, "ecr", "us-east-1").add_auth(req)
    return "POST", "/", body, dict(req.headers.items())


def ecr_call(conn, base, target, payload):
    method, path, body, headers = ecr_request(base, target, payload)
    status, _, data = conn.call(method, path, body, headers)
    expect(f"{target} {json.dumps(payload)[:300]}", status, data, ok=(200,))
    return json.loads(data)


# ---------------------------------------------------------------- servers


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def master_key_file(data):
    """One master key for every node of the run (they share the metadata and the storage)."""
    path = os.path.join(os.path.dirname(os.path.abspath(data)), "master.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"ef" * 32 + b"\n")
        os.close(fd)
    return path


def start_berth(binary, data, extra_env, log_path):
    env = dict(os.environ, BERTH_ACCOUNT_ID=ACCOUNT, BERTH_ROOT_ACCESS_KEY_ID=AKID,
               BERTH_ROOT_SECRET_ACCESS_KEY=SECRET, BERTH_CREATE_ON_PUSH="true", BERTH_LOG="warn",
               BERTH_SERVER_KEY=SERVER_KEY, BERTH_MASTER_KEY_FILE=master_key_file(data), **extra_env)
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                         stdout=subprocess.PIPE, stderr=open(log_path, "w"), env=env, text=True)
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
    raise BenchError(f"{binary} did not start; see {log_path}:\n{open(log_path).read()[-2000:]}")


def berth_auth(url):
    ecr = boto3.client("ecr", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    return "Basic " + ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]


def start_dist(binary, work):
    """Distribution as bench/run.sh configures it: filesystem, no auth, access log off."""
    port = free_port()
    data = os.path.join(work, "dist-data")
    os.makedirs(data, exist_ok=True)
    cfg = os.path.join(work, "dist.yml")
    with open(cfg, "w") as f:
        f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
""")
    log_path = os.path.join(work, "dist.log")
    p = subprocess.Popen([binary, "serve", cfg], stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if Conn(url).call("GET", "/v2/")[0] == 200:
                return p, url
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    raise BenchError(f"docker-registry did not start; see {log_path}")


def rss_kib(pid):
    """(VmRSS, VmHWM) of a process in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


# ---------------------------------------------------------------- the image set


class Images:
    """The content pushed: one config and one layer blob, and manifest #i differing by an
    annotation. Keeps which tags and digests exist so that requests pick existing ones."""

    def __init__(self):
        self.config = json.dumps({"architecture": "amd64", "os": "linux",
                                  "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        self.layer = random.Random(16).randbytes(1024)
        self.cfg_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                         "digest": sha256(self.config), "size": len(self.config)}
        self.layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": sha256(self.layer), "size": len(self.layer)}
        self.tagged = []    # [(tag, digest)] pushed by tag
        self.untagged = []  # [digest] pushed by digest
        self.lock = threading.Lock()

    def manifest(self, note):
        body = json.dumps({"schemaVersion": 2, "mediaType": MT, "config": self.cfg_desc,
                           "layers": [self.layer_desc], "annotations": {"bench.note": note}},
                          separators=(",", ":")).encode()
        return body, sha256(body)

    @staticmethod
    def tag(i):
        # Commit-like tags: lexical order is unrelated to push order, as with CI tags.
        return "c" + hashlib.sha1(str(i).encode()).hexdigest()[:11]

    def count(self):
        return len(self.tagged) + len(self.untagged)


def push_blobs(conn, repo, images):
    """Upload the config and the layer: POST, then PUT <Location>?digest= (both servers take it)."""
    for data in (images.config, images.layer):
        status, h, body = conn.call("POST", f"/v2/{repo}/blobs/uploads/")
        expect(f"POST /v2/{repo}/blobs/uploads/", status, body, ok=(202,))
        loc = urllib.parse.urlparse(h["Location"])
        q = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(sha256(data))
        status, _, body = conn.call("PUT", f"{loc.path}?{q}", data, {"Content-Type": "application/octet-stream"})
        expect(f"PUT blob {sha256(data)} into {repo}", status, body, ok=(201,))


def put_manifest(conn, repo, ref, body, digest):
    status, h, data = conn.call("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": MT})
    expect(f"PUT /v2/{repo}/manifests/{ref}", status, data, ok=(201,))
    if h.get("Docker-Content-Digest") not in (None, digest):
        raise BenchError(f"PUT /v2/{repo}/manifests/{ref}: Docker-Content-Digest "
                         f"{h.get('Docker-Content-Digest')}, expected {digest}")


def parallel(n_items, threads, base, auth, work, label):
    """Run work(conn, k) for k in range(n_items) on `threads` threads, each with its own
    keep-alive connection; prints progress; the first error stops everything and is raised.
    Returns the seconds taken."""
    counter, done, errors, stop = itertools.count(), [0], [], threading.Event()
    lock = threading.Lock()

    def worker():
        conn = Conn(base, auth)
        try:
            while not stop.is_set():
                k = next(counter)
                if k >= n_items:
                    return
                work(conn, k)
                with lock:
                    done[0] += 1
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            stop.set()
        finally:
            conn.close()

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(threads, n_items)))]
    for t in ts:
        t.start()
    last = t0
    for t in ts:
        while t.is_alive():
            t.join(0.5)
            if time.perf_counter() - last >= 10:
                last = time.perf_counter()
                el = last - t0
                log(f"{label}: {done[0]}/{n_items} in {el:.0f} s ({done[0] / el:.0f}/s)")
    if errors:
        e = errors[0]
        raise e if isinstance(e, BenchError) else BenchError(f"{label}: {type(e).__name__}: {e}")
    return time.perf_counter() - t0


def seed_images(base, auth, repo, images, target, threads, label, all_tagged=False):
    """Push manifests into `repo` until it holds `target` images; every tenth by digest
    (untagged) unless all_tagged. Returns (pushed, seconds)."""
    start = images.count()
    n = target - start
    if n <= 0:
        return 0, 0.0

    def work(conn, k):
        i = start + k
        body, digest = images.manifest(f"seed-{i}")
        if not all_tagged and i % 10 == 9:
            put_manifest(conn, repo, digest, body, digest)
            with images.lock:
                images.untagged.append(digest)
        else:
            tag = Images.tag(i)
            put_manifest(conn, repo, tag, body, digest)
            with images.lock:
                images.tagged.append((tag, digest))

    secs = parallel(n, threads, base, auth, work, f"{label}: seeding {repo} to {target} images")
    return n, secs


def seed_repos(base, auth, images, repos, target, threads, label):
    """Create repositories until the account holds `target` (bench/images counts): each gets the
    two blobs by cross-repository mount and one manifest by tag. Returns (created, seconds)."""
    start = len(repos) + 1
    n = target - start
    if n <= 0:
        return 0, 0.0
    body, digest = images.manifest("repo")
    names = [f"fleet/r{start + k:06d}" for k in range(n)]

    def work(conn, k):
        name = names[k]
        for d in (images.cfg_desc["digest"], images.layer_desc["digest"]):
            status, _, data = conn.call("POST", f"/v2/{name}/blobs/uploads/?mount={d}&from={IMAGES_REPO}")
            expect(f"mount {d} into {name}", status, data, ok=(201,))
        put_manifest(conn, name, "v1", body, digest)

    secs = parallel(n, threads, base, auth, work, f"{label}: creating repositories to {target}")
    repos.extend(names)
    return n, secs


# ---------------------------------------------------------------- measuring


def pct(sorted_ms, p):
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]


def get_latencies(base, auth, paths, stop):
    """GET the manifests at `paths` (in turn) back to back on one connection until `stop` is
    set: the latencies in ms."""
    conn = Conn(base, auth)
    out = []
    i = 0
    while not stop.is_set():
        path = paths[i % len(paths)]
        t0 = time.perf_counter()
        status, _, body = conn.call("GET", path, headers={"Accept": MT})
        out.append((time.perf_counter() - t0) * 1000)
        expect(f"GET {path}", status, body, ok=(200,))
        i += 1
    return out


def with_get_load(base, auth, paths, run):
    """Latencies of manifest GETs (see `get_latencies`) while `run()` runs: (its result, them)."""
    stop, lat = threading.Event(), []
    t = threading.Thread(target=lambda: lat.extend(get_latencies(base, auth, paths, stop)))
    t.start()
    try:
        res = run()
    finally:
        stop.set()
        t.join()
    return res, lat


def lat_summary(lat):
    s = sorted(lat)
    return {"requests": len(s), "p50_ms": pct(s, 50), "p99_ms": pct(s, 99)}


def one_call(conn, name, make, check, i):
    """One request; returns its time in ms. make(i) -> ((method, path, body, headers), want) is
    built (and signed) before the timer starts; check(status, headers, body, want) raises on an
    answer that is not what was asked for."""
    (method, path, body, headers), want = make(i)
    t0 = time.perf_counter()
    status, h, data = conn.call(method, path, body, headers)
    dt = time.perf_counter() - t0
    what = f"{name}: {method} {path} {(body or b'')[:300]!r}"
    expect(what, status, data, ok=(200, 201, 202))
    try:
        check(status, h, data, want)
    except Exception as e:  # noqa: BLE001 - any wrong answer stops the run
        raise BenchError(f"{what}: unexpected answer ({type(e).__name__}: {e}): "
                         f"{data[:2000].decode('utf-8', 'replace')}") from e
    return dt * 1000


def summary(times):
    """p50, p99 and the rest; `samples` keeps every time in the order measured (ms)."""
    s = sorted(times)
    return {"p50": pct(s, 50), "p99": pct(s, 99), "mean": sum(s) / len(s), "max": s[-1], "n": len(s),
            "samples": [round(t, 3) for t in times]}


def measure(conn, ops, samples, max_seconds, pids, on_result):
    """Time each of ops = [(name, make, check)], one request at a time on `conn`, in
    the order given (the pushes come last, so that no read is measured right after a push). Each
    operation in a block of its own, after the servers (pids() lists them) went idle: the
    aftermath of a previous, costlier operation (memory being freed, a background write) must
    not land on the next one's requests. WARMUP untimed requests first; an operation stops
    early, with at least MIN_SAMPLES, once its requests took max_seconds. Returns
    {name: summary}."""
    out = {}
    for name, make, check in ops:
        settle(pids())
        for i in range(WARMUP):
            one_call(conn, name, make, check, i)
        times = []
        for i in range(samples):
            times.append(one_call(conn, name, make, check, WARMUP + i))
            if len(times) >= MIN_SAMPLES and sum(times) > max_seconds * 1000:
                break
        out[name] = summary(times)
        on_result(name, out[name])
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def server_pids(proc, pg_dir):
    """Berth's pid, and PostgreSQL's (the postmaster and its children) when it runs."""
    pids = [proc.pid]
    if pg_dir:
        try:
            with open(os.path.join(pg_dir, "data", "postmaster.pid")) as f:
                pm = f.readline().strip()
        except OSError:
            return pids
        pids.append(int(pm))
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[1] == pm:
                            pids.append(int(d))
                except OSError:
                    pass
    return pids


def settle(pids, limit=120):
    """Wait (at most `limit` s) until the servers are idle (under 30 ms of CPU per 0.5 s): the
    audit records and events of the seeding are written before anything is measured. Returns
    the seconds waited."""
    t0 = time.monotonic()
    last = cpu_ticks(pids)
    while time.monotonic() - t0 < limit:
        time.sleep(0.5)
        now = cpu_ticks(pids)
        if now - last < 3:
            break
        last = now
    return time.monotonic() - t0


def must(cond, what):
    if not cond:
        raise BenchError(what)


def fixed(req):
    """make() for a request that is the same every time."""
    return lambda i: (req, None)


def no_check(status, headers, body, want):
    pass


def image_ops(base, images, counter, rng):
    """The operations on the one repository: [(name, make, check)]. Tags and digests are drawn
    uniformly over every image pushed so far; `counter` numbers the measured pushes."""
    repo = IMAGES_REPO
    tagged = list(images.tagged)
    digests = [d for _, d in tagged] + list(images.untagged)
    total, n_untagged = len(digests), len(images.untagged)
    full = min(100, total)

    def ecr(target, payload):
        return ecr_request(base, target, payload)

    def page_payload(tag_status=None, token=None):
        p = {"repositoryName": repo, "maxResults": 100}
        if tag_status:
            p["filter"] = {"tagStatus": tag_status}
        if token:
            p["nextToken"] = token
        return p

    # make() functions: (request, what the answer must hold)
    def describe_tag(i):
        tag, digest = rng.choice(tagged)
        return ecr("DescribeImages", {"repositoryName": repo, "imageIds": [{"imageTag": tag}]}), (tag, digest)

    def batch_get(i):
        tag, digest = rng.choice(tagged)
        return ecr("BatchGetImage", {"repositoryName": repo, "imageIds": [{"imageTag": tag}]}), (tag, digest)

    def describe_digest(i):
        d = rng.choice(digests)
        return ecr("DescribeImages", {"repositoryName": repo, "imageIds": [{"imageDigest": d}]}), d

    def ecr_push(i):
        k = next(counter)
        body, digest = images.manifest(f"ecr-put-{k}")
        return ecr("PutImage", {"repositoryName": repo, "imageManifest": body.decode(),
                                "imageManifestMediaType": MT, "imageTag": f"ecr-put-{k}"}), (f"ecr-put-{k}", digest)

    def oci_push(i):
        k = next(counter)
        body, digest = images.manifest(f"oci-put-{k}")
        return ("PUT", f"/v2/{repo}/manifests/oci-put-{k}", body, {"Content-Type": MT}), (f"oci-put-{k}", digest)

    def manifest_get(i):
        tag, digest = rng.choice(tagged)
        return ("GET", f"/v2/{repo}/manifests/{tag}", None, {"Accept": MT}), digest

    # check() functions
    def j(data):
        return json.loads(data)

    def one_detail(s, h, d, want):
        det = j(d)["imageDetails"]
        tag, digest = want if isinstance(want, tuple) else (None, want)
        must(len(det) == 1 and det[0]["imageDigest"] == digest, f"expected one image {digest}")
        must(tag is None or tag in det[0].get("imageTags", []), f"image {digest} lacks tag {tag}")

    def one_image(s, h, d, want):
        r = j(d)
        must(not r.get("failures") and len(r["images"]) == 1, "expected one image, no failures")
        must(r["images"][0]["imageId"]["imageDigest"] == want[1], f"expected {want[1]}")

    def page_check(key, tag_status=None):
        expected = min(100, n_untagged) if tag_status == "UNTAGGED" else full

        def check(s, h, d, want):
            items = j(d)[key]
            must(len(items) == expected, f"{len(items)} items on the first page, expected {expected}")
            if key == "imageIds":
                has_tag = [("imageTag" in x) for x in items]
            else:
                has_tag = [bool(x.get("imageTags")) for x in items]
            must(tag_status != "TAGGED" or all(has_tag), "an untagged image on a TAGGED page")
            must(tag_status != "UNTAGGED" or not any(has_tag), "a tagged image on an UNTAGGED page")
        return check

    def layer_ok(s, h, d, want):
        r = j(d)
        must(not r.get("failures") and r["layers"][0]["layerAvailability"] == "AVAILABLE", "layer not AVAILABLE")

    def put_image_ok(s, h, d, want):
        img = j(d)["image"]["imageId"]
        must(img.get("imageTag") == want[0] and img["imageDigest"] == want[1], f"expected {want}")
        images.tagged.append(want)

    def oci_put_ok(s, h, d, want):
        must(s == 201 and h.get("Docker-Content-Digest") == want[1], f"status {s}, digest {h.get('Docker-Content-Digest')}")
        images.tagged.append(want)

    def tags_ok(s, h, d, want):
        got = len(j(d)["tags"])
        must(got == min(100, len(tagged)), f"{got} tags, expected {min(100, len(tagged))}")

    def manifest_ok(s, h, d, want):
        must(sha256(d) == want, f"manifest digest {sha256(d)}, expected {want}")

    # The second page of ListImages: the nextToken of the first page, fetched once.
    c = Conn(base)
    try:
        first = ecr_call(c, base, "ListImages", page_payload())
    finally:
        c.close()
    must("nextToken" in first, f"ListImages first page of {total} images has no nextToken: {first}")
    first_items = {json.dumps(x, sort_keys=True) for x in first["imageIds"]}

    def second_page_ok(s, h, d, want):
        items = j(d)["imageIds"]
        must(len(items) == min(100, total - 100), f"{len(items)} items on the second page")
        must(not ({json.dumps(x, sort_keys=True) for x in items} & first_items), "the second page repeats the first")

    def signed_fixed(target, payload):
        # signed once per request (the signature carries the time), outside the timer
        return lambda i: (ecr(target, payload), None)

    return [
        ("GET /v2/ (floor: client, HTTP, token check)", fixed(("GET", "/v2/", None, {})), no_check),
        ("DescribeImages, one tag", describe_tag, one_detail),
        ("BatchGetImage, one tag", batch_get, one_image),
        ("DescribeImages, one digest", describe_digest, one_detail),
        ("ListImages, first page (100)", signed_fixed("ListImages", page_payload()), page_check("imageIds")),
        ("ListImages, first page, TAGGED", signed_fixed("ListImages", page_payload("TAGGED")),
         page_check("imageIds", "TAGGED")),
        ("ListImages, first page, UNTAGGED", signed_fixed("ListImages", page_payload("UNTAGGED")),
         page_check("imageIds", "UNTAGGED")),
        ("ListImages, second page", lambda i: (ecr("ListImages", page_payload(token=first["nextToken"])), None),
         second_page_ok),
        ("DescribeImages, first page (100)", signed_fixed("DescribeImages", page_payload()), page_check("imageDetails")),
        ("DescribeImages, first page, UNTAGGED", signed_fixed("DescribeImages", page_payload("UNTAGGED")),
         page_check("imageDetails", "UNTAGGED")),
        ("BatchCheckLayerAvailability, one layer",
         signed_fixed("BatchCheckLayerAvailability", {"repositoryName": repo, "layerDigests": [images.layer_desc["digest"]]}),
         layer_ok),
        ("GET tags/list?n=100", fixed(("GET", f"/v2/{repo}/tags/list?n=100", None, {})), tags_ok),
        ("GET manifest by tag (data plane)", manifest_get, manifest_ok),
        ("PutImage by tag (ECR push)", ecr_push, put_image_ok),
        ("PUT manifest by tag (OCI push)", oci_push, oci_put_ok),
    ]


def repo_ops(base, images, repos, counter, rng):
    """The account-level operations: [(name, make, check)]."""
    page = min(100, len(repos) + 1)

    def j(data):
        return json.loads(data)

    def describe_one(i):
        name = rng.choice(repos)
        return ecr_request(base, "DescribeRepositories", {"repositoryNames": [name]}), name

    def push(i):
        k = next(counter)
        body, digest = images.manifest(f"repo-put-{k}")
        return ("PUT", f"/v2/{rng.choice(repos)}/manifests/p{k}", body, {"Content-Type": MT}), digest

    def page_ok(s, h, d, want):
        got = len(j(d)["repositories"])
        must(got == page, f"{got} repositories on the first page, expected {page}")

    def page10_ok(s, h, d, want):
        got = len(j(d)["repositories"])
        must(got == 10, f"{got} repositories on the first page, expected 10")

    def one_ok(s, h, d, want):
        r = j(d)["repositories"]
        must(len(r) == 1 and r[0]["repositoryName"] == want, f"expected {want}")

    def push_ok(s, h, d, want):
        must(s == 201 and h.get("Docker-Content-Digest") == want, f"status {s}, digest {h.get('Docker-Content-Digest')}")

    return [
        ("DescribeRepositories, first page (100)",
         lambda i: (ecr_request(base, "DescribeRepositories", {"maxResults": 100}), None), page_ok),
        ("DescribeRepositories, one name", describe_one, one_ok),
        ("GET _catalog?n=100", fixed(("GET", "/v2/_catalog?n=100", None, {})), page_ok),
        # Pages of the same length at every size (the 100-item pages hold only 10 at 10
        # repositories, so their ratio also counts the extra items).
        ("DescribeRepositories, first page (10)",
         lambda i: (ecr_request(base, "DescribeRepositories", {"maxResults": 10}), None), page10_ok),
        ("GET _catalog?n=10", fixed(("GET", "/v2/_catalog?n=10", None, {})), page10_ok),
        ("PUT manifest into one repository (OCI push)", push, push_ok),
    ]


# ---------------------------------------------------------------- one server's run


def seeded(res, label, what, size, n, secs):
    if n:
        res["seeding"].append({"what": what, "to": size, "pushed": n, "seconds": secs, "per_s": n / secs})
        log(f"{label}: {n} {what} in {secs:.1f} s ({n / secs:.0f}/s)")


def pg_analyzed(url):
    """{table: time of its last ANALYZE (auto or manual)} of the PostgreSQL database."""
    out = subprocess.run(["psql", url, "-Atc", "SELECT relname, greatest(last_autoanalyze, last_analyze) "
                          "FROM pg_stat_user_tables"], capture_output=True, text=True).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def measure_step(res, kind, size, label, conn, ops, args, pids, pg_url=None, **extra):
    """Wait until the servers (pids() lists them) are idle, then measure `ops` at this size into
    res[kind][size]. On PostgreSQL, notes the tables that autovacuum analyzed while the step was
    measured: until then the planner worked from statistics of before the seeding."""
    if pg_url and args.pg_analyze:
        subprocess.run(["psql", pg_url, "-qc", "ANALYZE"], check=True, capture_output=True)
    before = pg_analyzed(pg_url) if pg_url else {}
    waited = settle(pids())
    log(f"{label} @ {size} {kind}: servers idle after {waited:.1f} s; measuring")
    res[kind][size] = dict(extra, settle_s=round(waited, 1),
                           ops=measure(conn, ops, args.samples, args.max_op_seconds, pids, lambda name, r: log(
                               f"{label} @ {size} {kind}: {name}: p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms "
                               f"(n={r['n']})")))
    res["rss_kib"][f"{size} {'repositories' if kind == 'repos' else kind}"] = rss_kib(pids()[0])
    if pg_url:
        after = pg_analyzed(pg_url)
        changed = sorted(t for t, at in after.items() if at and at != before.get(t))
        res[kind][size]["analyzed_during"] = changed
        if changed:
            log(f"{label} @ {size} {kind}: autovacuum analyzed {', '.join(changed)} during the measurement")


def run_berth(args, backend, work):
    """Start Berth on `backend`, fill and measure; returns the raw results."""
    res = {"backend": backend, "images": {}, "repos": {}, "seeding": [], "rss_kib": {}}
    d = os.path.join(work, backend)
    os.makedirs(d, exist_ok=True)
    env, pg_dir = {}, None
    if backend == "postgres":
        pg_dir = os.path.join(d, "pg")
        url = subprocess.run(["bash", os.path.join(REPO, "scripts/postgres.sh"), "start", pg_dir],
                             check=True, capture_output=True, text=True).stdout.strip()
        env["BERTH_METADATA"] = url
        res["postgres"] = subprocess.run(["psql", url, "-Atc", "SHOW server_version"], capture_output=True,
                                         text=True).stdout.strip()
    proc = None
    try:
        proc, base = start_berth(args.bin, os.path.join(d, "data"), env, os.path.join(d, "berth.log"))
        pids = lambda: server_pids(proc, pg_dir)  # noqa: E731 - PostgreSQL forks a backend per connection
        auth = berth_auth(base)
        label = f"berth/{backend}"
        log(f"{label}: {base}")
        conn = Conn(base, auth)
        images, rng, counter, repos = Images(), random.Random(1600), itertools.count(), []
        push_blobs(conn, IMAGES_REPO, images)
        for size in args.sizes:
            seeded(res, label, "images", size, *seed_images(base, auth, IMAGES_REPO, images, size, args.threads, label))
            measure_step(res, "images", size, label, conn, image_ops(base, images, counter, rng), args, pids,
                         env.get("BERTH_METADATA"), images_at_start=images.count())
        for size in args.repo_sizes:
            seeded(res, label, "repositories", size, *seed_repos(base, auth, images, repos, size, args.threads, label))
            measure_step(res, "repos", size, label, conn, repo_ops(base, images, repos or [IMAGES_REPO], counter, rng),
                         args, pids, env.get("BERTH_METADATA"), repos_at_start=len(repos) + 1)
        conn.close()
        res["data_dir_mib"] = dir_mib(os.path.join(d, "data"))
        if pg_dir:
            size = subprocess.run(["psql", env["BERTH_METADATA"], "-Atc", "SELECT pg_database_size(current_database())"],
                                  capture_output=True, text=True).stdout.strip()
            res["postgres_db_mib"] = round(int(size) / 2**20, 1) if size.isdigit() else None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if pg_dir:
            subprocess.run(["bash", os.path.join(REPO, "scripts/postgres.sh"), "stop", pg_dir], capture_output=True)
    return res


def run_dist(args, work):
    """Distribution filled the same way; tags/list?n=100 and _catalog?n=100 at each size."""
    res = {"images": {}, "repos": {}, "seeding": [], "rss_kib": {}}
    proc, base = start_dist(args.dist_bin, work)
    label = "dist"
    try:
        conn = Conn(base)
        images, repos = Images(), []
        push_blobs(conn, IMAGES_REPO, images)
        for size in args.sizes:
            seeded(res, label, "images", size,
                   *seed_images(base, None, IMAGES_REPO, images, size, args.threads, label, all_tagged=True))
            returned = []

            def tags_ok(s, h, d, _, want=min(100, len(images.tagged)), returned=returned):
                # Distribution 2.8 ignores n on tags/list and returns every tag: recorded, not an error.
                got = len(json.loads(d)["tags"])
                must(got >= want, f"{got} tags, expected at least {want}")
                returned.append(got)

            op = ("GET tags/list?n=100", fixed(("GET", f"/v2/{IMAGES_REPO}/tags/list?n=100", None, {})), tags_ok)
            measure_step(res, "images", size, label, conn, [op], args, lambda: [proc.pid])
            res["images"][size]["ops"][op[0]]["tags_returned"] = max(returned)
        for size in args.repo_sizes:
            seeded(res, label, "repositories", size, *seed_repos(base, None, images, repos, size, args.threads, label))

            def cat_ok(s, h, d, _, want=min(100, len(repos) + 1)):
                got = len(json.loads(d)["repositories"])
                must(got == want, f"{got} repositories, expected {want}")

            op = ("GET _catalog?n=100", fixed(("GET", "/v2/_catalog?n=100", None, {})), cat_ok)
            measure_step(res, "repos", size, label, conn, [op], args, lambda: [proc.pid])
        conn.close()
        res["data_dir_mib"] = dir_mib(os.path.join(work, "dist-data"))
    finally:
        proc.kill()
        proc.wait()
    return res


def dir_mib(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return round(total / 2**20, 1)


# ---------------------------------------------------------------- report


def fmt(x):
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def size_label(n):
    return f"{n:,}"


def table(section, sizes, unit, samples):
    """Markdown table: operation x size, p50 / p99 ms, ratio largest/smallest."""
    names = list(section[sizes[0]]["ops"])
    head = "| operation | " + " | ".join(f"{size_label(s)} {unit}: p50 / p99 ms" for s in sizes)
    head += f" | ratio p50 {size_label(sizes[-1])}/{size_label(sizes[0])} | ratio p99 | p50 within 2x at every size |"
    lines = [head, "|---" * (len(sizes) + 4) + "|"]
    for name in names:
        cells = []
        for s in sizes:
            r = section[s]["ops"][name]
            cell = f"{fmt(r['p50'])} / {fmt(r['p99'])}"
            if r["n"] < samples:
                cell += f" (n={r['n']})"
            cells.append(cell)
        a, b = section[sizes[0]]["ops"][name], section[sizes[-1]]["ops"][name]
        r50, r99 = b["p50"] / a["p50"], b["p99"] / a["p99"]
        worst = max(section[s]["ops"][name]["p50"] / a["p50"] for s in sizes)
        if len(sizes) == 1:
            lines.append(f"| {name} | " + " | ".join(cells) + " | – | – | – |")
            continue
        if name.startswith("GET /v2/ "):
            verdict = "(floor)"
        else:
            verdict = "yes" if worst <= 2 else f"**no** ({worst:.1f}x)" if worst > r50 * 1.05 else "**no**"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r50:.2f}x | {r99:.2f}x | {verdict} |")
    return "\n".join(lines)


def report(args, results, dist, meta):
    out = [f"# Scale: cost per request vs registry size ({meta['date']})", ""]
    out.append(f"Berth `{meta['berth_version']}` ({args.bin}, built {meta['bin_mtime']}, sha256 {meta['bin_sha']}), "
               f"repository at {meta['git']}; {meta['nproc']} CPUs, load average at start {' '.join(meta['load_start'])}, "
               f"at end {' '.join(meta['load_end'])}. {args.samples} samples per operation after {WARMUP} warm-ups, one "
               f"request at a time on one keep-alive connection; seeding with {args.threads} threads.")
    out.append("")
    out.append(f"```\n{meta['command']}\n```")
    for backend, res in results.items():
        sizes, rsizes = sorted(res["images"]), sorted(res["repos"])
        db = f" (PostgreSQL {res['postgres']})" if res.get("postgres") else ""
        out += ["", f"## Berth on {backend}{db}", ""]
        if sizes:
            out += [f"One repository of N images ({IMAGES_REPO}; one in ten untagged); latency in ms.", ""]
            out.append(table(res["images"], sizes, "images", args.samples))
        if rsizes:
            out += ["", "N repositories in the account (each one tiny image); latency in ms.", ""]
            out.append(table(res["repos"], rsizes, "repositories", args.samples))
        out += ["", "Seeding (images: manifest PUTs; repositories: 2 mounts + 1 manifest PUT each):", ""]
        for s in res["seeding"]:
            out.append(f"- {s['what']} to {size_label(s['to'])}: {s['pushed']:,} in {s['seconds']:.1f} s = "
                       f"**{s['per_s']:.0f}/s**")
        rss = ", ".join(f"{k}: {v[0] / 1024:.0f} MiB (peak {v[1] / 1024:.0f})" for k, v in res["rss_kib"].items())
        out.append(f"- server RSS after each step: {rss}; data directory at the end {res.get('data_dir_mib')} MiB"
                   + (f", PostgreSQL database {res['postgres_db_mib']} MiB" if res.get("postgres_db_mib") else ""))
        for k in ("images", "repos"):
            for sz in sorted(res[k]):
                if res[k][sz].get("analyzed_during"):
                    out.append(f"- **{size_label(sz)} {'repositories' if k == 'repos' else k}: autovacuum analyzed "
                               f"{', '.join(res[k][sz]['analyzed_during'])} while this step was measured**: the "
                               "operations before it ran on plans from statistics of before the seeding "
                               "(see the samples in the JSON; --pg-analyze measures with fresh statistics)")
        if backend == "postgres":
            out.append(f"- statistics: {'ANALYZE after each seeding step (--pg-analyze)' if args.pg_analyze else 'left to autovacuum'}")
        idle = ", ".join(f"{size_label(s)} {k}: {res[k][s]['settle_s']} s" for k in ("images", "repos") for s in sorted(res[k]))
        out.append(f"- waited for the servers to go idle (audit records, events of the seeding) before measuring: {idle}")
    if dist:
        out += ["", f"## Side by side: Distribution ({meta['dist_version']}, filesystem, no auth)", ""]
        out.append("p50 / p99 ms; Berth/Distribution is the ratio of p50s (below 1: Berth is faster).")
        out.append("")
        backends = list(results)
        head = "| operation | size | Distribution | " + " | ".join(f"Berth {b}" for b in backends)
        head += " | " + " | ".join(f"{b}/Distribution" for b in backends) + " |"
        out += [head, "|---" * (3 + 2 * len(backends)) + "|"]
        for kind, op, berth_op, unit in (("images", "GET tags/list?n=100", "GET tags/list?n=100", "images"),
                                         ("repos", "GET _catalog?n=100", "GET _catalog?n=100", "repositories")):
            for s in sorted(dist[kind]):
                dr = dist[kind][s]["ops"][op]
                note = f" ({dr['tags_returned']:,} tags returned)" if dr.get("tags_returned", 100) > 100 else ""
                row = f"| {op} | {size_label(s)} {unit} | {fmt(dr['p50'])} / {fmt(dr['p99'])}{note} |"
                ratios = []
                for b in backends:
                    br = results[b][kind].get(s, {}).get("ops", {}).get(berth_op)
                    row += f" {fmt(br['p50'])} / {fmt(br['p99'])} |" if br else " – |"
                    ratios.append(f" {br['p50'] / dr['p50']:.2f}x |" if br else " – |")
                out.append(row + "".join(ratios))
            sz = sorted(dist[kind])
            if len(sz) > 1:
                a, b = dist[kind][sz[0]]["ops"][op], dist[kind][sz[-1]]["ops"][op]
                out.append(f"| {op}: Distribution ratio {size_label(sz[-1])}/{size_label(sz[0])} | | "
                           f"{b['p50'] / a['p50']:.2f}x / {b['p99'] / a['p99']:.2f}x |" + " |" * (2 * len(backends)))
        out.append("")
        for s in dist["seeding"]:
            out.append(f"- Distribution seeding, {s['what']} to {size_label(s['to'])}: {s['pushed']:,} in "
                       f"{s['seconds']:.1f} s = {s['per_s']:.0f}/s")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description="Issue 16 scale benchmark (see the docstring).")
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/berth"))
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument("--sizes", default="1000,10000,100000", help="images in the one repository, ascending")
    ap.add_argument("--repo-sizes", default="10,10000", help="repositories in the account, ascending")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=8, help="seeding threads")
    ap.add_argument("--max-op-seconds", type=float, default=120.0,
                    help=f"stop one operation's samples after this long (at least {MIN_SAMPLES} samples)")
    ap.add_argument("--pg-analyze", action="store_true",
                    help="PostgreSQL: ANALYZE after each seeding step (plans from fresh statistics, as once "
                         "autovacuum caught up); default: leave it to autovacuum, and report when it ran")
    ap.add_argument("--no-dist", action="store_true", help="skip Distribution")
    ap.add_argument("--dist-bin", default="/usr/bin/docker-registry")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (data, logs)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench/out"))
    args = ap.parse_args()
    try:
        args.sizes = [int(x) for x in args.sizes.split(",") if x]
        args.repo_sizes = [int(x) for x in args.repo_sizes.split(",") if x]
    except ValueError:
        sys.exit("--sizes and --repo-sizes are comma-separated integers")
    if args.sizes != sorted(set(args.sizes)) or args.repo_sizes != sorted(set(args.repo_sizes)):
        sys.exit("--sizes and --repo-sizes must be ascending, without repeats")
    if args.sizes and args.sizes[0] < 200:
        sys.exit("--sizes: at least 200 images (the listing checks want two full pages)")
    if args.repo_sizes and args.repo_sizes[0] < 2:
        sys.exit("--repo-sizes: at least 2 repositories")
    if args.samples < 1 or args.threads < 1:
        sys.exit("--samples and --threads must be positive")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"no berth binary at {args.bin} (cargo build --release -p berth, or --bin)")
    dist_on = not args.no_dist
    if dist_on and not os.access(args.dist_bin, os.X_OK):
        sys.exit(f"no Distribution at {args.dist_bin} (apt-get install docker-registry, or --no-dist)")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]

    git = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %cd", "--date=format:%Y-%m-%d %H:%M"],
                         capture_output=True, text=True).stdout.strip() or "?"
    if subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                      capture_output=True, text=True).stdout.strip():
        git += " (work tree modified)"
    with open(args.bin, "rb") as f:
        bin_sha = hashlib.sha256(f.read()).hexdigest()[:12]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python3 bench/scale.py " + " ".join(sys.argv[1:]),
        "berth_version": subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip(),
        "bin_mtime": time.strftime("%Y-%m-%d %H:%M", time.localtime(os.stat(args.bin).st_mtime)),
        "bin_sha": bin_sha, "git": git, "nproc": os.cpu_count(),
        "load_start": open("/proc/loadavg").read().split()[:3],
        "dist_version": "", "args": {k: v for k, v in vars(args).items()},
    }
    if dist_on:
        meta["dist_version"] = subprocess.run([args.dist_bin, "--version"], capture_output=True,
                                              text=True).stdout.strip() or "docker-registry"

    work = tempfile.mkdtemp(prefix="berth-scale-")
    os.chmod(work, 0o755)  # scripts/postgres.sh runs the server as the postgres user
    results, dist = {}, None
    try:
        for b in backends:
            results[b] = run_berth(args, b, work)
        if dist_on:
            dist = run_dist(args, work)
    except BenchError as e:
        print(f"\nbench/scale.py: FAILED: {e}\n(scratch directory {work}"
              f"{' kept' if args.keep else ', removed; --keep keeps it'})", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        sys.exit(1)
    meta["load_end"] = open("/proc/loadavg").read().split()[:3]
    text = report(args, results, dist, meta)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md, js = os.path.join(args.out, f"scale-{stamp}.md"), os.path.join(args.out, f"scale-{stamp}.json")
    with open(md, "w") as f:
        f.write(text)
    with open(js, "w") as f:
        json.dump({"meta": meta, "berth": results, "dist": dist}, f, indent=1, default=str)
    print(text)
    log(f"report: {md}; raw numbers: {js}")
    if args.keep:
        log(f"scratch directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
