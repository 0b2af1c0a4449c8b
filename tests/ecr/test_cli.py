"""The same operations through the AWS CLI v1 (`aws ecr ... --output json`).

awscli v1 prints timestamps as they came over the wire ('wire' format), so createdAt and
expiresAt show up as JSON numbers (epoch seconds).
"""

import json

import requests

from ecrlib import (
    ACCOUNT_ID,
    BAD_SIGNATURE_MSG,
    NAME_REGEX_MSG,
    ROOT_SECRET,
    arn_of,
    aws_cli,
    b64decode,
    cli_error_line,
    cli_json,
    exists_msg,
    not_found_msg,
    unique,
    utcnow,
)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def test_cli_repository_lifecycle(server):
    name = unique("cli")
    out = cli_json(
        aws_cli(
            server,
            "create-repository",
            "--repository-name", name,
            "--tags", "Key=team,Value=platform", "Key=env,Value=dev",
            "--image-scanning-configuration", "scanOnPush=true",
        )
    )
    repo = out["repository"]
    assert set(out) == {"repository"}
    assert repo["repositoryArn"] == arn_of(name)
    assert repo["registryId"] == ACCOUNT_ID
    assert repo["repositoryName"] == name
    assert repo["repositoryUri"] == f"{server.hostport}/{name}"
    assert is_number(repo["createdAt"]) and abs(repo["createdAt"] - utcnow().timestamp()) < 60
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}

    out = cli_json(aws_cli(server, "describe-repositories", "--repository-names", name))
    assert out == {"repositories": [repo]}

    out = cli_json(
        aws_cli(server, "put-image-tag-mutability", "--repository-name", name,
                "--image-tag-mutability", "IMMUTABLE")
    )
    out.pop("imageTagMutabilityExclusionFilters", None)
    assert out == {"registryId": ACCOUNT_ID, "repositoryName": name, "imageTagMutability": "IMMUTABLE"}

    out = cli_json(
        aws_cli(
            server, "put-image-tag-mutability", "--repository-name", name,
            "--image-tag-mutability", "IMMUTABLE_WITH_EXCLUSION",
            "--image-tag-mutability-exclusion-filters", "filterType=WILDCARD,filter=dev-*",
        )
    )
    assert out == {
        "registryId": ACCOUNT_ID,
        "repositoryName": name,
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "dev-*"}],
    }

    arn = arn_of(name)
    tags = cli_json(aws_cli(server, "list-tags-for-resource", "--resource-arn", arn))
    assert sorted(tags["tags"], key=lambda t: t["Key"]) == [
        {"Key": "env", "Value": "dev"},
        {"Key": "team", "Value": "platform"},
    ]
    res = aws_cli(server, "tag-resource", "--resource-arn", arn, "--tags", "Key=env,Value=prod")
    assert cli_json(res) in (None, {})
    res = aws_cli(server, "untag-resource", "--resource-arn", arn, "--tag-keys", "team")
    assert cli_json(res) in (None, {})
    tags = cli_json(aws_cli(server, "list-tags-for-resource", "--resource-arn", arn))
    assert tags == {"tags": [{"Key": "env", "Value": "prod"}]}

    out = cli_json(aws_cli(server, "delete-repository", "--repository-name", name, "--force"))
    assert out["repository"]["repositoryArn"] == arn
    assert out["repository"]["createdAt"] == repo["createdAt"]

    res = aws_cli(server, "describe-repositories", "--repository-names", name)
    assert res.returncode != 0
    assert cli_error_line(
        "RepositoryNotFoundException", "DescribeRepositories", not_found_msg(name)
    ) in res.stderr, res.stderr


def test_cli_errors(server):
    name = unique("clierr")
    cli_json(aws_cli(server, "create-repository", "--repository-name", name))
    res = aws_cli(server, "create-repository", "--repository-name", name)
    assert res.returncode != 0
    assert cli_error_line("RepositoryAlreadyExistsException", "CreateRepository", exists_msg(name)) in res.stderr, res.stderr

    res = aws_cli(server, "create-repository", "--repository-name", "Bad_Name")
    assert res.returncode != 0
    assert cli_error_line("InvalidParameterException", "CreateRepository", NAME_REGEX_MSG) in res.stderr, res.stderr

    missing = unique("clinone")
    res = aws_cli(server, "delete-repository", "--repository-name", missing)
    assert res.returncode != 0
    assert cli_error_line("RepositoryNotFoundException", "DeleteRepository", not_found_msg(missing)) in res.stderr

    res = aws_cli(server, "describe-registry", secret=ROOT_SECRET + "x")
    assert res.returncode != 0
    assert cli_error_line("InvalidSignatureException", "DescribeRegistry", BAD_SIGNATURE_MSG) in res.stderr, res.stderr


def test_cli_authorization_token(server):
    out = cli_json(aws_cli(server, "get-authorization-token"))
    (data,) = out["authorizationData"]
    assert set(data) == {"authorizationToken", "expiresAt", "proxyEndpoint"}
    assert b64decode(data["authorizationToken"]).decode().startswith("AWS:")
    assert is_number(data["expiresAt"])
    assert abs(data["expiresAt"] - (utcnow().timestamp() + 12 * 3600)) < 60
    assert data["proxyEndpoint"] == server.url


def test_cli_get_login_password(server):
    res = aws_cli(server, "get-login-password")
    assert res.returncode == 0, res.stderr
    password = res.stdout
    assert password.endswith("\n") and password.count("\n") == 1
    password = password.strip()
    assert password and ":" not in password and " " not in password
    # it is the password half of an authorization token: docker login -u AWS -p <password>
    r = requests.get(f"{server.url}/v2/", auth=("AWS", password), timeout=30)
    assert r.status_code == 200, (r.status_code, r.headers, r.text)


def test_cli_describe_registry(server):
    out = cli_json(aws_cli(server, "describe-registry"))
    assert out == {"registryId": ACCOUNT_ID, "replicationConfiguration": {"rules": []}}


def test_cli_pagination(server):
    akid, secret = server.account("555555555555")
    names = sorted(unique(f"clip{i}") for i in range(3))
    for n in names:
        cli_json(aws_cli(server, "create-repository", "--repository-name", n, akid=akid, secret=secret))
    # the CLI follows nextToken by itself
    out = cli_json(aws_cli(server, "describe-repositories", "--page-size", "1", akid=akid, secret=secret))
    assert sorted(r["repositoryName"] for r in out["repositories"]) == names
    assert "NextToken" not in out and "nextToken" not in out
    out = cli_json(aws_cli(server, "describe-repositories", "--max-items", "2", "--page-size", "1",
                           akid=akid, secret=secret))
    assert len(out["repositories"]) == 2
    assert out.get("NextToken")
    rest = cli_json(aws_cli(server, "describe-repositories", "--starting-token", out["NextToken"],
                            "--page-size", "1", akid=akid, secret=secret))
    got = [r["repositoryName"] for r in out["repositories"] + rest["repositories"]]
    assert sorted(got) == names
    for r in out["repositories"] + rest["repositories"]:
        assert r["repositoryArn"] == arn_of(r["repositoryName"], "555555555555")
    assert json.dumps(out)  # printable
