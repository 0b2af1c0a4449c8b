#!/usr/bin/env python3
"""STS benchmark (issue 15), loopback only, bounded.

Measures with wrk (-t2 -c16), each case interleaved over --rounds rounds, median reported:
  - AssumeRole (SigV4-signed once by botocore and replayed: every request is verified, the
    trust policy and the caller's identity policies evaluated, a session sealed and stored);
  - AssumeRoleWithWebIdentity with an RS256 token (unsigned; the JWKS comes from a file and is
    cached: the signature, claims and trust policy are checked and a session stored per request);
  - the cost of verifying a request signed with temporary credentials against the same request
    signed with a long-term key: GetAuthorizationToken signed by an IAM user with a policy, and
    by a session of a role with the same policy (same signature check, a session lookup instead
    of an access-key lookup, the session-token hash compared).

Usage: python3 bench/sts.py [--seconds N] [--rounds R]   (BERTH_BIN overrides the binary)
Prints a markdown table. STS has no counterpart in CNCF Distribution (it has no IAM): the
comparison that matters is temporary vs long-term credentials on the same server.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ecr"))

import boto3  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from ecr import AKID, REPO, SECRET, lua, start, wrk  # noqa: E402
from oidclib import AUDIENCE, ISSUER, MAIN_SUB, Issuer  # noqa: E402

ACCOUNT = "111111111111"
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ecr:*", "sts:AssumeRole"], "Resource": "*"}]}


def signed(url, service, target, body, creds, content_type):
    headers = {"Content-Type": content_type}
    if target:
        headers["X-Amz-Target"] = target
    req = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    SigV4Auth(creds, service, "us-east-1").add_auth(req)
    return dict(req.headers.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=int, default=10, help="seconds of quiet before each case")
    args = ap.parse_args()
    berth = os.environ.get("BERTH_BIN", os.path.join(REPO, "target/release/berth"))
    issuer = Issuer()
    with tempfile.TemporaryDirectory() as tmp:
        jwks = os.path.join(tmp, "jwks.json")
        with open(jwks, "w") as f:
            json.dump(issuer.jwks(), f)
        os.environ["BERTH_OIDC_JWKS_FILES"] = f"{ISSUER}={jwks}"
        p, url = start(berth, os.path.join(tmp, "data"))
        try:
            kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id=AKID, aws_secret_access_key=SECRET)
            iam = boto3.client("iam", **kw)
            iam.create_open_id_connect_provider(Url=ISSUER, ClientIDList=[AUDIENCE])
            provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
            trust = {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
                 "Condition": {"StringEquals": {"token.actions.githubusercontent.com:sub": MAIN_SUB,
                                                "token.actions.githubusercontent.com:aud": AUDIENCE}}}]}
            iam.create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps(trust))
            iam.put_role_policy(RoleName="bench", PolicyName="p", PolicyDocument=json.dumps(POLICY))
            iam.create_user(UserName="bench-user")
            iam.put_user_policy(UserName="bench-user", PolicyName="p", PolicyDocument=json.dumps(POLICY))
            key = iam.create_access_key(UserName="bench-user")["AccessKey"]
            user = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
            role_arn = f"arn:aws:iam::{ACCOUNT}:role/bench"
            sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1",
                               aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
            c = sts.assume_role(RoleArn=role_arn, RoleSessionName="bench", DurationSeconds=3600)["Credentials"]
            session = Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])

            form = "application/x-www-form-urlencoded; charset=utf-8"
            body = urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role_arn,
                              "RoleSessionName": "bench-run"})
            lua(f"{tmp}/ar.lua", "POST", signed(url, "sts", None, body, user, form), body)
            token = issuer.token(exp_in=3600)
            body = urlencode({"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": role_arn,
                              "RoleSessionName": "bench-web", "WebIdentityToken": token})
            lua(f"{tmp}/arwi.lua", "POST", {"Content-Type": form}, body)
            target = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
            ecr_ct = "application/x-amz-json-1.1"
            lua(f"{tmp}/gat-user.lua", "POST", signed(url, "ecr", target, "{}", user, ecr_ct), "{}")
            lua(f"{tmp}/gat-session.lua", "POST", signed(url, "ecr", target, "{}", session, ecr_ct), "{}")
            cases = [
                ("AssumeRole (IAM user caller, trust + identity policy)", "ar"),
                ("AssumeRoleWithWebIdentity (RS256, JWKS cached)", "arwi"),
                ("GetAuthorizationToken signed with an IAM user's long-term key", "gat-user"),
                ("GetAuthorizationToken signed with role session credentials", "gat-session"),
            ]
            results = {name: [] for name, _ in cases}
            for _ in range(args.rounds):
                for name, script in cases:
                    # Let the audit trail write what the previous case recorded (a GetAuthorizationToken
                    # run leaves ~10^5 records): its writes would otherwise compete with STS's.
                    time.sleep(args.settle)
                    results[name].append(wrk(url + "/", f"{tmp}/{script}.lua", args.seconds))
        finally:
            p.kill()
    print(f"| Request (wrk -t2 -c16, median of {args.rounds}) | req/s | p50 | p99 |")
    print("|---|---|---|---|")
    med = {}
    for name, runs in results.items():
        rps = statistics.median(r[0] for r in runs)
        p50 = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        med[name] = rps
        print(f"| {name} | {rps:,.0f} | {p50:.2f} ms | {p99:.2f} ms |")
    user_rps, session_rps = med[cases[2][0]], med[cases[3][0]]
    print(f"\nTemporary credentials: {session_rps / user_rps:.3f}x the throughput of long-term keys "
          f"({100 * (1 - session_rps / user_rps):+.1f}% cost)")


if __name__ == "__main__":
    main()
