#!/usr/bin/env python3
"""Authorization cost on the data plane (loopback only, bounded).

One Berth server; the same small image pushed to repositories `bench` and `pub`. wrk (2 threads,
16 connections) GETs the manifest by tag as:
  - the root (registry token, no policies to evaluate beyond the root's own-account rule);
  - an IAM user whose access comes from policies: an inline policy with three statements (one
    with IpAddress and StringEquals conditions on aws:ResourceTag), the AWS managed
    AmazonEC2ContainerRegistryReadOnly attached, a group policy, and a repository policy on the
    repository with an explicit Deny for another user;
  - anonymous, on `pub`, whose repository policy allows pull to Principal "*";
  - optionally a Berth build from before access control (BERTH_BASELINE_BIN, e.g. f430327:
    registry tokens verified, no policies), with the root token: the baseline.
Runs are interleaved over --rounds rounds and the median req/s of each case is reported.

Usage: python3 bench/authz.py [--seconds N] [--rounds R]   (BERTH_BIN, BERTH_BASELINE_BIN)
"""

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ecr import AKID, ENV, REPO, SECRET, lua, push_plain, start, wrk  # noqa: E402

ACCOUNT = "111111111111"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def client(service, url, akid=AKID, secret=SECRET):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=akid, aws_secret_access_key=secret)


def token_auth(ecr):
    tok = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return "Basic " + tok  # already base64("AWS:<password>")


def setup(url):
    ecr, iam = client("ecr", url), client("iam", url)
    root_auth = token_auth(ecr)
    push_plain(url, root_auth)  # `bench:v0` through the data plane
    # The same image in `pub`, through the control plane.
    img = ecr.batch_get_image(repositoryName="bench", imageIds=[{"imageTag": "v0"}])["images"][0]
    ecr.create_repository(repositoryName="pub")
    cfg_digest = json.loads(img["imageManifest"])["config"]["digest"]
    up = ecr.initiate_layer_upload(repositoryName="pub")["uploadId"]
    ecr.upload_layer_part(repositoryName="pub", uploadId=up, partFirstByte=0, partLastByte=1, layerPartBlob=b"{}")
    ecr.complete_layer_upload(repositoryName="pub", uploadId=up, layerDigests=[cfg_digest])
    ecr.put_image(repositoryName="pub", imageManifest=img["imageManifest"], imageTag="v0")
    ecr.tag_resource(resourceArn=f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/bench",
                     tags=[{"Key": "team", "Value": "blue"}])
    pull = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    ecr.set_repository_policy(repositoryName="pub", policyText=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "public", "Effect": "Allow", "Principal": "*", "Action": pull}]}))
    ecr.set_repository_policy(repositoryName="bench", policyText=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "nope", "Effect": "Deny",
                       "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/other"}, "Action": "ecr:*"}]}))
    iam.create_user(UserName="ci")
    iam.put_user_policy(UserName="ci", PolicyName="pull", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "token", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Sid": "pull", "Effect": "Allow", "Action": pull,
             "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/bench",
             "Condition": {"IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "10.0.0.0/8"]},
                           "StringEquals": {"aws:ResourceTag/team": "blue"}}},
            {"Sid": "noDelete", "Effect": "Deny", "Action": "ecr:BatchDeleteImage", "Resource": "*"},
        ]}))
    iam.attach_user_policy(UserName="ci", PolicyArn="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    iam.create_group(GroupName="devs")
    iam.add_user_to_group(GroupName="devs", UserName="ci")
    iam.put_group_policy(GroupName="devs", PolicyName="tags", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:ListImages", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="ci")["AccessKey"]
    user_auth = token_auth(client("ecr", url, key["AccessKeyId"], key["SecretAccessKey"]))
    return root_auth, user_auth


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_WRK_SECONDS", "8")))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    berth = os.environ.get("BERTH_BIN", os.path.join(REPO, "target/release/berth"))
    baseline = os.environ.get("BERTH_BASELINE_BIN")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = []
        try:
            p, url = start(berth, os.path.join(tmp, "data"))
            servers.append(p)
            root_auth, user_auth = setup(url)
            cases = [
                ("root token (no policies)", url + "/v2/bench/manifests/v0", {"Authorization": root_auth}),
                ("IAM user, 5 policies + repository policy", url + "/v2/bench/manifests/v0",
                 {"Authorization": user_auth}),
                ("anonymous, public repository policy", url + "/v2/pub/manifests/v0", {}),
            ]
            if baseline:
                p0, url0 = start(baseline, os.path.join(tmp, "data-baseline"))
                servers.append(p0)
                pw = subprocess.run([baseline, "admin", "get-login-password", "--data-dir",
                                     os.path.join(tmp, "data-baseline")], capture_output=True, text=True,
                                    env=dict(os.environ, **ENV), check=True).stdout.strip()
                auth0 = "Basic " + base64.b64encode(f"AWS:{pw}".encode()).decode()
                push_plain(url0, auth0)
                cases.append(("build before access control, root token", url0 + "/v2/bench/manifests/v0",
                              {"Authorization": auth0}))
            for i, (name, u, hdr) in enumerate(cases):
                lua(f"{tmp}/c{i}.lua", "GET", dict(hdr, Accept=ACCEPT))
            for _ in range(args.rounds):
                for i, (name, u, _) in enumerate(cases):
                    results.setdefault(name, []).append(wrk(u, f"{tmp}/c{i}.lua", args.seconds))
        finally:
            for p in servers:
                p.kill()
    print(f"| Manifest GET by tag (wrk -t2 -c16, median of {args.rounds}) | req/s | p50 | p99 |")
    print("|---|---|---|---|")
    med = {}
    for name, runs in results.items():
        rps = statistics.median(r[0] for r in runs)
        med[name] = rps
        p50 = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        print(f"| {name} | {rps:,.0f} | {p50:.2f} ms | {p99:.2f} ms |")
    base_name = "build before access control, root token" if baseline else "root token (no policies)"
    base = med[base_name]
    print()
    for name, rps in med.items():
        if name != base_name:
            print(f"- {name}: {rps / base:.3f}x of '{base_name}'")


if __name__ == "__main__":
    main()
