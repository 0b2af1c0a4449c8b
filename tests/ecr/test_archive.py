"""ECR's archive storage class through boto3: UpdateImageStorageClass (to ARCHIVE at once, back to
STANDARD through a restore job), pulls of an archived image refused (OCI 404, BatchGetImage
failure) until it is restored or pushed again, the `imageStatus` filters and fields of
DescribeImages/ListImages, and lifecycle `transition` rules (preview and run)."""

import hashlib
import json
import subprocess
import time

import requests

from ecrlib import (
    ACCOUNT_ID,
    _upload_blob,
    basic_auth_header,
    check_error,
    client_error,
    push_image,
    unique,
)


def manifest_get(server, ecr, name, ref):
    return requests.get(
        f"{server.url}/v2/{name}/manifests/{ref}",
        headers={"Authorization": basic_auth_header(ecr), "Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=30,
    )


def statuses(ecr, name, status=None):
    kw = {"filter": {"imageStatus": status}} if status else {}
    return {i["imageDigest"]: i["imageStatus"] for i in ecr.describe_images(repositoryName=name, **kw)["imageDetails"]}


def listed(ecr, name, status=None):
    kw = {"filter": {"imageStatus": status}} if status else {}
    return [i.get("imageTag", i["imageDigest"]) for i in ecr.list_images(repositoryName=name, **kw)["imageIds"]]


def wait_active(ecr, name, digest, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        d = ecr.describe_images(repositoryName=name, imageIds=[{"imageDigest": digest}])["imageDetails"][0]
        if d["imageStatus"] == "ACTIVE":
            return d
        assert d["imageStatus"] == "ACTIVATING", d
        time.sleep(0.1)
    raise AssertionError(f"{digest} still not ACTIVE after {seconds} s")


def test_archive_refuses_pulls_until_restored_and_the_digest_is_unchanged(server, ecr, ecr_raw):
    name = unique("arch")
    ecr.create_repository(repositoryName=name)
    push_image(server, ecr, name, tag="v1")
    push_image(server, ecr, name, tag="v2")
    img = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])["images"][0]
    digest = img["imageId"]["imageDigest"]
    before = manifest_get(server, ecr, name, "v1")
    assert before.status_code == 200 and hashlib.sha256(before.content).hexdigest() == digest[7:]

    r = ecr.update_image_storage_class(repositoryName=name, imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE")
    assert (r["imageId"], r["imageStatus"], r["registryId"], r["repositoryName"]) == (
        {"imageDigest": digest, "imageTag": "v1"}, "ARCHIVED", ACCOUNT_ID, name)
    # Listed only when asked for, with when it was archived.
    assert digest not in statuses(ecr, name) and statuses(ecr, name, "ARCHIVED") == {digest: "ARCHIVED"}
    assert statuses(ecr, name, "ANY")[digest] == "ARCHIVED" and len(statuses(ecr, name, "ANY")) == 2
    assert listed(ecr, name) == ["v2"] and listed(ecr, name, "ARCHIVED") == ["v1"]
    d = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
    assert d["imageStatus"] == "ARCHIVED" and "lastArchivedAt" in d and "lastActivatedAt" not in d
    # Pulls fail, by tag and by digest, on both APIs; the other image still pulls.
    for ref in ("v1", digest):
        r = manifest_get(server, ecr, name, ref)
        assert r.status_code == 404, r.text
        err = r.json()["errors"][0]
        assert err["code"] == "MANIFEST_UNKNOWN" and "archived" in err["message"], err
    assert manifest_get(server, ecr, name, "v2").status_code == 200
    got = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageDigest": digest}])
    assert got["images"] == [] and got["failures"][0]["failureCode"] == "ImageNotFound", got
    # Archiving again changes nothing.
    r = ecr.update_image_storage_class(repositoryName=name, imageId={"imageDigest": digest}, targetStorageClass="ARCHIVE")
    assert r["imageStatus"] == "ARCHIVED" and r["imageId"] == {"imageDigest": digest}

    # Restore: ACTIVATING, then ACTIVE once the job ran; the same bytes pull again.
    r = ecr.update_image_storage_class(repositoryName=name, imageId={"imageDigest": digest}, targetStorageClass="STANDARD")
    assert r["imageStatus"] in ("ACTIVATING", "ACTIVE")
    d = wait_active(ecr, name, digest)
    assert "lastActivatedAt" in d and d["lastActivatedAt"] >= d["lastArchivedAt"]
    after = manifest_get(server, ecr, name, "v1")
    assert after.status_code == 200 and after.content == before.content
    assert ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])["images"][0]["imageManifest"] == img["imageManifest"]

    # Pushing an archived image again makes it active at once.
    ecr.update_image_storage_class(repositoryName=name, imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE")
    ecr.put_image(repositoryName=name, imageManifest=img["imageManifest"], imageTag="v1")
    assert statuses(ecr, name)[digest] == "ACTIVE"

    # Errors.
    err = client_error(ecr.update_image_storage_class, repositoryName=name, imageId={"imageTag": "nope"},
                       targetStorageClass="ARCHIVE")
    check_error(err, "ImageNotFoundException",
                f"The image with imageId {{imageDigest:'null', imageTag:'nope'}} does not exist within the repository "
                f"with name '{name}' in the registry with id '{ACCOUNT_ID}'")
    err = client_error(ecr_raw.update_image_storage_class, repositoryName=name, imageId={"imageTag": "v1"},
                       targetStorageClass="GLACIER")
    check_error(err, "InvalidParameterException", prefix="Invalid parameter at 'targetStorageClass'")
    err = client_error(ecr.update_image_storage_class, repositoryName=unique("none"), imageId={"imageTag": "v1"},
                       targetStorageClass="ARCHIVE")
    check_error(err, "RepositoryNotFoundException")
    err = client_error(ecr_raw.describe_images, repositoryName=name, filter={"imageStatus": "FROZEN"})
    check_error(err, "InvalidParameterException", prefix="Invalid parameter at 'filter.imageStatus'")


def test_archived_referrers_are_listed_only_when_asked_for(server, ecr):
    name = unique("arch-ref")
    ecr.create_repository(repositoryName=name)
    push_image(server, ecr, name, tag="v1")
    subject = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])["images"][0]
    auth = basic_auth_header(ecr)
    cdig, _ = _upload_blob(server, name, b"{}", auth)
    ldig, lsize = _upload_blob(server, name, b"a signature", auth)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cdig, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sig", "digest": ldig, "size": lsize}],
        "subject": {"mediaType": subject["imageManifestMediaType"], "digest": subject["imageId"]["imageDigest"],
                    "size": len(subject["imageManifest"])},
    }).encode()
    sig = "sha256:" + hashlib.sha256(manifest).hexdigest()
    r = requests.put(f"{server.url}/v2/{name}/manifests/{sig}", data=manifest,
                     headers={"Authorization": auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                     timeout=30)
    assert r.status_code == 201, r.text

    def oci_referrers():
        r = requests.get(f"{server.url}/v2/{name}/referrers/{subject['imageId']['imageDigest']}",
                         headers={"Authorization": auth}, timeout=30)
        assert r.status_code == 200, r.text
        return [m["digest"] for m in r.json()["manifests"]]

    assert oci_referrers() == [sig]
    ecr.update_image_storage_class(repositoryName=name, imageId={"imageDigest": sig}, targetStorageClass="ARCHIVE")
    # The OCI referrers API lists what can be pulled: not the archived signature.
    assert oci_referrers() == []

    def refs(status=None):
        kw = {"filter": {"artifactStatus": status}} if status else {}
        out = ecr.list_image_referrers(repositoryName=name, subjectId={"imageDigest": subject["imageId"]["imageDigest"]},
                                       **kw)["referrers"]
        return [(x["digest"], x["artifactStatus"]) for x in out]

    assert refs() == [] and refs("ACTIVE") == []
    assert refs("ARCHIVED") == [(sig, "ARCHIVED")] and refs("ANY") == [(sig, "ARCHIVED")]


def test_lifecycle_transition_rules_archive_what_the_preview_lists(server, ecr):
    name = unique("arch-lc")
    ecr.create_repository(repositoryName=name)
    for t in ("a", "b", "c"):
        push_image(server, ecr, name, tag=t)
        time.sleep(0.01)
    digests = {t: ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": t}])["images"][0]["imageId"]["imageDigest"]
               for t in ("a", "b", "c")}
    text = json.dumps({"rules": [
        {"rulePriority": 1, "description": "archive all but the newest",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "transition", "targetStorageClass": "archive"}},
        {"rulePriority": 2, "description": "expire what was archived a year ago",
         "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned",
                       "countUnit": "days", "countNumber": 365},
         "action": {"type": "expire"}},
    ]})
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=text)
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]) == json.loads(text)
    ecr.start_lifecycle_policy_preview(repositoryName=name)
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(repositoryName=name,
                                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    p = ecr.get_lifecycle_policy_preview(repositoryName=name)
    got = sorted((r["imageTags"], r["action"], r["storageClass"], r["appliedRulePriority"]) for r in p["previewResults"])
    transition = {"type": "TRANSITION", "targetStorageClass": "ARCHIVE"}
    assert got == [(["a"], transition, "STANDARD", 1), (["b"], transition, "STANDARD", 1)], p["previewResults"]
    assert p["summary"] == {"expiringImageTotalCount": 0,
                            "transitioningImageTotalCounts": [{"targetStorageClass": "ARCHIVE", "imageTotalCount": 2}]}
    run = subprocess.run([server.binary, "lifecycle", "run", "--repository", name, "--data-dir", str(server.data_dir),
                          "--output", "json"], env=server.env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert statuses(ecr, name, "ANY") == {digests["a"]: "ARCHIVED", digests["b"]: "ARCHIVED", digests["c"]: "ACTIVE"}
    # Archived images are no longer standard: a second run does nothing (rule 2's year has not passed).
    ecr.start_lifecycle_policy_preview(repositoryName=name)
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(repositoryName=name,
                                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert ecr.get_lifecycle_policy_preview(repositoryName=name)["previewResults"] == []
