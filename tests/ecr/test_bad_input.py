"""Hostile and malformed input on the control plane, through boto3 and raw signed requests:
control characters in any string (refused with the protocol's own 400, never stored, never a 500
from PostgreSQL), unsigned operation headers, operations Berth does not implement.

The same tests run on SQLite and PostgreSQL (CI runs the suite on both configurations).
"""

import json
import xml.etree.ElementTree as ET

import botocore
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ecrlib import (
    JSON_CT,
    REGION,
    ROOT_AKID,
    ROOT_SECRET,
    TARGET_PREFIX,
    all_repositories,
    check_error,
    check_raw_error,
    client_error,
    make_iam,
    raw_call,
    unique,
)


def test_control_characters_in_ecr_strings_are_refused(ecr):
    name = unique("ctl")
    before = len(all_repositories(ecr))
    err = client_error(ecr.create_repository, repositoryName=name, tags=[{"Key": "team", "Value": "a\x00b"}])
    check_error(
        err,
        "InvalidParameterException",
        "Invalid parameter at 'tags[0].Value' failed to satisfy constraint: 'must not contain control characters'",
    )
    err = client_error(ecr.create_repository, repositoryName=name, tags=[{"Key": "t\x01", "Value": "v"}])
    check_error(
        err,
        "InvalidParameterException",
        "Invalid parameter at 'tags[0].Key' failed to satisfy constraint: 'must not contain control characters'",
    )
    assert len(all_repositories(ecr)) == before
    ecr.create_repository(repositoryName=name)
    err = client_error(ecr.tag_resource, resourceArn=ecr.describe_repositories(repositoryNames=[name])[
        "repositories"][0]["repositoryArn"], tags=[{"Key": "k", "Value": "\x1b[31m"}])
    check_error(err, "InvalidParameterException", prefix="Invalid parameter at 'tags[0].Value'")
    # Policy texts keep their newlines and tabs.
    policy = '{\n\t"Version": "2012-10-17",\n\t"Statement": [{"Effect": "Allow", "Principal": "*", ' \
             '"Action": "ecr:BatchGetImage"}]\n}'
    ecr.set_repository_policy(repositoryName=name, policyText=policy)
    assert ecr.list_tags_for_resource(resourceArn=ecr.describe_repositories(repositoryNames=[name])[
        "repositories"][0]["repositoryArn"])["tags"] == []


def test_control_characters_in_iam_input_are_refused_in_parseable_xml(server):
    iam = make_iam(server)
    err = client_error(iam.create_user, UserName="bad\x00name")
    check_error(
        err,
        "ValidationError",
        "1 validation error detected: Value at 'userName' failed to satisfy constraint: Member must not contain "
        "control characters",
    )
    err = client_error(iam.create_policy, PolicyName="p", Description="tab\tis fine, \x07 is not",
                       PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                           {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}))
    check_error(err, "ValidationError", prefix="1 validation error detected: Value at 'description'")
    with pytest.raises(botocore.exceptions.ClientError):
        iam.get_user(UserName="bad\x00name")


def test_iam_errors_never_carry_raw_control_characters(server):
    """An error message that echoes a name is XML a client can parse."""
    creds = Credentials(ROOT_AKID, ROOT_SECRET)
    body = "Action=GetUser&Version=2010-05-08&UserName=nobody%01here"
    req = AWSRequest(method="POST", url=server.url + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(creds, "iam", "us-east-1").add_auth(req)
    p = req.prepare()
    r = requests.post(server.url + "/", data=p.body, headers=dict(p.headers), timeout=30)
    assert r.status_code == 400, r.text
    root = ET.fromstring(r.content)  # raises on a raw control character
    ns = {"i": "https://iam.amazonaws.com/doc/2010-05-08/"}
    assert root.find("i:Error/i:Code", ns).text == "ValidationError"
    assert "\x01" not in r.text


def _signed_without(server, header, operation="DescribeRepositories"):
    """A request whose `header` is sent but left out of SignedHeaders."""
    hdrs = {"Content-Type": JSON_CT, "X-Amz-Target": f"{TARGET_PREFIX}.{operation}"}
    unsigned = {header: hdrs.pop(header)}
    req = AWSRequest(method="POST", url=server.url + "/", data=b"{}", headers=hdrs)
    SigV4Auth(Credentials(ROOT_AKID, ROOT_SECRET), "ecr", REGION).add_auth(req)
    p = req.prepare()
    headers = dict(p.headers)
    headers.update(unsigned)
    return requests.post(server.url + "/", data=p.body, headers=headers, timeout=30)


@pytest.mark.parametrize("header", ["X-Amz-Target", "Content-Type"])
def test_operation_headers_must_be_signed(server, header):
    r = _signed_without(server, header)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["__type"] == "IncompleteSignatureException", body
    assert body["message"] == f"'{header}' must be a 'SignedHeader' in the AWS Authorization.", body


def test_unimplemented_operation_is_named(server, ecr):
    r = raw_call(server, "CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "x", "upstreamRegistryUrl": "y"})
    check_raw_error(r, "UnknownOperationException", "Berth does not implement ecr:CreatePullThroughCacheRule")
    r = raw_call(server, None, {}, target="DynamoDB_20120810.ListTables")
    check_raw_error(r, "UnknownOperationException", prefix="Berth does not serve the target 'DynamoDB_20120810.ListTables'")
    # And through boto3, which knows the operation.
    err = client_error(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="hub",
                       upstreamRegistryUrl="registry-1.docker.io")
    check_error(err, "UnknownOperationException", "Berth does not implement ecr:CreatePullThroughCacheRule")


def test_data_plane_refuses_control_characters_in_queries(server, ecr):
    import base64
    name = unique("ctl-dp")
    ecr.create_repository(repositoryName=name)
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    h = {"Authorization": "Basic " + token}
    base = server.url
    for path in (f"/v2/{name}/tags/list?last=%00", "/v2/_catalog?last=a%00b", f"/v2/{name}/tags/list?last=%1b"):
        r = requests.get(base + path, headers=h, timeout=30)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["errors"][0]["code"] == "UNSUPPORTED", (path, r.text)
    subject = "sha256:" + "0" * 64
    r = requests.get(f"{base}/v2/{name}/referrers/{subject}?artifactType=%00", headers=h, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["manifests"] == []
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert base64.b64decode(token).startswith(b"AWS:")
