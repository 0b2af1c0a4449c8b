#!/usr/bin/env python3
"""What the event log, the audit trail, metrics and a webhook cost (loopback only, bounded).

Servers, side by side in one run, runs interleaved over --rounds rounds:
  - `berth`: this build (BERTH_BIN), every request audited and measured, with one webhook
    subscription whose receiver (a thread of this script) answers 200 and notes when each event
    arrived;
  - `berth-noreads`: the same build with `audit_data_plane_reads = false` (pulls not audited),
    without a webhook;
  - `baseline`: a Berth build from before the event log (BERTH_BASELINE_BIN, e.g. 05f8d76), when
    given: the same registry without events, audit, metrics or request ids;
  - `dist`: CNCF Distribution (DIST_BIN, default docker-registry), filesystem, no auth, access log
    off, when installed.

Before each measurement the script waits until every server is idle (an audit backlog written
after a GET run must not slow the next server's run; the time it takes is reported).

Measured:
  - manifest GET by tag, wrk -t2 -c16 for --seconds (req/s, p50, p99);
  - small pushes: --pushes images (a unique small config blob, POST then PUT ?digest=, then a
    manifest PUT under a unique tag) one after another on one keep-alive connection: pushes/s and
    the time per push; the difference with the baseline is what the event log (one event per tag
    in the manifest's transaction), the audit records and the metrics add to a push;
  - webhook delivery lag under that load: from each push's 201 to its event's arrival at the
    receiver (p50, p99, max), and that every event arrived once.

Usage: python3 bench/events.py [--seconds N] [--rounds R] [--pushes P]
       (BERTH_BIN, BERTH_BASELINE_BIN, DIST_BIN; BENCH_WEBHOOK=0: no webhook subscription)
"""

import argparse
import hashlib
import http.client
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ecr import AKID, REPO, SECRET, lua, wrk  # noqa: E402
from load import SERVER_KEY, berth_auth, free_port, start_berth  # noqa: E402

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


class Receiver:
    """A webhook endpoint: records (event id, image tag, arrival time) of every POST."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                now = time.monotonic()
                e = json.loads(body)
                with outer.lock:
                    outer.got.append((e["id"], e["detail"].get("image-tag"), now))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def start_dist(binary, work):
    port = free_port()
    os.makedirs(f"{work}/dist-data", exist_ok=True)
    with open(f"{work}/dist.yml", "w") as f:
        f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {work}/dist-data
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
""")
    p = subprocess.Popen([binary, "serve", f"{work}/dist.yml"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/v2/")
            if c.getresponse().status == 200:
                return p, url
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    sys.exit("docker-registry did not start")


def pushes(url, auth, tags, repo="push"):
    """Push one small image per tag on one connection (blob: POST, then PUT ?digest=; then the
    manifest); returns [(tag, monotonic time of the manifest's 201)]."""
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    hdr = {"Authorization": auth} if auth else {}

    def call(method, path, body=None, ctype=None):
        h = dict(hdr, **({"Content-Type": ctype} if ctype else {}))
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        r.read()
        return r

    done = []
    for tag in tags:
        cfg = json.dumps({"t": tag}).encode()
        d = "sha256:" + hashlib.sha256(cfg).hexdigest()
        r = call("POST", f"/v2/{repo}/blobs/uploads/")
        assert r.status == 202, (r.status, tag)
        loc = urllib.parse.urlparse(r.getheader("Location"))
        q = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(d)
        r = call("PUT", f"{loc.path}?{q}", cfg, "application/octet-stream")
        assert r.status == 201, (r.status, tag)
        m = json.dumps({"schemaVersion": 2, "mediaType": ACCEPT,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d,
                                   "size": len(cfg)}, "layers": []}).encode()
        r = call("PUT", f"/v2/{repo}/manifests/{tag}", m, ACCEPT)
        assert r.status == 201, (r.status, tag)
        done.append((tag, time.monotonic()))
    c.close()
    return done


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


def settle(procs, limit=60):
    """Wait (at most `limit` s) until the servers are idle (< 30 ms CPU per 0.5 s): one
    server's background work (an audit backlog being written) must not run into the next one's
    measurement."""
    pids = [p.pid for p in procs]
    deadline = time.monotonic() + limit
    last = cpu_ticks(pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_ticks(pids)
        if now - last < 3:
            return
        last = now


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pushes", type=int, default=300)
    args = ap.parse_args()
    berth_bin = os.environ.get("BERTH_BIN", os.path.join(REPO, "target/release/berth"))
    baseline_bin = os.environ.get("BERTH_BASELINE_BIN")
    dist_bin = os.environ.get("DIST_BIN", "/usr/bin/docker-registry")
    servers = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        try:
            rx = Receiver()
            p, url = start_berth(berth_bin, f"{tmp}/berth", {"RUST_LOG": "info"})
            procs.append(p)
            env = dict(os.environ, BERTH_ACCOUNT_ID="111111111111", BERTH_ROOT_ACCESS_KEY_ID=AKID,
                       BERTH_ROOT_SECRET_ACCESS_KEY=SECRET, BERTH_SERVER_KEY=SERVER_KEY)
            hook = os.environ.get("BENCH_WEBHOOK", "1") == "1"
            if hook:
                subprocess.run([berth_bin, "admin", "create-webhook", "--url", rx.url, "--data-dir", f"{tmp}/berth"],
                               check=True, env=env, capture_output=True)
            servers["berth"] = (url, berth_auth(url))
            # The same build with data-plane reads left out of the audit trail (no webhook).
            p, url = start_berth(berth_bin, f"{tmp}/noreads", {"RUST_LOG": "info", "BERTH_AUDIT_DATA_PLANE_READS": "false"})
            procs.append(p)
            servers["berth-noreads"] = (url, berth_auth(url))
            if baseline_bin:
                p, url = start_berth(baseline_bin, f"{tmp}/baseline", {"RUST_LOG": "info"})
                procs.append(p)
                servers["baseline"] = (url, berth_auth(url))
            if os.path.exists(dist_bin):
                p, url = start_dist(dist_bin, tmp)
                procs.append(p)
                servers["dist"] = (url, None)
            for name, (url, auth) in servers.items():
                pushes(url, auth, ["v0"], "bench")
                lua(f"{tmp}/{name}.lua", "GET", dict({"Accept": ACCEPT}, **({"Authorization": auth} if auth else {})))
            gets = {n: [] for n in servers}
            push_rates = {n: [] for n in servers}
            lags = []
            for rnd in range(args.rounds):
                for name, (url, auth) in servers.items():
                    settle(procs)
                    gets[name].append(wrk(f"{url}/v2/bench/manifests/v0", f"{tmp}/{name}.lua", args.seconds))
                for name, (url, auth) in servers.items():
                    settle(procs)
                    t0 = time.monotonic()
                    done = pushes(url, auth, [f"r{rnd}-{i}" for i in range(args.pushes)])
                    push_rates[name].append(args.pushes / (time.monotonic() - t0))
                    if name == "berth" and hook:
                        deadline = time.monotonic() + 60
                        want = {t for t, _ in done}
                        while time.monotonic() < deadline:
                            with rx.lock:
                                seen = {t for _, t, _ in rx.got if t in want}
                            if seen == want:
                                break
                            time.sleep(0.05)
                        with rx.lock:
                            arrived = {t: at for _, t, at in rx.got if t in want}
                        missing = want - set(arrived)
                        if missing:
                            sys.exit(f"{len(missing)} events never arrived")
                        lags += [(arrived[t] - at) * 1000 for t, at in done]
            with rx.lock:
                ids = [i for i, _, _ in rx.got]
            dup = len(ids) - len(set(ids))
        finally:
            for p in procs:
                p.kill()

    def med(xs):
        return statistics.median(xs)

    print(f"# Event log, audit, metrics, webhooks: {args.rounds} rounds, wrk {args.seconds} s, "
          f"{args.pushes} pushes per round\n")
    print("| Server | Manifest GET req/s (median) | p50 ms | p99 ms | Small pushes/s (median) | ms per push |")
    print("|---|---|---|---|---|---|")
    for n in servers:
        g = gets[n]
        print(f"| {n} | {med([x[0] for x in g]):,.0f} | {med([x[1] for x in g]):.2f} | "
              f"{med([x[2] for x in g]):.2f} | {med(push_rates[n]):,.1f} | {1000 / med(push_rates[n]):.2f} |")
    b = servers.keys()
    if "baseline" in b:
        gr = med([x[0] for x in gets["berth"]]) / med([x[0] for x in gets["baseline"]])
        pr = med(push_rates["berth"]) / med(push_rates["baseline"])
        extra = 1000 / med(push_rates["berth"]) - 1000 / med(push_rates["baseline"])
        print(f"\nberth / baseline: manifest GET {gr:.3f}x, small pushes {pr:.3f}x "
              f"({extra:+.2f} ms per push: event log + audit + metrics + request ids)")
    if "baseline" in b:
        gr = med([x[0] for x in gets["berth-noreads"]]) / med([x[0] for x in gets["baseline"]])
        pr = med(push_rates["berth-noreads"]) / med(push_rates["baseline"])
        print(f"berth-noreads / baseline: manifest GET {gr:.3f}x, small pushes {pr:.3f}x")
    if "dist" in b:
        gr = med([x[0] for x in gets["berth"]]) / med([x[0] for x in gets["dist"]])
        pr = med(push_rates["berth"]) / med(push_rates["dist"])
        print(f"berth / dist: manifest GET {gr:.2f}x, small pushes {pr:.2f}x")
    lags.sort()
    if not lags:
        return
    print(f"\nWebhook delivery lag (push 201 -> receiver), {len(lags)} events: p50 "
          f"{lags[len(lags) // 2]:.1f} ms, p99 {lags[int(len(lags) * 0.99)]:.1f} ms, max {lags[-1]:.1f} ms; "
          f"{dup} duplicate deliveries")


if __name__ == "__main__":
    main()
