"""Every implemented ECR operation's answers, checked against botocore's service model
(`botocore/data/ecr/*/service-2.json`): the raw JSON of each success is walked against the
operation's output shape (required members present, no member the model does not know, enum
values valid, types and length limits right), and each provoked error is one the operation's
model lists.

boto3 itself silently drops members it does not know and fills nothing that is missing, so a
missing required member would never show through it: this test reads the raw answers.
"""

import base64
import hashlib
import json

import botocore.session
import pytest
import requests

from ecrlib import ACCOUNT_ID, REGION, basic_auth_header, push_image, raw_call, unique

MODEL = botocore.session.get_session().get_service_model("ecr")
# Answers any operation may give that are the protocol's, not the operation's.
COMMON_ERRORS = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "SerializationException",
    "ThrottlingException",
    "ValidationException",
}


def check_shape(shape, value, path, problems):
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {value!r:.80}")
            return
        for req in shape.required_members:
            if req not in value:
                problems.append(f"{path}.{req}: required member missing")
        for k, v in value.items():
            if k not in shape.members:
                problems.append(f"{path}.{k}: not a member of {shape.name}")
                continue
            check_shape(shape.members[k], v, f"{path}.{k}", problems)
    elif t == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and len(value) < lo or hi is not None and len(value) > hi:
            problems.append(f"{path}: {len(value)} items outside [{lo}, {hi}]")
        for i, v in enumerate(value):
            check_shape(shape.member, v, f"{path}[{i}]", problems)
    elif t == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map")
            return
        for k, v in value.items():
            check_shape(shape.key, k, f"{path}<key>", problems)
            check_shape(shape.value, v, f"{path}[{k}]", problems)
    elif t == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r:.80}")
            return
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.enum}")
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and len(value) < lo or hi is not None and len(value) > hi:
            problems.append(f"{path}: length {len(value)} outside [{lo}, {hi}]")
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r:.80}")
            return
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            problems.append(f"{path}: {value} outside [{lo}, {hi}]")
    elif t in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{path}: expected a number")
    elif t == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean, got {value!r:.80}")
    elif t == "timestamp":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{path}: expected epoch seconds, got {value!r:.80}")
    elif t == "blob":
        if not isinstance(value, str):
            problems.append(f"{path}: expected base64 text")
        else:
            try:
                base64.b64decode(value, validate=True)
            except ValueError:
                problems.append(f"{path}: not base64")
    else:
        problems.append(f"{path}: unhandled shape type {t}")


class Walk:
    def __init__(self, server):
        self.server = server
        self.problems = []
        self.seen = set()

    def ok(self, op, body):
        r = raw_call(self.server, op, body)
        assert r.status == 200, (op, r)
        out = MODEL.operation_model(op).output_shape
        if out is not None:
            check_shape(out, r.json if r.json is not None else {}, op, self.problems)
        self.seen.add(op)
        return r.json

    def err(self, op, body, code):
        r = raw_call(self.server, op, body)
        assert r.status == 400 and r.error_type == code, (op, code, r)
        listed = {e.name for e in MODEL.operation_model(op).error_shapes}
        if code not in listed | COMMON_ERRORS:
            self.problems.append(f"{op}: answers {code}, which the model does not list ({sorted(listed)})")
        if not r.message:
            self.problems.append(f"{op}: {code} without a message")
        return r


def test_every_implemented_operation_matches_the_model(server, ecr):
    w = Walk(server)
    name = unique("model")
    other = unique("model-b")
    w.ok("GetAuthorizationToken", {})
    w.ok("CreateRepository", {
        "repositoryName": name,
        "tags": [{"Key": "team", "Value": "a"}],
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": {"scanOnPush": True},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    })
    w.ok("CreateRepository", {"repositoryName": other, "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
                              "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "dev-*"}]})
    w.err("CreateRepository", {"repositoryName": name}, "RepositoryAlreadyExistsException")
    w.ok("DescribeRepositories", {"repositoryNames": [name, other]})
    w.ok("DescribeRepositories", {"maxResults": 1})
    w.err("DescribeRepositories", {"repositoryNames": [unique("nope")]}, "RepositoryNotFoundException")
    arn = f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{name}"
    w.ok("TagResource", {"resourceArn": arn, "tags": [{"Key": "k", "Value": "v"}]})
    w.ok("ListTagsForResource", {"resourceArn": arn})
    w.ok("UntagResource", {"resourceArn": arn, "tagKeys": ["k"]})
    w.ok("PutImageTagMutability", {"repositoryName": other, "imageTagMutability": "MUTABLE"})

    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "pull", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
         "Action": ["ecr:BatchGetImage"]}]})
    w.err("GetRepositoryPolicy", {"repositoryName": name}, "RepositoryPolicyNotFoundException")
    w.ok("SetRepositoryPolicy", {"repositoryName": name, "policyText": policy})
    w.ok("GetRepositoryPolicy", {"repositoryName": name})
    w.ok("DeleteRepositoryPolicy", {"repositoryName": name})
    registry_policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "replicate", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
         "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
         "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/*"}]})
    w.ok("PutRegistryPolicy", {"policyText": registry_policy})
    w.ok("GetRegistryPolicy", {})
    w.ok("DeleteRegistryPolicy", {})
    w.err("GetRegistryPolicy", {}, "RegistryPolicyNotFoundException")
    w.ok("DescribeRegistry", {})

    # Images: one pushed through the data plane, then every image operation.
    push_image(server, ecr, name, "v1")
    got = w.ok("BatchGetImage", {"repositoryName": name, "imageIds": [{"imageTag": "v1"}, {"imageTag": "missing"}]})
    manifest = got["images"][0]["imageManifest"]
    digest = got["images"][0]["imageId"]["imageDigest"]
    w.ok("PutImage", {"repositoryName": name, "imageManifest": manifest, "imageTag": "v2",
                      "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json"})
    w.ok("DescribeImages", {"repositoryName": name})
    w.ok("DescribeImages", {"repositoryName": name, "imageIds": [{"imageTag": "v2"}]})
    w.ok("ListImages", {"repositoryName": name})
    w.ok("ListImages", {"repositoryName": name, "filter": {"tagStatus": "TAGGED"}, "maxResults": 1})
    w.ok("ListImageReferrers", {"repositoryName": name, "subjectId": {"imageDigest": digest}})
    layers = json.loads(manifest)["layers"]
    w.ok("BatchCheckLayerAvailability", {"repositoryName": name,
                                         "layerDigests": [layers[0]["digest"], "sha256:" + "0" * 64]})
    w.ok("GetDownloadUrlForLayer", {"repositoryName": name, "layerDigest": layers[0]["digest"]})
    w.err("GetDownloadUrlForLayer", {"repositoryName": name, "layerDigest": "sha256:" + "1" * 64},
          "LayersNotFoundException")

    # The layer upload API.
    up = w.ok("InitiateLayerUpload", {"repositoryName": name})
    data = b"layer through the ECR API"
    part = w.ok("UploadLayerPart", {"repositoryName": name, "uploadId": up["uploadId"], "partFirstByte": 0,
                                    "partLastByte": len(data) - 1,
                                    "layerPartBlob": base64.b64encode(data).decode()})
    assert part.get("lastByteReceived") == len(data) - 1, part
    w.err("UploadLayerPart", {"repositoryName": name, "uploadId": "0" * 32 + "-0000-0000-0000-000000000000",
                              "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "QQ=="},
          "UploadNotFoundException")
    w.ok("CompleteLayerUpload", {"repositoryName": name, "uploadId": up["uploadId"],
                                 "layerDigests": ["sha256:" + hashlib.sha256(data).hexdigest()]})

    w.ok("BatchDeleteImage", {"repositoryName": name, "imageIds": [{"imageTag": "v2"}, {"imageTag": "gone"}]})
    w.err("DeleteRepository", {"repositoryName": name}, "RepositoryNotEmptyException")
    w.ok("DeleteRepository", {"repositoryName": name, "force": True})
    w.ok("DeleteRepository", {"repositoryName": other})
    w.err("DeleteRepository", {"repositoryName": other}, "RepositoryNotFoundException")

    assert not w.problems, "answers that deviate from the botocore model:\n" + "\n".join(w.problems)
    assert basic_auth_header(ecr).startswith("Basic ")
    assert len(w.seen) >= 26, sorted(w.seen)


def test_initiate_layer_upload_announces_a_part_size(server, ecr):
    name = unique("model-ps")
    ecr.create_repository(repositoryName=name)
    out = ecr.initiate_layer_upload(repositoryName=name)
    assert isinstance(out.get("partSize"), int) and out["partSize"] > 0, out


@pytest.mark.parametrize("value", ["mutable", "FROZEN"])
def test_put_image_tag_mutability_lists_the_valid_values(ecr, value):
    name = unique("model-mut")
    ecr.create_repository(repositoryName=name)
    r = raw_call_ecr(ecr, "PutImageTagMutability", {"repositoryName": name, "imageTagMutability": value})
    assert r.status_code == 400
    body = r.json()
    assert body["__type"].endswith("InvalidParameterException"), body
    for v in ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"):
        assert v in body["message"], body


def raw_call_ecr(ecr, op, body):
    """A raw signed call through the client's own endpoint and credentials (no validation)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = ecr.meta.endpoint_url + "/"
    req = AWSRequest(method="POST", url=url, data=json.dumps(body),
                     headers={"Content-Type": "application/x-amz-json-1.1",
                              "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{op}"})
    SigV4Auth(ecr._request_signer._credentials, "ecr", REGION).add_auth(req)
    p = req.prepare()
    return requests.post(url, data=p.body, headers=dict(p.headers), timeout=30)


def test_put_image_needs_a_media_type(server, ecr):
    """A manifest without `mediaType` needs `imageManifestMediaType` (ECR: 'Invalid JSON syntax')."""
    name = unique("model-mt")
    ecr.create_repository(repositoryName=name)
    push_image(server, ecr, name, "v1")
    manifest = json.loads(ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])["images"][0][
        "imageManifest"])
    del manifest["mediaType"]
    text = json.dumps(manifest)
    r = raw_call_ecr(ecr, "PutImage", {"repositoryName": name, "imageManifest": text, "imageTag": "bare"})
    assert r.status_code == 400, r.text
    assert r.json()["__type"].endswith("InvalidParameterException"), r.text
    assert r.json()["message"] == "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"
    out = ecr.put_image(repositoryName=name, imageManifest=text, imageTag="typed",
                        imageManifestMediaType="application/vnd.oci.image.manifest.v1+json")
    assert out["image"]["imageId"]["imageTag"] == "typed"


def test_resource_policies_are_validated_as_ecr_does(ecr):
    """Repository policies: duplicate Sids, no Resource and Version 2008-10-17 are fine. Registry
    policies may grant only the replication and pull-through-cache actions."""
    name = unique("model-pol")
    ecr.create_repository(repositoryName=name)
    policy = {"Version": "2008-10-17", "Statement": [
        {"Sid": "same", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
         "Action": "ecr:BatchGetImage"},
        {"Sid": "same", "Effect": "Allow", "Principal": "*", "Action": ["ecr:GetDownloadUrlForLayer"]}]}
    ecr.set_repository_policy(repositoryName=name, policyText=json.dumps(policy))
    assert json.loads(ecr.get_repository_policy(repositoryName=name)["policyText"]) == policy
    bad = {"Version": "2012-10-17", "Statement": [
        {"Sid": "pull", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
         "Action": ["ecr:ReplicateImage", "ecr:BatchGetImage"],
         "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/*"}]}
    with pytest.raises(ecr.exceptions.InvalidParameterException) as e:
        ecr.put_registry_policy(policyText=json.dumps(bad))
    assert e.value.response["Error"]["Message"] == (
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid registry policy provided'")
    good = dict(bad, Statement=[dict(bad["Statement"][0], Action=["ecr:ReplicateImage", "ecr:CreateRepository"]),
                                dict(bad["Statement"][0], Sid="pull", Action="ecr:BatchImportUpstreamImage")])
    ecr.put_registry_policy(policyText=json.dumps(good))
    ecr.delete_registry_policy()
