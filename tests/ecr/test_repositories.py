"""CreateRepository / DescribeRepositories / DeleteRepository through boto3."""

import datetime

import pytest

from ecrlib import (
    ACCOUNT_ID,
    JSON_CT,
    NAME_MIN_MSG,
    NAME_REGEX_MSG,
    REGION,
    all_repositories,
    arn_of,
    assert_absent,
    check_error,
    client_error,
    exists_msg,
    make_client,
    not_empty_msg,
    not_found_msg,
    push_image,
    raw_call,
    unique,
    utcnow,
)

# Verbatim ECR output (ECR-BEHAVIOUR.md section 2, chanzuckerberg/single-cell-data-portal#3781):
# no quotes around this regex, unlike the repositoryName one.
BAD_REGISTRY_ID_MSG = (
    "Invalid parameter at 'registryId' failed to satisfy constraint: "
    "'must satisfy regular expression [0-9]{12}'"
)

# Members of the model's `Repository` structure.
REPOSITORY_MEMBERS = {
    "repositoryArn",
    "registryId",
    "repositoryName",
    "repositoryUri",
    "createdAt",
    "imageTagMutability",
    "imageTagMutabilityExclusionFilters",
    "imageScanningConfiguration",
    "encryptionConfiguration",
}
ALWAYS_PRESENT = REPOSITORY_MEMBERS - {"imageTagMutabilityExclusionFilters"}


def assert_default_repository(server, repo, name, *, account=ACCOUNT_ID, region=REGION, before=None):
    assert set(repo) <= REPOSITORY_MEMBERS, set(repo) - REPOSITORY_MEMBERS
    assert set(repo) >= ALWAYS_PRESENT, ALWAYS_PRESENT - set(repo)
    assert repo["repositoryArn"] == arn_of(name, account, region)
    assert repo["registryId"] == account
    assert repo["repositoryName"] == name
    assert repo["repositoryUri"] == f"{server.hostport}/{name}"
    assert isinstance(repo["createdAt"], datetime.datetime)
    assert repo["createdAt"].tzinfo is not None
    if before is not None:
        # epoch seconds, possibly with a fraction; allow a little clock slack
        assert before - datetime.timedelta(seconds=5) <= repo["createdAt"] <= utcnow() + datetime.timedelta(seconds=5)
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo.get("imageTagMutabilityExclusionFilters") in (None, [])
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}


# ------------------------------------------------------------------------------------------
# CreateRepository


def test_create_repository_defaults(server, ecr):
    name = unique("create")
    before = utcnow()
    resp = ecr.create_repository(repositoryName=name)
    assert set(resp) == {"repository", "ResponseMetadata"}
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert_default_repository(server, resp["repository"], name, before=before)


def test_create_repository_wire_format(server, ecr):
    """On the wire: 200, application/x-amz-json-1.1, x-amzn-RequestId, createdAt a JSON number."""
    name = unique("wire")
    r = raw_call(server, "CreateRepository", {"repositoryName": name})
    assert r.status == 200, r
    assert r.headers["Content-Type"].startswith(JSON_CT), r
    assert r.headers.get("x-amzn-RequestId"), r
    repo = r.json["repository"]
    assert isinstance(repo["createdAt"], (int, float)) and not isinstance(repo["createdAt"], bool), r
    assert abs(repo["createdAt"] - utcnow().timestamp()) < 60, r
    assert repo["repositoryArn"] == arn_of(name)
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert repo["imageTagMutability"] == "MUTABLE"
    # Describe agrees with the create response (same createdAt on the wire)
    d = raw_call(server, "DescribeRepositories", {"repositoryNames": [name]})
    assert d.status == 200, d
    assert d.json["repositories"] == [repo]


def test_create_repository_all_settings(server, ecr):
    name = unique("settings")
    resp = ecr.create_repository(
        repositoryName=name,
        registryId=ACCOUNT_ID,
        tags=[{"Key": "team", "Value": "platform"}, {"Key": "env", "Value": ""}],
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "AES256"},
    )
    repo = resp["repository"]
    assert repo["repositoryArn"] == arn_of(name)
    assert repo["registryId"] == ACCOUNT_ID
    assert repo["repositoryName"] == name
    assert repo["repositoryUri"] == f"{server.hostport}/{name}"
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    described = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert described == [repo]
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert sorted(tags, key=lambda t: t["Key"]) == [
        {"Key": "env", "Value": ""},
        {"Key": "team", "Value": "platform"},
    ]


@pytest.mark.parametrize(
    "suffix",
    [
        "ns{u}/app",
        "ns{u}/deep/er/path",
        "a{u}.b_c-d",
        "a{u}__b",  # model pattern allows '__'
        "a{u}---b",  # and runs of '-'
        "0{u}9",
    ],
)
def test_create_repository_valid_names(server, ecr, suffix):
    name = suffix.format(u=unique("v").replace("-", ""))
    repo = ecr.create_repository(repositoryName=name)["repository"]
    assert repo["repositoryName"] == name
    assert repo["repositoryArn"] == arn_of(name)  # the ARN keeps its '/'
    assert repo["repositoryUri"] == f"{server.hostport}/{name}"
    assert ecr.describe_repositories(repositoryNames=[name])["repositories"] == [repo]


def test_create_repository_256_chars_ok(ecr):
    name = unique("long").replace("-", "")
    name = name + "a" * (256 - len(name))
    assert len(name) == 256
    repo = ecr.create_repository(repositoryName=name)["repository"]
    assert repo["repositoryName"] == name


def test_create_repository_already_exists(ecr):
    name = unique("dup")
    first = ecr.create_repository(repositoryName=name)["repository"]
    err = client_error(ecr.create_repository, repositoryName=name, imageTagMutability="IMMUTABLE")
    check_error(err, "RepositoryAlreadyExistsException", exists_msg(name))
    # the original is untouched
    assert ecr.describe_repositories(repositoryNames=[name])["repositories"] == [first]


@pytest.mark.parametrize(
    "bad",
    ["UPPER", "Upper{u}", "a{u}//b", "-a{u}", "a{u}-", "a{u}..b", "a{u}/", "/a{u}", "a {u}", "a{u}:b", "a{u}_-b", "a{u}@b"],
)
def test_create_repository_invalid_name(ecr, bad):
    name = bad.format(u=unique("x").replace("-", ""))
    err = client_error(ecr.create_repository, repositoryName=name)
    check_error(err, "InvalidParameterException", NAME_REGEX_MSG)


def test_create_repository_name_too_short(ecr_raw):
    # botocore would refuse 1 char client-side: ecr_raw has parameter validation off
    err = client_error(ecr_raw.create_repository, repositoryName="a")
    check_error(err, "InvalidParameterException", NAME_MIN_MSG)


def test_create_repository_name_too_long(ecr):
    name = "a" * 257
    err = client_error(ecr.create_repository, repositoryName=name)
    # exact text for the maximum is unconfirmed; the envelope is ECR's
    check_error(
        err,
        "InvalidParameterException",
        prefix="Invalid parameter at 'repositoryName' failed to satisfy constraint: '",
    )
    assert name not in {r["repositoryName"] for r in all_repositories(ecr)}


def test_create_repository_bad_mutability(ecr):
    name = unique("badmut")
    err = client_error(ecr.create_repository, repositoryName=name, imageTagMutability="SOMETIMES")
    check_error(
        err,
        "InvalidParameterException",
        prefix="Invalid parameter at 'imageTagMutability' failed to satisfy constraint: '",
    )
    assert_absent(ecr, name)


def test_create_repository_bad_encryption_type(ecr):
    name = unique("badenc")
    err = client_error(
        ecr.create_repository, repositoryName=name, encryptionConfiguration={"encryptionType": "ROT13"}
    )
    check_error(err, "InvalidParameterException")
    assert_absent(ecr, name)


def test_create_repository_kms_encryption(server, ecr):
    """KMS repositories (issue 13): the key named (id, ARN or alias) is stored and shown as its
    ARN; without one, the AWS managed key aws/ecr (made on first use); a missing key is
    KmsException with kmsError; KMS_DSSE (dual-layer) is refused, not claimed."""
    import boto3
    from botocore.config import Config
    from ecrlib import NO_RETRY, REGION, ROOT_AKID, ROOT_SECRET
    kms = boto3.client("kms", endpoint_url=server.url, region_name=REGION, aws_access_key_id=ROOT_AKID,
                       aws_secret_access_key=ROOT_SECRET, config=Config(retries=NO_RETRY))
    key = kms.create_key(Description="repo key")["KeyMetadata"]
    alias = "alias/" + unique("repokey")
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    for ref in (key["KeyId"], key["Arn"], alias):
        name = unique("kmsenc")
        repo = ecr.create_repository(repositoryName=name,
                                     encryptionConfiguration={"encryptionType": "KMS", "kmsKey": ref})["repository"]
        assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key["Arn"]}
        described = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        assert described["encryptionConfiguration"] == repo["encryptionConfiguration"]
    name = unique("kmsdefault")
    repo = ecr.create_repository(repositoryName=name, encryptionConfiguration={"encryptionType": "KMS"})["repository"]
    managed = kms.describe_key(KeyId="alias/aws/ecr")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": managed["Arn"]}
    name = unique("kmsmissing")
    err = client_error(ecr.create_repository, repositoryName=name,
                       encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "alias/does-not-exist"})
    assert err.response["Error"]["Code"] == "KmsException"
    assert err.response["kmsError"] == "NotFoundException"
    assert_absent(ecr, name)
    kms.disable_key(KeyId=key["KeyId"])
    err = client_error(ecr.create_repository, repositoryName=name,
                       encryptionConfiguration={"encryptionType": "KMS", "kmsKey": alias})
    assert (err.response["Error"]["Code"], err.response["kmsError"]) == ("KmsException", "DisabledException")
    assert_absent(ecr, name)
    err = client_error(ecr.create_repository, repositoryName=name,
                       encryptionConfiguration={"encryptionType": "KMS_DSSE", "kmsKey": alias})
    check_error(err, "InvalidParameterException",
                prefix="Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: "
                       "'encryptionType KMS_DSSE (dual-layer encryption) is not supported by this registry")
    assert_absent(ecr, name)


def test_create_repository_bad_registry_id(ecr):
    name = unique("badreg")
    err = client_error(ecr.create_repository, repositoryName=name, registryId="1234")
    check_error(err, "InvalidParameterException", BAD_REGISTRY_ID_MSG)
    assert_absent(ecr, name)
    err = client_error(ecr.describe_repositories, registryId="abc")
    check_error(err, "InvalidParameterException", BAD_REGISTRY_ID_MSG)


# ------------------------------------------------------------------------------------------
# DescribeRepositories


def test_describe_repositories_by_names(server, ecr):
    names = [unique("d1"), unique("d2"), unique("d3")]
    created = {n: ecr.create_repository(repositoryName=n)["repository"] for n in names}
    resp = ecr.describe_repositories(repositoryNames=names[:2])
    assert set(resp) == {"repositories", "ResponseMetadata"}  # no nextToken
    got = {r["repositoryName"]: r for r in resp["repositories"]}
    assert got == {n: created[n] for n in names[:2]}
    one = ecr.describe_repositories(repositoryNames=[names[2]], registryId=ACCOUNT_ID)
    assert one["repositories"] == [created[names[2]]]


def test_describe_repositories_all_includes_new(ecr):
    name = unique("all")
    created = ecr.create_repository(repositoryName=name)["repository"]
    repos = all_repositories(ecr)
    assert created in repos
    assert len({r["repositoryArn"] for r in repos}) == len(repos)
    for r in repos:
        assert r["registryId"] == ACCOUNT_ID
        assert r["repositoryArn"] == arn_of(r["repositoryName"])


def test_describe_repositories_missing_name(ecr):
    present = unique("present")
    ecr.create_repository(repositoryName=present)
    missing = unique("missing")
    err = client_error(ecr.describe_repositories, repositoryNames=[missing])
    check_error(err, "RepositoryNotFoundException", not_found_msg(missing))
    # the whole call fails when one of several names is missing
    err = client_error(ecr.describe_repositories, repositoryNames=[present, missing])
    check_error(err, "RepositoryNotFoundException", not_found_msg(missing))


def test_describe_repositories_invalid_name(ecr):
    err = client_error(ecr.describe_repositories, repositoryNames=["NOT_VALID"])
    check_error(err, "InvalidParameterException")


def test_describe_repositories_max_results_with_names(ecr, repo):
    err = client_error(ecr.describe_repositories, repositoryNames=[repo], maxResults=10)
    check_error(err, "InvalidParameterException")


def test_describe_repositories_max_results_out_of_range(ecr, ecr_raw):
    err = client_error(ecr.describe_repositories, maxResults=1001)
    check_error(err, "InvalidParameterException")
    err = client_error(ecr_raw.describe_repositories, maxResults=0)
    check_error(err, "InvalidParameterException")


def test_describe_repositories_bad_next_token(ecr):
    err = client_error(ecr.describe_repositories, nextToken="definitely-not-a-token")
    check_error(err, "InvalidParameterException")


@pytest.fixture(scope="module")
def paging_account(server):
    """Account 333333333333 with exactly five repositories (nobody else uses it)."""
    akid, secret = server.account("333333333333")
    client = make_client(server, akid=akid, secret=secret)
    names = sorted(unique(f"page{i}") for i in range(5))
    for n in names:
        client.create_repository(repositoryName=n)
    return client, names


def test_describe_repositories_pagination(paging_account):
    client, names = paging_account
    seen = []
    token = None
    pages = []
    while True:
        kwargs = {"maxResults": 2}
        if token:
            kwargs["nextToken"] = token
        resp = client.describe_repositories(**kwargs)
        pages.append(len(resp["repositories"]))
        seen.extend(r["repositoryName"] for r in resp["repositories"])
        token = resp.get("nextToken")
        if not token:
            assert "nextToken" not in resp or resp["nextToken"] is None
            break
        assert isinstance(token, str) and token
        assert len(pages) < 10, "pagination does not terminate"
    assert pages == [2, 2, 1]
    assert sorted(seen) == names  # each exactly once
    for r in client.describe_repositories()["repositories"]:
        assert r["registryId"] == "333333333333"
        assert r["repositoryArn"] == arn_of(r["repositoryName"], "333333333333")


def test_describe_repositories_pagination_exact_fit(paging_account):
    client, names = paging_account
    resp = client.describe_repositories(maxResults=5)
    assert sorted(r["repositoryName"] for r in resp["repositories"]) == names
    assert resp.get("nextToken") is None
    resp = client.describe_repositories(maxResults=1000)
    assert sorted(r["repositoryName"] for r in resp["repositories"]) == names
    assert resp.get("nextToken") is None


def test_describe_repositories_paginator(paging_account):
    client, names = paging_account
    pages = list(
        client.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 1})
    )
    assert [len(p["repositories"]) for p in pages] == [1, 1, 1, 1, 1]
    assert sorted(r["repositoryName"] for p in pages for r in p["repositories"]) == names


def test_describe_repositories_default_page_size(server):
    """Default page is 100 (model/paginators); 101 repositories -> 100 + nextToken, then 1."""
    akid, secret = server.account("444444444444")
    client = make_client(server, akid=akid, secret=secret)
    names = {unique(f"big{i}") for i in range(101)}
    for n in names:
        client.create_repository(repositoryName=n)
    first = client.describe_repositories()
    assert len(first["repositories"]) == 100
    assert first.get("nextToken")
    second = client.describe_repositories(nextToken=first["nextToken"])
    assert len(second["repositories"]) == 1
    assert second.get("nextToken") is None
    got = [r["repositoryName"] for r in first["repositories"] + second["repositories"]]
    assert sorted(got) == sorted(names)


# ------------------------------------------------------------------------------------------
# DeleteRepository


def test_delete_repository_returns_repository(server, ecr):
    name = unique("del")
    created = ecr.create_repository(
        repositoryName=name, imageTagMutability="IMMUTABLE", imageScanningConfiguration={"scanOnPush": True}
    )["repository"]
    resp = ecr.delete_repository(repositoryName=name)
    assert set(resp) == {"repository", "ResponseMetadata"}
    deleted = resp["repository"]
    assert deleted["repositoryArn"] == created["repositoryArn"]
    assert deleted["registryId"] == ACCOUNT_ID
    assert deleted["repositoryName"] == name
    assert deleted["repositoryUri"] == created["repositoryUri"]
    assert deleted["createdAt"] == created["createdAt"]
    assert deleted["imageTagMutability"] == "IMMUTABLE"
    assert_absent(ecr, name)
    # the name is free again
    again = ecr.create_repository(repositoryName=name)["repository"]
    assert again["imageTagMutability"] == "MUTABLE"


def test_delete_repository_force_empty(ecr):
    name = unique("delforce")
    ecr.create_repository(repositoryName=name)
    deleted = ecr.delete_repository(repositoryName=name, force=True, registryId=ACCOUNT_ID)["repository"]
    assert deleted["repositoryName"] == name
    assert_absent(ecr, name)


def test_delete_repository_missing(ecr):
    name = unique("nodel")
    err = client_error(ecr.delete_repository, repositoryName=name)
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))
    err = client_error(ecr.delete_repository, repositoryName=name, force=True)
    check_error(err, "RepositoryNotFoundException", not_found_msg(name))


def test_delete_repository_invalid_name(ecr):
    err = client_error(ecr.delete_repository, repositoryName="UPPER")
    check_error(err, "InvalidParameterException", NAME_REGEX_MSG)


def test_delete_repository_not_empty(server, ecr):
    name = unique("full")
    ecr.create_repository(repositoryName=name)
    push_image(server, ecr, name)
    err = client_error(ecr.delete_repository, repositoryName=name)
    check_error(err, "RepositoryNotEmptyException", not_empty_msg(name))
    assert [r["repositoryName"] for r in ecr.describe_repositories(repositoryNames=[name])["repositories"]] == [name]
    deleted = ecr.delete_repository(repositoryName=name, force=True)["repository"]
    assert deleted["repositoryName"] == name
    assert_absent(ecr, name)
