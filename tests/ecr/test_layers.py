"""The ECR layer API: BatchCheckLayerAvailability, InitiateLayerUpload, UploadLayerPart,
CompleteLayerUpload, GetDownloadUrlForLayer; and how it shares blobs with the data plane.

Shapes from the botocore model; texts from ECR-BEHAVIOUR.md where it gives them.
"""

import os
import uuid

import pytest
import requests

from ecrlib import (
    ACCOUNT_ID,
    NAME_REGEX_MSG,
    check_error,
    client_error,
    not_found_msg,
    unique,
)
from imagelib import (
    UUID_RE,
    body,
    dp_upload_blob,
    sha256,
    split_parts,
    upload_layer,
    v2,
)

MIB = 1024 * 1024


def available(ecr, repo, digest):
    r = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest])
    if r["layers"]:
        (layer,) = r["layers"]
        assert layer["layerAvailability"] == "AVAILABLE", r
        return layer["layerSize"]
    (f,) = r["failures"]
    assert f["failureCode"] == "MissingLayerDigest", r
    return None


def part(ecr, repo, upload_id, first, data):
    return ecr.upload_layer_part(
        repositoryName=repo, uploadId=upload_id, partFirstByte=first,
        partLastByte=first + len(data) - 1, layerPartBlob=data,
    )


def layers_not_found_msg(digest, name, account=ACCOUNT_ID):
    # verbatim from ECR-BEHAVIOUR.md (GetDownloadUrlForLayer), including the missing quote ("sic")
    return (
        f"The layer with digest {digest} does not exist within the repository with name "
        f"'{name} in the registry with id '{account}'"
    )


# --------------------------------------------------------------------------------------------
# The whole upload, then every way to read the layer back


def test_initiate_layer_upload(ecr, repo):
    r = ecr.initiate_layer_upload(repositoryName=repo)
    assert set(body(r)) == {"uploadId", "partSize"}, r
    assert UUID_RE.match(r["uploadId"]), r
    # ECR API parts are 5-10 MiB (all but the last)
    assert 5 * MIB <= r["partSize"] <= 10 * MIB, r
    r2 = ecr.initiate_layer_upload(repositoryName=repo, registryId=ACCOUNT_ID)
    assert r2["uploadId"] != r["uploadId"]


def test_upload_in_parts_then_read_back(server, ecr, repo):
    data = os.urandom(3000) + b"end"
    digest = sha256(data)
    assert available(ecr, repo, digest) is None

    init = ecr.initiate_layer_upload(repositoryName=repo)
    uid = init["uploadId"]
    first = 0
    for piece in split_parts(data, 4):
        r = part(ecr, repo, uid, first, piece)
        assert body(r) == {
            "registryId": ACCOUNT_ID,
            "repositoryName": repo,
            "uploadId": uid,
            "lastByteReceived": first + len(piece) - 1,
        }
        first += len(piece)
        # not visible until completed
        assert available(ecr, repo, digest) is None
    r = ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[digest])
    assert body(r) == {"registryId": ACCOUNT_ID, "repositoryName": repo, "uploadId": uid, "layerDigest": digest}

    # BatchCheckLayerAvailability
    r = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest])
    assert r["failures"] == []
    (layer,) = r["layers"]
    assert layer["layerDigest"] == digest
    assert layer["layerAvailability"] == "AVAILABLE"
    assert layer["layerSize"] == len(data)

    # GetDownloadUrlForLayer: a URL a plain GET downloads, no credentials
    r = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)
    assert set(body(r)) == {"downloadUrl", "layerDigest"}
    assert r["layerDigest"] == digest
    dl = requests.get(r["downloadUrl"], timeout=30)  # follows redirects
    assert dl.status_code == 200, (dl.status_code, dl.headers, dl.text[:300])
    assert dl.content == data

    # the data plane serves the same blob
    g = v2(server, ecr, "GET", f"{repo}/blobs/{digest}")
    assert g.status_code == 200, (g.status_code, g.text[:300])
    assert g.content == data
    h = v2(server, ecr, "HEAD", f"{repo}/blobs/{digest}")
    assert h.status_code == 200
    assert int(h.headers["Content-Length"]) == len(data)


def test_upload_large_parts(ecr, repo):
    """A 12 MiB layer in 10 MiB + 2 MiB parts (the advertised part size)."""
    data = os.urandom(12 * MIB)
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    r = part(ecr, repo, uid, 0, data[: 10 * MIB])
    assert r["lastByteReceived"] == 10 * MIB - 1
    r = part(ecr, repo, uid, 10 * MIB, data[10 * MIB :])
    assert r["lastByteReceived"] == 12 * MIB - 1
    r = ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha256(data)])
    assert r["layerDigest"] == sha256(data)
    assert available(ecr, repo, sha256(data)) == len(data)
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(data))["downloadUrl"]
    assert requests.get(url, timeout=60).content == data


def test_single_byte_layer(ecr, repo):
    digest, size = upload_layer(ecr, repo, b"x", parts=1)
    assert available(ecr, repo, digest) == 1


def test_download_url_needs_its_token(server, ecr, repo):
    """The URL works because of what it carries: the same path without its query is refused."""
    digest, _ = upload_layer(ecr, repo, os.urandom(100))
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    assert url.startswith(server.url + "/"), url
    if "?" not in url:
        pytest.skip("download URL carries no query to strip")
    r = requests.get(url.split("?", 1)[0], timeout=30)
    assert r.status_code == 401, (r.status_code, r.text[:300])


def test_download_url_grants_that_blob_only(server, ecr, repo):
    """The URL is signed for one blob of one repository: it is no credential for anything else,
    and any change to its query, path or expiry is refused."""
    from urllib.parse import parse_qs, urlencode, urlsplit

    digest, _ = upload_layer(ecr, repo, os.urandom(100))
    other, _ = upload_layer(ecr, repo, os.urandom(100))
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    assert requests.get(url, timeout=30).status_code == 200
    path, query = url.split("?", 1)
    q = {k: v[0] for k, v in parse_qs(query).items()}
    assert set(q) == {"X-Berth-Expires", "X-Berth-Signature"}, q
    # No registry token in the URL.
    assert "Token" not in query and "Basic" not in query
    # Another blob, or the same signature with a later expiry or a flipped byte: refused.
    cases = [
        path.replace(digest, other) + "?" + query,
        path + "?" + urlencode(dict(q, **{"X-Berth-Expires": str(int(q["X-Berth-Expires"]) + 3600)})),
        path + "?" + urlencode(dict(q, **{"X-Berth-Signature": ("0" if q["X-Berth-Signature"][0] != "0" else "1") + q["X-Berth-Signature"][1:]})),
    ]
    for bad in cases:
        r = requests.get(bad, timeout=30)
        assert r.status_code == 401, (bad, r.status_code, r.text[:200])
    # The signed query is no key to the rest of the registry.
    r = requests.get(f"{server.url}/v2/{repo}/tags/list?{query}", timeout=30)
    assert r.status_code == 401
    assert urlsplit(url).path == f"/v2/{repo}/blobs/{digest}"


# --------------------------------------------------------------------------------------------
# BatchCheckLayerAvailability


def test_batch_check_mixed(server, ecr, repo):
    present = os.urandom(200)
    digest, _ = upload_layer(ecr, repo, present)
    via_v2 = os.urandom(77)
    d2 = dp_upload_blob(server, ecr, repo, via_v2)  # pushed by a docker client: same store
    missing = sha256(b"never uploaded " + os.urandom(8))
    r = ecr.batch_check_layer_availability(
        repositoryName=repo, registryId=ACCOUNT_ID, layerDigests=[digest, missing, "not-a-digest", d2]
    )
    assert set(body(r)) == {"layers", "failures"}
    got = {layer["layerDigest"]: layer for layer in r["layers"]}
    assert set(got) == {digest, d2}
    assert got[digest]["layerAvailability"] == "AVAILABLE" and got[digest]["layerSize"] == 200
    assert got[d2]["layerAvailability"] == "AVAILABLE" and got[d2]["layerSize"] == 77
    fails = {f["layerDigest"]: f for f in r["failures"]}
    assert set(fails) == {missing, "not-a-digest"}
    assert fails[missing]["failureCode"] == "MissingLayerDigest"
    assert fails["not-a-digest"]["failureCode"] == "InvalidLayerDigest"
    for f in fails.values():
        assert f.get("failureReason"), f


def test_layers_belong_to_a_repository(ecr, repo):
    """A layer uploaded to one repository is not available in another of the same account."""
    other = unique("other")
    ecr.create_repository(repositoryName=other)
    try:
        digest, _ = upload_layer(ecr, repo, os.urandom(64))
        assert available(ecr, repo, digest) == 64
        assert available(ecr, other, digest) is None
        err = client_error(ecr.get_download_url_for_layer, repositoryName=other, layerDigest=digest)
        check_error(err, "LayersNotFoundException")  # exact text: test_download_url_missing_layer
    finally:
        ecr.delete_repository(repositoryName=other, force=True)


def test_batch_check_repository_not_found(ecr):
    name = unique("nolayers")
    err = client_error(ecr.batch_check_layer_availability, repositoryName=name, layerDigests=[sha256(b"a")])
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


def test_batch_check_empty_list(ecr_raw, repo):
    err = client_error(ecr_raw.batch_check_layer_availability, repositoryName=repo, layerDigests=[])
    check_error(err, "InvalidParameterException")


def test_batch_check_too_many(ecr, repo):
    err = client_error(
        ecr.batch_check_layer_availability, repositoryName=repo,
        layerDigests=[sha256(str(i)) for i in range(101)],
    )
    check_error(err, "InvalidParameterException")


# --------------------------------------------------------------------------------------------
# InitiateLayerUpload errors


def test_initiate_repository_not_found(ecr):
    name = unique("noinit")
    err = client_error(ecr.initiate_layer_upload, repositoryName=name)
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


def test_initiate_invalid_name(ecr):
    err = client_error(ecr.initiate_layer_upload, repositoryName="Not_Valid")
    check_error(err, "InvalidParameterException", NAME_REGEX_MSG)


# --------------------------------------------------------------------------------------------
# UploadLayerPart errors


@pytest.mark.parametrize(
    "case",
    [
        "gap", "overlap", "repeat-first", "not-from-zero", "size-mismatch", "last-before-first",
        "last-max-long", "first-and-last-max-long", "last-max-long-from-received",
    ],
)
def test_upload_part_not_consecutive(ecr, repo, case):
    data = os.urandom(300)
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    if case == "not-from-zero":
        err = client_error(part, ecr, repo, uid, 5, data[:100])
        check_error(err, "InvalidLayerPartException")
        received = 0
    else:
        assert part(ecr, repo, uid, 0, data[:100])["lastByteReceived"] == 99
        received = 100
        if case == "gap":
            err = client_error(part, ecr, repo, uid, 101, data[101:200])
        elif case == "overlap":
            err = client_error(part, ecr, repo, uid, 50, data[50:150])
        elif case == "repeat-first":
            err = client_error(part, ecr, repo, uid, 0, data[:100])
        elif case == "size-mismatch":  # partLastByte does not match the blob's length
            err = client_error(
                ecr.upload_layer_part, repositoryName=repo, uploadId=uid,
                partFirstByte=100, partLastByte=250, layerPartBlob=data[100:200],
            )
        elif case == "last-before-first":
            err = client_error(
                ecr.upload_layer_part, repositoryName=repo, uploadId=uid,
                partFirstByte=100, partLastByte=90, layerPartBlob=data[100:200],
            )
        else:
            # Numbers whose length (last - first + 1) does not fit a Long: refused, never
            # wrapped (which could make a bogus part look consecutive) and never a crash.
            first, last = {
                "last-max-long": (0, 2**63 - 1),
                "first-and-last-max-long": (2**63 - 1, 2**63 - 1),
                "last-max-long-from-received": (100, 2**63 - 1),
            }[case]
            err = client_error(
                ecr.upload_layer_part, repositoryName=repo, uploadId=uid,
                partFirstByte=first, partLastByte=last, layerPartBlob=data[100:200],
            )
            check_error(
                err, "InvalidLayerPartException",
                prefix="The layer part size is not valid, or the first byte specified is not consecutive",
            )
        check_error(err, "InvalidLayerPartException")
    # the failed part changed nothing: the upload continues where it was and completes intact
    r = part(ecr, repo, uid, received, data[received:])
    assert r["lastByteReceived"] == len(data) - 1
    r = ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha256(data)])
    assert r["layerDigest"] == sha256(data)
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(data))["downloadUrl"]
    assert requests.get(url, timeout=30).content == data


def test_upload_part_unknown_upload(ecr, repo):
    uid = str(uuid.uuid4())
    err = client_error(part, ecr, repo, uid, 0, b"abc")
    check_error(err, "UploadNotFoundException")


def test_upload_part_upload_of_another_repository(ecr, repo):
    other = unique("otherup")
    ecr.create_repository(repositoryName=other)
    try:
        uid = ecr.initiate_layer_upload(repositoryName=other)["uploadId"]
        err = client_error(part, ecr, repo, uid, 0, b"abc")
        check_error(err, "UploadNotFoundException")
        # the upload itself is untouched
        assert part(ecr, other, uid, 0, b"abc")["lastByteReceived"] == 2
    finally:
        ecr.delete_repository(repositoryName=other, force=True)


def test_upload_part_after_complete(ecr, repo):
    data = os.urandom(50)
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, uid, 0, data)
    ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha256(data)])
    err = client_error(part, ecr, repo, uid, 50, b"more")
    check_error(err, "UploadNotFoundException")
    assert available(ecr, repo, sha256(data)) == 50


def test_upload_part_repository_not_found(ecr):
    name = unique("nopart")
    err = client_error(part, ecr, name, str(uuid.uuid4()), 0, b"abc")
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


# --------------------------------------------------------------------------------------------
# CompleteLayerUpload errors


def test_complete_digest_mismatch(ecr, repo):
    data = os.urandom(120)
    wrong = sha256(b"something else")
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, uid, 0, data[:60])
    part(ecr, repo, uid, 60, data[60:])
    err = client_error(ecr.complete_layer_upload, repositoryName=repo, uploadId=uid, layerDigests=[wrong])
    check_error(err, "InvalidLayerException")
    # nothing was stored under either digest
    assert available(ecr, repo, wrong) is None
    assert available(ecr, repo, sha256(data)) is None
    err = client_error(ecr.get_download_url_for_layer, repositoryName=repo, layerDigest=wrong)
    check_error(err, "LayersNotFoundException")


def test_complete_empty_upload(ecr, repo):
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    empty = sha256(b"")
    err = client_error(ecr.complete_layer_upload, repositoryName=repo, uploadId=uid, layerDigests=[empty])
    # text: the registry's BLOB_UPLOAD_INVALID message for the same situation (ECR-BEHAVIOUR.md)
    check_error(
        err,
        "EmptyUploadException",
        f"The upload with id '{uid}' in the repository with name '{repo}' in registry with id "
        f"'{ACCOUNT_ID}' cannot be completed because it does not have any parts.",
    )
    assert available(ecr, repo, empty) is None
    # the upload is still open: parts can follow
    assert part(ecr, repo, uid, 0, b"late")["lastByteReceived"] == 3
    assert ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha256(b"late")])


def test_complete_layer_already_exists(ecr, repo):
    data = os.urandom(90)
    digest, _ = upload_layer(ecr, repo, data)
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, uid, 0, data)
    err = client_error(ecr.complete_layer_upload, repositoryName=repo, uploadId=uid, layerDigests=[digest])
    check_error(err, "LayerAlreadyExistsException")
    # the existing layer is intact
    assert available(ecr, repo, digest) == 90
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    assert requests.get(url, timeout=30).content == data


def test_complete_unknown_upload(ecr, repo):
    err = client_error(
        ecr.complete_layer_upload, repositoryName=repo, uploadId=str(uuid.uuid4()), layerDigests=[sha256(b"a")]
    )
    check_error(err, "UploadNotFoundException")


def test_complete_twice(ecr, repo):
    data = os.urandom(40)
    uid = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, uid, 0, data)
    ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha256(data)])
    err = client_error(ecr.complete_layer_upload, repositoryName=repo, uploadId=uid, layerDigests=[sha256(data)])
    check_error(err, "UploadNotFoundException")
    assert available(ecr, repo, sha256(data)) == 40


def test_complete_repository_not_found(ecr):
    name = unique("nocomplete")
    err = client_error(
        ecr.complete_layer_upload, repositoryName=name, uploadId=str(uuid.uuid4()), layerDigests=[sha256(b"a")]
    )
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


# --------------------------------------------------------------------------------------------
# GetDownloadUrlForLayer errors and other blobs


def test_download_url_missing_layer(ecr, repo):
    digest = sha256(b"absent " + os.urandom(8))
    err = client_error(ecr.get_download_url_for_layer, repositoryName=repo, layerDigest=digest)
    check_error(err, "LayersNotFoundException", layers_not_found_msg(digest, repo))


def test_download_url_repository_not_found(ecr):
    name = unique("nodl")
    err = client_error(ecr.get_download_url_for_layer, repositoryName=name, layerDigest=sha256(b"a"))
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


def test_download_url_invalid_digest(ecr, repo):
    err = client_error(ecr.get_download_url_for_layer, repositoryName=repo, layerDigest="sha256:not-hex")
    check_error(err, "InvalidParameterException")


def test_download_url_for_data_plane_blob(server, ecr, repo):
    data = os.urandom(333)
    digest = dp_upload_blob(server, ecr, repo, data)
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == data
