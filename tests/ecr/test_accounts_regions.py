"""Accounts (berth admin create-account) and regions (from the SigV4 scope) are isolated."""

import json

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from ecrlib import (
    ACCOUNT_ID,
    BAD_SIGNATURE_MSG,
    OTHER_REGION,
    REGION,
    all_repositories,
    arn_of,
    assert_absent,
    b64decode,
    check_error,
    client_error,
    exists_msg,
    make_client,
    not_found_msg,
    raw_call,
    unique,
)

OTHER_ACCOUNT = "222222222222"


@pytest.fixture(scope="module")
def other(server):
    akid, secret = server.account(OTHER_ACCOUNT)
    return make_client(server, akid=akid, secret=secret)


def test_admin_create_account_output(server):
    doc = server.create_account("666666666666")
    assert doc["AccountId"] == "666666666666"
    assert isinstance(doc["AccessKeyId"], str) and doc["AccessKeyId"]
    assert isinstance(doc["SecretAccessKey"], str) and doc["SecretAccessKey"]
    assert doc["AccessKeyId"] != "AKIAIOSFODNN7EXAMPLE"
    # the new credentials work right away against the running server
    client = make_client(server, akid=doc["AccessKeyId"], secret=doc["SecretAccessKey"])
    assert client.describe_registry()["registryId"] == "666666666666"
    assert client.describe_repositories()["repositories"] == []


def test_admin_create_account_refusals(server):
    server.account(OTHER_ACCOUNT)  # exists by now
    dup = server.admin("create-account", "--account-id", OTHER_ACCOUNT)
    assert dup.returncode != 0, dup
    assert "already exists" in dup.stderr, dup.stderr
    bad = server.admin("create-account", "--account-id", "12")
    assert bad.returncode != 0, bad
    # the existing account's keys still work
    akid, secret = server.account(OTHER_ACCOUNT)
    assert make_client(server, akid=akid, secret=secret).describe_registry()["registryId"] == OTHER_ACCOUNT


def test_other_account_repository(server, ecr, other):
    name = unique("acct")
    repo = other.create_repository(repositoryName=name)["repository"]
    assert repo["repositoryArn"] == arn_of(name, OTHER_ACCOUNT)
    assert repo["registryId"] == OTHER_ACCOUNT
    assert repo["repositoryUri"] == f"{server.hostport}/{name}"
    assert other.describe_repositories(repositoryNames=[name])["repositories"] == [repo]
    # invisible to 111111111111
    err = client_error(ecr.describe_repositories, repositoryNames=[name])
    check_error(err, "RepositoryNotFoundException", not_found_msg(name, ACCOUNT_ID))
    assert name not in {r["repositoryName"] for r in all_repositories(ecr)}
    err = client_error(ecr.delete_repository, repositoryName=name)
    check_error(err, "RepositoryNotFoundException", not_found_msg(name, ACCOUNT_ID))
    # and the other account's own errors name the other account
    err = client_error(other.create_repository, repositoryName=name)
    check_error(err, "RepositoryAlreadyExistsException", exists_msg(name, OTHER_ACCOUNT))
    missing = unique("acctmiss")
    err = client_error(other.describe_repositories, repositoryNames=[missing])
    check_error(err, "RepositoryNotFoundException", not_found_msg(missing, OTHER_ACCOUNT))
    # every repository 222222222222 lists is its own
    for r in all_repositories(other):
        assert r["registryId"] == OTHER_ACCOUNT
        assert r["repositoryArn"] == arn_of(r["repositoryName"], OTHER_ACCOUNT)


def test_same_name_in_two_accounts(ecr, other):
    name = unique("both")
    a = ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")["repository"]
    b = other.create_repository(repositoryName=name)["repository"]
    assert a["repositoryArn"] == arn_of(name, ACCOUNT_ID)
    assert b["repositoryArn"] == arn_of(name, OTHER_ACCOUNT)
    other.tag_resource(resourceArn=b["repositoryArn"], tags=[{"Key": "who", "Value": "222"}])
    assert ecr.list_tags_for_resource(resourceArn=a["repositoryArn"])["tags"] == []
    other.delete_repository(repositoryName=name)
    assert ecr.describe_repositories(repositoryNames=[name])["repositories"] == [a]


def test_other_account_registry_and_token(server, other):
    assert other.describe_registry()["registryId"] == OTHER_ACCOUNT
    (data,) = other.get_authorization_token()["authorizationData"]
    assert b64decode(data["authorizationToken"]).decode().startswith("AWS:")
    assert data["proxyEndpoint"] == server.url


def test_other_account_wrong_secret(server):
    akid, secret = server.account(OTHER_ACCOUNT)
    r = raw_call(server, "DescribeRegistry", {}, akid=akid, secret=secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert r.status == 400, r
    assert r.error_type == "InvalidSignatureException", r
    assert r.message == BAD_SIGNATURE_MSG, r


def test_cross_account_arn_is_not_reachable(ecr, other):
    name = unique("xarn")
    arn = other.create_repository(repositoryName=name)["repository"]["repositoryArn"]
    with pytest.raises(ClientError) as ei:
        ecr.list_tags_for_resource(resourceArn=arn)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError):
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "evil", "Value": "1"}])
    assert other.list_tags_for_resource(resourceArn=arn)["tags"] == []


# ------------------------------------------------------------------------------------------
# regions


def test_region_isolation(server, ecr, ecr_eu):
    eu_name, us_name = unique("eu"), unique("us")
    eu = ecr_eu.create_repository(repositoryName=eu_name)["repository"]
    ecr.create_repository(repositoryName=us_name)
    assert eu["repositoryArn"] == arn_of(eu_name, ACCOUNT_ID, OTHER_REGION)
    assert eu["registryId"] == ACCOUNT_ID
    assert eu["repositoryUri"] == f"{server.hostport}/{eu_name}"

    eu_all = all_repositories(ecr_eu)
    assert eu_name in {r["repositoryName"] for r in eu_all}
    assert us_name not in {r["repositoryName"] for r in eu_all}
    for r in eu_all:
        assert r["repositoryArn"] == arn_of(r["repositoryName"], ACCOUNT_ID, OTHER_REGION)
    us_all = all_repositories(ecr)
    assert eu_name not in {r["repositoryName"] for r in us_all}
    for r in us_all:
        assert r["repositoryArn"] == arn_of(r["repositoryName"], ACCOUNT_ID, REGION)

    err = client_error(ecr.describe_repositories, repositoryNames=[eu_name])
    check_error(err, "RepositoryNotFoundException", not_found_msg(eu_name))
    err = client_error(ecr_eu.describe_repositories, repositoryNames=[us_name])
    check_error(err, "RepositoryNotFoundException", not_found_msg(us_name))

    # the same name can exist in both regions
    us_twin = ecr.create_repository(repositoryName=eu_name)["repository"]
    assert us_twin["repositoryArn"] == arn_of(eu_name)
    ecr.delete_repository(repositoryName=eu_name)
    assert ecr_eu.describe_repositories(repositoryNames=[eu_name])["repositories"] == [eu]


def test_region_tags_and_mutability(ecr_eu):
    name = unique("eutag")
    arn = ecr_eu.create_repository(repositoryName=name)["repository"]["repositoryArn"]
    assert arn == arn_of(name, ACCOUNT_ID, OTHER_REGION)
    ecr_eu.tag_resource(resourceArn=arn, tags=[{"Key": "r", "Value": "eu"}])
    assert ecr_eu.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "r", "Value": "eu"}]
    resp = ecr_eu.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
    assert resp["registryId"] == ACCOUNT_ID and resp["imageTagMutability"] == "IMMUTABLE"
    assert ecr_eu.describe_registry()["registryId"] == ACCOUNT_ID


def test_region_arn_mismatch(ecr, ecr_eu):
    """A us-east-1 ARN used through eu-west-1 does not reach the us-east-1 repository."""
    name = unique("armis")
    arn = ecr.create_repository(repositoryName=name)["repository"]["repositoryArn"]
    with pytest.raises(ClientError) as ei:
        ecr_eu.tag_resource(resourceArn=arn, tags=[{"Key": "x", "Value": "y"}])
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == []


def test_unhosted_region_refused(server, ecr, ecr_eu, record_property):
    """ap-south-1 is not in BERTH_REGIONS: refused (shape is the server's choice; recorded)."""
    name = unique("south")
    client = make_client(server, region="ap-south-1")
    with pytest.raises((ClientError, BotoCoreError)) as ei:
        client.create_repository(repositoryName=name)
    if isinstance(ei.value, ClientError):
        observed = {
            "status": ei.value.response["ResponseMetadata"]["HTTPStatusCode"],
            "code": ei.value.response["Error"].get("Code"),
            "message": ei.value.response["Error"].get("Message"),
        }
        assert 400 <= observed["status"] < 500, observed
    else:
        observed = {"exception": repr(ei.value)}
    r = raw_call(server, "DescribeRepositories", {}, region="ap-south-1")
    observed["raw"] = {"status": r.status, "body": r.text}
    assert 400 <= r.status < 500, r
    record_property("ap-south-1", json.dumps(observed))
    print("ap-south-1 observed:", json.dumps(observed))
    assert_absent(ecr, name)
    assert_absent(ecr_eu, name)
