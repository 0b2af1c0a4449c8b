#!/usr/bin/env python3
"""ECR control-plane and data-plane auth benchmark (loopback only, bounded).

Measures, with wrk at 16 connections (2 threads):
  - GetAuthorizationToken and DescribeImages latency p50/p99 and throughput. Requests are
    SigV4-signed once by botocore and replayed (the server verifies every one: signature,
    clock skew, access key lookup);
  - manifest GET by tag with the registry token (Basic AWS:<password>), and the same GET on a
    Berth build from before the data plane required tokens (BERTH_PREAUTH_BIN), to give the
    cost of token verification.

Usage: python3 bench/ecr.py [--seconds N]   (BERTH_BIN, BERTH_PREAUTH_BIN override binaries)
Prints a markdown table.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AKID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ENV = {
    "BERTH_ACCOUNT_ID": "111111111111",
    "BERTH_ROOT_ACCESS_KEY_ID": AKID,
    "BERTH_ROOT_SECRET_ACCESS_KEY": SECRET,
    "BERTH_CREATE_ON_PUSH": "true",
    "BERTH_LOG": "warn",
}


def start(binary, data):
    env = dict(os.environ, **ENV)
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.match(r"berth listening on (http://\S+)", line)
        if m:
            return p, m.group(1)
    p.kill()
    sys.exit(f"{binary} did not start")


def wrk(url, script, seconds):
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        lat[pct] = v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit(f"wrk saw {non2xx.group(1)} error responses on {url}:\n{out}")
    return rps, lat["50"], lat["99"]


def lua(path, method, headers, body=None):
    with open(path, "w") as f:
        f.write(f'wrk.method = "{method}"\n')
        for k, v in headers.items():
            f.write(f'wrk.headers["{k}"] = {json.dumps(v)}\n')
        if body is not None:
            f.write(f"wrk.body = {json.dumps(body)}\n")


def signed(url, target, body):
    req = AWSRequest(method="POST", url=url + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{target}",
    })
    SigV4Auth(Credentials(AKID, SECRET), "ecr", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def setup(url, images):
    ecr = boto3.client("ecr", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    ecr.create_repository(repositoryName="bench")
    for i in range(images):
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "i": i}).encode()
        layer = os.urandom(2048)
        digests = []
        for blob in (cfg, layer):
            d = "sha256:" + hashlib.sha256(blob).hexdigest()
            up = ecr.initiate_layer_upload(repositoryName="bench")["uploadId"]
            ecr.upload_layer_part(repositoryName="bench", uploadId=up, partFirstByte=0,
                                  partLastByte=len(blob) - 1, layerPartBlob=blob)
            ecr.complete_layer_upload(repositoryName="bench", uploadId=up, layerDigests=[d])
            digests.append((d, len(blob)))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digests[0][0], "size": digests[0][1]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digests[1][0], "size": digests[1][1]}]})
        ecr.put_image(repositoryName="bench", imageManifest=manifest, imageTag=f"v{i}")
    return ecr


def push_plain(url, auth=None):
    """Push one small image through the data plane (for the pre-auth build)."""
    import urllib.request
    hdr = {"Authorization": auth} if auth else {}
    cfg = b"{}"
    d = "sha256:" + hashlib.sha256(cfg).hexdigest()
    urllib.request.urlopen(urllib.request.Request(
        f"{url}/v2/bench/blobs/uploads/?digest={d}", data=cfg, method="POST", headers=hdr))
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": d, "size": 2},
                    "layers": []}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"{url}/v2/bench/manifests/v0", data=m, method="PUT",
        headers=dict(hdr, **{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_WRK_SECONDS", "10")))
    ap.add_argument("--images", type=int, default=50)
    args = ap.parse_args()
    berth = os.environ.get("BERTH_BIN", os.path.join(REPO, "target/release/berth"))
    preauth = os.environ.get("BERTH_PREAUTH_BIN")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        p, url = start(berth, os.path.join(tmp, "data"))
        try:
            setup(url, args.images)
            body = "{}"
            lua(f"{tmp}/gat.lua", "POST", signed(url, "GetAuthorizationToken", body), body)
            rows.append(("GetAuthorizationToken", *wrk(url + "/", f"{tmp}/gat.lua", args.seconds)))
            body = json.dumps({"repositoryName": "bench"})
            lua(f"{tmp}/di.lua", "POST", signed(url, "DescribeImages", body), body)
            rows.append((f"DescribeImages ({args.images} images)", *wrk(url + "/", f"{tmp}/di.lua", args.seconds)))
            pw = subprocess.run([berth, "admin", "get-login-password", "--data-dir", os.path.join(tmp, "data")],
                                capture_output=True, text=True, env=dict(os.environ, **ENV), check=True).stdout.strip()
            auth = "Basic " + base64.b64encode(f"AWS:{pw}".encode()).decode()
            push_plain(url, auth)
            lua(f"{tmp}/mg.lua", "GET", {"Authorization": auth,
                                         "Accept": "application/vnd.oci.image.manifest.v1+json"})
            rows.append(("Manifest GET by tag, with token", *wrk(url + "/v2/bench/manifests/v0", f"{tmp}/mg.lua", args.seconds)))
        finally:
            p.kill()
        if preauth:
            p, url = start(preauth, os.path.join(tmp, "data-preauth"))
            try:
                push_plain(url)
                lua(f"{tmp}/mg0.lua", "GET", {"Accept": "application/vnd.oci.image.manifest.v1+json"})
                rows.append(("Manifest GET by tag, build without data-plane auth",
                             *wrk(url + "/v2/bench/manifests/v0", f"{tmp}/mg0.lua", args.seconds)))
            finally:
                p.kill()
    print("| Request (wrk -t2 -c16) | req/s | p50 | p99 |")
    print("|---|---|---|---|")
    for name, rps, p50, p99 in rows:
        print(f"| {name} | {rps:,.0f} | {p50:.2f} ms | {p99:.2f} ms |")
    if preauth and len(rows) == 4:
        print(f"\nToken verification cost: {100 * (1 - rows[2][1] / rows[3][1]):.1f}% of manifest GET throughput")


if __name__ == "__main__":
    main()
