"""Tag mutability at creation and through PutImageTagMutability (with exclusion filters)."""

import re
import subprocess
import time
import types

import pytest

from ecrlib import (
    ACCOUNT_ID,
    NAME_REGEX_MSG,
    assert_absent,
    check_error,
    client_error,
    make_client,
    not_found_msg,
    unique,
)
from imagelib import oci_image, put, upload_blobs

DEV = {"filterType": "WILDCARD", "filter": "dev-*"}
LATEST = {"filterType": "WILDCARD", "filter": "latest"}


def describe(ecr, name):
    (repo,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    return repo


def body(resp):
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


@pytest.mark.parametrize("mode", ["MUTABLE", "IMMUTABLE"])
def test_create_plain_modes(ecr, mode):
    name = unique("mode")
    repo = ecr.create_repository(repositoryName=name, imageTagMutability=mode)["repository"]
    assert repo["imageTagMutability"] == mode
    assert repo.get("imageTagMutabilityExclusionFilters") in (None, [])
    assert describe(ecr, name) == repo


@pytest.mark.parametrize("mode", ["IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"])
def test_create_with_exclusion_filters(ecr, mode):
    name = unique("excl")
    repo = ecr.create_repository(
        repositoryName=name, imageTagMutability=mode, imageTagMutabilityExclusionFilters=[DEV, LATEST]
    )["repository"]
    assert repo["imageTagMutability"] == mode
    assert repo["imageTagMutabilityExclusionFilters"] == [DEV, LATEST]
    assert describe(ecr, name) == repo


def test_create_five_filters_ok(ecr):
    name = unique("five")
    filters = [{"filterType": "WILDCARD", "filter": f"f{i}-*"} for i in range(5)]
    filters[4] = {"filterType": "WILDCARD", "filter": "a" * 128}  # max length
    repo = ecr.create_repository(
        repositoryName=name,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=filters,
    )["repository"]
    assert repo["imageTagMutabilityExclusionFilters"] == filters


@pytest.mark.parametrize(
    "mode,filters",
    [
        ("MUTABLE", [DEV]),  # filters with a plain mode
        ("IMMUTABLE", [DEV]),
        ("IMMUTABLE_WITH_EXCLUSION", None),  # *_WITH_EXCLUSION without filters
        ("MUTABLE_WITH_EXCLUSION", None),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "WILDCARD", "filter": f"t{i}"} for i in range(6)]),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "WILDCARD", "filter": "bad/tag"}]),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "WILDCARD", "filter": "has space"}]),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "WILDCARD", "filter": "a" * 129}]),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "REGEX", "filter": "dev-.*"}]),
    ],
    ids=[
        "mutable+filters",
        "immutable+filters",
        "immutable_we-no-filters",
        "mutable_we-no-filters",
        "six-filters",
        "slash-in-filter",
        "space-in-filter",
        "129-char-filter",
        "regex-filter-type",
    ],
)
def test_create_invalid_filters(ecr, mode, filters):
    name = unique("badf")
    kwargs = {"repositoryName": name, "imageTagMutability": mode}
    if filters is not None:
        kwargs["imageTagMutabilityExclusionFilters"] = filters
    err = client_error(ecr.create_repository, **kwargs)
    check_error(err, "InvalidParameterException")
    assert_absent(ecr, name)


def test_filters_without_mode(ecr):
    """Filters with imageTagMutability omitted (default MUTABLE) are rejected like MUTABLE+filters."""
    name = unique("nomode")
    err = client_error(ecr.create_repository, repositoryName=name, imageTagMutabilityExclusionFilters=[DEV])
    check_error(err, "InvalidParameterException")
    assert_absent(ecr, name)


# ------------------------------------------------------------------------------------------
# PutImageTagMutability


def test_put_image_tag_mutability_transitions(ecr, repo):
    created = describe(ecr, repo)

    resp = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    b = body(resp)
    assert b.pop("imageTagMutabilityExclusionFilters", []) == []
    assert b == {"registryId": ACCOUNT_ID, "repositoryName": repo, "imageTagMutability": "IMMUTABLE"}
    now = describe(ecr, repo)
    assert now["imageTagMutability"] == "IMMUTABLE"
    assert now["createdAt"] == created["createdAt"]
    assert now["repositoryArn"] == created["repositoryArn"]

    resp = ecr.put_image_tag_mutability(
        repositoryName=repo,
        registryId=ACCOUNT_ID,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[LATEST, DEV],
    )
    assert body(resp) == {
        "registryId": ACCOUNT_ID,
        "repositoryName": repo,
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [LATEST, DEV],
    }
    now = describe(ecr, repo)
    assert now["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert now["imageTagMutabilityExclusionFilters"] == [LATEST, DEV]

    resp = ecr.put_image_tag_mutability(
        repositoryName=repo,
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[DEV],
    )
    assert body(resp) == {
        "registryId": ACCOUNT_ID,
        "repositoryName": repo,
        "imageTagMutability": "MUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [DEV],
    }
    assert describe(ecr, repo)["imageTagMutabilityExclusionFilters"] == [DEV]

    # back to plain MUTABLE: the filters go away
    resp = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
    b = body(resp)
    assert b.pop("imageTagMutabilityExclusionFilters", []) == []
    assert b == {"registryId": ACCOUNT_ID, "repositoryName": repo, "imageTagMutability": "MUTABLE"}
    now = describe(ecr, repo)
    assert now["imageTagMutability"] == "MUTABLE"
    assert now.get("imageTagMutabilityExclusionFilters") in (None, [])
    # nothing else changed
    for key in ("repositoryArn", "registryId", "repositoryUri", "createdAt",
                "imageScanningConfiguration", "encryptionConfiguration"):
        assert now[key] == created[key], key


def test_put_image_tag_mutability_idempotent(ecr, repo):
    for _ in range(2):
        resp = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
        assert resp["imageTagMutability"] == "IMMUTABLE"
    assert describe(ecr, repo)["imageTagMutability"] == "IMMUTABLE"


def test_put_image_tag_mutability_missing_repo(ecr):
    name = unique("nomut")
    err = client_error(ecr.put_image_tag_mutability, repositoryName=name, imageTagMutability="IMMUTABLE")
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))
    assert_absent(ecr, name)


def test_put_image_tag_mutability_invalid_name(ecr):
    err = client_error(ecr.put_image_tag_mutability, repositoryName="UPPER", imageTagMutability="IMMUTABLE")
    check_error(err, "InvalidParameterException", NAME_REGEX_MSG)


@pytest.mark.parametrize(
    "mode,filters",
    [
        ("SOMETIMES", None),
        ("MUTABLE", [DEV]),
        ("IMMUTABLE", [DEV]),
        ("IMMUTABLE_WITH_EXCLUSION", None),
        ("MUTABLE_WITH_EXCLUSION", None),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "WILDCARD", "filter": f"t{i}"} for i in range(6)]),
        ("IMMUTABLE_WITH_EXCLUSION", [{"filterType": "WILDCARD", "filter": "bad/tag"}]),
    ],
    ids=["bad-value", "mutable+filters", "immutable+filters", "immutable_we-no-filters",
         "mutable_we-no-filters", "six-filters", "slash-in-filter"],
)
def test_put_image_tag_mutability_invalid(ecr, repo, mode, filters):
    ecr.put_image_tag_mutability(
        repositoryName=repo, imageTagMutability="MUTABLE_WITH_EXCLUSION", imageTagMutabilityExclusionFilters=[LATEST]
    )
    before = describe(ecr, repo)
    kwargs = {"repositoryName": repo, "imageTagMutability": mode}
    if filters is not None:
        kwargs["imageTagMutabilityExclusionFilters"] = filters
    err = client_error(ecr.put_image_tag_mutability, **kwargs)
    check_error(err, "InvalidParameterException")
    assert describe(ecr, repo) == before


# ------------------------------------------------------------------------------------------
# A flip on one node binds PutImage on another at once


@pytest.fixture
def second_node(server):
    """Another `berth serve` on the same data directory (SQLite file and blob directory): a
    second node of the embedded deployment."""
    proc = subprocess.Popen(
        [server.binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(server.data_dir)],
        env=server.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    url, deadline = None, time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        m = re.search(r"berth listening on (http://127\.0\.0\.1:\d+)", line)
        url = m.group(1) if m else None
    if url is None:
        proc.kill()
        pytest.fail("the second node did not start")
    try:
        yield types.SimpleNamespace(url=url)
    finally:
        proc.kill()
        proc.wait()


FLIPS = [
    ("IMMUTABLE", [], "v", "v"),
    ("IMMUTABLE_WITH_EXCLUSION", [DEV], "release", "dev-1"),
    ("MUTABLE_WITH_EXCLUSION", [DEV], "dev-1", "release"),
]


def test_flip_on_one_node_binds_put_image_on_another(ecr, repo, second_node):
    """Node A flips the mode; PutImage through node B, which had just served the repository,
    refuses to move a protected tag at once, in every mode, every round."""
    other = make_client(second_node)
    for round_ in range(6):
        mode, filters, protected, free = FLIPS[round_ % len(FLIPS)]
        ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
        for tag in {protected, free}:
            built = oci_image(n_layers=1)
            upload_blobs(other, repo, built)
            put(other, repo, built, tag=tag)  # mutable: B moves it (and caches the repository)
        kw = {"imageTagMutabilityExclusionFilters": filters} if filters else {}
        ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability=mode, **kw)
        built = oci_image(n_layers=1)
        upload_blobs(other, repo, built)
        err = client_error(put, other, repo, built, tag=protected)
        check_error(
            err,
            "ImageTagAlreadyExistsException",
            f"The image tag '{protected}' already exists in the '{repo}' repository and cannot be "
            "overwritten because the repository is immutable.",
        )
        if free != protected:
            assert put(other, repo, built, tag=free)["image"]["imageId"]["imageTag"] == free
