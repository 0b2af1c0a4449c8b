"""Helpers for the image and layer tests: build images through the ECR layer API
(InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload + PutImage), through the data
plane (raw /v2/ requests with the registry token) and with real clients (umoci + skopeo).

Everything is built offline; nothing is pulled from the internet.
"""

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from ecrlib import b64decode, basic_auth_header

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

REQUIRE_CLIENTS = os.environ.get("BERTH_REQUIRE_CLIENTS") == "1"


def sha256(data):
    if isinstance(data, str):
        data = data.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def body(resp):
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


def password_of(client):
    """The registry password (what `aws ecr get-login-password` prints)."""
    tok = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = b64decode(tok).decode().partition(":")
    assert user == "AWS"
    return password


def tar_gz_layer(files):
    """A real gzip'ed tar layer holding `files` ({path: bytes}); deterministic bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def config_blob(diff_ids=(), **extra):
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["BERTH_TEST=1"]},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    doc.update(extra)
    return json.dumps(doc, sort_keys=True).encode()


# --------------------------------------------------------------------------------------------
# The layer API


def split_parts(data, parts):
    """`data` cut into `parts` consecutive, non-empty pieces (fewer if data is shorter)."""
    parts = max(1, min(parts, len(data)))
    step = -(-len(data) // parts)
    return [data[i : i + step] for i in range(0, len(data), step)]


def upload_layer(ecr, repo, data, parts=3):
    """InitiateLayerUpload, UploadLayerPart for each part, CompleteLayerUpload.

    Checks every response along the way; returns (digest, size).
    """
    digest = sha256(data)
    init = ecr.initiate_layer_upload(repositoryName=repo)
    upload_id = init["uploadId"]
    assert UUID_RE.match(upload_id), init
    first = 0
    for piece in split_parts(data, parts):
        last = first + len(piece) - 1
        r = ecr.upload_layer_part(
            repositoryName=repo,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=last,
            layerPartBlob=piece,
        )
        assert r["uploadId"] == upload_id, r
        assert r["repositoryName"] == repo, r
        assert r["lastByteReceived"] == last, r
        first = last + 1
    r = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[digest])
    assert r["layerDigest"] == digest, r
    assert r["uploadId"] == upload_id, r
    assert r["repositoryName"] == repo, r
    return digest, len(data)


def descriptor(media_type, data, **extra):
    d = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
    d.update(extra)
    return d


class Built:
    """An image manifest plus the blobs it references."""

    def __init__(self, manifest, media_type, config=None, layers=(), config_media_type=None):
        self.manifest = manifest  # str, exact text
        self.media_type = media_type
        self.config = config
        self.layers = list(layers)
        self.config_media_type = config_media_type

    @property
    def digest(self):
        return sha256(self.manifest)

    @property
    def size(self):
        """What DescribeImages reports: config + layers."""
        return (len(self.config) if self.config is not None else 0) + sum(len(x) for x in self.layers)

    @property
    def blobs(self):
        return ([self.config] if self.config is not None else []) + self.layers


def oci_image(n_layers=2, *, docker=False, seed=None, config=None, subject=None, artifact_type=None,
              annotations=None, indent=None, media_type_field=True):
    """A fresh image (random content unless seed given). Manifest text is deliberately
    formatted (indent / key order) so byte-exactness is observable."""
    seed = seed if seed is not None else uuid.uuid4().hex
    layers = [tar_gz_layer({f"file{i}.txt": f"{seed} layer {i}\n".encode()}) for i in range(n_layers)]
    diff_ids = [sha256(gzip.decompress(layer)) for layer in layers]
    cfg = config if config is not None else config_blob(diff_ids, created="2024-01-01T00:00:00Z",
                                                        comment=seed)
    cmt = DOCKER_CONFIG if docker else OCI_CONFIG
    lmt = DOCKER_LAYER if docker else OCI_LAYER_GZIP
    mt = DOCKER_MANIFEST if docker else OCI_MANIFEST
    doc = {"schemaVersion": 2}
    if media_type_field or docker:
        doc["mediaType"] = mt
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = descriptor(cmt, cfg)
    doc["layers"] = [descriptor(lmt, layer) for layer in layers]
    if subject is not None:
        doc["subject"] = subject
    if annotations is not None:
        doc["annotations"] = annotations
    text = json.dumps(doc, indent=indent)
    return Built(text, mt, cfg, layers, cmt)


def artifact(subject_built, artifact_type, payload=None, annotations=None, via_config=False):
    """An OCI 1.1 artifact manifest whose subject is `subject_built`.

    via_config: no artifactType field; the type is the config media type instead.
    """
    payload = payload if payload is not None else f"payload {uuid.uuid4().hex}\n".encode()
    subject = {"mediaType": subject_built.media_type, "digest": subject_built.digest,
               "size": len(subject_built.manifest.encode())}
    if via_config:
        cfg = b"{}"
        cmt = artifact_type
    else:
        cfg = b"{}"
        cmt = OCI_EMPTY
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if not via_config:
        doc["artifactType"] = artifact_type
    doc["config"] = descriptor(cmt, cfg)
    doc["layers"] = [descriptor("application/octet-stream", payload)]
    doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    return Built(json.dumps(doc), OCI_MANIFEST, cfg, [payload], cmt)


def index_of(children, *, docker=False, platforms=None):
    mt = DOCKER_LIST if docker else OCI_INDEX
    plats = platforms or [{"architecture": a, "os": "linux"} for a in ("amd64", "arm64", "s390x", "ppc64le")]
    doc = {
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": [
            {"mediaType": c.media_type, "digest": c.digest, "size": len(c.manifest.encode()), "platform": plats[i]}
            for i, c in enumerate(children)
        ],
    }
    return Built(json.dumps(doc, indent=2), mt)


def upload_blobs(ecr, repo, built, parts=3):
    """Upload the blobs the repository does not have yet (checked the way docker does, with
    BatchCheckLayerAvailability)."""
    digests = sorted({sha256(b) for b in built.blobs})
    have = {
        x["layerDigest"]
        for x in ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=digests)["layers"]
        if x["layerAvailability"] == "AVAILABLE"
    }
    for b in built.blobs:
        if sha256(b) not in have:
            upload_layer(ecr, repo, b, parts=parts)
            have.add(sha256(b))


def put(ecr, repo, built, tag=None, media_type=True, **kw):
    kwargs = {"repositoryName": repo, "imageManifest": built.manifest}
    if tag is not None:
        kwargs["imageTag"] = tag
    if media_type:
        kwargs["imageManifestMediaType"] = built.media_type
    kwargs.update(kw)
    return ecr.put_image(**kwargs)


def api_image(ecr, repo, tag=None, parts=3, **kw):
    """An image built entirely through the layer API and PutImage."""
    built = oci_image(**kw)
    upload_blobs(ecr, repo, built, parts=parts)
    put(ecr, repo, built, tag=tag)
    return built


# --------------------------------------------------------------------------------------------
# ECR views


def describe_all(ecr, repo, **kw):
    out = []
    for page in ecr.get_paginator("describe_images").paginate(repositoryName=repo, **kw):
        out.extend(page["imageDetails"])
    return out


def details_by_digest(ecr, repo):
    return {d["imageDigest"]: d for d in describe_all(ecr, repo)}


def list_all(ecr, repo, **kw):
    out = []
    for page in ecr.get_paginator("list_images").paginate(repositoryName=repo, **kw):
        out.extend(page["imageIds"])
    return out


def id_set(ids):
    return {(i.get("imageDigest"), i.get("imageTag")) for i in ids}


def state(ecr, repo):
    """Everything visible about a repository's images, comparable before/after an error."""
    details = sorted(
        (
            d["imageDigest"],
            tuple(sorted(d.get("imageTags", []))),
            d["imageSizeInBytes"],
            d["imagePushedAt"],
            d.get("imageManifestMediaType"),
        )
        for d in describe_all(ecr, repo)
    )
    return details, sorted(id_set(list_all(ecr, repo)), key=str)


# --------------------------------------------------------------------------------------------
# Data plane


def v2(server, client, method, path, *, auth=True, **kw):
    headers = kw.pop("headers", {})
    if auth:
        headers["Authorization"] = basic_auth_header(client)
    return requests.request(method, f"{server.url}/v2/{path}", headers=headers, timeout=60, **kw)


def dp_upload_blob(server, client, repo, data, auth=None):
    auth = auth or basic_auth_header(client)
    digest = sha256(data)
    r = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", headers={"Authorization": auth}, timeout=30)
    assert r.status_code == 202, (r.status_code, r.headers, r.text)
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = server.url + loc
    sep = "&" if "?" in loc else "?"
    r = requests.put(f"{loc}{sep}digest={digest}", data=data,
                     headers={"Authorization": auth, "Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.headers, r.text)
    return digest


def dp_push(server, client, repo, built, ref):
    """Push an image through /v2/ (blobs then manifest PUT to `ref`); returns the PUT response."""
    auth = basic_auth_header(client)
    for b in built.blobs:
        dp_upload_blob(server, client, repo, b, auth)
    return dp_put_manifest(server, client, repo, built, ref, auth)


def dp_put_manifest(server, client, repo, built, ref, auth=None):
    auth = auth or basic_auth_header(client)
    return requests.put(
        f"{server.url}/v2/{repo}/manifests/{ref}",
        data=built.manifest.encode(),
        headers={"Authorization": auth, "Content-Type": built.media_type},
        timeout=30,
    )


def dp_get_manifest(server, client, repo, ref):
    accept = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
    return v2(server, client, "GET", f"{repo}/manifests/{ref}", headers={"Accept": accept})


def oci_errors(r):
    try:
        return r.json()["errors"]
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------------------------
# Real clients


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = f"missing clients: {', '.join(missing)} (bash scripts/install-test-deps.sh)"
        if REQUIRE_CLIENTS:
            pytest.fail(msg)
        pytest.skip(msg)


def run(*cmd, input=None, timeout=300, check=True, env=None, cwd=None):
    res = subprocess.run(list(cmd), input=input, capture_output=True, timeout=timeout, env=env, cwd=cwd,
                         text=isinstance(input, str) or input is None)
    if check:
        assert res.returncode == 0, f"{cmd!r} failed rc={res.returncode}\nstdout={res.stdout}\nstderr={res.stderr}"
    return res


def umoci_layout(work, tag, files):
    """An OCI image layout `<work>/layout` holding `tag` (built offline with umoci); returns
    (layout path, manifest digest, exact manifest bytes)."""
    work = Path(work)
    layout, bundle = work / "layout", work / "bundle"
    image = f"{layout}:{tag}"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", image)
    run("umoci", "unpack", "--rootless", "--image", image, str(bundle))
    for path, data in files.items():
        dest = bundle / "rootfs" / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    run("umoci", "repack", "--image", image, str(bundle))
    run("umoci", "config", "--image", image, "--os", "linux", "--architecture", "amd64",
        "--config.cmd", "/hello.txt", "--config.label", "org.example.built-by=berth-ecr-tests")
    return (layout, *layout_manifest(layout, tag))


def layout_manifest(layout, tag):
    index = json.loads((Path(layout) / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            alg, hexd = m["digest"].split(":", 1)
            return m["digest"], (Path(layout) / "blobs" / alg / hexd).read_bytes()
    raise AssertionError(f"tag {tag} not in {index}")


def skopeo_env(tmp):
    """An environment whose containers auth file and blob-info cache are private to the test."""
    env = dict(os.environ)
    env["REGISTRY_AUTH_FILE"] = str(Path(tmp) / "auth.json")
    env["XDG_RUNTIME_DIR"] = str(Path(tmp))
    return env


def wait_for(pred, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def b64(data):
    return base64.b64encode(data).decode()
