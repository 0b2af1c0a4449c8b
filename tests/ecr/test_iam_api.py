"""The IAM and STS Query APIs Berth serves on the ECR port (POST / form-encoded, XML answers).

Driven through boto3 `iam`/`sts` clients, the AWS CLI and raw SigV4-signed requests. Expected
shapes, codes, statuses and messages are those of AWS IAM (API reference and observed
responses). Every test uses its own uniquely named users, groups and policies.
"""

import datetime
import json
import re
import tempfile
import uuid
import xml.etree.ElementTree as ET

import pytest

from ecrlib import (
    ACCOUNT_ID,
    BAD_SIGNATURE_MSG,
    IAM_NS,
    REGION,
    ROOT_AKID,
    ROOT_SECRET,
    STS_NS,
    UNRECOGNIZED_CLIENT_MSG,
    aws_cmd,
    check_error,
    cli_error_line,
    cli_json,
    client_error,
    make_client,
    make_iam,
    make_sts,
    purge_iam_group,
    purge_iam_user,
    query_call,
    unique,
    utcnow,
)

USER_ID_RE = re.compile(r"^AIDA[A-Z2-7]{17}$")
GROUP_ID_RE = re.compile(r"^AGPA[A-Z2-7]{17}$")
POLICY_ID_RE = re.compile(r"^ANPA[A-Z2-7]{17}$")
AKID_RE = re.compile(r"^AKIA[A-Z0-9]{16}$")
READ_ONLY_ARN = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
IAM_READ_ONLY_ARN = "arn:aws:iam::aws:policy/IAMReadOnlyAccess"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"


def user_arn(name, path="/"):
    return f"arn:aws:iam::{ACCOUNT_ID}:user{path}{name}"


def group_arn(name, path="/"):
    return f"arn:aws:iam::{ACCOUNT_ID}:group{path}{name}"


def policy_arn(name, path="/"):
    return f"arn:aws:iam::{ACCOUNT_ID}:policy{path}{name}"


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource="*"):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action, resource="*"):
    return {"Effect": "Deny", "Action": action, "Resource": resource}


def denied_msg(principal, action, resource, *, explicit=False):
    head = f"User: {principal} is not authorized to perform: {action} on resource: {resource}"
    if explicit:
        return f"{head} with an explicit deny in an identity-based policy"
    return f"{head} because no identity-based policy allows the {action} action"


def recent(dt):
    """A response timestamp within a few minutes of now."""
    assert isinstance(dt, datetime.datetime), dt
    return abs((utcnow() - dt).total_seconds()) < 300


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def iam(server):
    return make_iam(server)


@pytest.fixture(scope="module")
def iam_novalidate(server):
    return make_iam(server, validate=False)


@pytest.fixture(scope="module")
def sts(server):
    return make_sts(server)


@pytest.fixture
def users(iam):
    """Factory: users(prefix, path=None) -> name; every user created is purged afterwards."""
    created = []

    def make(prefix="u", path=None):
        name = unique(prefix)
        kwargs = {"UserName": name}
        if path is not None:
            kwargs["Path"] = path
        iam.create_user(**kwargs)
        created.append(name)
        return name

    make.created = created
    yield make
    for name in created:
        purge_iam_user(iam, name)


@pytest.fixture
def groups(iam):
    created = []

    def make(prefix="g", path=None):
        name = unique(prefix)
        kwargs = {"GroupName": name}
        if path is not None:
            kwargs["Path"] = path
        iam.create_group(**kwargs)
        created.append(name)
        return name

    yield make
    for name in created:
        purge_iam_group(iam, name)


@pytest.fixture
def policies(iam):
    """Factory: policies(document, prefix, path=None) -> ARN; deleted (after detaching) afterwards."""
    created = []

    def make(document, prefix="p", path=None, **kwargs):
        name = unique(prefix)
        if path is not None:
            kwargs["Path"] = path
        arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document), **kwargs)["Policy"]["Arn"]
        created.append(arn)
        return arn

    yield make
    for arn in created:
        try:
            iam.delete_policy(PolicyArn=arn)
        except Exception:  # noqa: BLE001 - best-effort cleanup (may still be attached)
            pass


@pytest.fixture
def repos(ecr):
    """Names of repositories a test creates; deleted as root afterwards."""
    names = []
    yield names
    for n in names:
        try:
            ecr.delete_repository(repositoryName=n, force=True)
        except Exception:  # noqa: BLE001
            pass


def user_key(iam, name):
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def as_user(server, iam, name):
    """(iam client, ecr client, sts client, akid) signing as a fresh key of user `name`."""
    akid, secret = user_key(iam, name)
    return (
        make_iam(server, akid, secret),
        make_client(server, akid=akid, secret=secret),
        make_sts(server, akid, secret),
        akid,
    )


# --------------------------------------------------------------------------------------------
# STS GetCallerIdentity


def test_caller_identity_root(sts):
    r = sts.get_caller_identity()
    assert r["UserId"] == ACCOUNT_ID
    assert r["Account"] == ACCOUNT_ID
    assert r["Arn"] == ROOT_ARN
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_caller_identity_user(server, iam, users):
    name = users("who", path="/team/a/")
    uid = iam.get_user(UserName=name)["User"]["UserId"]
    _, _, sts_u, _ = as_user(server, iam, name)
    r = sts_u.get_caller_identity()
    assert USER_ID_RE.match(r["UserId"]), r
    assert r["UserId"] == uid
    assert r["Account"] == ACCOUNT_ID
    assert r["Arn"] == user_arn(name, "/team/a/")


def test_caller_identity_cli(server, iam, users):
    out = cli_json(aws_cmd(server, "sts", "get-caller-identity"))
    assert out == {"UserId": ACCOUNT_ID, "Account": ACCOUNT_ID, "Arn": ROOT_ARN}
    name = users("clwho")
    akid, secret = user_key(iam, name)
    out = cli_json(aws_cmd(server, "sts", "get-caller-identity", akid=akid, secret=secret))
    assert out == {
        "UserId": iam.get_user(UserName=name)["User"]["UserId"],
        "Account": ACCOUNT_ID,
        "Arn": user_arn(name),
    }


def test_sts_raw_success_shape(server):
    r = query_call(server, {"Action": "GetCallerIdentity"}, service="sts")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/xml"
    root = ET.fromstring(r.text)
    assert root.tag == f"{{{STS_NS}}}GetCallerIdentityResponse"
    result = root.find(f"{{{STS_NS}}}GetCallerIdentityResult")
    assert [c.tag.split("}")[1] for c in result] == ["Arn", "UserId", "Account"]
    assert result.find(f"{{{STS_NS}}}Arn").text == ROOT_ARN
    rid = root.find(f"{{{STS_NS}}}ResponseMetadata/{{{STS_NS}}}RequestId").text
    assert rid == r.headers["x-amzn-RequestId"]


# --------------------------------------------------------------------------------------------
# Users


def test_create_user_default_path(iam, users):
    name = unique("cu")
    r = iam.create_user(UserName=name)
    users.created.append(name)
    u = r["User"]
    assert set(u) == {"Path", "UserName", "UserId", "Arn", "CreateDate"}, u
    assert u["Path"] == "/"
    assert u["UserName"] == name
    assert USER_ID_RE.match(u["UserId"]), u
    assert u["Arn"] == user_arn(name)
    assert recent(u["CreateDate"])
    got = iam.get_user(UserName=name)["User"]
    assert got == u


def test_create_user_with_path(iam, users):
    name = unique("cp")
    u = iam.create_user(UserName=name, Path="/division_abc/subdivision_xyz/")["User"]
    users.created.append(name)
    assert u["Path"] == "/division_abc/subdivision_xyz/"
    assert u["Arn"] == user_arn(name, "/division_abc/subdivision_xyz/")
    assert iam.get_user(UserName=name)["User"]["Arn"] == u["Arn"]


def test_create_user_duplicate(iam, users):
    name = users("dup")
    err = client_error(iam.create_user, UserName=name)
    check_error(err, "EntityAlreadyExists", f"User with name {name} already exists.", status=409)


def test_user_names_are_case_insensitive(iam, users):
    base = unique("ci")
    upper = base.upper()
    iam.create_user(UserName=upper)
    users.created.append(upper)
    err = client_error(iam.create_user, UserName=base)
    check_error(err, "EntityAlreadyExists", f"User with name {base} already exists.", status=409)
    # Lookups take any case and answer with the name as created.
    assert iam.get_user(UserName=base)["User"]["UserName"] == upper


def test_get_user_missing(iam):
    name = unique("nobody")
    err = client_error(iam.get_user, UserName=name)
    check_error(err, "NoSuchEntity", f"The user with name {name} cannot be found.", status=404)


def test_get_user_without_name_as_root(iam):
    u = iam.get_user()["User"]
    assert u["UserId"] == ACCOUNT_ID
    assert u["Arn"] == ROOT_ARN
    assert "UserName" not in u and "Path" not in u
    assert isinstance(u["CreateDate"], datetime.datetime)


def test_get_user_without_name_as_user(server, iam, users):
    name = users("self", path="/me/")
    iam.put_user_policy(
        UserName=name,
        PolicyName="self",
        PolicyDocument=json.dumps(doc(allow("iam:GetUser", "arn:aws:iam::*:user/*${aws:username}"))),
    )
    iam_u, _, _, _ = as_user(server, iam, name)
    u = iam_u.get_user()["User"]
    assert u["UserName"] == name
    assert u["Path"] == "/me/"
    assert u["Arn"] == user_arn(name, "/me/")
    assert u == iam.get_user(UserName=name)["User"]


def test_list_users_path_prefix_and_pagination(iam, users):
    prefix = f"/pg{uuid.uuid4().hex[:8]}/"
    names = [users(f"lu{i}", path=prefix) for i in range(5)]
    other = users("elsewhere", path=prefix.rstrip("/") + "x/")
    expected = sorted(names, key=str.lower)

    p1 = iam.list_users(PathPrefix=prefix, MaxItems=2)
    assert p1["IsTruncated"] is True and p1["Marker"]
    p2 = iam.list_users(PathPrefix=prefix, MaxItems=2, Marker=p1["Marker"])
    assert p2["IsTruncated"] is True and p2["Marker"]
    p3 = iam.list_users(PathPrefix=prefix, MaxItems=2, Marker=p2["Marker"])
    assert p3["IsTruncated"] is False
    assert "Marker" not in p3
    got = [u["UserName"] for p in (p1, p2, p3) for u in p["Users"]]
    assert [len(p["Users"]) for p in (p1, p2, p3)] == [2, 2, 1]
    assert got == expected
    assert all(u["Path"] == prefix for p in (p1, p2, p3) for u in p["Users"])

    everything = [u["UserName"] for page in iam.get_paginator("list_users").paginate() for u in page["Users"]]
    assert set(names) | {other} <= set(everything)
    # A prefix is a prefix of the path string.
    wider = [u["UserName"] for u in iam.list_users(PathPrefix=prefix.rstrip("/"))["Users"]]
    assert sorted(wider, key=str.lower) == sorted(names + [other], key=str.lower)
    full = iam.list_users(PathPrefix=prefix)
    assert full["IsTruncated"] is False and [u["UserName"] for u in full["Users"]] == expected


def test_list_users_bad_max_items(iam_novalidate):
    err = client_error(iam_novalidate.list_users, MaxItems=0)
    check_error(
        err,
        "ValidationError",
        "1 validation error detected: Value '0' at 'maxItems' failed to satisfy constraint: "
        "Member must have value between 1 and 1000",
    )


def test_delete_user(iam):
    name = unique("del")
    iam.create_user(UserName=name)
    r = iam.delete_user(UserName=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    check_error(
        client_error(iam.get_user, UserName=name),
        "NoSuchEntity",
        f"The user with name {name} cannot be found.",
        status=404,
    )
    check_error(
        client_error(iam.delete_user, UserName=name),
        "NoSuchEntity",
        f"The user with name {name} cannot be found.",
        status=404,
    )


NAME_PATTERN = "Member must satisfy regular expression pattern: [\\w+=,.@-]+"
PATH_PATTERN = (
    "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)"
)


@pytest.mark.parametrize(
    "name,constraint",
    [
        ("bad name", NAME_PATTERN),
        ("bad/name", NAME_PATTERN),
        ("u" * 65, "Member must have length less than or equal to 64"),
        ("", "Member must have length greater than or equal to 1"),
    ],
)
def test_create_user_bad_name(iam_novalidate, name, constraint):
    err = client_error(iam_novalidate.create_user, UserName=name)
    check_error(
        err,
        "ValidationError",
        f"1 validation error detected: Value '{name}' at 'userName' failed to satisfy constraint: {constraint}",
    )


@pytest.mark.parametrize("path", ["noslash", "/notrailing", "trailing/", "/sp ace/"])
def test_create_user_bad_path(iam, path):
    err = client_error(iam.create_user, UserName=unique("bp"), Path=path)
    check_error(
        err,
        "ValidationError",
        f"1 validation error detected: Value '{path}' at 'path' failed to satisfy constraint: {PATH_PATTERN}",
    )


def test_missing_user_name_raw(server):
    r = query_call(server, {"Action": "CreateUser"})
    assert r.status_code == 400, r.text
    root = ET.fromstring(r.text)
    ns = {"i": IAM_NS}
    assert root.find("i:Error/i:Code", ns).text == "ValidationError"
    assert root.find("i:Error/i:Message", ns).text == (
        "1 validation error detected: Value null at 'userName' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_delete_user_conflicts(iam, users, groups, policies):
    name = users("busy")
    key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    check_error(
        client_error(iam.delete_user, UserName=name),
        "DeleteConflict",
        "Cannot delete entity, must delete access keys first.",
        status=409,
    )
    iam.delete_access_key(UserName=name, AccessKeyId=key)

    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(doc(allow("ecr:*"))))
    check_error(
        client_error(iam.delete_user, UserName=name),
        "DeleteConflict",
        "Cannot delete entity, must delete policies first.",
        status=409,
    )
    iam.delete_user_policy(UserName=name, PolicyName="p")

    arn = policies(doc(allow("ecr:*")))
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    check_error(
        client_error(iam.delete_user, UserName=name),
        "DeleteConflict",
        "Cannot delete entity, must delete policies first.",
        status=409,
    )
    iam.detach_user_policy(UserName=name, PolicyArn=arn)

    group = groups()
    iam.add_user_to_group(GroupName=group, UserName=name)
    check_error(
        client_error(iam.delete_user, UserName=name),
        "DeleteConflict",
        "Cannot delete entity, must remove users from group first.",
        status=409,
    )
    iam.remove_user_from_group(GroupName=group, UserName=name)
    iam.delete_user(UserName=name)
    check_error(client_error(iam.get_user, UserName=name), "NoSuchEntity", status=404)


# --------------------------------------------------------------------------------------------
# Access keys


def test_access_key_lifecycle(iam, users):
    name = users("keys")
    k1 = iam.create_access_key(UserName=name)["AccessKey"]
    assert set(k1) == {"UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate"}, k1
    assert k1["UserName"] == name
    assert AKID_RE.match(k1["AccessKeyId"]), k1
    assert k1["Status"] == "Active"
    assert len(k1["SecretAccessKey"]) == 40
    assert recent(k1["CreateDate"])

    listed = iam.list_access_keys(UserName=name)
    assert listed["IsTruncated"] is False
    assert listed["AccessKeyMetadata"] == [
        {"UserName": name, "AccessKeyId": k1["AccessKeyId"], "Status": "Active", "CreateDate": k1["CreateDate"]}
    ]

    k2 = iam.create_access_key(UserName=name)["AccessKey"]
    err = client_error(iam.create_access_key, UserName=name)
    check_error(err, "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", status=409)
    ids = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]]
    assert sorted(ids) == sorted([k1["AccessKeyId"], k2["AccessKeyId"]])

    iam.update_access_key(UserName=name, AccessKeyId=k1["AccessKeyId"], Status="Inactive")
    statuses = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]}
    assert statuses == {k1["AccessKeyId"]: "Inactive", k2["AccessKeyId"]: "Active"}

    iam.delete_access_key(UserName=name, AccessKeyId=k1["AccessKeyId"])
    ids = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]]
    assert ids == [k2["AccessKeyId"]]
    err = client_error(iam.delete_access_key, UserName=name, AccessKeyId=k1["AccessKeyId"])
    check_error(err, "NoSuchEntity", f"The Access Key with id {k1['AccessKeyId']} cannot be found.", status=404)


def test_update_access_key_bad_status(iam, users):
    name = users("kst")
    akid, _ = user_key(iam, name)
    err = client_error(iam.update_access_key, UserName=name, AccessKeyId=akid, Status="Disabled")
    check_error(
        err,
        "ValidationError",
        "1 validation error detected: Value 'Disabled' at 'status' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Active, Inactive]",
    )


def test_inactive_key_cannot_sign(server, iam, users):
    name = users("inact")
    iam.attach_user_policy(UserName=name, PolicyArn=READ_ONLY_ARN)
    _, ecr_u, sts_u, akid = as_user(server, iam, name)
    assert ecr_u.describe_repositories()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert sts_u.get_caller_identity()["Arn"] == user_arn(name)

    iam.update_access_key(UserName=name, AccessKeyId=akid, Status="Inactive")
    # ECR (JSON protocol) and STS/IAM (Query protocol) name the same refusal differently.
    err = client_error(ecr_u.describe_repositories)
    check_error(err, "UnrecognizedClientException", UNRECOGNIZED_CLIENT_MSG, status=400)
    err = client_error(sts_u.get_caller_identity)
    check_error(err, "InvalidClientTokenId", UNRECOGNIZED_CLIENT_MSG, status=403)

    iam.update_access_key(UserName=name, AccessKeyId=akid, Status="Active")
    assert ecr_u.describe_repositories()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert sts_u.get_caller_identity()["Arn"] == user_arn(name)


def test_deleted_key_cannot_sign(server, iam, users):
    name = users("gone")
    iam.attach_user_policy(UserName=name, PolicyArn=READ_ONLY_ARN)
    _, ecr_u, _, akid = as_user(server, iam, name)
    ecr_u.describe_repositories()
    iam.delete_access_key(UserName=name, AccessKeyId=akid)
    check_error(
        client_error(ecr_u.describe_repositories), "UnrecognizedClientException", UNRECOGNIZED_CLIENT_MSG, status=400
    )


def test_keys_of_another_user(iam, users):
    a, b = users("ka"), users("kb")
    akid, _ = user_key(iam, a)
    msg = f"The Access Key with id {akid} cannot be found."
    check_error(
        client_error(iam.update_access_key, UserName=b, AccessKeyId=akid, Status="Inactive"),
        "NoSuchEntity",
        msg,
        status=404,
    )
    check_error(client_error(iam.delete_access_key, UserName=b, AccessKeyId=akid), "NoSuchEntity", msg, status=404)
    # Without UserName the root acts on its own keys, and this one is not among them.
    check_error(client_error(iam.delete_access_key, AccessKeyId=akid), "NoSuchEntity", msg, status=404)
    assert [k["AccessKeyId"] for k in iam.list_access_keys(UserName=a)["AccessKeyMetadata"]] == [akid]
    assert iam.list_access_keys(UserName=b)["AccessKeyMetadata"] == []


def test_access_keys_of_missing_user(iam):
    name = unique("nokeys")
    check_error(
        client_error(iam.create_access_key, UserName=name),
        "NoSuchEntity",
        f"The user with name {name} cannot be found.",
        status=404,
    )
    check_error(client_error(iam.list_access_keys, UserName=name), "NoSuchEntity", status=404)


def test_root_access_keys(server, iam):
    before = iam.list_access_keys()["AccessKeyMetadata"]
    assert ROOT_AKID in [k["AccessKeyId"] for k in before]
    assert all("UserName" not in k for k in before)
    assert len(before) == 1, "another test left a root key behind"
    k = iam.create_access_key()["AccessKey"]
    try:
        assert "UserName" not in k
        assert AKID_RE.match(k["AccessKeyId"]) and k["Status"] == "Active"
        assert make_sts(server, k["AccessKeyId"], k["SecretAccessKey"]).get_caller_identity()["Arn"] == ROOT_ARN
        ids = [m["AccessKeyId"] for m in iam.list_access_keys()["AccessKeyMetadata"]]
        assert sorted(ids) == sorted([ROOT_AKID, k["AccessKeyId"]])
        err = client_error(iam.create_access_key)
        check_error(err, "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", status=409)
    finally:
        iam.delete_access_key(AccessKeyId=k["AccessKeyId"])
    assert [m["AccessKeyId"] for m in iam.list_access_keys()["AccessKeyMetadata"]] == [ROOT_AKID]


# --------------------------------------------------------------------------------------------
# Inline user policies


def test_user_inline_policy_crud(iam, users):
    name = users("inl")
    document = doc(allow(["ecr:DescribeRepositories", "ecr:ListImages"], "arn:aws:ecr:*:*:repository/app-*"))
    iam.put_user_policy(UserName=name, PolicyName="read-app", PolicyDocument=json.dumps(document, indent=2))
    iam.put_user_policy(UserName=name, PolicyName="Another", PolicyDocument=json.dumps(doc(allow("ecr:*"))))
    got = iam.get_user_policy(UserName=name, PolicyName="read-app")
    assert got["UserName"] == name
    assert got["PolicyName"] == "read-app"
    assert got["PolicyDocument"] == document  # boto3 URL-decodes and parses the document
    listed = iam.list_user_policies(UserName=name)
    assert listed["PolicyNames"] == ["Another", "read-app"]
    assert listed["IsTruncated"] is False

    # Put replaces.
    iam.put_user_policy(UserName=name, PolicyName="read-app", PolicyDocument=json.dumps(doc(allow("ecr:List*"))))
    assert iam.get_user_policy(UserName=name, PolicyName="read-app")["PolicyDocument"] == doc(allow("ecr:List*"))

    iam.delete_user_policy(UserName=name, PolicyName="read-app")
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["Another"]
    msg = "The user policy with name read-app cannot be found."
    check_error(
        client_error(iam.get_user_policy, UserName=name, PolicyName="read-app"), "NoSuchEntity", msg, status=404
    )
    check_error(
        client_error(iam.delete_user_policy, UserName=name, PolicyName="read-app"), "NoSuchEntity", msg, status=404
    )


def test_policy_document_round_trips_special_characters(iam, users):
    name = users("chars")
    document = doc(
        {
            "Sid": "Odd",
            "Effect": "Allow",
            "Action": "ecr:ListImages",
            "Resource": "*",
            "Condition": {"StringLike": {"aws:username": ["a&b<c>'\"", "x+y %20 z", "caf\u00e9/*?"]}},
        }
    )
    text = json.dumps(document, ensure_ascii=False)
    iam.put_user_policy(UserName=name, PolicyName="odd", PolicyDocument=text)
    assert iam.get_user_policy(UserName=name, PolicyName="odd")["PolicyDocument"] == document
    arn = iam.create_policy(PolicyName=unique("odd"), PolicyDocument=text)["Policy"]["Arn"]
    try:
        assert iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]["Document"] == document
    finally:
        iam.delete_policy(PolicyArn=arn)


def test_inline_policy_of_missing_user(iam):
    name = unique("ghost")
    err = client_error(
        iam.put_user_policy, UserName=name, PolicyName="p", PolicyDocument=json.dumps(doc(allow("ecr:*")))
    )
    check_error(err, "NoSuchEntity", f"The user with name {name} cannot be found.", status=404)


@pytest.mark.parametrize(
    "document,message",
    [
        pytest.param(doc({"Action": "ecr:*", "Resource": "*"}), "Missing required field Effect", id="no-effect"),
        pytest.param(
            doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "ecr:*", "Resource": "*"}),
            "Policy document should not specify a principal.",
            id="principal",
        ),
        pytest.param('{"Version": "2012-10-17", "Statement": [', "Syntax errors in policy.", id="bad-json"),
        pytest.param(
            doc(
                {
                    "Effect": "Allow",
                    "Action": "ecr:*",
                    "Resource": "*",
                    "Condition": {"StringEqualz": {"aws:username": "x"}},
                }
            ),
            "Invalid Condition type : StringEqualz",
            id="bad-operator",
        ),
        pytest.param(
            doc({"Effect": "Maybe", "Action": "ecr:*", "Resource": "*"}), "Invalid effect: Maybe", id="effect"
        ),
        pytest.param(doc({"Effect": "Allow", "Action": "ecr:*"}), "Missing required field Resource", id="no-resource"),
    ],
)
def test_malformed_user_policy(iam, users, document, message):
    name = users("mal")
    text = document if isinstance(document, str) else json.dumps(document)
    err = client_error(iam.put_user_policy, UserName=name, PolicyName="bad", PolicyDocument=text)
    got = check_error(err, "MalformedPolicyDocument", prefix=message)
    # AWS says "Invalid Condition type : X" without a final period; Berth's policy parser adds one.
    assert got in (message, message + "."), got
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == []


def padded_policy(non_ws_len):
    """A valid policy of exactly `non_ws_len` non-whitespace characters, plus lots of whitespace."""
    base = doc(allow("ecr:DescribeRepositories", "arn:aws:ecr:*:*:repository/"))
    text = json.dumps(base, separators=(",", ":"))
    pad = non_ws_len - len(text)
    assert pad > 0
    base["Statement"][0]["Resource"] += "x" * pad
    text = json.dumps(base, indent=8)
    assert len("".join(text.split())) == non_ws_len
    return text


def test_user_policy_size_limit(iam, users):
    name = users("big")
    ok = padded_policy(2048)
    assert len(ok) > 2048  # whitespace does not count
    iam.put_user_policy(UserName=name, PolicyName="max", PolicyDocument=ok)
    err = client_error(iam.put_user_policy, UserName=name, PolicyName="over", PolicyDocument=padded_policy(2049))
    check_error(err, "LimitExceeded", f"Maximum policy size of 2048 bytes exceeded for user {name}", status=409)
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["max"]


def test_group_policy_size_limit(iam, groups):
    g = groups("bigg")
    iam.put_group_policy(GroupName=g, PolicyName="max", PolicyDocument=padded_policy(5120))
    err = client_error(iam.put_group_policy, GroupName=g, PolicyName="over", PolicyDocument=padded_policy(5121))
    check_error(err, "LimitExceeded", f"Maximum policy size of 5120 bytes exceeded for group {g}", status=409)


# --------------------------------------------------------------------------------------------
# Managed policies


def test_create_get_policy(iam, policies):
    document = doc(allow("ecr:DescribeRepositories"))
    name = unique("mp")
    r = iam.create_policy(
        PolicyName=name, Path="/eng/", PolicyDocument=json.dumps(document), Description="read repos"
    )["Policy"]
    try:
        assert r["PolicyName"] == name
        assert r["Arn"] == policy_arn(name, "/eng/")
        assert r["Path"] == "/eng/"
        assert POLICY_ID_RE.match(r["PolicyId"]), r
        assert r["DefaultVersionId"] == "v1"
        assert r["AttachmentCount"] == 0
        assert r["PermissionsBoundaryUsageCount"] == 0
        assert r["IsAttachable"] is True
        assert recent(r["CreateDate"]) and r["UpdateDate"] == r["CreateDate"]

        got = iam.get_policy(PolicyArn=r["Arn"])["Policy"]
        assert got["Description"] == "read repos"
        assert {k: v for k, v in got.items() if k != "Description"} == {
            k: v for k, v in r.items() if k != "Description"
        }

        v = iam.get_policy_version(PolicyArn=r["Arn"], VersionId="v1")["PolicyVersion"]
        assert v["Document"] == document
        assert v["VersionId"] == "v1"
        assert v["IsDefaultVersion"] is True
        assert recent(v["CreateDate"])
        err = client_error(iam.get_policy_version, PolicyArn=r["Arn"], VersionId="v2")
        check_error(err, "NoSuchEntity", status=404)

        err = client_error(iam.create_policy, PolicyName=name, PolicyDocument=json.dumps(document))
        check_error(
            err,
            "EntityAlreadyExists",
            f"A policy called {name} already exists. Duplicate names are not allowed.",
            status=409,
        )
    finally:
        iam.delete_policy(PolicyArn=r["Arn"])
    err = client_error(iam.get_policy, PolicyArn=r["Arn"])
    check_error(err, "NoSuchEntity", f"Policy {r['Arn']} does not exist or is not attachable.", status=404)


def test_create_policy_malformed(iam):
    err = client_error(
        iam.create_policy,
        PolicyName=unique("mal"),
        PolicyDocument=json.dumps(doc({"Effect": "Allow", "Principal": "*", "Action": "ecr:*", "Resource": "*"})),
    )
    check_error(err, "MalformedPolicyDocument", "Policy document should not specify a principal.")


def test_aws_managed_policy(iam):
    p = iam.get_policy(PolicyArn=READ_ONLY_ARN)["Policy"]
    assert p["PolicyName"] == "AmazonEC2ContainerRegistryReadOnly"
    assert p["Arn"] == READ_ONLY_ARN
    assert p["IsAttachable"] is True
    assert POLICY_ID_RE.match(p["PolicyId"]), p
    v = iam.get_policy_version(PolicyArn=READ_ONLY_ARN, VersionId=p["DefaultVersionId"])["PolicyVersion"]
    actions = v["Document"]["Statement"][0]["Action"]
    assert "ecr:DescribeRepositories" in actions and "ecr:CreateRepository" not in actions
    missing = "arn:aws:iam::aws:policy/NoSuchPolicy"
    check_error(
        client_error(iam.get_policy, PolicyArn=missing),
        "NoSuchEntity",
        f"Policy {missing} does not exist or is not attachable.",
        status=404,
    )


def test_list_policies_scopes(iam, users, policies):
    arn = policies(doc(allow("ecr:ListImages")), "lp")
    unattached = policies(doc(allow("ecr:ListImages")), "lq")

    def arns(**kw):
        out = []
        for page in iam.get_paginator("list_policies").paginate(**kw):
            out.extend(page["Policies"])
        return out

    local = arns(Scope="Local")
    local_arns = [p["Arn"] for p in local]
    assert arn in local_arns and unattached in local_arns
    assert not any(a.startswith("arn:aws:iam::aws:") for a in local_arns)
    # ListPolicies does not return descriptions.
    assert all("Description" not in p for p in local)

    aws = [p["Arn"] for p in arns(Scope="AWS")]
    assert READ_ONLY_ARN in aws and IAM_READ_ONLY_ARN in aws
    assert all(a.startswith("arn:aws:iam::aws:policy/") for a in aws)

    everything = [p["Arn"] for p in arns(Scope="All")]
    assert {arn, unattached, READ_ONLY_ARN} <= set(everything)
    assert set(everything) == set(aws) | set(local_arns)

    # Paginated one at a time, All yields the same set.
    one_by_one = [p["Arn"] for p in arns(Scope="All", PaginationConfig={"PageSize": 1})]
    assert one_by_one == everything

    name = users("att")
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    attached = arns(Scope="Local", OnlyAttached=True)
    assert arn in [p["Arn"] for p in attached]
    assert unattached not in [p["Arn"] for p in attached]
    assert all(p["AttachmentCount"] >= 1 for p in attached)
    assert [p for p in attached if p["Arn"] == arn][0]["AttachmentCount"] == 1

    err = client_error(iam.list_policies, Scope="Bogus")
    check_error(
        err,
        "ValidationError",
        "1 validation error detected: Value 'Bogus' at 'scope' failed to satisfy constraint: "
        "Member must satisfy enum value set: [All, AWS, Local]",
    )


def test_list_policies_only_attached_pages_past_unattached(iam, users, policies):
    path = f"/oa{uuid.uuid4().hex[:8]}/"
    names = ["pa", "pb", "pc", "pd", "pe"]
    arns = [policies(doc(allow("ecr:ListImages")), n, path=path) for n in names]
    name = users("oa")
    for arn in (arns[3], arns[4]):
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    p1 = iam.list_policies(Scope="Local", OnlyAttached=True, PathPrefix=path, MaxItems=1)
    assert [p["Arn"] for p in p1["Policies"]] == [arns[3]]
    assert p1["IsTruncated"] is True
    p2 = iam.list_policies(Scope="Local", OnlyAttached=True, PathPrefix=path, MaxItems=1, Marker=p1["Marker"])
    assert [p["Arn"] for p in p2["Policies"]] == [arns[4]]
    assert p2["IsTruncated"] is False
    # Without OnlyAttached, the same path pages through all five.
    p = iam.list_policies(Scope="Local", PathPrefix=path, MaxItems=2)
    assert [x["Arn"] for x in p["Policies"]] == arns[:2] and p["IsTruncated"] is True
    p = iam.list_policies(Scope="Local", PathPrefix=path, MaxItems=2, Marker=p["Marker"])
    assert [x["Arn"] for x in p["Policies"]] == arns[2:4] and p["IsTruncated"] is True
    p = iam.list_policies(Scope="Local", PathPrefix=path, MaxItems=2, Marker=p["Marker"])
    assert [x["Arn"] for x in p["Policies"]] == arns[4:] and p["IsTruncated"] is False
    # Only customer managed policies live under a path other than "/".
    assert iam.list_policies(Scope="AWS", PathPrefix=path)["Policies"] == []


def test_attach_detach_user_policy(iam, users, policies):
    name = users("ad")
    arn = policies(doc(allow("ecr:ListImages")), "cust", path="/team/")
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    iam.attach_user_policy(UserName=name, PolicyArn=READ_ONLY_ARN)
    iam.attach_user_policy(UserName=name, PolicyArn=arn)  # attaching twice is a no-op
    r = iam.list_attached_user_policies(UserName=name)
    assert r["IsTruncated"] is False
    assert sorted(r["AttachedPolicies"], key=lambda p: p["PolicyArn"]) == sorted(
        [
            {"PolicyName": arn.rsplit("/", 1)[1], "PolicyArn": arn},
            {"PolicyName": "AmazonEC2ContainerRegistryReadOnly", "PolicyArn": READ_ONLY_ARN},
        ],
        key=lambda p: p["PolicyArn"],
    )
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1

    err = client_error(iam.delete_policy, PolicyArn=arn)
    check_error(err, "DeleteConflict", "Cannot delete a policy attached to entities.", status=409)

    iam.detach_user_policy(UserName=name, PolicyArn=arn)
    err = client_error(iam.detach_user_policy, UserName=name, PolicyArn=arn)
    check_error(err, "NoSuchEntity", f"Policy {arn} was not found.", status=404)
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 0
    assert [p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]] == [
        READ_ONLY_ARN
    ]
    iam.delete_policy(PolicyArn=arn)
    check_error(client_error(iam.get_policy, PolicyArn=arn), "NoSuchEntity", status=404)


def test_attached_policy_quota(iam, users, policies):
    name = users("quota")
    arns = [policies(doc(allow("ecr:ListImages")), f"q{i}") for i in range(11)]
    for arn in arns[:10]:
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    iam.attach_user_policy(UserName=name, PolicyArn=arns[0])  # re-attaching is not a new attachment
    err = client_error(iam.attach_user_policy, UserName=name, PolicyArn=arns[10])
    check_error(err, "LimitExceeded", "Cannot exceed quota for PoliciesPerUser: 10", status=409)
    assert len(iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]) == 10


def test_managed_policy_size_limit(iam, policies):
    policies(json.loads(padded_policy(6144)), "max6144")
    err = client_error(iam.create_policy, PolicyName=unique("over"), PolicyDocument=padded_policy(6145))
    check_error(err, "LimitExceeded", "Cannot exceed quota for PolicySize: 6144", status=409)


def test_attach_missing_policy(iam, users):
    name = users("am")
    for arn in (policy_arn(unique("nope")), "arn:aws:iam::aws:policy/NotAPolicy"):
        err = client_error(iam.attach_user_policy, UserName=name, PolicyArn=arn)
        check_error(err, "NoSuchEntity", f"Policy {arn} does not exist or is not attachable.", status=404)
    assert iam.list_attached_user_policies(UserName=name)["AttachedPolicies"] == []


def test_attach_to_missing_user(iam):
    name = unique("nouser")
    err = client_error(iam.attach_user_policy, UserName=name, PolicyArn=READ_ONLY_ARN)
    check_error(err, "NoSuchEntity", f"The user with name {name} cannot be found.", status=404)


# --------------------------------------------------------------------------------------------
# Groups


def test_group_lifecycle(iam, users, policies):
    gname = unique("grp")
    g = iam.create_group(GroupName=gname, Path="/ops/")["Group"]
    try:
        assert set(g) == {"Path", "GroupName", "GroupId", "Arn", "CreateDate"}, g
        assert g["GroupName"] == gname and g["Path"] == "/ops/"
        assert GROUP_ID_RE.match(g["GroupId"]), g
        assert g["Arn"] == group_arn(gname, "/ops/")
        assert recent(g["CreateDate"])
        check_error(
            client_error(iam.create_group, GroupName=gname),
            "EntityAlreadyExists",
            f"Group with name {gname} already exists.",
            status=409,
        )

        got = iam.get_group(GroupName=gname)
        assert got["Group"] == g and got["Users"] == [] and got["IsTruncated"] is False
        assert gname in [x["GroupName"] for x in iam.list_groups(PathPrefix="/ops/")["Groups"]]
        assert gname not in [x["GroupName"] for x in iam.list_groups(PathPrefix="/dev/")["Groups"]]

        u1, u2 = users("m1"), users("m2")
        iam.add_user_to_group(GroupName=gname, UserName=u1)
        iam.add_user_to_group(GroupName=gname, UserName=u2)
        iam.add_user_to_group(GroupName=gname, UserName=u1)  # idempotent
        members = iam.get_group(GroupName=gname)["Users"]
        assert sorted(m["UserName"] for m in members) == sorted([u1, u2])
        assert {m["UserName"]: m for m in members}[u1] == iam.get_user(UserName=u1)["User"]
        r = iam.list_groups_for_user(UserName=u1)
        assert r["Groups"] == [g] and r["IsTruncated"] is False

        # Inline group policies.
        document = doc(allow("ecr:ListImages"))
        iam.put_group_policy(GroupName=gname, PolicyName="gp", PolicyDocument=json.dumps(document))
        gp = iam.get_group_policy(GroupName=gname, PolicyName="gp")
        assert gp["GroupName"] == gname and gp["PolicyName"] == "gp" and gp["PolicyDocument"] == document
        assert iam.list_group_policies(GroupName=gname)["PolicyNames"] == ["gp"]
        check_error(
            client_error(iam.get_group_policy, GroupName=gname, PolicyName="nope"),
            "NoSuchEntity",
            "The group policy with name nope cannot be found.",
            status=404,
        )

        # Managed group policies.
        arn = policies(doc(allow("ecr:ListImages")), "gmp")
        iam.attach_group_policy(GroupName=gname, PolicyArn=arn)
        iam.attach_group_policy(GroupName=gname, PolicyArn=READ_ONLY_ARN)
        attached = iam.list_attached_group_policies(GroupName=gname)["AttachedPolicies"]
        assert sorted(p["PolicyArn"] for p in attached) == sorted([arn, READ_ONLY_ARN])
        check_error(
            client_error(iam.delete_policy, PolicyArn=arn),
            "DeleteConflict",
            "Cannot delete a policy attached to entities.",
            status=409,
        )

        conflict_members = "Cannot delete entity, must remove users from group first."
        check_error(client_error(iam.delete_group, GroupName=gname), "DeleteConflict", conflict_members, status=409)
        iam.remove_user_from_group(GroupName=gname, UserName=u1)
        iam.remove_user_from_group(GroupName=gname, UserName=u2)
        assert iam.list_groups_for_user(UserName=u1)["Groups"] == []
        check_error(client_error(iam.remove_user_from_group, GroupName=gname, UserName=u1), "NoSuchEntity", status=404)

        conflict_policies = "Cannot delete entity, must delete policies first."
        check_error(client_error(iam.delete_group, GroupName=gname), "DeleteConflict", conflict_policies, status=409)
        iam.delete_group_policy(GroupName=gname, PolicyName="gp")
        check_error(client_error(iam.delete_group, GroupName=gname), "DeleteConflict", conflict_policies, status=409)
        iam.detach_group_policy(GroupName=gname, PolicyArn=arn)
        iam.detach_group_policy(GroupName=gname, PolicyArn=READ_ONLY_ARN)
        assert iam.list_attached_group_policies(GroupName=gname)["AttachedPolicies"] == []
        iam.delete_group(GroupName=gname)
    finally:
        purge_iam_group(iam, gname)
    check_error(
        client_error(iam.get_group, GroupName=gname),
        "NoSuchEntity",
        f"The group with name {gname} cannot be found.",
        status=404,
    )


def test_add_missing_user_to_group(iam, groups):
    g = groups()
    name = unique("nomember")
    err = client_error(iam.add_user_to_group, GroupName=g, UserName=name)
    check_error(err, "NoSuchEntity", f"The user with name {name} cannot be found.", status=404)
    missing = unique("nogroup")
    err = client_error(iam.add_user_to_group, GroupName=missing, UserName=name)
    check_error(err, "NoSuchEntity", f"The group with name {missing} cannot be found.", status=404)


def test_list_groups_pagination(iam, groups):
    prefix = f"/gp{uuid.uuid4().hex[:8]}/"
    names = sorted((groups("lg", path=prefix) for _ in range(3)), key=str.lower)
    p1 = iam.list_groups(PathPrefix=prefix, MaxItems=2)
    assert p1["IsTruncated"] is True
    p2 = iam.list_groups(PathPrefix=prefix, MaxItems=2, Marker=p1["Marker"])
    assert p2["IsTruncated"] is False and "Marker" not in p2
    assert [g["GroupName"] for g in p1["Groups"] + p2["Groups"]] == names


# --------------------------------------------------------------------------------------------
# What policies do to requests


def test_user_policy_grants_ecr(server, iam, ecr, users, repos):
    name = users("eff")
    _, ecr_u, _, _ = as_user(server, iam, name)
    repo = unique("iamrepo")
    repos.append(repo)
    err = client_error(ecr_u.create_repository, repositoryName=repo)
    check_error(
        err,
        "AccessDeniedException",
        denied_msg(
            user_arn(name), "ecr:CreateRepository", f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{repo}"
        ),
        status=400,
    )
    # Takes effect at once on this node.
    iam.put_user_policy(
        UserName=name, PolicyName="create", PolicyDocument=json.dumps(doc(allow("ecr:CreateRepository")))
    )
    r = ecr_u.create_repository(repositoryName=repo)["repository"]
    assert r["repositoryName"] == repo
    # ... and so does removing it.
    iam.delete_user_policy(UserName=name, PolicyName="create")
    repo2 = unique("iamrepo")
    repos.append(repo2)
    check_error(client_error(ecr_u.create_repository, repositoryName=repo2), "AccessDeniedException", status=400)


def test_user_arn_with_path_in_denial(server, iam, users, repos):
    name = users("pathy", path="/ci/bots/")
    _, ecr_u, _, _ = as_user(server, iam, name)
    repo = unique("iamrepo")
    repos.append(repo)
    err = client_error(ecr_u.create_repository, repositoryName=repo)
    check_error(
        err,
        "AccessDeniedException",
        denied_msg(
            user_arn(name, "/ci/bots/"),
            "ecr:CreateRepository",
            f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{repo}",
        ),
    )


def test_group_policy_grants_membership(server, iam, users, groups, repos):
    name = users("gm")
    g = groups("creators")
    iam.put_group_policy(
        GroupName=g, PolicyName="create", PolicyDocument=json.dumps(doc(allow("ecr:CreateRepository")))
    )
    _, ecr_u, _, _ = as_user(server, iam, name)
    repo = unique("iamrepo")
    repos.append(repo)
    check_error(client_error(ecr_u.create_repository, repositoryName=repo), "AccessDeniedException")
    iam.add_user_to_group(GroupName=g, UserName=name)
    assert ecr_u.create_repository(repositoryName=repo)["repository"]["repositoryName"] == repo
    iam.remove_user_from_group(GroupName=g, UserName=name)
    repo2 = unique("iamrepo")
    repos.append(repo2)
    check_error(client_error(ecr_u.create_repository, repositoryName=repo2), "AccessDeniedException")


def test_group_managed_policy_grants(server, iam, users, groups, policies, repos):
    name = users("gmp")
    g = groups("mgd")
    arn = policies(doc(allow("ecr:CreateRepository")), "mcreate")
    iam.attach_group_policy(GroupName=g, PolicyArn=arn)
    iam.add_user_to_group(GroupName=g, UserName=name)
    _, ecr_u, _, _ = as_user(server, iam, name)
    repo = unique("iamrepo")
    repos.append(repo)
    assert ecr_u.create_repository(repositoryName=repo)["repository"]["repositoryName"] == repo


def test_group_deny_beats_user_allow(server, iam, users, groups, repos):
    name = users("dn")
    g = groups("deniers")
    iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=json.dumps(doc(allow("ecr:*"))))
    iam.put_group_policy(GroupName=g, PolicyName="no", PolicyDocument=json.dumps(doc(deny("ecr:CreateRepository"))))
    _, ecr_u, _, _ = as_user(server, iam, name)
    repo = unique("iamrepo")
    repos.append(repo)
    assert ecr_u.create_repository(repositoryName=repo)["repository"]["repositoryName"] == repo
    iam.add_user_to_group(GroupName=g, UserName=name)
    repo2 = unique("iamrepo")
    repos.append(repo2)
    err = client_error(ecr_u.create_repository, repositoryName=repo2)
    check_error(
        err,
        "AccessDeniedException",
        denied_msg(
            user_arn(name),
            "ecr:CreateRepository",
            f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{repo2}",
            explicit=True,
        ),
    )
    # Other ECR actions are still allowed by the user policy.
    assert ecr_u.describe_repositories(repositoryNames=[repo])["repositories"][0]["repositoryName"] == repo


def test_aws_managed_read_only_policy_effect(server, iam, ecr, users, repos):
    name = users("ro")
    iam.attach_user_policy(UserName=name, PolicyArn=READ_ONLY_ARN)
    _, ecr_u, _, _ = as_user(server, iam, name)
    repo = unique("iamrepo")
    repos.append(repo)
    ecr.create_repository(repositoryName=repo)
    assert ecr_u.describe_repositories(repositoryNames=[repo])["repositories"][0]["repositoryName"] == repo
    err = client_error(ecr_u.delete_repository, repositoryName=repo)
    check_error(
        err,
        "AccessDeniedException",
        denied_msg(user_arn(name), "ecr:DeleteRepository", f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{repo}"),
    )


def test_describe_all_repositories_without_permission_is_denied(server, iam, users):
    # AWS authorizes listing on repository/* and refuses a caller no policy allows.
    name = users("nodesc")
    _, ecr_u, _, _ = as_user(server, iam, name)
    err = client_error(ecr_u.describe_repositories)
    check_error(
        err,
        "AccessDeniedException",
        denied_msg(user_arn(name), "ecr:DescribeRepositories", f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/*"),
    )


def test_iam_api_authorization(server, iam, users):
    name = users("iamu")
    iam_u, _, sts_u, _ = as_user(server, iam, name)
    # GetCallerIdentity needs no permission.
    assert sts_u.get_caller_identity()["Arn"] == user_arn(name)

    err = client_error(iam_u.list_users)
    check_error(
        err,
        "AccessDenied",
        denied_msg(user_arn(name), "iam:ListUsers", f"arn:aws:iam::{ACCOUNT_ID}:user/"),
        status=403,
    )
    err = client_error(iam_u.list_users, PathPrefix="/eng/")
    check_error(
        err,
        "AccessDenied",
        denied_msg(user_arn(name), "iam:ListUsers", f"arn:aws:iam::{ACCOUNT_ID}:user/eng/"),
        status=403,
    )
    err = client_error(iam_u.list_groups)
    check_error(
        err,
        "AccessDenied",
        denied_msg(user_arn(name), "iam:ListGroups", f"arn:aws:iam::{ACCOUNT_ID}:group/"),
        status=403,
    )
    err = client_error(iam_u.list_policies)
    check_error(err, "AccessDenied", denied_msg(user_arn(name), "iam:ListPolicies", "policy path /"), status=403)
    err = client_error(iam_u.get_user)
    check_error(err, "AccessDenied", denied_msg(user_arn(name), "iam:GetUser", user_arn(name)), status=403)

    iam.attach_user_policy(UserName=name, PolicyArn=IAM_READ_ONLY_ARN)
    assert name in [u["UserName"] for page in iam_u.get_paginator("list_users").paginate() for u in page["Users"]]
    assert iam_u.get_user()["User"]["UserName"] == name
    assert iam_u.list_attached_user_policies(UserName=name)["AttachedPolicies"] == [
        {"PolicyName": "IAMReadOnlyAccess", "PolicyArn": IAM_READ_ONLY_ARN}
    ]
    newbie = unique("newbie")
    err = client_error(iam_u.create_user, UserName=newbie, Path="/x/")
    check_error(
        err, "AccessDenied", denied_msg(user_arn(name), "iam:CreateUser", user_arn(newbie, "/x/")), status=403
    )
    err = client_error(iam_u.create_access_key)
    check_error(err, "AccessDenied", denied_msg(user_arn(name), "iam:CreateAccessKey", user_arn(name)), status=403)
    check_error(client_error(iam.get_user, UserName=newbie), "NoSuchEntity", status=404)


def test_iam_resource_arn_includes_user_path(server, iam, users):
    target = users("tgt", path="/deep/er/")
    name = users("acts")
    iam_u, _, _, _ = as_user(server, iam, name)
    err = client_error(iam_u.delete_user, UserName=target)
    check_error(
        err, "AccessDenied", denied_msg(user_arn(name), "iam:DeleteUser", user_arn(target, "/deep/er/")), status=403
    )


def test_user_manages_own_keys(server, iam, users):
    name = users("own")
    iam.put_user_policy(
        UserName=name,
        PolicyName="own-keys",
        PolicyDocument=json.dumps(
            doc(
                allow(
                    ["iam:CreateAccessKey", "iam:ListAccessKeys", "iam:UpdateAccessKey", "iam:DeleteAccessKey"],
                    f"arn:aws:iam::{ACCOUNT_ID}:user/${{aws:username}}",
                )
            )
        ),
    )
    iam_u, _, _, akid = as_user(server, iam, name)
    k2 = iam_u.create_access_key()["AccessKey"]
    assert k2["UserName"] == name
    listed = iam_u.list_access_keys()
    assert "UserName" not in listed  # ListAccessKeysResult has no UserName of its own
    assert all(k["UserName"] == name for k in listed["AccessKeyMetadata"])
    assert sorted(k["AccessKeyId"] for k in listed["AccessKeyMetadata"]) == sorted([akid, k2["AccessKeyId"]])
    iam_u.delete_access_key(AccessKeyId=k2["AccessKeyId"])
    other = users("other")
    err = client_error(iam_u.list_access_keys, UserName=other)
    check_error(err, "AccessDenied", denied_msg(user_arn(name), "iam:ListAccessKeys", user_arn(other)), status=403)


# --------------------------------------------------------------------------------------------
# Protocol errors


def parse_error(r, ns=IAM_NS):
    assert r.headers["Content-Type"] == "text/xml", r.headers
    root = ET.fromstring(r.text)
    assert root.tag == f"{{{ns}}}ErrorResponse", r.text
    assert [c.tag for c in root] == [f"{{{ns}}}Error", f"{{{ns}}}RequestId"], r.text
    err = root.find(f"{{{ns}}}Error")
    assert [c.tag for c in err] == [f"{{{ns}}}Type", f"{{{ns}}}Code", f"{{{ns}}}Message"], r.text
    rid = root.find(f"{{{ns}}}RequestId").text
    assert re.fullmatch(r"[0-9a-f-]{36}", rid), rid
    assert r.headers["x-amzn-RequestId"] == rid
    return {c.tag.split("}")[1]: c.text for c in err}


def test_error_xml_shape(server):
    name = unique("xml")
    r = query_call(server, {"Action": "GetUser", "UserName": name})
    assert r.status_code == 404
    assert r.text.startswith(f'<ErrorResponse xmlns="{IAM_NS}"><Error><Type>Sender</Type><Code>NoSuchEntity</Code>')
    assert parse_error(r) == {
        "Type": "Sender",
        "Code": "NoSuchEntity",
        "Message": f"The user with name {name} cannot be found.",
    }


def test_unknown_action(server, iam):
    r = query_call(server, {"Action": "Frobnicate"})
    assert r.status_code == 400
    assert parse_error(r) == {
        "Type": "Sender",
        "Code": "InvalidAction",
        "Message": "Could not find operation Frobnicate for version 2010-05-08",
    }
    r = query_call(server, {"Action": "AssumeRoleWithSAML"}, service="sts")
    assert r.status_code == 400
    assert parse_error(r, STS_NS) == {
        "Type": "Sender",
        "Code": "InvalidAction",
        "Message": "Could not find operation AssumeRoleWithSAML for version 2011-06-15",
    }


def test_bad_signature(server):
    r = query_call(server, {"Action": "ListUsers"}, secret=ROOT_SECRET + "x")
    assert r.status_code == 403
    assert parse_error(r) == {"Type": "Sender", "Code": "SignatureDoesNotMatch", "Message": BAD_SIGNATURE_MSG}
    # A body changed after signing fails the same way.
    r = query_call(server, {"Action": "ListUsers"}, send_body=b"Action=ListUsers&Version=2010-05-08&MaxItems=1")
    assert r.status_code == 403
    assert parse_error(r)["Code"] == "SignatureDoesNotMatch"


def test_bad_signature_boto3(server):
    err = client_error(make_iam(server, ROOT_AKID, ROOT_SECRET + "x").list_users)
    check_error(err, "SignatureDoesNotMatch", BAD_SIGNATURE_MSG, status=403)
    err = client_error(make_sts(server, ROOT_AKID, ROOT_SECRET + "x").get_caller_identity)
    check_error(err, "SignatureDoesNotMatch", BAD_SIGNATURE_MSG, status=403)


def test_unknown_access_key(server):
    r = query_call(server, {"Action": "ListUsers"}, akid="AKIAXXXXXXXXXXXXXXXX")
    assert r.status_code == 403
    assert parse_error(r) == {"Type": "Sender", "Code": "InvalidClientTokenId", "Message": UNRECOGNIZED_CLIENT_MSG}
    r = query_call(server, {"Action": "GetCallerIdentity"}, akid="AKIAXXXXXXXXXXXXXXXX", service="sts")
    assert r.status_code == 403
    assert parse_error(r, STS_NS)["Code"] == "InvalidClientTokenId"
    err = client_error(make_iam(server, "AKIAXXXXXXXXXXXXXXXX", ROOT_SECRET).get_user)
    check_error(err, "InvalidClientTokenId", UNRECOGNIZED_CLIENT_MSG, status=403)


def test_unsigned_request(server):
    import requests

    r = requests.post(
        server.url + "/",
        data="Action=ListUsers&Version=2010-05-08",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert r.status_code == 403
    assert parse_error(r)["Code"] == "MissingAuthenticationToken"


# --------------------------------------------------------------------------------------------
# The AWS CLI end to end


def test_cli_users_and_policies(server, iam, users):
    name = unique("cli")
    users.created.append(name)
    out = cli_json(aws_cmd(server, "iam", "create-user", "--user-name", name, "--path", "/cli/"))
    assert out["User"]["UserName"] == name
    assert out["User"]["Arn"] == user_arn(name, "/cli/")
    assert USER_ID_RE.match(out["User"]["UserId"])

    got = cli_json(aws_cmd(server, "iam", "get-user", "--user-name", name))
    assert got == out

    listed = cli_json(aws_cmd(server, "iam", "list-users", "--path-prefix", "/cli/"))
    assert name in [u["UserName"] for u in listed["Users"]]

    document = doc(allow("ecr:DescribeRepositories"))
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(document, f)
        f.flush()
        res = aws_cmd(
            server,
            "iam",
            "put-user-policy",
            "--user-name",
            name,
            "--policy-name",
            "p",
            "--policy-document",
            f"file://{f.name}",
        )
        assert cli_json(res) is None
    got = cli_json(aws_cmd(server, "iam", "get-user-policy", "--user-name", name, "--policy-name", "p"))
    assert got == {"UserName": name, "PolicyName": "p", "PolicyDocument": document}
    assert cli_json(aws_cmd(server, "iam", "list-user-policies", "--user-name", name)) == {"PolicyNames": ["p"]}

    key = cli_json(aws_cmd(server, "iam", "create-access-key", "--user-name", name))["AccessKey"]
    assert key["UserName"] == name and key["Status"] == "Active"
    me = cli_json(
        aws_cmd(server, "sts", "get-caller-identity", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])
    )
    assert me["Arn"] == user_arn(name, "/cli/")

    res = aws_cmd(server, "iam", "delete-user", "--user-name", name)
    assert res.returncode != 0
    assert cli_error_line(
        "DeleteConflict", "DeleteUser", "Cannot delete entity, must delete access keys first."
    ) in res.stderr

    cli_json(aws_cmd(server, "iam", "delete-access-key", "--user-name", name, "--access-key-id", key["AccessKeyId"]))
    cli_json(aws_cmd(server, "iam", "delete-user-policy", "--user-name", name, "--policy-name", "p"))
    assert cli_json(aws_cmd(server, "iam", "delete-user", "--user-name", name)) is None

    res = aws_cmd(server, "iam", "get-user", "--user-name", name)
    assert res.returncode != 0
    assert cli_error_line("NoSuchEntity", "GetUser", f"The user with name {name} cannot be found.") in res.stderr


def test_cli_access_denied(server, iam, users):
    name = users("clideny")
    akid, secret = user_key(iam, name)
    res = aws_cmd(server, "iam", "list-users", akid=akid, secret=secret)
    assert res.returncode != 0
    msg = denied_msg(user_arn(name), "iam:ListUsers", f"arn:aws:iam::{ACCOUNT_ID}:user/")
    assert cli_error_line("AccessDenied", "ListUsers", msg) in res.stderr, res.stderr


def test_cli_groups_and_managed_policies(server, iam, users, groups):
    name = users("clig")
    g = unique("cligrp")
    out = cli_json(aws_cmd(server, "iam", "create-group", "--group-name", g))
    try:
        assert out["Group"]["Arn"] == group_arn(g)
        cli_json(aws_cmd(server, "iam", "add-user-to-group", "--group-name", g, "--user-name", name))
        got = cli_json(aws_cmd(server, "iam", "get-group", "--group-name", g))
        assert [u["UserName"] for u in got["Users"]] == [name]
        cli_json(aws_cmd(server, "iam", "attach-group-policy", "--group-name", g, "--policy-arn", READ_ONLY_ARN))
        att = cli_json(aws_cmd(server, "iam", "list-attached-group-policies", "--group-name", g))
        assert att == {
            "AttachedPolicies": [{"PolicyName": "AmazonEC2ContainerRegistryReadOnly", "PolicyArn": READ_ONLY_ARN}]
        }
        res = aws_cmd(server, "iam", "delete-group", "--group-name", g)
        assert cli_error_line(
            "DeleteConflict", "DeleteGroup", "Cannot delete entity, must remove users from group first."
        ) in res.stderr
        pols = cli_json(aws_cmd(server, "iam", "list-policies", "--scope", "AWS", "--only-attached"))
        assert READ_ONLY_ARN in [p["Arn"] for p in pols["Policies"]]
    finally:
        purge_iam_group(iam, g)


# --------------------------------------------------------------------------------------------
# Every element of every answer is one the botocore model knows, in a shape it expects


def check_against_shape(el, shape, where):
    """Recursively check an XML element against a botocore output shape; returns problems."""
    problems = []
    tag = el.tag.split("}")[1]
    if shape.type_name == "structure":
        names = {m.serialization.get("name", n): m for n, m in shape.members.items()}
        for child in el:
            ctag = child.tag.split("}")[1]
            if ctag not in names:
                problems.append(f"{where}/{tag}: unexpected element {ctag}")
            else:
                problems += check_against_shape(child, names[ctag], f"{where}/{tag}")
        missing = [n for n in shape.required_members if n not in {c.tag.split("}")[1] for c in el}]
        if missing:
            problems.append(f"{where}/{tag}: missing required {missing}")
    elif shape.type_name == "list":
        for child in el:
            ctag = child.tag.split("}")[1]
            if ctag != "member":
                problems.append(f"{where}/{tag}: list item {ctag}")
            else:
                problems += check_against_shape(child, shape.member, f"{where}/{tag}")
    elif len(el):
        problems.append(f"{where}/{tag}: scalar with children")
    return problems


def test_answers_match_the_botocore_model(server, iam, users, groups, policies):
    import botocore.session

    model = botocore.session.get_session().get_service_model("iam")
    u = users("model", path="/m/")
    g = groups("model")
    iam.add_user_to_group(GroupName=g, UserName=u)
    akid, _ = user_key(iam, u)
    arn = policies(doc(allow("ecr:ListImages")), "model", Description="d")
    iam.attach_user_policy(UserName=u, PolicyArn=arn)
    iam.attach_group_policy(GroupName=g, PolicyArn=READ_ONLY_ARN)
    iam.put_user_policy(UserName=u, PolicyName="i", PolicyDocument=json.dumps(doc(allow("ecr:*"))))
    iam.put_group_policy(GroupName=g, PolicyName="i", PolicyDocument=json.dumps(doc(allow("ecr:*"))))
    calls = [
        ("GetUser", {"UserName": u}),
        ("GetUser", {}),
        ("ListUsers", {"PathPrefix": "/m/"}),
        ("ListUsers", {"MaxItems": "1"}),
        ("ListAccessKeys", {"UserName": u}),
        ("ListAccessKeys", {}),
        ("GetUserPolicy", {"UserName": u, "PolicyName": "i"}),
        ("ListUserPolicies", {"UserName": u}),
        ("GetGroupPolicy", {"GroupName": g, "PolicyName": "i"}),
        ("ListGroupPolicies", {"GroupName": g}),
        ("ListAttachedUserPolicies", {"UserName": u}),
        ("ListAttachedGroupPolicies", {"GroupName": g}),
        ("GetPolicy", {"PolicyArn": arn}),
        ("GetPolicy", {"PolicyArn": READ_ONLY_ARN}),
        ("GetPolicyVersion", {"PolicyArn": arn, "VersionId": "v1"}),
        ("ListPolicies", {"Scope": "All", "MaxItems": "3"}),
        ("GetGroup", {"GroupName": g}),
        ("ListGroups", {}),
        ("ListGroupsForUser", {"UserName": u}),
    ]
    problems = []
    for action, params in calls:
        r = query_call(server, {"Action": action, **params})
        assert r.status_code == 200, (action, r.text)
        root = ET.fromstring(r.text)
        assert root.tag == f"{{{IAM_NS}}}{action}Response", r.text
        result = root.find(f"{{{IAM_NS}}}{action}Result")
        assert result is not None, r.text
        problems += check_against_shape(result, model.operation_model(action).output_shape, action)
    created = []
    for action, params in [
        ("CreateUser", {"UserName": unique("mc")}),
        ("CreateGroup", {"GroupName": unique("mc")}),
        ("CreateAccessKey", {"UserName": u}),
        ("CreatePolicy", {"PolicyName": unique("mc"), "PolicyDocument": json.dumps(doc(allow("ecr:*")))}),
    ]:
        r = query_call(server, {"Action": action, **params})
        assert r.status_code == 200, (action, r.text)
        created.append((action, params, r.text))
        result = ET.fromstring(r.text).find(f"{{{IAM_NS}}}{action}Result")
        problems += check_against_shape(result, model.operation_model(action).output_shape, action)
    for action, params, text in created:
        if action == "CreateUser":
            users.created.append(params["UserName"])
        elif action == "CreateGroup":
            iam.delete_group(GroupName=params["GroupName"])
        elif action == "CreatePolicy":
            iam.delete_policy(PolicyArn=policy_arn(params["PolicyName"]))
    # As AWS does, the root's GetUser leaves out Path and UserName (which the model calls required).
    assert problems == ["GetUser/GetUserResult/User: missing required ['Path', 'UserName']"]
    # Answers without a result element are exactly a ResponseMetadata.
    r = query_call(server, {"Action": "DeleteUserPolicy", "UserName": u, "PolicyName": "i"})
    assert r.status_code == 200
    root = ET.fromstring(r.text)
    assert [c.tag for c in root] == [f"{{{IAM_NS}}}ResponseMetadata"], r.text
