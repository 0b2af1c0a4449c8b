"""GetAuthorizationToken and DescribeRegistry."""

import datetime

import requests

from ecrlib import (
    ACCOUNT_ID,
    b64decode,
    check_error,
    client_error,
    raw_call,
    utcnow,
)

TWELVE_HOURS = datetime.timedelta(hours=12)


def test_get_authorization_token(server, ecr):
    before = utcnow()
    resp = ecr.get_authorization_token()
    assert set(resp) == {"authorizationData", "ResponseMetadata"}
    (data,) = resp["authorizationData"]
    assert set(data) == {"authorizationToken", "expiresAt", "proxyEndpoint"}
    token = data["authorizationToken"]
    assert token and not any(c.isspace() for c in token)  # model pattern ^\S+$
    user, sep, password = b64decode(token).decode().partition(":")
    assert (user, sep) == ("AWS", ":")
    assert password
    assert isinstance(data["expiresAt"], datetime.datetime)
    assert before + TWELVE_HOURS - datetime.timedelta(seconds=60) <= data["expiresAt"]
    assert data["expiresAt"] <= utcnow() + TWELVE_HOURS + datetime.timedelta(seconds=60)
    assert data["proxyEndpoint"] == server.url  # http://127.0.0.1:PORT


def test_get_authorization_token_wire(server):
    r = raw_call(server, "GetAuthorizationToken", {})
    assert r.status == 200, r
    (data,) = r.json["authorizationData"]
    assert isinstance(data["expiresAt"], (int, float)) and not isinstance(data["expiresAt"], bool), r
    assert abs(data["expiresAt"] - (utcnow() + TWELVE_HOURS).timestamp()) < 60, r
    assert data["proxyEndpoint"] == server.url


def test_get_authorization_token_registry_ids(server, ecr):
    resp = ecr.get_authorization_token(registryIds=[ACCOUNT_ID])
    (data,) = resp["authorizationData"]
    assert b64decode(data["authorizationToken"]).decode().startswith("AWS:")
    assert data["proxyEndpoint"] == server.url
    # deprecated field: one entry per id
    resp = ecr.get_authorization_token(registryIds=[ACCOUNT_ID, "222222222222"])
    assert len(resp["authorizationData"]) == 2
    for d in resp["authorizationData"]:
        assert b64decode(d["authorizationToken"]).decode().startswith("AWS:")


def test_get_authorization_token_bad_registry_id(ecr):
    err = client_error(ecr.get_authorization_token, registryIds=["123"])
    check_error(
        err,
        "InvalidParameterException",
        "Invalid parameter at 'registryIds' failed to satisfy constraint: "
        "'Member must satisfy constraint: [Member must satisfy regular expression pattern: [0-9]{12}]'",
    )


def test_get_authorization_token_too_many_registry_ids(ecr):
    err = client_error(ecr.get_authorization_token, registryIds=[f"{i:012d}" for i in range(11)])
    check_error(err, "InvalidParameterException")


def test_token_works_on_data_plane(server, ecr):
    """The token is usable verbatim as the Basic credential (`Authorization: Basic <token>`)."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    r = requests.get(f"{server.url}/v2/", headers={"Authorization": f"Basic {token}"}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    password = b64decode(token).decode().split(":", 1)[1]
    r = requests.get(f"{server.url}/v2/", auth=("AWS", password), timeout=30)
    assert r.status_code == 200, (r.status_code, r.headers, r.text)


def test_describe_registry(ecr):
    resp = ecr.describe_registry()
    assert {k: v for k, v in resp.items() if k != "ResponseMetadata"} == {
        "registryId": ACCOUNT_ID,
        "replicationConfiguration": {"rules": []},
    }


def test_describe_registry_wire(server):
    r = raw_call(server, "DescribeRegistry", {})
    assert r.status == 200, r
    assert r.json == {"registryId": ACCOUNT_ID, "replicationConfiguration": {"rules": []}}
