"""Lifecycle policies through boto3 and the AWS CLI: Put/Get/DeleteLifecyclePolicy with ECR's
validation and errors, previews (Start/GetLifecyclePolicyPreview, the SDK waiter, pages and
filters), and runs (`berth lifecycle run` and the periodic job) that expire exactly what the
preview listed, with audit records and events. Rule semantics with an injected clock are the
table-driven tests of crates/lifecycle."""

import hashlib
import json
import os
import subprocess
import time

import requests

from ecrlib import (
    ACCOUNT_ID,
    _upload_blob,
    aws_cli,
    basic_auth_header,
    check_error,
    cli_error_line,
    cli_json,
    client_error,
    create_iam_user,
    make_client,
    push_image,
    start_berth,
    stop_berth,
    unique,
)


def rule(priority, status, count_type="imageCountMoreThan", count=1, **extra):
    sel = {"tagStatus": status, "countType": count_type, "countNumber": count}
    if count_type != "imageCountMoreThan":
        sel["countUnit"] = "days"
    sel.update(extra)
    return {"rulePriority": priority, "description": f"rule {priority}", "selection": sel, "action": {"type": "expire"}}


def policy(*rules):
    return json.dumps({"rules": list(rules)})


KEEP_TWO = policy(rule(1, "any", count=2))


def lifecycle_cli(server, *args):
    return subprocess.run(
        [server.binary, "lifecycle", "run", *args, "--data-dir", str(server.data_dir)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def push_untagged(server, ecr, name):
    """Push an image by digest only (no tag); returns its digest."""
    auth = basic_auth_header(ecr)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cdig, csize = _upload_blob(server, name, config, auth)
    ldig, lsize = _upload_blob(server, name, os.urandom(512), auth)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldig, "size": lsize}],
    }).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    r = requests.put(
        f"{server.url}/v2/{name}/manifests/{digest}",
        data=manifest,
        headers={"Authorization": auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return digest


def push(server, ecr, name, tags):
    """Push images one after another (distinct push times), each under its list of tags (none:
    by digest); returns their digests in push order."""
    digests = []
    for t in tags:
        if not t:
            digests.append(push_untagged(server, ecr, name))
            time.sleep(0.01)
            continue
        push_image(server, ecr, name, tag=t[0])
        img = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": t[0]}])["images"][0]
        for extra in t[1:]:
            ecr.put_image(repositoryName=name, imageManifest=img["imageManifest"], imageTag=extra)
        digests.append(img["imageId"]["imageDigest"])
        time.sleep(0.01)
    return digests


def remaining(ecr, name):
    out = ecr.describe_images(repositoryName=name)["imageDetails"]
    return {i["imageDigest"] for i in out}


def test_put_get_delete_round_trip_and_errors(server, ecr):
    name = unique("lc")
    ecr.create_repository(repositoryName=name)
    check_error(
        client_error(ecr.get_lifecycle_policy, repositoryName=name),
        "LifecyclePolicyNotFoundException",
        f"Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{ACCOUNT_ID}'",
    )
    text = json.dumps({"rules": [rule(1, "untagged", count=3)]}, indent=2)
    out = ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=text)
    assert (out["registryId"], out["repositoryName"], out["lifecyclePolicyText"]) == (ACCOUNT_ID, name, text)
    got = ecr.get_lifecycle_policy(repositoryName=name)
    # Kept exactly as sent; not evaluated yet.
    assert got["lifecyclePolicyText"] == text
    assert "lastEvaluatedAt" not in got
    deleted = ecr.delete_lifecycle_policy(repositoryName=name)
    assert deleted["lifecyclePolicyText"] == text
    for op in (ecr.get_lifecycle_policy, ecr.delete_lifecycle_policy):
        check_error(client_error(op, repositoryName=name), "LifecyclePolicyNotFoundException")
    missing = unique("nope")
    check_error(
        client_error(ecr.put_lifecycle_policy, repositoryName=missing, lifecyclePolicyText=KEEP_TWO),
        "RepositoryNotFoundException",
        f"The repository with name '{missing}' does not exist in the registry with id '{ACCOUNT_ID}'",
    )
    # The policy goes with its repository.
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=KEEP_TWO)
    ecr.delete_repository(repositoryName=name)
    ecr.create_repository(repositoryName=name)
    check_error(client_error(ecr.get_lifecycle_policy, repositoryName=name), "LifecyclePolicyNotFoundException")


def test_invalid_policies_are_refused_with_ecrs_messages(server, ecr_raw):
    name = unique("lc")
    ecr_raw.create_repository(repositoryName=name)
    prefix = "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: "
    pad = " " * 100
    cases = [
        ("{}", "Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: 'Member must have length greater than or equal to 100'"),
        ("x" * 30721, "Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: 'Member must have length less than or equal to 30720'"),
        ("not json" + pad, prefix + "Could not map policyString into LifecyclePolicy.'"),
        ('{"rules": []}' + pad, prefix + "array is too short: must have at least 1 elements but instance has 0 elements'"),
        (policy(rule(1, "untagged"), rule(2, "untagged", count=5)), prefix + "Only one rule can select Untagged images per storage class.'"),
        (policy(rule(1, "any"), rule(2, "untagged", count=5)), prefix + "Rule for tagStatus=ANY must have the lowest priority per storage class'"),
        (policy(rule(1, "tagged")), prefix + "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.'"),
        (policy(rule(1, "any", count=0)), prefix + "numeric instance is lower than the required minimum (minimum: 1, found: 0)'"),
        (policy(rule(1, "any", countUnit="days")), prefix + "instance failed to match exactly one schema (matched 0 out of 2)'"),
        (policy(rule(1, "all")), prefix + 'instance value ("all") not found in enum :(possible values: ["any","tagged","untagged"])\''),
    ]
    for text, message in cases:
        err = client_error(ecr_raw.put_lifecycle_policy, repositoryName=name, lifecyclePolicyText=text)
        check_error(err, "InvalidParameterException", message)
    # The archive storage class's rules are checked as ECR checks them (test_archive.py runs them).
    archive_too_soon = json.dumps({"rules": [{
        "rulePriority": 1,
        "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned",
                      "countUnit": "days", "countNumber": 30},
        "action": {"type": "expire"},
    }]})
    err = client_error(ecr_raw.put_lifecycle_policy, repositoryName=name, lifecyclePolicyText=archive_too_soon)
    check_error(err, "InvalidParameterException",
                prefix + "Images must be in archive storage for a minimum of 90 days before deletion: "
                "countNumber must be at least 90.'")
    check_error(client_error(ecr_raw.get_lifecycle_policy, repositoryName=name), "LifecyclePolicyNotFoundException")


def test_preview_lists_what_a_run_expires_and_the_run_does_exactly_that(server, ecr):
    name = unique("lc")
    ecr.create_repository(repositoryName=name)
    digests = push(server, ecr, name, [["v1"], ["v2", "stable"], [], ["v4"], ["v5"]])
    check_error(
        client_error(ecr.get_lifecycle_policy_preview, repositoryName=name),
        "LifecyclePolicyPreviewNotFoundException",
    )
    # Without a text, the repository's policy; without one, LifecyclePolicyNotFoundException.
    check_error(client_error(ecr.start_lifecycle_policy_preview, repositoryName=name), "LifecyclePolicyNotFoundException")
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=KEEP_TWO)
    started = ecr.start_lifecycle_policy_preview(repositoryName=name)
    assert (started["lifecyclePolicyText"], started["status"]) == (KEEP_TWO, "COMPLETE")
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(repositoryName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    prev = ecr.get_lifecycle_policy_preview(repositoryName=name)
    assert prev["status"] == "COMPLETE"
    assert prev["summary"] == {"expiringImageTotalCount": 3}
    results = prev["previewResults"]
    # Oldest first: the three oldest go, the two youngest stay.
    assert [r["imageDigest"] for r in results] == digests[:3]
    assert [sorted(r.get("imageTags", [])) for r in results] == [["v1"], ["stable", "v2"], []]
    for r in results:
        assert r["action"] == {"type": "EXPIRE"}
        assert r["appliedRulePriority"] == 1
        assert r["storageClass"] == "STANDARD"
        assert r["imagePushedAt"].year >= 2024
    # Pages of one, through the SDK's paginator, give the same list.
    pages = ecr.get_paginator("get_lifecycle_policy_preview").paginate(
        repositoryName=name, PaginationConfig={"PageSize": 1}
    )
    assert [r["imageDigest"] for p in pages for r in p["previewResults"]] == digests[:3]
    untagged = ecr.get_lifecycle_policy_preview(repositoryName=name, filter={"tagStatus": "UNTAGGED"})
    assert [r["imageDigest"] for r in untagged["previewResults"]] == [digests[2]]
    by_tag = ecr.get_lifecycle_policy_preview(repositoryName=name, imageIds=[{"imageTag": "stable"}])
    assert [r["imageDigest"] for r in by_tag["previewResults"]] == [digests[1]]
    check_error(
        client_error(ecr.get_lifecycle_policy_preview, repositoryName=name, nextToken="zz"),
        "InvalidParameterException",
        "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'",
    )
    # A previewed text other than the repository's policy.
    other = policy(rule(1, "untagged", count=5))
    out = ecr.start_lifecycle_policy_preview(repositoryName=name, lifecyclePolicyText=other)
    assert out["lifecyclePolicyText"] == other
    assert ecr.get_lifecycle_policy_preview(repositoryName=name)["previewResults"] == []
    ecr.start_lifecycle_policy_preview(repositoryName=name)

    dry = lifecycle_cli(server, "--repository", name, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert [ln.split("@")[1].split()[0] for ln in lines if ln.startswith("would expire ")] == digests[:3], dry.stdout
    assert lines[-1] == "lifecycle: 1 repository evaluated, 3 image(s) would expire", dry.stdout
    assert remaining(ecr, name) == set(digests)

    run = lifecycle_cli(server, "--repository", name, "--output", "json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["repositories"], summary["expired"], summary["skipped"]) == (1, 3, 0)
    assert [a["imageDigest"] for a in summary["runs"][0]["actions"]] == digests[:3]
    assert remaining(ecr, name) == set(digests[3:])
    got = ecr.get_lifecycle_policy(repositoryName=name)
    assert "lastEvaluatedAt" in got
    # Expired images are gone from the data plane too.
    auth = basic_auth_header(ecr)
    r = requests.get(f"{server.url}/v2/{name}/manifests/{digests[0]}", headers={"Authorization": auth}, timeout=10)
    assert r.status_code == 404
    r = requests.get(f"{server.url}/v2/{name}/manifests/v5", headers={"Authorization": auth}, timeout=10)
    assert r.status_code == 200
    # A second run finds nothing more to do.
    again = lifecycle_cli(server, "--repository", name)
    assert again.returncode == 0 and "0 image(s) expired" in again.stdout, again.stdout


def test_runs_are_audited_naming_the_rule(server, ecr):
    name = unique("lc")
    ecr.create_repository(repositoryName=name)
    digests = push(server, ecr, name, [["old"], ["new"]])
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=policy(rule(7, "any", count=1)))
    res = lifecycle_cli(server, "--repository", name)
    assert res.returncode == 0, res.stderr
    found = None
    for _ in range(50):
        out = cli_json(
            aws_cli(
                server,
                "lookup-events",
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=PolicyExecutionEvent",
                service="cloudtrail",
            )
        )
        records = [json.loads(e["CloudTrailEvent"]) for e in out["Events"]]
        found = next((r for r in records if r["serviceEventDetails"]["repositoryName"] == name), None)
        if found:
            break
        time.sleep(0.1)
    assert found, "no PolicyExecutionEvent for the run"
    assert found["eventType"] == "AwsServiceEvent"
    assert found["eventSource"] == "ecr.amazonaws.com"
    assert found["userIdentity"] == {"accountId": ACCOUNT_ID, "invokedBy": "AWS Internal"}
    actions = found["serviceEventDetails"]["lifecycleEventImageActions"]
    assert actions == [
        {
            "lifecycleEventImage": {
                "digest": digests[0],
                "tagStatus": "Tagged",
                "repositoryName": name,
                "imageTags": ["old"],
                "pushedAt": actions[0]["lifecycleEventImage"]["pushedAt"],
            },
            "rulePriority": 7,
            "actionType": "EXPIRE",
        }
    ]
    assert found["serviceEventDetails"]["lifecycleEventPolicy"]["lifecycleEventRules"][0]["rulePriority"] == 7


def _put_index(server, ecr, name, children, tag):
    auth = basic_auth_header(ecr)
    manifests = []
    for d in children:
        m = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageDigest": d}])["images"][0]["imageManifest"]
        manifests.append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d,
            "size": len(m.encode()),
            "platform": {"architecture": "amd64", "os": "linux"},
        })
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}).encode()
    r = requests.put(
        f"{server.url}/v2/{name}/manifests/{tag}",
        data=index,
        headers={"Authorization": auth, "Content-Type": "application/vnd.oci.image.index.v1+json"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return "sha256:" + hashlib.sha256(index).hexdigest()


def test_children_of_a_kept_index_are_kept(server, ecr):
    """An untagged-images rule does not touch the (untagged) children of a tagged index, and
    they do not count: only the lone untagged image beyond the count goes."""
    name = unique("lc")
    ecr.create_repository(repositoryName=name)
    children = push(server, ecr, name, [[], []])
    index = _put_index(server, ecr, name, children, "multi")
    lone = push(server, ecr, name, [[], []])
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=policy(rule(1, "untagged", count=1)))
    prev = ecr.start_lifecycle_policy_preview(repositoryName=name)
    assert prev["status"] == "COMPLETE"
    results = ecr.get_lifecycle_policy_preview(repositoryName=name)["previewResults"]
    assert [r["imageDigest"] for r in results] == [lone[0]]
    res = lifecycle_cli(server, "--repository", name)
    assert res.returncode == 0, res.stderr
    assert remaining(ecr, name) == {*children, index, lone[1]}


def test_the_aws_cli_drives_policies_and_previews(server, ecr, tmp_path):
    name = unique("lc")
    ecr.create_repository(repositoryName=name)
    push(server, ecr, name, [["a"], ["b"], ["c"]])
    f = tmp_path / "policy.json"
    f.write_text(KEEP_TWO)
    out = cli_json(aws_cli(server, "put-lifecycle-policy", "--repository-name", name, "--lifecycle-policy-text", f"file://{f}"))
    assert out["lifecyclePolicyText"] == KEEP_TWO
    assert cli_json(aws_cli(server, "get-lifecycle-policy", "--repository-name", name))["lifecyclePolicyText"] == KEEP_TWO
    started = cli_json(aws_cli(server, "start-lifecycle-policy-preview", "--repository-name", name))
    assert started["status"] == "COMPLETE"
    waited = aws_cli(server, "wait", "lifecycle-policy-preview-complete", "--repository-name", name)
    assert waited.returncode == 0, waited.stderr
    prev = cli_json(aws_cli(server, "get-lifecycle-policy-preview", "--repository-name", name))
    assert prev["summary"]["expiringImageTotalCount"] == 1
    assert [r["imageTags"] for r in prev["previewResults"]] == [["a"]]
    res = aws_cli(server, "get-lifecycle-policy", "--repository-name", unique("nope"))
    assert res.returncode == 254 or res.returncode == 255, res
    assert "RepositoryNotFoundException" in res.stderr
    cli_json(aws_cli(server, "delete-lifecycle-policy", "--repository-name", name))
    res = aws_cli(server, "get-lifecycle-policy", "--repository-name", name)
    assert cli_error_line(
        "LifecyclePolicyNotFoundException",
        "GetLifecyclePolicy",
        f"Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{ACCOUNT_ID}'",
    ) in res.stderr


def test_iam_decides_lifecycle_operations(server, ecr):
    name = unique("lc")
    ecr.create_repository(repositoryName=name)
    user = create_iam_user(
        server,
        unique("lcuser"),
        inline={"read": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ecr:GetLifecyclePolicy"], "Resource": "*"}]}},
    )
    client = make_client(server, akid=user.akid, secret=user.secret)
    err = client_error(client.put_lifecycle_policy, repositoryName=name, lifecyclePolicyText=KEEP_TWO)
    check_error(err, "AccessDeniedException", prefix=f"User: {user.arn} is not authorized to perform: ecr:PutLifecyclePolicy")
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=KEEP_TWO)
    assert client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"] == KEEP_TWO
    err = client_error(client.start_lifecycle_policy_preview, repositoryName=name)
    check_error(err, "AccessDeniedException", prefix=f"User: {user.arn} is not authorized to perform: ecr:StartLifecyclePolicyPreview")


def test_the_periodic_job_applies_policies():
    srv = start_berth({"BERTH_LIFECYCLE_INTERVAL_SECS": "1"})
    try:
        ecr = make_client(srv)
        name = unique("lc")
        ecr.create_repository(repositoryName=name)
        digests = push(srv, ecr, name, [["a"], ["b"], ["c"]])
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=policy(rule(1, "any", count=1)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and remaining(ecr, name) != {digests[2]}:
            time.sleep(0.2)
        assert remaining(ecr, name) == {digests[2]}
        assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName=name)
    finally:
        stop_berth(srv)

