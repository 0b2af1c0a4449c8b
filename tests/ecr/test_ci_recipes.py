"""The CI recipes in docs/ci/ run here: each recipe's setup block (```sh berth-setup```) as the
account's admin, then its pipeline steps (```sh berth-test```) with the environment that CI
system gives a job, against a live Berth and a local OIDC issuer (oidclib). The documents'
placeholders (https://berth.example.com, 123456789012, the registry host) are replaced by the
test server's. A recipe that rots fails here.

The steps use the real docker CLI; without a working docker engine (`docker info`), these tests
are skipped.
"""

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from ecrlib import REGION, REPO_ROOT, start_berth, stop_berth
from oidclib import Issuer, TokenEndpoint

DOCS = REPO_ROOT / "docs" / "ci"
GITHUB = "https://token.actions.githubusercontent.com"
GITLAB = "https://gitlab.example.com"
JENKINS = "https://jenkins.example.com/oidc"


def docker_works():
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=60
    ).returncode == 0


pytestmark = pytest.mark.skipif(not docker_works(), reason="the recipes push with docker; no docker engine here")


def blocks(doc, kind):
    """The fenced blocks of `doc` whose info string is `<lang> <kind>`."""
    text = (DOCS / doc).read_text()
    return [m.group(1) for m in re.finditer(rf"```\w+ {kind}\n(.*?)```", text, re.S)]


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture(scope="module")
def ci_server(issuer, tmp_path_factory):
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    srv = start_berth({"BERTH_OIDC_JWKS_FILES": ",".join(f"{i}={jwks}" for i in (GITHUB, GITLAB, JENKINS))})
    yield srv
    stop_berth(srv)


class Recipe:
    """A workspace for one recipe: the placeholders' values, a Dockerfile, the push policy."""

    def __init__(self, server, tmp_path, account):
        self.server, self.dir, self.account = server, tmp_path, account
        (tmp_path / "hello.txt").write_text(f"built by a recipe {uuid.uuid4()}\n")
        (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
        (tmp_path / "push-policy.json").write_text(self.fill(blocks("README.md", "berth-policy")[0]))
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        # The agents' install step: the helper is the berth binary under another name.
        os.symlink(server.binary, self.bin / "docker-credential-berth")
        self.docker_config = tmp_path / "docker"
        self.docker_config.mkdir()
        self.images = []

    def fill(self, text):
        return (
            text.replace("123456789012.dkr.ecr.us-east-1.berth.example.com", self.server.hostport)
            .replace("https://berth.example.com", self.server.url)
            .replace("123456789012", self.account)
        )

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOCKER_", "BERTH_"))}
        env.update(
            PATH=f"{self.bin}:{env.get('PATH', '')}",
            HOME=str(self.dir),
            DOCKER_CONFIG=str(self.docker_config),
            AWS_CONFIG_FILE=str(self.dir / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.dir / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_ENDPOINT_URL=self.server.url,
            AWS_REGION=REGION,
            AWS_DEFAULT_REGION=REGION,
            BERTH_REGISTRY=self.server.hostport,
        )
        env.update(extra)
        return env

    def run(self, script, env):
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.fill(script)],
            cwd=self.dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return r

    def steps(self, doc, **env):
        (script,) = blocks(doc, "berth-test")
        return self.run(script, self.env(**env))

    def cleanup(self):
        for ref in self.images:
            subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, timeout=60)


@pytest.fixture
def recipe(ci_server, tmp_path):
    # Each recipe works in an account of its own: the documents' names (role, repository) are fixed.
    account = str(300000000000 + uuid.uuid4().int % 99999999999)
    ci_server.account(account)
    r = Recipe(ci_server, tmp_path, account)
    akid, secret = ci_server.account(account)
    r.setup_env = dict(AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret)
    yield r
    r.cleanup()


def setup_as_account(r, doc):
    (script,) = blocks(doc, "berth-setup")
    res = r.run(script, r.env(**r.setup_env))
    assert res.returncode == 0, f"setup of {doc} failed:\n{res.stdout}\n{res.stderr}"


def pushed_tags(r):
    import boto3
    from botocore.config import Config

    ecr = boto3.client(
        "ecr", endpoint_url=r.server.url, region_name=REGION, aws_access_key_id=r.setup_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=r.setup_env["AWS_SECRET_ACCESS_KEY"], config=Config(retries={"total_max_attempts": 1}),
    )
    details = ecr.describe_images(repositoryName="app")["imageDetails"]
    return {t for d in details for t in d.get("imageTags", [])}


def test_github_actions_recipe(recipe, issuer):
    setup_as_account(recipe, "github-actions.md")
    role = f"arn:aws:iam::{recipe.account}:role/gha-push"
    endpoint = TokenEndpoint(issuer, "repo:org/app:ref:refs/heads/main", "runtime-token")
    try:
        sha = uuid.uuid4().hex[:12]
        recipe.images.append(f"{recipe.server.hostport}/app:{sha}")
        env = dict(ACTIONS_ID_TOKEN_REQUEST_URL=endpoint.url, ACTIONS_ID_TOKEN_REQUEST_TOKEN="runtime-token",
                   GITHUB_RUN_ID="4242", GITHUB_SHA=sha, ROLE_ARN=role)
        r = recipe.steps("github-actions.md", **env)
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
        assert "assumed-role/gha-push/gha-4242" in r.stdout
        assert sha in pushed_tags(recipe)
        # A workflow on another branch is refused at the first AWS call.
        endpoint.sub = "repo:org/app:ref:refs/heads/feature"
        r = recipe.steps("github-actions.md", **{**env, "GITHUB_SHA": "feature"})
        assert r.returncode != 0
        assert "AccessDenied" in r.stderr and "Not authorized to perform sts:AssumeRoleWithWebIdentity" in r.stderr
        assert "feature" not in pushed_tags(recipe)
    finally:
        endpoint.close()


def test_gitlab_recipe(recipe, issuer):
    setup_as_account(recipe, "gitlab-ci.md")
    role = f"arn:aws:iam::{recipe.account}:role/gitlab-push"
    sub = "project_path:group/app:ref_type:branch:ref:main"
    token = issuer.token(iss=GITLAB, aud="berth", sub=sub)
    recipe.images.append(f"{recipe.server.hostport}/app:abc1234")
    r = recipe.steps("gitlab-ci.md", BERTH_ID_TOKEN=token, CI_JOB_ID="77", CI_COMMIT_SHORT_SHA="abc1234", ROLE_ARN=role)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "abc1234" in pushed_tags(recipe)
    # A token for another audience is not accepted.
    bad = issuer.token(iss=GITLAB, aud="another", sub=sub)
    r = recipe.steps("gitlab-ci.md", BERTH_ID_TOKEN=bad, CI_JOB_ID="78", CI_COMMIT_SHORT_SHA="bad", ROLE_ARN=role)
    assert r.returncode != 0 and "InvalidIdentityToken" in r.stderr


def test_jenkins_recipe_with_the_credential_helper(recipe, issuer):
    setup_as_account(recipe, "jenkins.md")
    token_file = recipe.dir / "id-token"
    token_file.write_text(issuer.token(iss=JENKINS, aud="berth", sub="https://jenkins.example.com/job/app/"))
    recipe.images.append(f"{recipe.server.hostport}/app:31")
    r = recipe.steps(
        "jenkins.md",
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ROLE_ARN=f"arn:aws:iam::{recipe.account}:role/jenkins-push",
        BUILD_NUMBER="31",
        XDG_CACHE_HOME=str(recipe.dir / "cache"),
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "31" in pushed_tags(recipe)
    # No docker login happened: the only credentials docker had came from the helper.
    assert "auths" not in json.loads((recipe.docker_config / "config.json").read_text())


def test_codebuild_recipe(recipe):
    setup_as_account(recipe, "codebuild.md")
    key = json.loads((recipe.dir / "runner-key.json").read_text())["AccessKey"]
    recipe.images.append(f"{recipe.server.hostport}/app:build-9")
    runner = dict(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    r = recipe.steps("codebuild.md", BUILD_ROLE_ARN=f"arn:aws:iam::{recipe.account}:role/codebuild-push",
                     CODEBUILD_BUILD_NUMBER="9", **runner)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "build-9" in pushed_tags(recipe)
    # The runner's own key can do nothing but assume the role.
    import boto3

    ecr = boto3.client("ecr", endpoint_url=recipe.server.url, region_name=REGION,
                       aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    with pytest.raises(Exception) as e:
        ecr.get_authorization_token()
    assert "AccessDenied" in str(e.value)
