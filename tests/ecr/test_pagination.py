"""Pagination under concurrent writes (issue 16): every paginated listing returns each item that
exists for the whole walk exactly once, and never any item twice, while other clients push and
delete in the same repository (or account). Pages are keyset cursors, so neither a push nor a
delete between two pages shifts what the next page holds.

Covered: ListImages (ANY, TAGGED, UNTAGGED), DescribeImages (ANY, UNTAGGED), ListImageReferrers,
DescribeRepositories, OCI tags/list and _catalog (n + last, following the Link header). Also:
tokens are opaque and checked, and a token of one operation is refused by another.
"""

import json
import threading
import time
import urllib.parse
from collections import Counter

import pytest
import requests

from ecrlib import basic_auth_header, check_error, client_error, make_client, unique
from imagelib import OCI_MANIFEST, artifact, oci_image, put, sha256, upload_blobs

PAGE = 7


def variant(base, i, *, subject=None):
    """`base`'s image with annotation i: a new manifest over the same blobs (no upload)."""
    doc = json.loads(base.manifest)
    doc["annotations"] = {"org.example.i": str(i)}
    if subject is not None:
        doc["subject"] = subject
    out = type(base)(json.dumps(doc), base.media_type, base.config, base.layers, base.config_media_type)
    return out


class Churn:
    """Pushes new images and deletes them again in a background thread until stopped;
    `errors` collects anything unexpected."""

    def __init__(self, step):
        self.step = step
        self.stop = threading.Event()
        self.errors = []
        self.rounds = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.step(i)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
                return
            i += 1
            self.rounds = i

    def __enter__(self):
        self.thread.start()
        # Let some writes happen before the first page.
        deadline = time.time() + 10
        while self.rounds < 2 and time.time() < deadline and not self.errors:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.errors, self.errors
        assert self.rounds >= 2, "the churn made too few writes to test anything"


def walk(call, key, items_of, token_of):
    """Every page of a listing (slowly, so the churn interleaves); the list of keys seen."""
    seen, token, pages = [], None, 0
    while True:
        r = call(token)
        seen += [key(x) for x in items_of(r)]
        pages += 1
        token = token_of(r)
        if not token:
            return seen, pages
        assert pages < 500, "a listing that never ends"
        time.sleep(0.01)


def exactly_once(seen, stable):
    counts = Counter(seen)
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"listed more than once: {twice}"
    missing = set(stable) - set(counts)
    assert not missing, f"stable items missing: {sorted(missing, key=str)[:10]} of {len(missing)}"


@pytest.fixture
def seeded(ecr, repo):
    """A repository of 40 images: 30 tagged (every third with two tags), 10 untagged."""
    base = oci_image(n_layers=1)
    upload_blobs(ecr, repo, base)
    ids = set()
    for i in range(40):
        v = variant(base, i)
        if i % 4 == 3:
            put(ecr, repo, v)
            ids.add((v.digest, None))
        else:
            put(ecr, repo, v, tag=f"s{i}")
            ids.add((v.digest, f"s{i}"))
            if i % 3 == 0:
                put(ecr, repo, v, tag=f"s{i}-b")
                ids.add((v.digest, f"s{i}-b"))
    return base, ids


def rolling(server, repo, push):
    """A churn step: `push(client, i)` pushes a new image and returns its image id; the image id
    pushed two steps before is deleted (BatchDeleteImage, which must not fail)."""
    c = make_client(server)
    pushed = []

    def step(i):
        pushed.append(push(c, i))
        if len(pushed) > 2:
            r = c.batch_delete_image(repositoryName=repo, imageIds=[pushed.pop(0)])
            assert r["failures"] == [], r

    return step


def image_churn(server, repo, base):
    """Pushes a new image (tagged or not) and deletes the one pushed two steps before."""

    def push(c, i):
        v = variant(base, 100_000 + i)
        put(c, repo, v, **({"tag": f"churn{i}"} if i % 2 else {}))
        return {"imageDigest": v.digest}

    return rolling(server, repo, push)


@pytest.mark.parametrize("status", [None, "TAGGED", "UNTAGGED"])
def test_list_images_pages_each_image_id_once_under_writes(server, ecr, repo, seeded, status):
    base, ids = seeded
    stable = {i for i in ids if status is None or (status == "TAGGED") == (i[1] is not None)}
    kw = {"filter": {"tagStatus": status}} if status else {}

    def call(token):
        args = dict(repositoryName=repo, maxResults=PAGE, **kw)
        if token:
            args["nextToken"] = token
        return ecr.list_images(**args)

    with Churn(image_churn(server, repo, base)):
        seen, pages = walk(call, lambda x: (x["imageDigest"], x.get("imageTag")), lambda r: r["imageIds"],
                           lambda r: r.get("nextToken"))
    assert pages >= len(stable) // PAGE
    exactly_once(seen, stable)
    if status == "TAGGED":
        assert all(t is not None for _, t in seen), seen
    if status == "UNTAGGED":
        assert all(t is None for _, t in seen), seen


@pytest.mark.parametrize("status", [None, "UNTAGGED"])
def test_describe_images_pages_each_image_once_under_writes(server, ecr, repo, seeded, status):
    base, ids = seeded
    stable = {d for d, t in ids if status is None or t is None}
    kw = {"filter": {"tagStatus": status}} if status else {}

    def call(token):
        args = dict(repositoryName=repo, maxResults=PAGE, **kw)
        if token:
            args["nextToken"] = token
        return ecr.describe_images(**args)

    with Churn(image_churn(server, repo, base)):
        seen, _ = walk(call, lambda d: d["imageDigest"], lambda r: r["imageDetails"], lambda r: r.get("nextToken"))
    exactly_once(seen, stable)


def test_list_images_page_boundary_inside_an_images_tags(ecr, repo):
    """An image with more tags than a page: its ids continue on the next page, in order, with
    nothing repeated; a tag added to it before the cursor is not listed, one after is."""
    base = oci_image(n_layers=1)
    upload_blobs(ecr, repo, base)
    for t in ["a", "c", "e", "g", "i"]:
        put(ecr, repo, base, tag=t)
    r = ecr.list_images(repositoryName=repo, maxResults=2)
    assert [x["imageTag"] for x in r["imageIds"]] == ["a", "c"]
    put(ecr, repo, base, tag="b")  # before the cursor
    put(ecr, repo, base, tag="d")  # after it
    r = ecr.list_images(repositoryName=repo, maxResults=2, nextToken=r["nextToken"])
    assert [x["imageTag"] for x in r["imageIds"]] == ["d", "e"]
    r = ecr.list_images(repositoryName=repo, maxResults=2, nextToken=r["nextToken"])
    assert [x["imageTag"] for x in r["imageIds"]] == ["g", "i"]
    assert "nextToken" not in r


def test_list_image_referrers_pages_each_referrer_once_under_writes(server, ecr, repo):
    subject = oci_image(n_layers=1)
    upload_blobs(ecr, repo, subject)
    put(ecr, repo, subject, tag="app")
    sub = {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": len(subject.manifest.encode())}
    sig = artifact(subject, "application/vnd.example.sig.v1")
    upload_blobs(ecr, repo, sig)
    stable = set()
    for i in range(30):
        v = variant(sig, i, subject=sub)
        put(ecr, repo, v, imageDigest=v.digest)
        stable.add(v.digest)
    def push(c, i):
        v = variant(sig, 100_000 + i, subject=sub)
        put(c, repo, v, imageDigest=v.digest)
        return {"imageDigest": v.digest}

    step = rolling(server, repo, push)

    def call(token):
        args = dict(repositoryName=repo, subjectId={"imageDigest": subject.digest}, maxResults=PAGE)
        if token:
            args["nextToken"] = token
        return ecr.list_image_referrers(**args)

    with Churn(step):
        seen, _ = walk(call, lambda x: x["digest"], lambda r: r["referrers"], lambda r: r.get("nextToken"))
    exactly_once(seen, stable)
    # Filters: by artifact type (at most five), and by status (none is archived here).
    r = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                 filter={"artifactTypes": ["application/vnd.other"]})
    assert r["referrers"] == [] and "nextToken" not in r
    r = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                 filter={"artifactStatus": "ARCHIVED"})
    assert r["referrers"] == []
    r = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                 filter={"artifactStatus": "ANY", "artifactTypes": ["application/vnd.example.sig.v1"]},
                                 maxResults=50)
    assert len(r["referrers"]) >= 30


def test_list_image_referrers_filter_limits(ecr_raw, repo):
    subject = sha256(b"subject")
    err = client_error(ecr_raw.list_image_referrers, repositoryName=repo, subjectId={"imageDigest": subject},
                       filter={"artifactTypes": [f"application/x{i}" for i in range(6)]})
    check_error(err, "InvalidParameterException")
    err = client_error(ecr_raw.list_image_referrers, repositoryName=repo, subjectId={"imageDigest": subject},
                       filter={"artifactStatus": "LOST"})
    check_error(err, "InvalidParameterException")


@pytest.fixture
def repositories(server, ecr):
    """25 stable repositories under a fresh prefix, and a churn step that creates repositories
    whose names sort among them and deletes each again two steps later; all removed after."""
    prefix = unique("pg")
    stable = {f"{prefix}/r{i:02d}" for i in range(25)}
    for name in sorted(stable):
        ecr.create_repository(repositoryName=name)
    c = make_client(server)
    made = []

    def step(i):
        name = f"{prefix}/r{(i * 7) % 25:02d}-churn{i}"
        c.create_repository(repositoryName=name)
        made.append(name)
        if len(made) > 2:
            c.delete_repository(repositoryName=made.pop(0), force=True)

    yield stable, step
    for n in stable | set(made):
        try:
            ecr.delete_repository(repositoryName=n, force=True)
        except ecr.exceptions.RepositoryNotFoundException:
            pass


def test_describe_repositories_pages_each_repository_once_under_writes(ecr, repositories):
    stable, step = repositories

    def call(token):
        args = dict(maxResults=PAGE)
        if token:
            args["nextToken"] = token
        return ecr.describe_repositories(**args)

    with Churn(step):
        seen, _ = walk(call, lambda x: x["repositoryName"], lambda r: r["repositories"], lambda r: r.get("nextToken"))
    exactly_once(seen, stable)


def oci_walk(server, client, first):
    """Follow an OCI listing's Link headers from `first` (a /v2/ path with its query)."""
    auth = basic_auth_header(client)
    url, seen, pages = f"{server.url}/v2/{first}", [], 0
    while url:
        r = requests.get(url, headers={"Authorization": auth}, timeout=30)
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json()
        seen += body.get("tags", body.get("repositories")) or []
        pages += 1
        link = r.headers.get("Link")
        url = None
        if link:
            target = link.split(";")[0].strip().strip("<>")
            url = urllib.parse.urljoin(server.url, target)
        assert pages < 500
        time.sleep(0.01)
    return seen, pages


def test_oci_tags_list_pages_each_tag_once_under_writes(server, ecr, repo, seeded):
    base, ids = seeded
    stable = {t for _, t in ids if t is not None}
    def push(c, i):
        tag = f"s{(i * 7) % 40}-churn{i}"  # sorts among the stable tags
        put(c, repo, variant(base, 200_000 + i), tag=tag)
        return {"imageTag": tag}

    step = rolling(server, repo, push)

    with Churn(step):
        seen, pages = oci_walk(server, ecr, f"{repo}/tags/list?n={PAGE}")
    assert pages >= len(stable) // PAGE
    exactly_once(seen, stable)


def test_oci_catalog_pages_each_repository_once_under_writes(server, ecr, repositories):
    stable, step = repositories
    with Churn(step):
        seen, _ = oci_walk(server, ecr, f"_catalog?n={PAGE}")
    exactly_once(seen, stable)


@pytest.mark.parametrize("token", ["zz", "00", "6c7c317c", "not hex at all", "6c7c317c7368613235363a61617c"])
def test_list_images_refuses_a_token_it_did_not_make(ecr_raw, repo, token):
    err = client_error(ecr_raw.list_images, repositoryName=repo, nextToken=token)
    check_error(err, "InvalidParameterException",
                "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")


def test_tokens_are_opaque_and_belong_to_their_operation(ecr, ecr_raw, repo, seeded):
    r = ecr.list_images(repositoryName=repo, maxResults=2)
    list_token = r["nextToken"]
    d = ecr.describe_images(repositoryName=repo, maxResults=2)
    describe_token = d["nextToken"]
    assert list_token != describe_token
    err = client_error(ecr_raw.describe_images, repositoryName=repo, nextToken=list_token)
    check_error(err, "InvalidParameterException")
    err = client_error(ecr_raw.list_images, repositoryName=repo, nextToken=describe_token)
    check_error(err, "InvalidParameterException")
