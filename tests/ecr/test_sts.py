"""IAM roles, OIDC providers and STS (issue 15), driven with boto3 and the AWS CLI.

A berth of its own (fixture `sts_server`) maps a GitHub-shaped issuer to a JWKS file this module
writes: the local OIDC issuer is this test's own RSA and EC keys. Tokens are minted here by hand
(header.payload.signature) so that forged ones (alg none, another key) can be built too.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from oidclib import AUDIENCE, ISSUER, MAIN_SUB, Issuer, b64url
from ecrlib import (
    ACCOUNT_ID,
    REGION,
    ROOT_AKID,
    ROOT_SECRET,
    create_iam_user,
    make_client,
    make_iam,
    make_sts,
    push_image,
    start_berth,
    stop_berth,
    unique,
)

PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture(scope="module")
def sts_server(issuer, tmp_path_factory):
    jwks = tmp_path_factory.mktemp("oidc") / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    srv = start_berth({"BERTH_OIDC_JWKS_FILES": f"{ISSUER}={jwks}"})
    iam = make_iam(srv)
    iam.create_open_id_connect_provider(Url=ISSUER, ClientIDList=[AUDIENCE], ThumbprintList=["a" * 40])
    yield srv
    stop_berth(srv)


def err(callable_, *args, **kwargs):
    with pytest.raises(ClientError) as e:
        callable_(*args, **kwargs)
    return e.value.response


def session_client(server, service, creds, region=REGION):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"total_max_attempts": 1}),
    )


def trust(principal, action="sts:AssumeRole", condition=None):
    st = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition:
        st["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [st]})


PUSH_PULL = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ecr:GetAuthorizationToken",
                "ecr:BatchCheckLayerAvailability",
                "ecr:CompleteLayerUpload",
                "ecr:GetDownloadUrlForLayer",
                "ecr:InitiateLayerUpload",
                "ecr:PutImage",
                "ecr:UploadLayerPart",
                "ecr:BatchGetImage",
                "ecr:DescribeRepositories",
                "ecr:DescribeImages",
            ],
            "Resource": "*",
        }
    ],
}


def make_role(iam, name, trust_doc, policy=PUSH_PULL, **kw):
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_doc, **kw)["Role"]
    if policy:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return role


# ------------------------------------------------------------------------------------------------
# Roles on the IAM API


def test_role_lifecycle_and_shapes(sts_server):
    iam = make_iam(sts_server)
    name = unique("role")
    doc = trust({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"})
    r = iam.create_role(
        RoleName=name,
        Path="/ci/",
        AssumeRolePolicyDocument=doc,
        Description="pushes images",
        MaxSessionDuration=7200,
        Tags=[{"Key": "team", "Value": "build"}],
    )["Role"]
    assert r["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/ci/{name}"
    assert r["RoleId"].startswith("AROA") and len(r["RoleId"]) == 21
    assert r["AssumeRolePolicyDocument"] == json.loads(doc)
    assert (r["Path"], r["Description"], r["MaxSessionDuration"]) == ("/ci/", "pushes images", 7200)
    assert r["Tags"] == [{"Key": "team", "Value": "build"}]
    got = iam.get_role(RoleName=name.upper())["Role"]
    assert (got["RoleName"], got["RoleId"]) == (name, r["RoleId"])
    assert name in [x["RoleName"] for x in iam.list_roles(PathPrefix="/ci/")["Roles"]]
    assert name not in [x["RoleName"] for x in iam.list_roles(PathPrefix="/other/")["Roles"]]
    e = err(iam.create_role, RoleName=name, AssumeRolePolicyDocument=doc)
    assert e["Error"]["Code"] == "EntityAlreadyExists"
    assert e["Error"]["Message"] == f"Role with name {name} already exists."

    iam.update_role(RoleName=name, MaxSessionDuration=3600, Description="d2")
    new_doc = trust({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/someone"})
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=new_doc)
    got = iam.get_role(RoleName=name)["Role"]
    assert (got["MaxSessionDuration"], got["Description"]) == (3600, "d2")
    assert got["AssumeRolePolicyDocument"] == json.loads(new_doc)

    iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=json.dumps(PUSH_PULL))
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == ["inline"]
    assert iam.get_role_policy(RoleName=name, PolicyName="inline")["PolicyDocument"] == PUSH_PULL
    ro = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
    iam.attach_role_policy(RoleName=name, PolicyArn=ro)
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]] == [ro]
    e = err(iam.delete_role, RoleName=name)
    assert (e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("DeleteConflict", 409)
    iam.delete_role_policy(RoleName=name, PolicyName="inline")
    e = err(iam.delete_role, RoleName=name)
    assert e["Error"]["Message"] == "Cannot delete entity, must detach all policies first."
    iam.detach_role_policy(RoleName=name, PolicyArn=ro)
    iam.delete_role(RoleName=name)
    e = err(iam.get_role, RoleName=name)
    assert (e["Error"]["Code"], e["Error"]["Message"]) == ("NoSuchEntity", f"The role with name {name} cannot be found.")


def test_role_validation(sts_server):
    iam = make_iam(sts_server, validate=False)
    doc = trust({"AWS": ACCOUNT_ID})
    e = err(iam.create_role, RoleName=unique("r"), AssumeRolePolicyDocument=doc, MaxSessionDuration=100)
    assert e["Error"]["Code"] == "ValidationError"
    assert "Member must have value greater than or equal to 3600" in e["Error"]["Message"]
    e = err(iam.create_role, RoleName=unique("r"), AssumeRolePolicyDocument=doc, MaxSessionDuration=43201)
    assert "less than or equal to 43200" in e["Error"]["Message"]
    e = err(iam.create_role, RoleName="bad name", AssumeRolePolicyDocument=doc)
    assert e["Error"]["Code"] == "ValidationError"
    for bad in ["{", json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]})]:
        e = err(iam.create_role, RoleName=unique("r"), AssumeRolePolicyDocument=bad)
        assert e["Error"]["Code"] == "MalformedPolicyDocument", e
    not_sts = trust({"AWS": ACCOUNT_ID}, action="ecr:*")
    e = err(iam.create_role, RoleName=unique("r"), AssumeRolePolicyDocument=not_sts)
    assert e["Error"]["Code"] == "MalformedPolicyDocument"


def test_oidc_providers(sts_server):
    iam = make_iam(sts_server)
    url = f"https://idp-{uuid.uuid4().hex[:8]}.example.com/oidc"
    arn = iam.create_open_id_connect_provider(Url=url, ClientIDList=["a"], ThumbprintList=["0" * 40])[
        "OpenIDConnectProviderArn"
    ]
    assert arn == f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{url[8:]}"
    p = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert (p["Url"], p["ClientIDList"], p["ThumbprintList"]) == (url[8:], ["a"], ["0" * 40])
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="b")
    iam.remove_client_id_from_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="a")
    iam.update_open_id_connect_provider_thumbprint(OpenIDConnectProviderArn=arn, ThumbprintList=["1" * 40])
    p = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert (p["ClientIDList"], p["ThumbprintList"]) == (["b"], ["1" * 40])
    assert arn in [x["Arn"] for x in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
    e = err(iam.create_open_id_connect_provider, Url=url, ClientIDList=["a"], ThumbprintList=["0" * 40])
    assert e["Error"]["Code"] == "EntityAlreadyExists"
    e = err(iam.create_open_id_connect_provider, Url="http://plain.example.com", ThumbprintList=["0" * 40])
    assert e["Error"]["Code"] == "ValidationError"
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    e = err(iam.get_open_id_connect_provider, OpenIDConnectProviderArn=arn)
    assert e["Error"]["Code"] == "NoSuchEntity"


# ------------------------------------------------------------------------------------------------
# AssumeRole


def test_assume_role_same_account_and_session_identity(sts_server):
    iam = make_iam(sts_server)
    name = unique("deploy")
    role = make_role(iam, name, trust({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}))
    # The trust policy names the account: the user also needs an identity policy allowing it.
    plain = create_iam_user(sts_server, unique("plain"))
    sts_plain = make_sts(sts_server, plain.akid, plain.secret)
    e = err(sts_plain.assume_role, RoleArn=role["Arn"], RoleSessionName="s1")
    assert (e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    assert e["Error"]["Message"] == (
        f"User: {plain.arn} is not authorized to perform: sts:AssumeRole on resource: {role['Arn']} "
        "because no identity-based policy allows the sts:AssumeRole action"
    )
    allowed = create_iam_user(
        sts_server,
        unique("ci"),
        inline={"assume": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role["Arn"]}]}},
    )
    out = make_sts(sts_server, allowed.akid, allowed.secret).assume_role(RoleArn=role["Arn"], RoleSessionName="build-7")
    c = out["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA") and len(c["AccessKeyId"]) == 20
    assert len(c["SecretAccessKey"]) == 40 and len(c["SessionToken"]) > 100
    left = (c["Expiration"].timestamp() - time.time())
    assert 3500 < left <= 3600, left
    assert out["AssumedRoleUser"] == {
        "AssumedRoleId": f"{role['RoleId']}:build-7",
        "Arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{name}/build-7",
    }
    me = session_client(sts_server, "sts", c).get_caller_identity()
    assert (me["Arn"], me["UserId"], me["Account"]) == (
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{name}/build-7",
        f"{role['RoleId']}:build-7",
        ACCOUNT_ID,
    )
    # The session has the role's permissions: push and pull, nothing else.
    ecr = session_client(sts_server, "ecr", c)
    repo = unique("sts-app")
    make_client(sts_server).create_repository(repositoryName=repo)
    push_image(sts_server, ecr, repo, "v1")
    assert ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"]
    e = err(ecr.delete_repository, repositoryName=repo, force=True)
    assert e["Error"]["Code"] == "AccessDeniedException"
    assert e["Error"]["Message"].startswith(f"User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/{name}/build-7 is not authorized")
    # A registry token minted with the session expires with it.
    tok = ecr.get_authorization_token()["authorizationData"][0]
    assert tok["expiresAt"].timestamp() <= c["Expiration"].timestamp() + 1


def test_trust_policy_naming_the_user_needs_no_identity_policy(sts_server):
    iam = make_iam(sts_server)
    user = create_iam_user(sts_server, unique("u"))
    role = make_role(iam, unique("direct"), trust({"AWS": user.arn}))
    out = make_sts(sts_server, user.akid, user.secret).assume_role(RoleArn=role["Arn"], RoleSessionName="x1")
    assert out["AssumedRoleUser"]["Arn"].endswith("/x1")
    other = create_iam_user(sts_server, unique("o"))
    e = err(make_sts(sts_server, other.akid, other.secret).assume_role, RoleArn=role["Arn"], RoleSessionName="x1")
    assert e["Error"]["Code"] == "AccessDenied"


def test_assume_role_parameters(sts_server):
    iam = make_iam(sts_server)
    sts = make_sts(sts_server)
    cond = {"StringEquals": {"sts:ExternalId": "secret-ext-1"}}
    role = make_role(iam, unique("ext"), trust({"AWS": ACCOUNT_ID}, condition=cond), MaxSessionDuration=7200)
    e = err(sts.assume_role, RoleArn=role["Arn"], RoleSessionName="s1")
    assert e["Error"]["Code"] == "AccessDenied"
    e = err(sts.assume_role, RoleArn=role["Arn"], RoleSessionName="s1", ExternalId="wrong-ext")
    assert e["Error"]["Code"] == "AccessDenied"
    out = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", ExternalId="secret-ext-1", DurationSeconds=7200)
    assert 7100 < out["Credentials"]["Expiration"].timestamp() - time.time() <= 7200
    e = err(sts.assume_role, RoleArn=role["Arn"], RoleSessionName="s1", ExternalId="secret-ext-1", DurationSeconds=7201)
    assert (e["Error"]["Code"], e["Error"]["Message"]) == (
        "ValidationError",
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    )
    unvalidated = boto3.client("sts", endpoint_url=sts_server.url, region_name=REGION, aws_access_key_id=ROOT_AKID,
                               aws_secret_access_key=ROOT_SECRET, config=Config(parameter_validation=False))
    e = err(unvalidated.assume_role, RoleArn=role["Arn"], RoleSessionName="x", ExternalId="secret-ext-1")
    assert e["Error"]["Code"] == "ValidationError"
    assert "Member must have length greater than or equal to 2" in e["Error"]["Message"]
    # A role that does not exist is refused like a refused one.
    missing = f"arn:aws:iam::{ACCOUNT_ID}:role/nope-{uuid.uuid4().hex[:6]}"
    e = err(sts.assume_role, RoleArn=missing, RoleSessionName="s1")
    assert e["Error"]["Code"] == "AccessDenied"


def test_session_policy_limits_the_session(sts_server):
    iam = make_iam(sts_server)
    role = make_role(iam, unique("sp"), trust({"AWS": ACCOUNT_ID}))
    pull_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetAuthorizationToken", "ecr:DescribeRepositories"], "Resource": "*"}]}
    out = make_sts(sts_server).assume_role(RoleArn=role["Arn"], RoleSessionName="ro", Policy=json.dumps(pull_only))
    assert 0 < out["PackedPolicySize"] <= 100
    ecr = session_client(sts_server, "ecr", out["Credentials"])
    repo = unique("sp-app")
    make_client(sts_server).create_repository(repositoryName=repo)
    ecr.describe_repositories(repositoryNames=[repo])
    e = err(ecr.initiate_layer_upload, repositoryName=repo)
    assert e["Error"]["Code"] == "AccessDeniedException"
    assert e["Error"]["Message"].endswith("because no session policy allows the ecr:InitiateLayerUpload action")
    e = err(make_sts(sts_server).assume_role, RoleArn=role["Arn"], RoleSessionName="ro", Policy="{not json")
    assert e["Error"]["Code"] == "MalformedPolicyDocument"


def test_cross_account_needs_both_sides(sts_server):
    other = "222233334444"
    akid, secret = sts_server.account(other)
    iam_b = make_iam(sts_server, akid, secret)
    role_allows = make_role(iam_b, unique("x-ok"), trust({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}))
    role_closed = make_role(iam_b, unique("x-no"), trust({"AWS": f"arn:aws:iam::{other}:root"}))
    assume_any = {"assume": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}}
    user = create_iam_user(sts_server, unique("xa"), inline=assume_any)
    sts_user = make_sts(sts_server, user.akid, user.secret)
    out = sts_user.assume_role(RoleArn=role_allows["Arn"], RoleSessionName="xacct")
    assert out["AssumedRoleUser"]["Arn"].startswith(f"arn:aws:sts::{other}:assumed-role/")
    me = session_client(sts_server, "sts", out["Credentials"]).get_caller_identity()
    assert me["Account"] == other
    e = err(sts_user.assume_role, RoleArn=role_closed["Arn"], RoleSessionName="xacct")
    assert e["Error"]["Code"] == "AccessDenied"
    assert "because no resource-based policy allows the sts:AssumeRole action" in e["Error"]["Message"]
    # Trusted by the role, but the caller's own account does not allow it.
    no_policy = create_iam_user(sts_server, unique("xn"))
    e = err(make_sts(sts_server, no_policy.akid, no_policy.secret).assume_role, RoleArn=role_allows["Arn"], RoleSessionName="xacct")
    assert "because no identity-based policy allows the sts:AssumeRole action" in e["Error"]["Message"]


def test_session_credentials_need_their_token(sts_server):
    iam = make_iam(sts_server)
    role = make_role(iam, unique("tok"), trust({"AWS": ACCOUNT_ID}))
    c = make_sts(sts_server).assume_role(RoleArn=role["Arn"], RoleSessionName="t1")["Credentials"]
    for token in [None, c["SessionToken"][:-4] + "AAAA"]:
        client = boto3.client(
            "ecr", endpoint_url=sts_server.url, region_name=REGION, aws_access_key_id=c["AccessKeyId"],
            aws_secret_access_key=c["SecretAccessKey"], aws_session_token=token,
            config=Config(retries={"total_max_attempts": 1}),
        )
        e = err(client.describe_repositories)
        assert (e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("UnrecognizedClientException", 400)
    # A long-term key with a session token is not accepted either.
    client = boto3.client(
        "sts", endpoint_url=sts_server.url, region_name=REGION, aws_access_key_id=ROOT_AKID,
        aws_secret_access_key=ROOT_SECRET, aws_session_token=c["SessionToken"],
    )
    e = err(client.get_caller_identity)
    assert e["Error"]["Code"] == "InvalidClientTokenId"


def test_deleting_the_role_ends_its_sessions(sts_server):
    iam = make_iam(sts_server)
    name = unique("gone")
    role = make_role(iam, name, trust({"AWS": ACCOUNT_ID}))
    c = make_sts(sts_server).assume_role(RoleArn=role["Arn"], RoleSessionName="g1")["Credentials"]
    ecr = session_client(sts_server, "ecr", c)
    ecr.describe_repositories()
    iam.delete_role_policy(RoleName=name, PolicyName="p")
    iam.delete_role(RoleName=name)
    # A role re-created under the same name is another role: the old session stays dead.
    make_role(iam, name, trust({"AWS": ACCOUNT_ID}))
    time.sleep(1.2)  # other nodes' caches: at most EPOCH_CHECK_MS
    e = err(ecr.describe_repositories)
    assert e["Error"]["Code"] == "UnrecognizedClientException"


def test_get_session_token(sts_server):
    user = create_iam_user(sts_server, unique("gst"), inline={"ro": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:DescribeRepositories", "Resource": "*"}]}})
    out = make_sts(sts_server, user.akid, user.secret).get_session_token(DurationSeconds=900)
    c = out["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    assert 800 < c["Expiration"].timestamp() - time.time() <= 900
    me = session_client(sts_server, "sts", c).get_caller_identity()
    assert me["Arn"] == user.arn
    session_client(sts_server, "ecr", c).describe_repositories()
    e = err(session_client(sts_server, "ecr", c).create_repository, repositoryName=unique("no"))
    assert e["Error"]["Code"] == "AccessDeniedException"
    e = err(session_client(sts_server, "sts", c).get_session_token)
    assert (e["Error"]["Code"], e["Error"]["Message"]) == ("AccessDenied", "Cannot call GetSessionToken with session credentials")
    e = err(session_client(sts_server, "iam", c).list_users)
    assert e["Error"]["Code"] == "InvalidClientTokenId"


# ------------------------------------------------------------------------------------------------
# Web identity: the GitHub Actions flow


def github_role(iam, sub=MAIN_SUB):
    cond = {"StringEquals": {"token.actions.githubusercontent.com:aud": AUDIENCE, "token.actions.githubusercontent.com:sub": sub}}
    return make_role(iam, unique("gha"), trust({"Federated": PROVIDER_ARN}, "sts:AssumeRoleWithWebIdentity", cond))


def aws_env(creds=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE="/nonexistent/config", AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials",
               AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION=REGION)
    if creds:
        env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
                   AWS_SESSION_TOKEN=creds["SessionToken"])
    return env


def aws(server, env, *args):
    exe = shutil.which("aws")
    cmd = ([exe] if exe else [sys.executable, "-m", "awscli"]) + list(args) + ["--endpoint-url", server.url, "--output", "json"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_github_actions_flow_with_the_cli(sts_server, issuer):
    role = github_role(make_iam(sts_server))
    token = issuer.token()
    # The CLI without any credentials: AssumeRoleWithWebIdentity is unsigned.
    r = aws(sts_server, aws_env(), "sts", "assume-role-with-web-identity", "--role-arn", role["Arn"],
            "--role-session-name", "gha-run-1", "--web-identity-token", token)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["SubjectFromWebIdentityToken"] == MAIN_SUB
    assert (out["Provider"], out["Audience"]) == (ISSUER, AUDIENCE)
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role['RoleName']}/gha-run-1"
    creds = out["Credentials"]
    r = aws(sts_server, aws_env(creds), "ecr", "get-login-password")
    assert r.returncode == 0, r.stderr
    password = r.stdout.strip()
    ok = requests.get(f"{sts_server.url}/v2/", auth=("AWS", password), timeout=10)
    assert ok.status_code == 200
    # Push with the temporary credentials.
    repo = unique("gha-app")
    make_client(sts_server).create_repository(repositoryName=repo)
    push_image(sts_server, session_client(sts_server, "ecr", creds), repo, "main")
    r = aws(sts_server, aws_env(creds), "ecr", "describe-images", "--repository-name", repo)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["imageDetails"][0]["imageTags"] == ["main"]
    # The EC key works too.
    sts = make_sts(sts_server)
    sts.assume_role_with_web_identity(RoleArn=role["Arn"], RoleSessionName="ec", WebIdentityToken=issuer.token(alg="ES256"))


def test_web_identity_refusals(sts_server, issuer):
    role = github_role(make_iam(sts_server))
    sts = boto3.client("sts", endpoint_url=sts_server.url, region_name=REGION, config=Config(signature_version=__import__("botocore").UNSIGNED))

    def refused(token, code, message=None):
        e = err(sts.assume_role_with_web_identity, RoleArn=role["Arn"], RoleSessionName="s1", WebIdentityToken=token)
        assert e["Error"]["Code"] == code, (code, e["Error"])
        if message:
            assert e["Error"]["Message"] == message
        return e

    refused(issuer.token(sub="repo:org/app:ref:refs/heads/feature"), "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    refused(issuer.token(sub="repo:other/app:ref:refs/heads/main"), "AccessDenied")
    refused(issuer.token(aud="another-audience"), "InvalidIdentityToken")
    refused(issuer.token(exp_in=-3600), "ExpiredTokenException")
    refused(issuer.token(key=issuer.other_rsa), "InvalidIdentityToken")
    refused(issuer.token(alg="none"), "InvalidIdentityToken")
    refused(issuer.token(kid="unknown"), "InvalidIdentityToken")
    refused("not.a.jwt", "InvalidIdentityToken")
    e = refused(issuer.token(iss="https://gitlab.example.com"), "InvalidIdentityToken")
    assert "No OpenIDConnect provider found" in e["Error"]["Message"]
    # HS256 signed with the public key as the HMAC secret (algorithm confusion).
    import hmac
    import hashlib
    header = b64url(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    payload = b64url(json.dumps({"iss": ISSUER, "sub": MAIN_SUB, "aud": AUDIENCE, "exp": int(time.time()) + 300}).encode())
    key = json.dumps(issuer.jwks()["keys"][0]).encode()
    sig = b64url(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    refused(f"{header}.{payload}.{sig}", "InvalidIdentityToken")
    # Nothing of the token reaches the log.
    assert issuer.token()[:40] not in open(sts_server.log_path).read()


# ------------------------------------------------------------------------------------------------
# Condition keys and the admin CLI


def test_session_tags_and_principal_conditions(sts_server):
    iam = make_iam(sts_server)
    # The trust policy demands a team tag on the session; the role's policy lets a session
    # push only to repositories under its own team tag, and only if its principal is the role.
    cond = {"StringEquals": {"aws:RequestTag/team": ["blue", "green"]}}
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ID}, "Action": ["sts:AssumeRole", "sts:TagSession"], "Condition": cond}]})
    name = unique("tagged")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc, Tags=[{"Key": "team", "Value": "role-default"}])["Role"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:DescribeRepositories",
         "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/${{aws:PrincipalTag/team}}/*",
         "Condition": {"StringEquals": {"aws:PrincipalArn": role["Arn"]}, "StringLike": {"aws:userid": f"{role['RoleId']}:*"}}}]}
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    sts = make_sts(sts_server)
    e = err(sts.assume_role, RoleArn=role["Arn"], RoleSessionName="t1")
    assert e["Error"]["Code"] == "AccessDenied"
    e = err(sts.assume_role, RoleArn=role["Arn"], RoleSessionName="t1", Tags=[{"Key": "team", "Value": "red"}])
    assert e["Error"]["Code"] == "AccessDenied"
    c = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="t1", Tags=[{"Key": "team", "Value": "blue"}])["Credentials"]
    admin = make_client(sts_server)
    blue, green = unique("blue/app"), unique("green/app")
    admin.create_repository(repositoryName=blue)
    admin.create_repository(repositoryName=green)
    ecr = session_client(sts_server, "ecr", c)
    ecr.describe_repositories(repositoryNames=[blue])  # the session tag overrides the role's
    e = err(ecr.describe_repositories, repositoryNames=[green])
    assert e["Error"]["Code"] == "AccessDeniedException"


def test_admin_role_commands(sts_server, tmp_path):
    name = unique("adm")
    doc = tmp_path / "trust.json"
    doc.write_text(trust({"AWS": ACCOUNT_ID}))
    r = sts_server.admin("create-role", "--role-name", name, "--assume-role-policy-document", f"file://{doc}",
                         "--max-session-duration", "7200")
    assert r.returncode == 0, r.stderr
    role = json.loads(r.stdout)["Role"]
    assert (role["RoleName"], role["MaxSessionDuration"]) == (name, 7200)
    assert role["AssumeRolePolicyDocument"] == json.loads(doc.read_text())
    r = sts_server.admin("put-role-policy", "--role-name", name, "--policy-name", "p", "--policy-document", json.dumps(PUSH_PULL))
    assert r.returncode == 0, r.stderr
    # What the admin CLI made, IAM serves (the server reads the same database).
    assert make_iam(sts_server).get_role(RoleName=name)["Role"]["RoleId"] == role["RoleId"]
    out = make_sts(sts_server).assume_role(RoleArn=role["Arn"], RoleSessionName="adm", DurationSeconds=7200)
    assert out["AssumedRoleUser"]["AssumedRoleId"] == f"{role['RoleId']}:adm"
    r = sts_server.admin("delete-role", "--role-name", name)
    assert r.returncode != 0 and "must delete policies first" in r.stderr
    r = sts_server.admin("create-open-id-connect-provider", "--url", "https://gitlab.example.com",
                         "--client-id-list", "berth,other", "--thumbprint-list", "f" * 40)
    assert r.returncode == 0, r.stderr
    arn = json.loads(r.stdout)["OpenIDConnectProviderArn"]
    assert arn == f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/gitlab.example.com"
    assert make_iam(sts_server).get_open_id_connect_provider(OpenIDConnectProviderArn=arn)["ClientIDList"] == ["berth", "other"]


def test_keys_come_from_the_issuers_discovery_document_over_https(issuer, tmp_path):
    """No JWKS file for this issuer: Berth reads its discovery document and JWKS over HTTPS,
    trusting the CA given as oidc_ca_file (and nothing else)."""
    from oidclib import HttpsIssuer

    idp = HttpsIssuer(issuer, tmp_path)
    trusted = start_berth({"BERTH_OIDC_CA_FILE": str(idp.ca_pem)})
    untrusted = start_berth({})
    try:
        host = idp.url[len("https://"):]
        for srv in (trusted, untrusted):
            iam = make_iam(srv)
            arn = iam.create_open_id_connect_provider(Url=idp.url, ClientIDList=["berth"])["OpenIDConnectProviderArn"]
            cond = {"StringEquals": {f"{host}:sub": "job-1", f"{host}:aud": "berth"}}
            make_role(iam, "web", trust({"Federated": arn}, "sts:AssumeRoleWithWebIdentity", cond))
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/web"
        token = issuer.token(iss=idp.url, aud="berth", sub="job-1")
        out = make_sts(trusted).assume_role_with_web_identity(RoleArn=role, RoleSessionName="w1", WebIdentityToken=token)
        assert out["Provider"] == idp.url
        assert idp.requests[:2] == ["/.well-known/openid-configuration", "/keys"]
        # Cached: another token needs no fetch.
        make_sts(trusted).assume_role_with_web_identity(RoleArn=role, RoleSessionName="w2", WebIdentityToken=token)
        assert len(idp.requests) == 2
        # A Berth that does not trust the issuer's certificate cannot get its keys.
        e = err(make_sts(untrusted).assume_role_with_web_identity, RoleArn=role, RoleSessionName="w1", WebIdentityToken=token)
        assert (e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("IDPCommunicationError", 400)
        assert e["Error"]["Message"].startswith("Couldn't retrieve verification key from your identity provider")
    finally:
        stop_berth(trusted)
        stop_berth(untrusted)
        idp.close()


def test_sts_calls_are_audited_without_secrets(sts_server, issuer):
    role = github_role(make_iam(sts_server))
    token = issuer.token()
    make_sts(sts_server).assume_role_with_web_identity(RoleArn=role["Arn"], RoleSessionName="audited", WebIdentityToken=token)
    ct = boto3.client("cloudtrail", endpoint_url=sts_server.url, region_name=REGION,
                      aws_access_key_id=ROOT_AKID, aws_secret_access_key=ROOT_SECRET)
    for _ in range(50):
        events = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "AssumeRoleWithWebIdentity"}])["Events"]
        records = [json.loads(e["CloudTrailEvent"]) for e in events]
        records = [r for r in records if (r.get("requestParameters") or {}).get("roleSessionName") == "audited"]
        if records:
            break
        time.sleep(0.1)
    assert records, "no audit record of AssumeRoleWithWebIdentity"
    r = records[0]
    assert r["eventSource"] == "sts.amazonaws.com"
    assert r["requestParameters"]["roleArn"] == role["Arn"]
    text = json.dumps(r)
    assert token[:40] not in text and "webIdentityToken" not in text


def test_settings_berth_cannot_honour_are_refused(sts_server):
    iam = make_iam(sts_server)
    e = err(iam.create_role, RoleName=unique("pb"), AssumeRolePolicyDocument=trust({"AWS": ACCOUNT_ID}),
            PermissionsBoundary="arn:aws:iam::aws:policy/IAMReadOnlyAccess")
    assert e["Error"]["Code"] == "ValidationError" and "PermissionsBoundary" in e["Error"]["Message"]
    role = make_role(iam, unique("mfa"), trust({"AWS": ACCOUNT_ID}))
    sts = make_sts(sts_server)
    e = err(sts.assume_role, RoleArn=role["Arn"], RoleSessionName="m1", SerialNumber="GAHT12345678", TokenCode="123456")
    assert e["Error"]["Code"] == "ValidationError" and "MFA" in e["Error"]["Message"]
    e = err(sts.get_session_token, SerialNumber="GAHT12345678", TokenCode="123456")
    assert e["Error"]["Code"] == "ValidationError"


def test_role_tags_become_principal_tags(sts_server):
    iam = make_iam(sts_server)
    name = unique("tagrole")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:DescribeRepositories",
              "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalTag/tier": "gold"}}}]}
    make_role(iam, name, trust({"AWS": ACCOUNT_ID}), policy=policy)
    iam.tag_role(RoleName=name, Tags=[{"Key": "tier", "Value": "silver"}, {"Key": "owner", "Value": "ci"}])
    iam.tag_role(RoleName=name, Tags=[{"Key": "TIER", "Value": "gold"}])  # same key, any case: replaced
    assert iam.list_role_tags(RoleName=name)["Tags"] == [{"Key": "tier", "Value": "gold"}, {"Key": "owner", "Value": "ci"}]
    arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    c = make_sts(sts_server).assume_role(RoleArn=arn, RoleSessionName="t1")["Credentials"]
    session_client(sts_server, "ecr", c).describe_repositories()
    iam.untag_role(RoleName=name, TagKeys=["tier", "absent"])
    assert iam.list_role_tags(RoleName=name)["Tags"] == [{"Key": "owner", "Value": "ci"}]
    time.sleep(0.1)
    e = err(session_client(sts_server, "ecr", c).describe_repositories)
    assert e["Error"]["Code"] == "AccessDeniedException"
