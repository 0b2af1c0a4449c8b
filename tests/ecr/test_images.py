"""ECR image operations: PutImage, BatchGetImage, BatchDeleteImage, DescribeImages, ListImages,
ListImageReferrers; the data plane's ECR-specific answers (NAME_UNKNOWN, TAG_INVALID); and
cross-checks between images built through the ECR layer API and through the data plane
(raw /v2/ requests, the `push_image` helper, skopeo).

Shapes from the botocore model; texts from ECR-BEHAVIOUR.md where it gives them. Every error
case checks that nothing changed (`state` before == after).
"""

import datetime
import json
import os
import tempfile
from pathlib import Path

import pytest
import requests

from ecrlib import (
    ACCOUNT_ID,
    NAME_REGEX_MSG,
    assert_absent,
    check_error,
    client_error,
    not_found_msg,
    push_image,
    raw_call,
    unique,
    utcnow,
)
from imagelib import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    api_image,
    artifact,
    body,
    describe_all,
    details_by_digest,
    dp_get_manifest,
    dp_push,
    dp_put_manifest,
    id_set,
    index_of,
    list_all,
    need,
    oci_errors,
    oci_image,
    password_of,
    put,
    run,
    sha256,
    skopeo_env,
    state,
    umoci_layout,
    upload_blobs,
    upload_layer,
    v2,
    wait_for,
)

FAILURE_CODES = {
    "InvalidImageDigest", "InvalidImageTag", "ImageTagDoesNotMatchDigest", "ImageNotFound",
    "MissingDigestAndTag", "ImageReferencedByManifestList", "KmsError", "UpstreamAccessDenied",
    "UpstreamTooManyRequests", "UpstreamUnavailable", "ImageInaccessible",
}
SLACK = datetime.timedelta(seconds=2)


def image_not_found_msg(repo, digest=None, tag=None, account=ACCOUNT_ID):
    """DescribeImages' ImageNotFoundException, verbatim from ECR-BEHAVIOUR.md."""
    d = f"'{digest}'" if digest else "'null'"
    t = f"'{tag}'" if tag else "'null'"
    return (
        f"The image with imageId {{imageDigest:{d}, imageTag:{t}}} does not exist within the "
        f"repository with name '{repo}' in the registry with id '{account}'"
    )


def already_exists_msg(repo, digest, tag, account=ACCOUNT_ID):
    return (
        f"Image with digest '{digest}' and tag '{tag}' already exists in the repository with name "
        f"'{repo}' in registry with id '{account}'"
    )


def layers_missing_msg(repo, digests, account=ACCOUNT_ID):
    return (
        f"Layers with digests '[{', '.join(digests)}]' required for pushing image into repository "
        f"with name '{repo}' in the registry with id '{account}' do not exist"
    )


def tag_immutable_msg(repo, tag):
    return (
        f"The image tag '{tag}' already exists in the '{repo}' repository and cannot be overwritten "
        "because the repository is immutable."
    )


def make_repo(ecr, prefix="img", **kw):
    name = unique(prefix)
    ecr.create_repository(repositoryName=name, **kw)
    return name


@pytest.fixture
def immutable_repo(ecr):
    name = make_repo(ecr, "immut", imageTagMutability="IMMUTABLE")
    yield name
    ecr.delete_repository(repositoryName=name, force=True)


def the_detail(ecr, repo, **image_id):
    (d,) = ecr.describe_images(repositoryName=repo, imageIds=[image_id])["imageDetails"]
    return d


def get_one(ecr, repo, **image_id):
    r = ecr.batch_get_image(repositoryName=repo, imageIds=[image_id])
    assert r["failures"] == [], r
    (img,) = r["images"]
    return img


# ============================================================================================
# PutImage


def test_put_image_through_the_layer_api(ecr, repo):
    before = utcnow()
    built = oci_image(n_layers=2)
    upload_blobs(ecr, repo, built, parts=3)
    r = put(ecr, repo, built, tag="v1")
    after = utcnow()
    assert body(r) == {
        "image": {
            "registryId": ACCOUNT_ID,
            "repositoryName": repo,
            "imageId": {"imageDigest": built.digest, "imageTag": "v1"},
            "imageManifest": built.manifest,
            "imageManifestMediaType": OCI_MANIFEST,
        }
    }

    (d,) = describe_all(ecr, repo)
    pushed_at = d.pop("imagePushedAt")
    assert before - SLACK <= pushed_at <= after + SLACK
    assert d.pop("imageStatus", "ACTIVE") == "ACTIVE"
    assert d == {
        "registryId": ACCOUNT_ID,
        "repositoryName": repo,
        "imageDigest": built.digest,
        "imageTags": ["v1"],
        "imageSizeInBytes": built.size,  # config + layers
        "imageManifestMediaType": OCI_MANIFEST,
        "artifactMediaType": OCI_CONFIG,
    }

    img = get_one(ecr, repo, imageTag="v1")
    assert img == {
        "registryId": ACCOUNT_ID,
        "repositoryName": repo,
        "imageId": {"imageDigest": built.digest, "imageTag": "v1"},
        "imageManifest": built.manifest,
        "imageManifestMediaType": OCI_MANIFEST,
    }
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": built.digest, "imageTag": "v1"}]


def test_put_image_docker_v2s2(ecr, repo):
    built = oci_image(docker=True)
    upload_blobs(ecr, repo, built)
    r = put(ecr, repo, built, tag="docker")
    assert r["image"]["imageManifestMediaType"] == DOCKER_MANIFEST
    d = the_detail(ecr, repo, imageTag="docker")
    assert d["imageManifestMediaType"] == DOCKER_MANIFEST
    assert d["artifactMediaType"] == DOCKER_CONFIG
    assert d["imageSizeInBytes"] == built.size
    assert get_one(ecr, repo, imageDigest=built.digest)["imageManifest"] == built.manifest


def test_put_image_media_type_from_manifest(ecr, repo):
    """imageManifestMediaType omitted: taken from the manifest's mediaType."""
    built = oci_image()
    upload_blobs(ecr, repo, built)
    r = put(ecr, repo, built, tag="implicit", media_type=False)
    assert r["image"]["imageManifestMediaType"] == OCI_MANIFEST
    assert the_detail(ecr, repo, imageTag="implicit")["imageManifestMediaType"] == OCI_MANIFEST


def test_put_image_keeps_exact_bytes(server, ecr, repo):
    built = oci_image(indent=3)  # pretty-printed: any re-serialisation would change the digest
    upload_blobs(ecr, repo, built)
    r = put(ecr, repo, built, tag="pretty", imageDigest=built.digest)
    assert r["image"]["imageId"] == {"imageDigest": built.digest, "imageTag": "pretty"}
    assert get_one(ecr, repo, imageTag="pretty")["imageManifest"] == built.manifest
    g = dp_get_manifest(server, ecr, repo, "pretty")
    assert g.status_code == 200, (g.status_code, g.text)
    assert g.content == built.manifest.encode()
    assert g.headers["Content-Type"] == OCI_MANIFEST


def test_put_image_non_ascii_manifest(server, ecr, repo):
    """A manifest with non-ASCII text (UTF-8 on the wire): same string back, digest of its UTF-8."""
    built = oci_image(annotations={"org.opencontainers.image.description": "caf\u00e9 \u2615 \u00fcber"})
    built.manifest = built.manifest.replace("\\u00e9", "\u00e9").replace("\\u2615", "\u2615")
    assert "\u00e9" in built.manifest and "\u2615" in built.manifest  # raw characters, not escapes
    upload_blobs(ecr, repo, built)
    r = put(ecr, repo, built, tag="utf8")
    assert r["image"]["imageId"]["imageDigest"] == sha256(built.manifest.encode("utf-8"))
    assert get_one(ecr, repo, imageTag="utf8")["imageManifest"] == built.manifest
    g = dp_get_manifest(server, ecr, repo, "utf8")
    assert g.content == built.manifest.encode("utf-8")


def test_put_image_untagged(ecr, repo):
    by_digest = api_image(ecr, repo, tag=None)  # no tag, no digest
    built = oci_image()
    upload_blobs(ecr, repo, built)
    r = put(ecr, repo, built, imageDigest=built.digest)
    assert r["image"]["imageId"] == {"imageDigest": built.digest}
    details = details_by_digest(ecr, repo)
    assert set(details) == {by_digest.digest, built.digest}
    for d in details.values():
        assert "imageTags" not in d or d["imageTags"] == []
    assert id_set(list_all(ecr, repo)) == {(by_digest.digest, None), (built.digest, None)}


def test_put_image_second_tag_same_manifest(ecr, repo):
    built = api_image(ecr, repo, tag="a")
    r = put(ecr, repo, built, tag="b")
    assert r["image"]["imageId"] == {"imageDigest": built.digest, "imageTag": "b"}
    (d,) = describe_all(ecr, repo)
    assert sorted(d["imageTags"]) == ["a", "b"]
    assert id_set(list_all(ecr, repo)) == {(built.digest, "a"), (built.digest, "b")}


def test_put_image_moves_a_mutable_tag(ecr, repo):
    old = api_image(ecr, repo, tag="latest")
    new = api_image(ecr, repo, tag="latest")
    details = details_by_digest(ecr, repo)
    assert set(details) == {old.digest, new.digest}
    assert details[new.digest]["imageTags"] == ["latest"]
    assert details[old.digest].get("imageTags", []) == []  # the old image stays, untagged
    assert get_one(ecr, repo, imageTag="latest")["imageId"]["imageDigest"] == new.digest


def test_put_image_index(ecr, repo):
    children = [api_image(ecr, repo, tag=None, n_layers=n) for n in (1, 2, 3)]
    idx = index_of(children)
    r = put(ecr, repo, idx, tag="multi")
    assert r["image"]["imageManifestMediaType"] == OCI_INDEX
    d = the_detail(ecr, repo, imageTag="multi")
    assert d["imageManifestMediaType"] == OCI_INDEX
    assert d["imageSizeInBytes"] == max(c.size for c in children)  # max of the children
    assert get_one(ecr, repo, imageTag="multi")["imageManifest"] == idx.manifest


# --------------------------------------------------------------------------------------------
# PutImage errors


def test_put_image_already_exists(ecr, repo):
    built = api_image(ecr, repo, tag="v1")
    before = state(ecr, repo)
    err = client_error(put, ecr, repo, built, tag="v1")
    check_error(err, "ImageAlreadyExistsException", already_exists_msg(repo, built.digest, "v1"))
    assert state(ecr, repo) == before


def test_put_image_already_exists_immutable(ecr, immutable_repo):
    """Identical manifest + tag: ImageAlreadyExistsException whatever the mutability."""
    repo = immutable_repo
    built = api_image(ecr, repo, tag="v1")
    before = state(ecr, repo)
    err = client_error(put, ecr, repo, built, tag="v1")
    check_error(err, "ImageAlreadyExistsException", already_exists_msg(repo, built.digest, "v1"))
    assert state(ecr, repo) == before


def test_put_image_immutable_tag(ecr, immutable_repo):
    repo = immutable_repo
    first = api_image(ecr, repo, tag="release")
    other = oci_image()
    upload_blobs(ecr, repo, other)
    before = state(ecr, repo)
    err = client_error(put, ecr, repo, other, tag="release")
    # ECR-BEHAVIOUR.md: presumably the registry's TAG_INVALID text
    check_error(err, "ImageTagAlreadyExistsException", tag_immutable_msg(repo, "release"))
    assert state(ecr, repo) == before
    assert get_one(ecr, repo, imageTag="release")["imageId"]["imageDigest"] == first.digest
    # new tags and untagged pushes are still fine in an immutable repository
    assert put(ecr, repo, other, tag="release-2")["image"]["imageId"]["imageDigest"] == other.digest
    assert put(ecr, repo, first, tag="also-first")["image"]["imageId"]["imageDigest"] == first.digest


@pytest.mark.parametrize("mode", ["IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"])
def test_put_image_exclusion_filters(server, ecr, mode):
    """`dev-*` is the exception: mutable in IMMUTABLE_WITH_EXCLUSION, immutable in
    MUTABLE_WITH_EXCLUSION. Both planes apply the same rule."""
    repo = make_repo(ecr, "excl", imageTagMutability=mode,
                     imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}])
    try:
        frozen, movable = ("release", "dev-1") if mode == "IMMUTABLE_WITH_EXCLUSION" else ("dev-1", "release")
        first = api_image(ecr, repo, tag=frozen)
        put(ecr, repo, first, tag=movable)
        second = oci_image()
        upload_blobs(ecr, repo, second)
        assert put(ecr, repo, second, tag=movable)["image"]["imageId"]["imageDigest"] == second.digest
        before = state(ecr, repo)
        err = client_error(put, ecr, repo, second, tag=frozen)
        msg = check_error(err, "ImageTagAlreadyExistsException")
        # ECR-BEHAVIOUR.md: the pre-2025 text, or "... because the tag is immutable." since the
        # exclusion-filter launch
        assert msg in (
            tag_immutable_msg(repo, frozen),
            tag_immutable_msg(repo, frozen).replace("the repository is immutable", "the tag is immutable"),
        ), msg
        assert state(ecr, repo) == before
        r = dp_put_manifest(server, ecr, repo, second, frozen)
        assert oci_errors(r) and oci_errors(r)[0]["code"] == "TAG_INVALID", (r.status_code, r.text)
        r = dp_put_manifest(server, ecr, repo, first, movable)
        assert r.status_code == 201, (r.status_code, r.text)
        assert get_one(ecr, repo, imageTag=frozen)["imageId"]["imageDigest"] == first.digest
        assert get_one(ecr, repo, imageTag=movable)["imageId"]["imageDigest"] == first.digest
    finally:
        ecr.delete_repository(repositoryName=repo, force=True)


@pytest.mark.parametrize("missing", ["layer", "config", "both-layers"])
def test_put_image_layers_not_found(ecr, repo, missing):
    built = oci_image(n_layers=2)
    if missing == "layer":
        upload_layer(ecr, repo, built.config)
        upload_layer(ecr, repo, built.layers[0])
        absent = [sha256(built.layers[1])]
    elif missing == "config":
        for layer in built.layers:
            upload_layer(ecr, repo, layer)
        absent = [sha256(built.config)]
    else:
        upload_layer(ecr, repo, built.config)
        absent = [sha256(x) for x in built.layers]
    before = state(ecr, repo)
    err = client_error(put, ecr, repo, built, tag="v1")
    if len(absent) == 1:
        check_error(err, "LayersNotFoundException", layers_missing_msg(repo, absent))
    else:  # separator between several digests is not captured anywhere: check the frame only
        msg = check_error(err, "LayersNotFoundException", prefix="Layers with digests '[")
        assert msg.endswith(
            f"]' required for pushing image into repository with name '{repo}' in the registry with id "
            f"'{ACCOUNT_ID}' do not exist"
        ), msg
        for d in absent:
            assert d in msg
    assert state(ecr, repo) == before
    err = client_error(ecr.describe_images, repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    check_error(err, "ImageNotFoundException")


def test_put_image_layers_in_another_repository(ecr, repo):
    other = make_repo(ecr, "layers-elsewhere")
    try:
        built = oci_image()
        upload_blobs(ecr, other, built)
        err = client_error(put, ecr, repo, built, tag="v1")
        check_error(err, "LayersNotFoundException", prefix="Layers with digests '[")
        assert state(ecr, repo) == ([], [])
    finally:
        ecr.delete_repository(repositoryName=other, force=True)


def test_put_image_referenced_images_not_found(ecr, repo):
    present = api_image(ecr, repo, tag=None)
    absent = oci_image()  # never pushed
    idx = index_of([present, absent])
    before = state(ecr, repo)
    err = client_error(put, ecr, repo, idx, tag="multi")
    msg = check_error(err, "ReferencedImagesNotFoundException")
    assert absent.digest in msg and present.digest not in msg, msg
    assert state(ecr, repo) == before


def size_mismatch_msg(digest, declared, stored):
    """Berth's text (ECR documents no exception for this; PutImage's manifest checks answer
    InvalidParameterException)."""
    return (
        "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
        f"'The size {declared} declared for {digest} does not match the stored size {stored}'"
    )


def with_layer_size(built, size):
    """The same image, its first layer descriptor declaring `size`."""
    doc = json.loads(built.manifest)
    doc["layers"][0]["size"] = size
    return type(built)(json.dumps(doc), built.media_type, built.config, built.layers, built.config_media_type)


@pytest.mark.parametrize("declared", [5_000_000_000, 1], ids=["huge", "small"])
def test_put_image_declared_layer_size_must_be_stored_size(ecr, repo, declared):
    built = oci_image(n_layers=1)
    upload_blobs(ecr, repo, built)
    before = state(ecr, repo)
    lying = with_layer_size(built, declared)
    err = client_error(put, ecr, repo, lying, tag="v1")
    layer = built.layers[0]
    check_error(err, "InvalidParameterException", size_mismatch_msg(sha256(layer), declared, len(layer)))
    assert state(ecr, repo) == before
    # The truthful manifest goes in, and DescribeImages reports the stored sizes.
    put(ecr, repo, built, tag="v1")
    assert the_detail(ecr, repo, imageTag="v1")["imageSizeInBytes"] == len(built.config) + len(layer)


def test_put_image_index_child_size_must_be_manifest_size(ecr, repo):
    child = api_image(ecr, repo, tag=None, n_layers=1)
    idx = index_of([child])
    doc = json.loads(idx.manifest)
    true_size = doc["manifests"][0]["size"]
    doc["manifests"][0]["size"] = true_size + 7
    lying = type(idx)(json.dumps(doc), idx.media_type)
    before = state(ecr, repo)
    err = client_error(put, ecr, repo, lying, tag="multi")
    check_error(err, "InvalidParameterException", size_mismatch_msg(child.digest, true_size + 7, true_size))
    assert state(ecr, repo) == before
    put(ecr, repo, idx, tag="multi")
    assert the_detail(ecr, repo, imageTag="multi")["imageSizeInBytes"] == child.size


def test_put_image_digest_does_not_match(ecr, repo):
    built = oci_image()
    upload_blobs(ecr, repo, built)
    before = state(ecr, repo)
    wrong = sha256(built.manifest + " ")
    err = client_error(put, ecr, repo, built, tag="v1", imageDigest=wrong)
    check_error(err, "ImageDigestDoesNotMatchException")
    assert state(ecr, repo) == before


@pytest.mark.parametrize(
    "manifest",
    [
        "this is not json",
        "{}",
        "[1, 2, 3]",
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}),  # no config, no layers
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": "sha256:zz", "size": 2}, "layers": []}),
    ],
    ids=["not-json", "empty-object", "array", "no-config", "bad-config-digest"],
)
def test_put_image_invalid_manifest(ecr, repo, manifest):
    api_image(ecr, repo, tag="keep")
    before = state(ecr, repo)
    err = client_error(
        ecr.put_image, repositoryName=repo, imageManifest=manifest, imageTag="v1",
        imageManifestMediaType=OCI_MANIFEST,
    )
    check_error(err, "InvalidParameterException")
    assert state(ecr, repo) == before


@pytest.mark.parametrize("tag", ["has space", "x" * 301, "bad/tag", "ta:g"])
def test_put_image_invalid_tag(ecr, repo, tag):
    built = oci_image()
    upload_blobs(ecr, repo, built)
    err = client_error(put, ecr, repo, built, tag=tag)
    check_error(err, "InvalidParameterException")
    assert state(ecr, repo) == ([], [])


def test_put_image_repository_not_found(ecr):
    name = unique("noput")
    built = oci_image()
    err = client_error(put, ecr, name, built, tag="v1")
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))
    assert_absent(ecr, name)


# ============================================================================================
# BatchGetImage


def test_batch_get_image_by_tag_digest_and_both(ecr, repo):
    a = api_image(ecr, repo, tag="a")
    b = api_image(ecr, repo, tag="b", docker=True)
    r = ecr.batch_get_image(
        repositoryName=repo,
        registryId=ACCOUNT_ID,
        imageIds=[{"imageTag": "a"}, {"imageDigest": b.digest}, {"imageDigest": a.digest, "imageTag": "a"}],
    )
    assert r["failures"] == []
    imgs = r["images"]
    assert len(imgs) == 3
    assert imgs[0]["imageId"] == {"imageDigest": a.digest, "imageTag": "a"}
    assert imgs[1]["imageId"]["imageDigest"] == b.digest
    assert imgs[2]["imageId"] == {"imageDigest": a.digest, "imageTag": "a"}
    assert [i["imageManifest"] for i in imgs] == [a.manifest, b.manifest, a.manifest]
    assert [i["imageManifestMediaType"] for i in imgs] == [OCI_MANIFEST, DOCKER_MANIFEST, OCI_MANIFEST]
    for i in imgs:
        assert i["registryId"] == ACCOUNT_ID and i["repositoryName"] == repo


def test_batch_get_image_failures(ecr, repo):
    a = api_image(ecr, repo, tag="a")
    b = api_image(ecr, repo, tag="b")
    r = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[
            {"imageTag": "latest"},
            {"imageDigest": sha256(b"nothing")},
            {},
            {"imageDigest": "sha256:not-hex!"},
            {"imageTag": "bad tag!"},
            {"imageDigest": a.digest, "imageTag": "b"},
            {"imageTag": "a"},
        ],
    )
    assert [i["imageId"] for i in r["images"]] == [{"imageDigest": a.digest, "imageTag": "a"}]
    fails = r["failures"]
    # ECR-BEHAVIOUR.md gives this failure verbatim
    assert fails[0] == {"imageId": {"imageTag": "latest"}, "failureCode": "ImageNotFound",
                        "failureReason": "Requested image not found"}
    assert [(f["imageId"], f["failureCode"]) for f in fails[1:]] == [
        ({"imageDigest": sha256(b"nothing")}, "ImageNotFound"),
        ({}, "MissingDigestAndTag"),
        ({"imageDigest": "sha256:not-hex!"}, "InvalidImageDigest"),
        ({"imageTag": "bad tag!"}, "InvalidImageTag"),
        ({"imageDigest": a.digest, "imageTag": "b"}, "ImageTagDoesNotMatchDigest"),
    ]
    for f in fails:
        assert f.get("failureReason"), f
    assert b  # untouched


def test_batch_get_image_accepted_media_types(ecr, repo):
    oci = api_image(ecr, repo, tag="oci")
    dock = api_image(ecr, repo, tag="dock", docker=True)
    r = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "oci"}, {"imageTag": "dock"}],
        acceptedMediaTypes=[OCI_MANIFEST, DOCKER_MANIFEST],
    )
    assert r["failures"] == []
    assert [(i["imageManifest"], i["imageManifestMediaType"]) for i in r["images"]] == [
        (oci.manifest, OCI_MANIFEST), (dock.manifest, DOCKER_MANIFEST)]
    # an index type only: neither manifest can be served
    r = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "oci"}, {"imageDigest": dock.digest}],
        acceptedMediaTypes=[OCI_INDEX],
    )
    assert r["images"] == []
    assert [f["imageId"] for f in r["failures"]] == [{"imageTag": "oci"}, {"imageDigest": dock.digest}]
    for f in r["failures"]:
        assert f["failureCode"] in FAILURE_CODES, f


def test_batch_get_image_repository_not_found(ecr):
    name = unique("noget")
    err = client_error(ecr.batch_get_image, repositoryName=name, imageIds=[{"imageTag": "a"}])
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


def test_batch_get_image_id_count(ecr_raw, repo):
    err = client_error(ecr_raw.batch_get_image, repositoryName=repo, imageIds=[])
    check_error(err, "InvalidParameterException")
    err = client_error(ecr_raw.batch_get_image, repositoryName=repo,
                       imageIds=[{"imageTag": f"t{i}"} for i in range(101)])
    check_error(err, "InvalidParameterException")


# ============================================================================================
# BatchDeleteImage


def test_batch_delete_tag_keeps_other_tags(server, ecr, repo):
    built = api_image(ecr, repo, tag="a")
    put(ecr, repo, built, tag="b")
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a"}])
    assert body(r) == {"imageIds": [{"imageDigest": built.digest, "imageTag": "a"}], "failures": []}
    (d,) = describe_all(ecr, repo)
    assert d["imageDigest"] == built.digest and d["imageTags"] == ["b"]
    assert id_set(list_all(ecr, repo)) == {(built.digest, "b")}
    assert dp_get_manifest(server, ecr, repo, "a").status_code == 404
    assert dp_get_manifest(server, ecr, repo, "b").status_code == 200


def test_batch_delete_last_tag_deletes_image(server, ecr, repo):
    keep = api_image(ecr, repo, tag="keep")
    built = api_image(ecr, repo, tag="only")
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "only"}])
    assert body(r) == {"imageIds": [{"imageDigest": built.digest, "imageTag": "only"}], "failures": []}
    assert set(details_by_digest(ecr, repo)) == {keep.digest}
    err = client_error(ecr.describe_images, repositoryName=repo, imageIds=[{"imageDigest": built.digest}])
    check_error(err, "ImageNotFoundException", image_not_found_msg(repo, digest=built.digest))
    r = dp_get_manifest(server, ecr, repo, built.digest)
    assert r.status_code == 404 and oci_errors(r)[0]["code"] == "MANIFEST_UNKNOWN", (r.status_code, r.text)


def test_batch_delete_digest_deletes_all_tags(server, ecr, repo):
    built = api_image(ecr, repo, tag="a")
    put(ecr, repo, built, tag="b")
    put(ecr, repo, built, tag="c")
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": built.digest}])
    assert r["failures"] == []
    assert r["imageIds"], r
    for i in r["imageIds"]:
        assert i["imageDigest"] == built.digest
    assert describe_all(ecr, repo) == []
    assert list_all(ecr, repo) == []
    for t in ("a", "b", "c"):
        assert dp_get_manifest(server, ecr, repo, t).status_code == 404
    # the repository is empty again: plain DeleteRepository works
    ecr.delete_repository(repositoryName=repo)


def test_batch_delete_not_found_verbatim(ecr, repo):
    api_image(ecr, repo, tag="other")
    before = state(ecr, repo)
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])
    # ECR-BEHAVIOUR.md, from aws/aws-cli#6424
    assert body(r) == {
        "failures": [{"failureCode": "ImageNotFound", "failureReason": "Requested image not found",
                      "imageId": {"imageTag": "latest"}}],
        "imageIds": [],
    }
    assert state(ecr, repo) == before


def test_batch_delete_failures(ecr, repo):
    a = api_image(ecr, repo, tag="a")
    b = api_image(ecr, repo, tag="b")
    before = state(ecr, repo)
    ids = [
        {"imageDigest": sha256(b"nothing")},
        {},
        {"imageDigest": "md5:xyz"},
        {"imageTag": "no spaces allowed"},
        {"imageDigest": a.digest, "imageTag": "b"},
    ]
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=ids)
    assert r["imageIds"] == []
    assert [(f["imageId"], f["failureCode"]) for f in r["failures"]] == [
        (ids[0], "ImageNotFound"),
        (ids[1], "MissingDigestAndTag"),
        (ids[2], "InvalidImageDigest"),
        (ids[3], "InvalidImageTag"),
        (ids[4], "ImageTagDoesNotMatchDigest"),
    ]
    assert r["failures"][0]["failureReason"] == "Requested image not found"
    for f in r["failures"]:
        assert f.get("failureReason"), f
    assert state(ecr, repo) == before
    assert b


def test_batch_delete_mixed(ecr, repo):
    a = api_image(ecr, repo, tag="a")
    b = api_image(ecr, repo, tag="b")
    r = ecr.batch_delete_image(
        repositoryName=repo, imageIds=[{"imageTag": "a"}, {"imageTag": "zzz"}, {"imageDigest": b.digest}]
    )
    assert r["imageIds"][0] == {"imageDigest": a.digest, "imageTag": "a"}
    assert all(i["imageDigest"] == b.digest for i in r["imageIds"][1:]) and len(r["imageIds"]) >= 2
    assert [(f["imageId"], f["failureCode"]) for f in r["failures"]] == [({"imageTag": "zzz"}, "ImageNotFound")]
    assert describe_all(ecr, repo) == []


def test_batch_delete_image_referenced_by_manifest_list(ecr, repo):
    c1 = api_image(ecr, repo, tag=None)
    c2 = api_image(ecr, repo, tag="child-tag")
    idx = index_of([c1, c2])
    put(ecr, repo, idx, tag="multi")
    before = state(ecr, repo)
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": c1.digest},
                                                              {"imageDigest": c2.digest}])
    assert r["imageIds"] == []
    assert [(f["imageId"], f["failureCode"]) for f in r["failures"]] == [
        ({"imageDigest": c1.digest}, "ImageReferencedByManifestList"),
        ({"imageDigest": c2.digest}, "ImageReferencedByManifestList"),
    ]
    assert state(ecr, repo) == before
    # delete the index first, then the children go
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    assert r["imageIds"] == [{"imageDigest": idx.digest, "imageTag": "multi"}]
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": c1.digest},
                                                              {"imageDigest": c2.digest}])
    assert r["failures"] == []
    assert describe_all(ecr, repo) == []


def test_batch_delete_repository_not_found(ecr):
    name = unique("nodel")
    err = client_error(ecr.batch_delete_image, repositoryName=name, imageIds=[{"imageTag": "a"}])
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


def test_batch_delete_id_count(ecr_raw, repo):
    err = client_error(ecr_raw.batch_delete_image, repositoryName=repo, imageIds=[])
    check_error(err, "InvalidParameterException")


# ============================================================================================
# DescribeImages


def test_describe_images_tag_status(ecr, repo):
    tagged = api_image(ecr, repo, tag="t")
    untagged = api_image(ecr, repo, tag=None)
    all_ = {d["imageDigest"] for d in describe_all(ecr, repo)}
    assert all_ == {tagged.digest, untagged.digest}
    assert {d["imageDigest"] for d in describe_all(ecr, repo, filter={"tagStatus": "ANY"})} == all_
    assert [d["imageDigest"] for d in describe_all(ecr, repo, filter={"tagStatus": "TAGGED"})] == [tagged.digest]
    assert [d["imageDigest"] for d in describe_all(ecr, repo, filter={"tagStatus": "UNTAGGED"})] == [untagged.digest]


def test_describe_images_by_ids(ecr, repo):
    a = api_image(ecr, repo, tag="a")
    b = api_image(ecr, repo, tag=None)
    r = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "a"}, {"imageDigest": b.digest}])
    assert [d["imageDigest"] for d in r["imageDetails"]] == [a.digest, b.digest]
    assert "nextToken" not in r


def test_describe_images_not_found_tag(ecr, repo):
    api_image(ecr, repo, tag="a")
    err = client_error(ecr.describe_images, repositoryName=repo, imageIds=[{"imageTag": "latest"}])
    check_error(err, "ImageNotFoundException", image_not_found_msg(repo, tag="latest"))


def test_describe_images_not_found_digest_fails_whole_call(ecr, repo):
    api_image(ecr, repo, tag="a")
    missing = sha256(b"missing")
    err = client_error(ecr.describe_images, repositoryName=repo,
                       imageIds=[{"imageTag": "a"}, {"imageDigest": missing}])
    check_error(err, "ImageNotFoundException", image_not_found_msg(repo, digest=missing))


def test_describe_images_ids_with_max_results(ecr_raw, repo):
    api_image(ecr_raw, repo, tag="a")
    err = client_error(ecr_raw.describe_images, repositoryName=repo, imageIds=[{"imageTag": "a"}], maxResults=5)
    check_error(err, "InvalidParameterException")


def test_describe_images_pagination(ecr, repo):
    digests = {api_image(ecr, repo, tag=f"t{i}", n_layers=1).digest for i in range(5)}
    r = ecr.describe_images(repositoryName=repo, maxResults=2)
    assert len(r["imageDetails"]) == 2 and r.get("nextToken")
    seen = [d["imageDigest"] for d in r["imageDetails"]]
    pages = 1
    while r.get("nextToken"):
        r = ecr.describe_images(repositoryName=repo, maxResults=2, nextToken=r["nextToken"])
        seen += [d["imageDigest"] for d in r["imageDetails"]]
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(digests)
    # the paginator agrees
    assert {d["imageDigest"] for d in describe_all(ecr, repo, PaginationConfig={"PageSize": 1})} == digests


@pytest.mark.parametrize("n", [0, 1001])
def test_describe_images_max_results_range(ecr_raw, repo, n):
    err = client_error(ecr_raw.describe_images, repositoryName=repo, maxResults=n)
    check_error(err, "InvalidParameterException")


def test_describe_images_repository_not_found(ecr):
    name = unique("nodesc")
    err = client_error(ecr.describe_images, repositoryName=name)
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


def test_describe_images_wire_timestamps(server, ecr, repo):
    api_image(ecr, repo, tag="w")
    r = raw_call(server, "DescribeImages", {"repositoryName": repo})
    assert r.status == 200, r
    (d,) = r.json["imageDetails"]
    assert isinstance(d["imagePushedAt"], (int, float)) and not isinstance(d["imagePushedAt"], bool), r
    assert abs(d["imagePushedAt"] - utcnow().timestamp()) < 60


def test_describe_images_last_recorded_pull_time(server, ecr, repo):
    built = api_image(ecr, repo, tag="pull-me")
    assert "lastRecordedPullTime" not in the_detail(ecr, repo, imageTag="pull-me")
    before = utcnow()
    g = dp_get_manifest(server, ecr, repo, "pull-me")
    assert g.status_code == 200 and g.content == built.manifest.encode()
    d = wait_for(lambda: (x := the_detail(ecr, repo, imageTag="pull-me")).get("lastRecordedPullTime") and x)
    assert d, "lastRecordedPullTime never appeared after a data-plane pull"
    assert before - SLACK <= d["lastRecordedPullTime"] <= utcnow() + SLACK


def test_describe_images_artifact_with_subject(ecr, repo):
    subject = api_image(ecr, repo, tag="app")
    sig = artifact(subject, "application/vnd.example.signature.v1")
    upload_blobs(ecr, repo, sig)
    put(ecr, repo, sig, imageDigest=sig.digest)
    d = the_detail(ecr, repo, imageDigest=sig.digest)
    assert d["subjectManifestDigest"] == subject.digest
    assert d["artifactMediaType"] == OCI_EMPTY  # the config media type
    assert d["imageSizeInBytes"] == sig.size
    assert "subjectManifestDigest" not in the_detail(ecr, repo, imageTag="app")


# ============================================================================================
# ListImages


def test_list_images_one_id_per_tag(ecr, repo):
    a = api_image(ecr, repo, tag="a1")
    put(ecr, repo, a, tag="a2")
    u = api_image(ecr, repo, tag=None)
    ids = list_all(ecr, repo)
    assert len(ids) == 3
    assert id_set(ids) == {(a.digest, "a1"), (a.digest, "a2"), (u.digest, None)}
    assert {"imageDigest": u.digest} in ids
    assert id_set(list_all(ecr, repo, filter={"tagStatus": "TAGGED"})) == {(a.digest, "a1"), (a.digest, "a2")}
    assert id_set(list_all(ecr, repo, filter={"tagStatus": "UNTAGGED"})) == {(u.digest, None)}
    assert id_set(list_all(ecr, repo, filter={"tagStatus": "ANY"})) == id_set(ids)


def test_list_images_pagination(ecr, repo):
    built = api_image(ecr, repo, tag="p0", n_layers=1)
    for i in range(1, 5):
        put(ecr, repo, built, tag=f"p{i}")
    r = ecr.list_images(repositoryName=repo, maxResults=2)
    seen = r["imageIds"]
    assert len(seen) == 2 and r.get("nextToken")
    while r.get("nextToken"):
        r = ecr.list_images(repositoryName=repo, maxResults=2, nextToken=r["nextToken"])
        seen += r["imageIds"]
    assert "nextToken" not in r
    assert sorted(i["imageTag"] for i in seen) == [f"p{i}" for i in range(5)]
    assert len(list_all(ecr, repo, PaginationConfig={"PageSize": 1})) == 5


def test_list_images_empty_and_missing(ecr, repo):
    r = ecr.list_images(repositoryName=repo)
    assert body(r) == {"imageIds": []}
    name = unique("nolist")
    err = client_error(ecr.list_images, repositoryName=name)
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


# ============================================================================================
# ListImageReferrers


def test_list_image_referrers(ecr, repo):
    subject = api_image(ecr, repo, tag="app")
    sig = artifact(subject, "application/vnd.example.signature.v1",
                   annotations={"org.example.signed-by": "berth-tests"})
    sbom = artifact(subject, "application/vnd.example.sbom.v1", via_config=True)
    for art in (sig, sbom):
        upload_blobs(ecr, repo, art)
        put(ecr, repo, art, imageDigest=art.digest)
    unrelated = api_image(ecr, repo, tag="other")

    r = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest})
    assert "nextToken" not in r
    got = {x["digest"]: x for x in r["referrers"]}
    assert set(got) == {sig.digest, sbom.digest}
    assert got[sig.digest]["mediaType"] == OCI_MANIFEST
    assert got[sig.digest]["artifactType"] == "application/vnd.example.signature.v1"
    assert got[sig.digest]["size"] == len(sig.manifest.encode())
    assert got[sig.digest]["annotations"] == {"org.example.signed-by": "berth-tests"}
    assert got[sbom.digest]["artifactType"] == "application/vnd.example.sbom.v1"  # from config.mediaType
    assert got[sbom.digest]["size"] == len(sbom.manifest.encode())
    for x in got.values():
        assert x.get("artifactStatus", "ACTIVE") == "ACTIVE"

    r = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                 filter={"artifactTypes": ["application/vnd.example.sbom.v1"]})
    assert [x["digest"] for x in r["referrers"]] == [sbom.digest]
    r = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                 filter={"artifactTypes": ["application/vnd.example.none"]})
    assert r["referrers"] == []

    # pagination
    r = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest}, maxResults=1)
    assert len(r["referrers"]) == 1 and r.get("nextToken")
    r2 = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest}, maxResults=1,
                                  nextToken=r["nextToken"])
    assert len(r2["referrers"]) == 1 and not r2.get("nextToken")
    assert {r["referrers"][0]["digest"], r2["referrers"][0]["digest"]} == {sig.digest, sbom.digest}

    # an image nobody refers to
    r = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": unrelated.digest})
    assert r["referrers"] == []


def test_list_image_referrers_errors(ecr, repo):
    name = unique("noref")
    err = client_error(ecr.list_image_referrers, repositoryName=name, subjectId={"imageDigest": sha256(b"a")})
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))
    err = client_error(ecr.list_image_referrers, repositoryName=repo, subjectId={"imageDigest": "nope"})
    check_error(err, "InvalidParameterException")
    err = client_error(ecr.list_image_referrers, repositoryName="BAD", subjectId={"imageDigest": sha256(b"a")})
    check_error(err, "InvalidParameterException", NAME_REGEX_MSG)


# ============================================================================================
# Data plane: ECR's answers


def test_data_plane_push_to_missing_repository(server, ecr):
    name = unique("nopush")
    msg = not_found_msg(name)
    r = v2(server, ecr, "POST", f"{name}/blobs/uploads/")
    assert r.status_code == 404, (r.status_code, r.text)
    assert oci_errors(r)[0]["code"] == "NAME_UNKNOWN" and oci_errors(r)[0]["message"] == msg, r.text
    built = oci_image()
    r = dp_put_manifest(server, ecr, name, built, "v1")
    assert r.status_code == 404, (r.status_code, r.text)
    assert oci_errors(r)[0]["code"] == "NAME_UNKNOWN" and oci_errors(r)[0]["message"] == msg, r.text
    assert_absent(ecr, name)


def test_data_plane_immutable_tag(server, ecr, immutable_repo):
    repo = immutable_repo
    first = oci_image()
    r = dp_push(server, ecr, repo, first, "v1")
    assert r.status_code == 201, (r.status_code, r.text)
    before = state(ecr, repo)
    second = oci_image()
    r = dp_push(server, ecr, repo, second, "v1")
    errs = oci_errors(r)
    assert errs and errs[0]["code"] == "TAG_INVALID", (r.status_code, r.text)
    assert errs[0]["message"] == tag_immutable_msg(repo, "v1"), r.text
    assert r.status_code == 400, (r.status_code, r.text)  # [unconfirmed] in the reference
    # the same manifest again is refused too (ECR: even when the digest is identical)
    r = dp_put_manifest(server, ecr, repo, first, "v1")
    assert oci_errors(r) and oci_errors(r)[0]["code"] == "TAG_INVALID", (r.status_code, r.text)
    assert state(ecr, repo) == before
    assert get_one(ecr, repo, imageTag="v1")["imageManifest"] == first.manifest


def test_data_plane_needs_credentials(server, ecr, repo):
    built = api_image(ecr, repo, tag="v1")
    for path in (f"{repo}/manifests/v1", f"{repo}/blobs/{sha256(built.config)}", f"{repo}/tags/list"):
        r = v2(server, ecr, "GET", path, auth=False)
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.headers.get("WWW-Authenticate", "").startswith("Basic realm="), r.headers


# ============================================================================================
# Cross-checks: layer API <-> data plane <-> real clients


def test_push_image_helper_visible(server, ecr, repo):
    push_image(server, ecr, repo, tag="helper")
    (d,) = describe_all(ecr, repo)
    assert d["imageTags"] == ["helper"]
    assert d["imageManifestMediaType"] == OCI_MANIFEST
    assert d["artifactMediaType"] == OCI_CONFIG
    img = get_one(ecr, repo, imageTag="helper")
    manifest = json.loads(img["imageManifest"])
    assert sha256(img["imageManifest"]) == d["imageDigest"]
    assert d["imageSizeInBytes"] == manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"])
    g = dp_get_manifest(server, ecr, repo, "helper")
    assert g.content == img["imageManifest"].encode()


def test_data_plane_push_visible_in_api(server, ecr, repo):
    built = oci_image(indent=1, n_layers=3)
    r = dp_push(server, ecr, repo, built, "dp")
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers.get("Docker-Content-Digest") == built.digest
    img = get_one(ecr, repo, imageTag="dp")
    assert img["imageManifest"] == built.manifest
    d = the_detail(ecr, repo, imageTag="dp")
    assert d["imageDigest"] == built.digest and d["imageSizeInBytes"] == built.size
    # its layers are layers for the API too
    r = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha256(x) for x in built.blobs])
    assert r["failures"] == [] and len(r["layers"]) == 4


def test_api_put_visible_on_data_plane(server, ecr, repo):
    built = api_image(ecr, repo, tag="api", indent=2, docker=True)
    g = dp_get_manifest(server, ecr, repo, "api")
    assert g.status_code == 200
    assert g.content == built.manifest.encode()
    assert g.headers["Content-Type"] == DOCKER_MANIFEST
    for blob in built.blobs:
        b = v2(server, ecr, "GET", f"{repo}/blobs/{sha256(blob)}")
        assert b.status_code == 200 and b.content == blob
    tags = v2(server, ecr, "GET", f"{repo}/tags/list").json()
    assert tags["tags"] == ["api"]
    # a data-plane delete by tag shows in the API
    r = v2(server, ecr, "DELETE", f"{repo}/manifests/{built.digest}")
    assert r.status_code == 202, (r.status_code, r.text)
    assert describe_all(ecr, repo) == []


def skopeo_creds(ecr):
    return f"AWS:{password_of(ecr)}"


def test_skopeo_push_visible_in_api(server, ecr, repo):
    need("umoci", "skopeo")
    with tempfile.TemporaryDirectory(prefix="berth-skopeo-") as tmp:
        layout, digest, mbytes = umoci_layout(tmp, "v1", {"hello.txt": os.urandom(64).hex().encode()})
        env = skopeo_env(tmp)
        digestfile = Path(tmp) / "digest"
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", skopeo_creds(ecr),
            "--digestfile", str(digestfile), f"oci:{layout}:v1", f"docker://{server.hostport}/{repo}:v1", env=env)
        assert digestfile.read_text().strip() == digest
        d = the_detail(ecr, repo, imageTag="v1")
        assert d["imageDigest"] == digest
        assert d["imageManifestMediaType"] == OCI_MANIFEST
        assert d["artifactMediaType"] == OCI_CONFIG
        m = json.loads(mbytes)
        assert d["imageSizeInBytes"] == m["config"]["size"] + sum(x["size"] for x in m["layers"])
        img = get_one(ecr, repo, imageTag="v1")
        assert img["imageManifest"].encode() == mbytes  # identical bytes
        assert img["imageManifestMediaType"] == OCI_MANIFEST

        # and in Docker v2s2 form (skopeo converts; the digest it reports is what ECR shows)
        df2 = Path(tmp) / "digest2"
        run("skopeo", "copy", "--quiet", "--format", "v2s2", "--dest-tls-verify=false",
            "--dest-creds", skopeo_creds(ecr), "--digestfile", str(df2),
            f"oci:{layout}:v1", f"docker://{server.hostport}/{repo}:v2s2", env=env)
        d2 = the_detail(ecr, repo, imageTag="v2s2")
        assert d2["imageDigest"] == df2.read_text().strip()
        assert d2["imageManifestMediaType"] == DOCKER_MANIFEST
        assert d2["artifactMediaType"] == DOCKER_CONFIG
        raw = run("skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", skopeo_creds(ecr),
                  f"docker://{server.hostport}/{repo}:v2s2", env=env).stdout
        assert get_one(ecr, repo, imageTag="v2s2")["imageManifest"] == raw
        assert sha256(raw) == d2["imageDigest"]
        # the layers skopeo pushed are downloadable through the API
        for layer in json.loads(raw)["layers"]:
            url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer["digest"])["downloadUrl"]
            data = requests.get(url, timeout=60).content
            assert sha256(data) == layer["digest"] and len(data) == layer["size"]


def test_put_image_pulls_with_skopeo(server, ecr, repo):
    need("skopeo")
    built = api_image(ecr, repo, tag="api", indent=4, n_layers=2, parts=4)
    with tempfile.TemporaryDirectory(prefix="berth-skopeo-") as tmp:
        env = skopeo_env(tmp)
        ref = f"docker://{server.hostport}/{repo}:api"
        raw = run("skopeo", "inspect", "--raw", "--creds", skopeo_creds(ecr), "--tls-verify=false", ref,
                  env=env).stdout
        assert raw == built.manifest  # byte-identical
        out = Path(tmp) / "pulled"
        run("skopeo", "copy", "--quiet", "--src-tls-verify=false", "--src-creds", skopeo_creds(ecr),
            ref, f"dir:{out}", env=env)
        assert (out / "manifest.json").read_bytes() == built.manifest.encode()
        for blob in built.blobs:
            assert (out / sha256(blob).split(":", 1)[1]).read_bytes() == blob
        # a pulled copy goes back in as a new tag, byte-identical, and ECR sees one image with two tags
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", skopeo_creds(ecr),
            f"dir:{out}", f"docker://{server.hostport}/{repo}:again", env=env)
    (d,) = describe_all(ecr, repo)
    assert d["imageDigest"] == built.digest and sorted(d["imageTags"]) == ["again", "api"]


def test_skopeo_immutable_overwrite_refused(server, ecr, immutable_repo):
    need("umoci", "skopeo")
    repo = immutable_repo
    built = api_image(ecr, repo, tag="fixed")
    before = state(ecr, repo)
    with tempfile.TemporaryDirectory(prefix="berth-skopeo-") as tmp:
        layout, _, _ = umoci_layout(tmp, "v1", {"x": os.urandom(16)})
        res = run("skopeo", "copy", "--quiet", "--retry-times", "0", "--dest-tls-verify=false",
                  "--dest-creds", skopeo_creds(ecr), f"oci:{layout}:v1",
                  f"docker://{server.hostport}/{repo}:fixed", env=skopeo_env(tmp), check=False)
    assert res.returncode != 0
    assert "TAG_INVALID" in res.stderr or "tag invalid" in res.stderr, res.stderr
    assert f"The image tag 'fixed' already exists in the '{repo}' repository" in res.stderr, res.stderr
    after = state(ecr, repo)
    # skopeo uploaded layers first; images and tags are unchanged
    assert after == before
    assert get_one(ecr, repo, imageTag="fixed")["imageManifest"] == built.manifest
