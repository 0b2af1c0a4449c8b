"""Access control through the real server and real clients: IAM users and policies (boto3 `iam`),
registry tokens from GetAuthorizationToken signed as each principal, and the data plane driven
with skopeo and raw HTTP (exact statuses and OCI error bodies).

One berth for the whole module, with a registry domain so that another account's registry can
be addressed on the data plane (`<acct>.dkr.ecr.<region>.<domain>`); requests to 127.0.0.1 (the
plain address) address the registry of the caller's own account, and the default account
111111111111 (A) for anonymous callers. Account B is 222222222222: it reaches A's registry through
A's host.

Expected texts: /work/shared/reference/ECR-BEHAVIOUR.md (DENIED / AccessDeniedException wording,
401 Basic challenge), the awscli examples of set/get/delete-repository-policy (ECR returns the
policy re-serialized by Jackson's pretty printer), and public ECR errors for invalid policies.
"""

import base64
import json
import time
import os
import tempfile
import uuid
from pathlib import Path

import pytest
import requests

from ecrlib import (
    ACCOUNT_ID,
    REGION,
    aws_cli,
    check_error,
    cli_error_line,
    cli_json,
    client_error,
    create_iam_user,
    deny_message,
    make_client,
    make_iam,
    root_token,
    start_berth,
    stop_berth,
)
from imagelib import (
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    DOCKER_LIST,
    need,
    oci_image,
    run,
    sha256,
    skopeo_env,
    umoci_layout,
)

A = ACCOUNT_ID
B = "222222222222"
DOMAIN = "registry.test"
MANAGED = "arn:aws:iam::aws:policy/"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
PUSH_PULL = [
    "ecr:BatchGetImage",
    "ecr:BatchCheckLayerAvailability",
    "ecr:CompleteLayerUpload",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]
LOGIN = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}


def arn(name, account=A):
    return f"arn:aws:ecr:{REGION}:{account}:repository/{name}"


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def seeds_policy(repo="app"):
    """The seeds' push & pull policy, plus the login statement."""
    return doc({"Effect": "Allow", "Action": PUSH_PULL, "Resource": arn(repo)}, LOGIN)


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------------------------
# The data plane, raw


class DP:
    """Raw /v2/ requests against one berth, optionally addressing another registry host."""

    def __init__(self, srv, host=None):
        self.srv, self.host = srv, host

    def req(self, method, path, token=None, headers=None, **kw):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Basic " + token
        if self.host:
            h["Host"] = self.host
        url = path if path.startswith("http") else f"{self.srv.url}{path}"
        return requests.request(method, url, headers=h, timeout=60, allow_redirects=False, **kw)

    def get_manifest(self, repo, ref, token=None):
        return self.req("GET", f"/v2/{repo}/manifests/{ref}", token, {"Accept": ACCEPT})

    def put_manifest(self, repo, ref, built, token=None):
        return self.req("PUT", f"/v2/{repo}/manifests/{ref}", token, {"Content-Type": built.media_type},
                        data=built.manifest.encode())

    def upload(self, repo, data, token=None):
        """POST + PUT session upload; the first response that is not the expected one, else the PUT."""
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/", token)
        if r.status_code != 202:
            return r
        loc = r.headers["Location"]
        loc = self.srv.url + loc if loc.startswith("/") else loc
        sep = "&" if "?" in loc else "?"
        return self.req("PUT", f"{loc}{sep}digest={sha256(data)}", token,
                        {"Content-Type": "application/octet-stream"}, data=data)

    def push(self, repo, built, ref, token):
        for b in built.blobs:
            r = self.upload(repo, b, token)
            assert r.status_code == 201, (r.status_code, r.text)
        r = self.put_manifest(repo, ref, built, token)
        assert r.status_code == 201, (r.status_code, r.text)
        return r


def oci_error(r):
    try:
        (e,) = r.json()["errors"]
        return e["code"], e["message"]
    except (ValueError, KeyError, TypeError):
        return None, None


def check_denied(r, message):
    assert r.status_code == 403, (r.status_code, r.headers, r.text)
    assert oci_error(r) == ("DENIED", message), r.text


def check_401(r, srv):
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers.get("WWW-Authenticate") == (
        f'Basic realm="http://{srv.hostport}/",service="ecr.amazonaws.com"'
    ), r.headers


def with_index(built, note):
    """`built` with an annotation: same blobs, different manifest digest."""
    m = json.loads(built.manifest)
    m["annotations"] = {"org.example.note": note}
    return type(built)(json.dumps(m), built.media_type, built.config, built.layers, built.config_media_type)


# --------------------------------------------------------------------------------------------
# The world: one berth, repositories app / other / public in A, users, account B


class World:
    pass


@pytest.fixture(scope="module")
def w():
    srv = start_berth({"BERTH_REGISTRY_DOMAIN": DOMAIN})
    try:
        x = World()
        x.srv = srv
        x.dp = DP(srv)
        x.port = srv.hostport.rsplit(":", 1)[1]
        x.host_a = f"{A}.dkr.ecr.{REGION}.{DOMAIN}:{x.port}"
        x.dp_a = DP(srv, host=x.host_a)
        x.ecr = make_client(srv)
        x.iam = make_iam(srv)
        x.root = root_token(srv)
        for name in ("app", "other", "public"):
            x.ecr.create_repository(repositoryName=name)
        x.public_policy = {
            "Version": "2012-10-17",
            "Statement": [{"Sid": "public pull", "Effect": "Allow", "Principal": "*", "Action": PULL}],
        }
        x.ecr.set_repository_policy(repositoryName="public", policyText=json.dumps(x.public_policy))
        x.base = oci_image(n_layers=1, seed="access-base")
        for name in ("app", "other", "public"):
            x.dp.push(name, x.base, "v1", x.root)
        x.seeds = create_iam_user(srv, "seeds", inline={"push-pull": seeds_policy()})
        x.readonly = create_iam_user(srv, "reader", managed=[MANAGED + "AmazonEC2ContainerRegistryReadOnly"])
        # A user with no policy at all: it logs in while a login policy is attached, which is then
        # deleted (the token stays valid: it is bound to the key, not to the policy).
        x.nopolicy = create_iam_user(srv, "nobody", inline={"login": doc(LOGIN)})
        x.tokens = {"seeds": x.seeds.token(), "readonly": x.readonly.token(), "nopolicy": x.nopolicy.token()}
        x.iam.delete_user_policy(UserName="nobody", PolicyName="login")
        bcreds = srv.account(B)
        x.b_creds = bcreds
        x.tokens["root"] = x.root
        x.tokens["other-account-root"] = root_token(srv, *bcreds)
        x.tokens["anonymous"] = None
        yield x
    finally:
        stop_berth(srv)


# --------------------------------------------------------------------------------------------
# 1. The seeds' push & pull policy, with real clients


def skopeo_copy(src, dst, *flags, env, check=True):
    return run("skopeo", "copy", "--quiet", "--retry-times", "0", *flags, src, dst, env=env, check=check)


def test_seeds_policy_push_and_pull_app_with_skopeo(w):
    need("umoci", "skopeo")
    creds = f"AWS:{w.seeds.password()}"
    host = w.srv.hostport
    with tempfile.TemporaryDirectory(prefix="berth-access-") as tmp:
        env = skopeo_env(tmp)
        layout, digest, mbytes = umoci_layout(tmp, "v1", {"hello.txt": os.urandom(32).hex().encode()})
        skopeo_copy(f"oci:{layout}:v1", f"docker://{host}/app:seeds", "--dest-tls-verify=false",
                    "--dest-creds", creds, env=env)
        out = Path(tmp) / "pulled"
        skopeo_copy(f"docker://{host}/app:seeds", f"dir:{out}", "--src-tls-verify=false", "--src-creds", creds,
                    env=env)
        assert (out / "manifest.json").read_bytes() == mbytes
        got = w.ecr.batch_get_image(repositoryName="app", imageIds=[{"imageTag": "seeds"}])["images"]
        assert [i["imageId"]["imageDigest"] for i in got] == [digest]

        # other: neither push nor pull
        res = skopeo_copy(f"oci:{layout}:v1", f"docker://{host}/other:seeds", "--dest-tls-verify=false",
                          "--dest-creds", creds, env=env, check=False)
        # skopeo first HEADs each blob (BatchCheckLayerAvailability): a 403 without a body, as ECR's
        assert res.returncode != 0
        assert "403 (Forbidden)" in res.stderr, res.stderr
        res = skopeo_copy(f"docker://{host}/other:v1", f"dir:{Path(tmp) / 'o'}", "--src-tls-verify=false",
                          "--src-creds", creds, env=env, check=False)
        assert res.returncode != 0
        assert deny_message(w.seeds.arn, "ecr:BatchGetImage", arn("other"), "identity") in res.stderr, res.stderr
    assert w.ecr.list_images(repositoryName="other")["imageIds"] == [{"imageDigest": w.base.digest,
                                                                      "imageTag": "v1"}]


def test_seeds_policy_denials_raw(w):
    t = w.tokens["seeds"]
    r = w.dp.req("POST", "/v2/other/blobs/uploads/", t)
    check_denied(r, deny_message(w.seeds.arn, "ecr:InitiateLayerUpload", arn("other"), "identity"))
    r = w.dp.get_manifest("other", "v1", t)
    check_denied(r, deny_message(w.seeds.arn, "ecr:BatchGetImage", arn("other"), "identity"))
    # no deletes in app, on the data plane...
    r = w.dp.req("DELETE", f"/v2/app/manifests/{w.base.digest}", t)
    check_denied(r, deny_message(w.seeds.arn, "ecr:BatchDeleteImage", arn("app"), "identity"))
    # ... nor through the API
    res = aws_cli(w.srv, "batch-delete-image", "--repository-name", "app", "--image-ids", "imageTag=v1",
                  akid=w.seeds.akid, secret=w.seeds.secret)
    assert res.returncode != 0, res
    msg = deny_message(w.seeds.arn, "ecr:BatchDeleteImage", arn("app"), "identity")
    assert res.stderr.strip() == cli_error_line("AccessDeniedException", "BatchDeleteImage", msg), res.stderr
    assert w.dp.get_manifest("app", "v1", w.root).status_code == 200


def test_seeds_policy_catalog_and_describe(w):
    # The catalog lists the repositories the caller may describe (ecr:DescribeRepositories):
    # none for the seeds' policy, which has no DescribeRepositories.
    r = w.dp.req("GET", "/v2/_catalog", w.tokens["seeds"])
    assert r.status_code == 200 and r.json() == {"repositories": []}, r.text
    c = w.seeds.ecr()
    # Listing is one request on repository/*, as in ECR: refused, not filtered.
    err = client_error(c.describe_repositories)
    check_error(err, "AccessDeniedException",
                deny_message(w.seeds.arn, "ecr:DescribeRepositories",
                             f"arn:aws:ecr:us-east-1:{A}:repository/*", "identity"))
    err = client_error(c.describe_repositories, repositoryNames=["app"])
    check_error(err, "AccessDeniedException",
                deny_message(w.seeds.arn, "ecr:DescribeRepositories", arn("app"), "identity"))
    # With DescribeRepositories on app as well, the catalog shows exactly app.
    u = create_iam_user(w.srv, uid("seeds-desc"), inline={"p": doc(
        {"Effect": "Allow", "Action": PUSH_PULL + ["ecr:DescribeRepositories"], "Resource": arn("app")}, LOGIN)})
    r = w.dp.req("GET", "/v2/_catalog", u.token())
    assert r.status_code == 200 and r.json() == {"repositories": ["app"]}, r.text
    assert [x["repositoryName"] for x in u.ecr().describe_repositories(repositoryNames=["app"])["repositories"]] \
        == ["app"]
    # the readonly user (DescribeRepositories on *) sees everything; root too
    everything = {"repositories": ["app", "other", "public"]}
    assert w.dp.req("GET", "/v2/_catalog", w.tokens["readonly"]).json() == everything
    got = w.dp.req("GET", "/v2/_catalog", w.root).json()["repositories"]
    assert set(everything["repositories"]) <= set(got)
    # another account's root sees none of A's (no repository policy allows it to describe)
    assert w.dp_a.req("GET", "/v2/_catalog", w.tokens["other-account-root"]).json() == {"repositories": []}


def test_user_without_policy_cannot_log_in(w):
    err = client_error(w.nopolicy.ecr().get_authorization_token)
    check_error(err, "AccessDeniedException",
                deny_message(w.nopolicy.arn, "ecr:GetAuthorizationToken", "*", "identity"))


# --------------------------------------------------------------------------------------------
# 2. The matrix

ACTIONS = ["pull manifest", "HEAD blob", "GET blob", "push blob", "put manifest", "delete manifest", "list tags"]
OK = {"pull manifest": 200, "HEAD blob": 200, "GET blob": 200, "push blob": 201, "put manifest": 201,
      "delete manifest": 202, "list tags": 200}


# principal × repository → the outcome of each action: ok (200/201/202), 403 DENIED, 401 challenge.
# public's repository policy allows BatchGetImage, GetDownloadUrlForLayer and
# BatchCheckLayerAvailability to Principal "*"; nopolicy's token was minted before its only (login)
# policy was deleted; the other account's root addresses A's registry (the default host).
TABLE = """
principal            repo    pull  HEAD  GET   push  put   delete tags
root                 app     ok    ok    ok    ok    ok    ok     ok
root                 other   ok    ok    ok    ok    ok    ok     ok
root                 public  ok    ok    ok    ok    ok    ok     ok
seeds                app     ok    ok    ok    ok    ok    403    403
seeds                other   403   403   403   403   403   403    403
seeds                public  ok    ok    ok    403   403   403    403
readonly             app     ok    ok    ok    403   403   403    ok
readonly             other   ok    ok    ok    403   403   403    ok
readonly             public  ok    ok    ok    403   403   403    ok
nopolicy             app     403   403   403   403   403   403    403
nopolicy             other   403   403   403   403   403   403    403
nopolicy             public  ok    ok    ok    403   403   403    403
other-account-root   app     403   403   403   403   403   403    403
other-account-root   other   403   403   403   403   403   403    403
other-account-root   public  ok    ok    ok    403   403   403    403
anonymous            app     401   401   401   401   401   401    401
anonymous            other   401   401   401   401   401   401    401
anonymous            public  ok    ok    ok    401   401   401    401
"""


def _parse_table(text):
    out = {}
    for line in text.strip().splitlines()[1:]:
        principal, repo, *cells = line.split()
        assert len(cells) == len(ACTIONS), line
        for action, cell in zip(ACTIONS, cells):
            out.setdefault(principal, {})[(action, repo)] = cell if cell == "ok" else int(cell)
    return out


MATRIX = _parse_table(TABLE)
PRINCIPALS = list(MATRIX)


# What the denial names for each action (the ECR action the request performs).
ECR_ACTION = {"pull manifest": "ecr:BatchGetImage", "HEAD blob": "ecr:BatchCheckLayerAvailability",
              "GET blob": "ecr:GetDownloadUrlForLayer", "push blob": "ecr:InitiateLayerUpload",
              "put manifest": "ecr:PutImage", "delete manifest": "ecr:BatchDeleteImage",
              "list tags": "ecr:ListImages"}


def _cell(w, token, action, repo):
    # Another account's caller reaches A's registry through A's host.
    dp = w.dp_a if token == w.tokens["other-account-root"] else w.dp
    cfg = w.base.config
    if action == "pull manifest":
        return dp.get_manifest(repo, "v1", token)
    if action == "HEAD blob":
        return dp.req("HEAD", f"/v2/{repo}/blobs/{sha256(cfg)}", token)
    if action == "GET blob":
        return dp.req("GET", f"/v2/{repo}/blobs/{sha256(cfg)}", token)
    if action == "push blob":
        return dp.upload(repo, os.urandom(64), token)
    if action == "put manifest":
        return dp.put_manifest(repo, uid("m"), w.base, token)
    if action == "delete manifest":
        victim = with_index(w.base, uuid.uuid4().hex)
        r = dp.put_manifest(repo, victim.digest, victim, w.root)
        assert r.status_code == 201, r.text
        return dp.req("DELETE", f"/v2/{repo}/manifests/{victim.digest}", token)
    if action == "list tags":
        return dp.req("GET", f"/v2/{repo}/tags/list", token)
    raise AssertionError(action)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_matrix(w, principal):
    token = w.tokens[principal]
    arns = {"seeds": w.seeds.arn, "readonly": w.readonly.arn, "nopolicy": w.nopolicy.arn,
            "other-account-root": f"arn:aws:iam::{B}:root"}
    deviations = []
    for (action, repo), want in MATRIX[principal].items():
        r = _cell(w, token, action, repo)
        expected_status = OK[action] if want == "ok" else want
        what = f"{principal:>18} | {action:<15} | {repo:<6}"
        if r.status_code != expected_status:
            deviations.append(f"{what}: want {expected_status}, got {r.status_code} {r.text[:300]!r}")
            continue
        if want == 401:
            body = (r.headers.get("WWW-Authenticate"), r.text)
            if not (body[0] or "").startswith("Basic realm="):
                deviations.append(f"{what}: 401 without a Basic challenge: {body!r}")
        elif want == 403 and action != "HEAD blob":
            reason = "resource" if principal == "other-account-root" else "identity"
            msg = deny_message(arns[principal], ECR_ACTION[action], arn(repo), reason)
            if oci_error(r) != ("DENIED", msg):
                deviations.append(f"{what}: want DENIED {msg!r}, got {r.text[:400]!r}")
        elif want == 403 and r.content:
            deviations.append(f"{what}: HEAD 403 with a body {r.content[:100]!r}")
    assert not deviations, f"{principal}: {len(deviations)} deviation(s) from TABLE:\n" + "\n".join(deviations)


# --------------------------------------------------------------------------------------------
# 3. Deny over allow


def test_identity_deny_beats_managed_allow(w):
    u = create_iam_user(w.srv, uid("power"), managed=[MANAGED + "AmazonEC2ContainerRegistryPowerUser"],
                        inline={"no-put": doc({"Effect": "Deny", "Action": "ecr:PutImage", "Resource": arn("app")})})
    t = u.token()
    img = oci_image(n_layers=1)
    for b in img.blobs:  # layers still go in: only PutImage is denied
        assert w.dp.upload("app", b, t).status_code == 201
    r = w.dp.put_manifest("app", "power", img, t)
    check_denied(r, deny_message(u.arn, "ecr:PutImage", arn("app"), "identity-deny"))
    err = client_error(u.ecr().put_image, repositoryName="app", imageManifest=img.manifest, imageTag="power")
    check_error(err, "AccessDeniedException", deny_message(u.arn, "ecr:PutImage", arn("app"), "identity-deny"))
    # elsewhere the power user pushes
    assert w.dp.put_manifest("other", uid("power"), w.base, t).status_code == 201


def test_resource_policy_deny_beats_identity_allow(w):
    repo = uid("guarded")
    w.ecr.create_repository(repositoryName=repo)
    w.dp.push(repo, w.base, "v1", w.root)
    blocked = create_iam_user(w.srv, uid("blocked"), managed=[MANAGED + "AmazonEC2ContainerRegistryReadOnly"])
    policy = doc({"Sid": "block", "Effect": "Deny", "Principal": {"AWS": blocked.arn}, "Action": "ecr:BatchGetImage"})
    w.ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps(policy))
    r = w.dp.get_manifest(repo, "v1", blocked.token())
    check_denied(r, deny_message(blocked.arn, "ecr:BatchGetImage", arn(repo), "resource-deny"))
    # layers are not covered by the Deny; other readers are unaffected
    assert w.dp.req("GET", f"/v2/{repo}/blobs/{sha256(w.base.config)}", blocked.token()).status_code == 200
    assert w.dp.get_manifest(repo, "v1", w.tokens["readonly"]).status_code == 200
    # the Deny applies to the root of the account too when it names it
    w.ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps(
        doc({"Effect": "Deny", "Principal": "*", "Action": "ecr:BatchDeleteImage"})))
    r = w.dp.req("DELETE", f"/v2/{repo}/manifests/{w.base.digest}", w.root)
    check_denied(r, deny_message(f"arn:aws:iam::{A}:root", "ecr:BatchDeleteImage", arn(repo), "resource-deny"))
    w.ecr.delete_repository_policy(repositoryName=repo)
    assert w.dp.req("DELETE", f"/v2/{repo}/manifests/{w.base.digest}", w.root).status_code == 202


# --------------------------------------------------------------------------------------------
# 4. Cross-account


def test_cross_account_pull(w):
    repo = uid("shared")
    w.ecr.create_repository(repositoryName=repo)
    w.dp.push(repo, w.base, "v1", w.root)
    b_root = w.tokens["other-account-root"]
    b_root_arn = f"arn:aws:iam::{B}:root"
    b_user = create_iam_user(w.srv, "puller", inline={"login": doc(LOGIN)}, root=w.b_creds)
    assert b_user.account == B
    bu = b_user.token()

    # no repository policy: B is refused, by its root and by its user
    check_denied(w.dp_a.get_manifest(repo, "v1", b_root),
                 deny_message(b_root_arn, "ecr:BatchGetImage", arn(repo), "resource"))
    check_denied(w.dp_a.get_manifest(repo, "v1", bu),
                 deny_message(b_user.arn, "ecr:BatchGetImage", arn(repo), "resource"))
    b_cli = {"akid": w.b_creds[0], "secret": w.b_creds[1]}
    res = aws_cli(w.srv, "batch-get-image", "--registry-id", A, "--repository-name", repo,
                  "--image-ids", "imageTag=v1", **b_cli)
    msg = deny_message(b_root_arn, "ecr:BatchGetImage", arn(repo), "resource")
    assert res.stderr.strip() == cli_error_line("AccessDeniedException", "BatchGetImage", msg), res

    policy = doc({"Sid": "b pulls", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
                  "Action": PULL})
    w.ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps(policy))

    # B's root pulls, with skopeo, from A's registry, addressed by A's host (the name resolves
    # nowhere, so skopeo reaches berth as its HTTP proxy; berth serves absolute-form requests by
    # their Host). On the plain address B's token addresses B's own registry.
    need("skopeo")
    with tempfile.TemporaryDirectory(prefix="berth-access-") as tmp:
        creds = "AWS:" + base64.b64decode(b_root).decode().split(":", 1)[1]
        env = {k: v for k, v in skopeo_env(tmp).items() if k.lower() not in ("no_proxy", "https_proxy")}
        env["HTTP_PROXY"] = w.srv.url
        skopeo_copy(f"docker://{w.host_a}/{repo}:v1", f"dir:{Path(tmp) / 'x'}", "--src-tls-verify=false",
                    "--src-creds", creds, env=env)
        assert (Path(tmp) / "x" / "manifest.json").read_text() == w.base.manifest
    # ... but not push (not in the policy)
    check_denied(w.dp_a.req("POST", f"/v2/{repo}/blobs/uploads/", b_root),
                 deny_message(b_root_arn, "ecr:InitiateLayerUpload", arn(repo), "resource"))
    # B's user: the repository policy allows its account, its own identity policy does not
    check_denied(w.dp_a.get_manifest(repo, "v1", bu),
                 deny_message(b_user.arn, "ecr:BatchGetImage", arn(repo), "identity"))
    make_iam(w.srv, *w.b_creds).put_user_policy(
        UserName="puller", PolicyName="pull-a",
        PolicyDocument=json.dumps(doc({"Effect": "Allow", "Action": PULL, "Resource": arn(repo)})))
    r = w.dp_a.get_manifest(repo, "v1", bu)
    assert r.status_code == 200 and r.text == w.base.manifest, r.text
    # control plane: batch-get-image --registry-id A as B now works
    res = aws_cli(w.srv, "batch-get-image", "--registry-id", A, "--repository-name", repo,
                  "--image-ids", "imageTag=v1", **b_cli)
    out = cli_json(res)
    assert [(i["registryId"], i["repositoryName"], i["imageId"]["imageDigest"]) for i in out["images"]] == [
        (A, repo, w.base.digest)]
    # a user of A without permissions gains nothing from B's grant
    check_denied(w.dp.get_manifest(repo, "v1", w.tokens["nopolicy"]),
                 deny_message(w.nopolicy.arn, "ecr:BatchGetImage", arn(repo), "identity"))
    # revoking the repository policy revokes B at once
    w.ecr.delete_repository_policy(repositoryName=repo)
    check_denied(w.dp_a.get_manifest(repo, "v1", b_root),
                 deny_message(b_root_arn, "ecr:BatchGetImage", arn(repo), "resource"))


def test_cross_account_data_plane_host(w):
    """`<B>.dkr.ecr.<region>.<domain>` addresses B's registry on the data plane."""
    host_b = f"{B}.dkr.ecr.{REGION}.{DOMAIN}:{w.port}"
    dpb = DP(w.srv, host=host_b)
    ecr_b = make_client(w.srv, akid=w.b_creds[0], secret=w.b_creds[1])
    repo = uid("b-own")
    ecr_b.create_repository(repositoryName=repo)
    b_root = w.tokens["other-account-root"]
    dpb.push(repo, w.base, "v1", b_root)
    assert [i["imageTag"] for i in ecr_b.list_images(repositoryName=repo)["imageIds"]] == ["v1"]
    # A's root is another account there; A's host has no such repository
    check_denied(dpb.get_manifest(repo, "v1", w.root),
                 deny_message(f"arn:aws:iam::{A}:root", "ecr:BatchGetImage", arn(repo, B), "resource"))
    r = w.dp.get_manifest(repo, "v1", w.root)
    assert r.status_code == 404 and oci_error(r)[0] == "NAME_UNKNOWN", r.text
    # skopeo, addressing B's registry by name: the name resolves nowhere, so skopeo reaches berth
    # as its HTTP proxy (berth serves absolute-form requests by their Host)
    need("skopeo")
    with tempfile.TemporaryDirectory(prefix="berth-access-") as tmp:
        env = {k: v for k, v in skopeo_env(tmp).items() if k.lower() not in ("no_proxy", "https_proxy")}
        env["HTTP_PROXY"] = w.srv.url
        pw = base64.b64decode(b_root).decode().split(":", 1)[1]
        skopeo_copy(f"docker://{host_b}/{repo}:v1", f"dir:{Path(tmp) / 'b'}", "--src-tls-verify=false",
                    "--src-creds", f"AWS:{pw}", env=env)
        assert (Path(tmp) / "b" / "manifest.json").read_text() == w.base.manifest
        res = skopeo_copy(f"docker://{host_b}/{repo}:v1", f"dir:{Path(tmp) / 'a'}", "--src-tls-verify=false",
                          "--src-creds", "AWS:" + base64.b64decode(w.root).decode().split(":", 1)[1], env=env,
                          check=False)
        assert res.returncode != 0
        assert deny_message(f"arn:aws:iam::{A}:root", "ecr:BatchGetImage", arn(repo, B), "resource") in res.stderr
    # anonymous on B's host: 401 with B's realm
    r = dpb.get_manifest(repo, "v1")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == f'Basic realm="http://{host_b}/",service="ecr.amazonaws.com"'


# --------------------------------------------------------------------------------------------
# 5. Conditions


def test_condition_source_ip(w):
    def policy(cidr):
        return json.dumps(doc(LOGIN, {"Effect": "Allow", "Action": PULL, "Resource": arn("app"),
                                      "Condition": {"IpAddress": {"aws:SourceIp": cidr}}}))

    name = uid("ip")
    u = create_iam_user(w.srv, name, inline={"login": doc(LOGIN)})
    t = u.token()
    w.iam.put_user_policy(UserName=name, PolicyName="ip", PolicyDocument=policy("10.0.0.0/8"))
    check_denied(w.dp.get_manifest("app", "v1", t), deny_message(u.arn, "ecr:BatchGetImage", arn("app"), "identity"))
    w.iam.put_user_policy(UserName=name, PolicyName="ip", PolicyDocument=policy("127.0.0.0/8"))
    assert w.dp.get_manifest("app", "v1", t).status_code == 200
    # NotIpAddress in a Deny
    w.iam.put_user_policy(UserName=name, PolicyName="fence", PolicyDocument=json.dumps(doc(
        {"Effect": "Deny", "Action": "ecr:*", "Resource": "*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}})))
    check_denied(w.dp.get_manifest("app", "v1", t),
                 deny_message(u.arn, "ecr:BatchGetImage", arn("app"), "identity-deny"))


def test_condition_secure_transport(w):
    name = uid("tls")
    u = create_iam_user(w.srv, name, managed=[MANAGED + "AmazonEC2ContainerRegistryReadOnly"])
    t = u.token()
    assert w.dp.get_manifest("app", "v1", t).status_code == 200
    w.iam.put_user_policy(UserName=name, PolicyName="tls-only", PolicyDocument=json.dumps(doc(
        {"Effect": "Deny", "Action": "ecr:*", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}})))
    # this berth listens on plain http
    check_denied(w.dp.get_manifest("app", "v1", t),
                 deny_message(u.arn, "ecr:BatchGetImage", arn("app"), "identity-deny"))
    err = client_error(u.ecr().describe_images, repositoryName="app")
    check_error(err, "AccessDeniedException",
                deny_message(u.arn, "ecr:DescribeImages", arn("app"), "identity-deny"))


def test_condition_resource_tag(w):
    repo = uid("tagged")
    info = w.ecr.create_repository(repositoryName=repo)["repository"]
    w.dp.push(repo, w.base, "v1", w.root)
    u = create_iam_user(w.srv, uid("blue"), inline={"blue": doc(LOGIN, {
        "Effect": "Allow", "Action": PULL, "Resource": "*",
        "Condition": {"StringEquals": {"aws:ResourceTag/team": "blue"}}})})
    t = u.token()
    denied = deny_message(u.arn, "ecr:BatchGetImage", arn(repo), "identity")
    check_denied(w.dp.get_manifest(repo, "v1", t), denied)
    w.ecr.tag_resource(resourceArn=info["repositoryArn"], tags=[{"Key": "team", "Value": "blue"}])
    assert w.dp.get_manifest(repo, "v1", t).status_code == 200
    w.ecr.untag_resource(resourceArn=info["repositoryArn"], tagKeys=["team"])
    check_denied(w.dp.get_manifest(repo, "v1", t), denied)  # immediately
    w.ecr.tag_resource(resourceArn=info["repositoryArn"], tags=[{"Key": "team", "Value": "red"}])
    check_denied(w.dp.get_manifest(repo, "v1", t), denied)


def test_condition_current_time_is_not_cached(w):
    # Decisions are cached per caller and repository, except when a policy reads the clock: a
    # grant that ends in a few seconds must end then, however often it was used before.
    repo = uid("clock")
    w.ecr.create_repository(repositoryName=repo)
    w.dp.push(repo, w.base, "v1", w.root)
    until = time.time() + 4
    until_s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
    u = create_iam_user(w.srv, uid("brief"), inline={"brief": doc(LOGIN, {
        "Effect": "Allow", "Action": PULL, "Resource": arn(repo),
        "Condition": {"DateLessThan": {"aws:CurrentTime": until_s}}})})
    t = u.token()
    for _ in range(3):
        assert w.dp.get_manifest(repo, "v1", t).status_code == 200
    time.sleep(max(0.0, until + 1.2 - time.time()))
    check_denied(w.dp.get_manifest(repo, "v1", t), deny_message(u.arn, "ecr:BatchGetImage", arn(repo), "identity"))


def test_policy_variable_username(w):
    name = uid("alice")
    other_name = uid("bob")
    mine, theirs = f"{name}/app", f"{other_name}/app"
    for r in (mine, theirs):
        w.ecr.create_repository(repositoryName=r)
    u = create_iam_user(w.srv, name, inline={"home": doc(LOGIN, {
        "Effect": "Allow", "Action": PUSH_PULL,
        "Resource": f"arn:aws:ecr:{REGION}:{A}:repository/${{aws:username}}/*"})})
    t = u.token()
    img = oci_image(n_layers=1)
    w.dp.push(mine, img, "v1", t)
    r = w.dp.get_manifest(mine, "v1", t)
    assert r.status_code == 200 and r.text == img.manifest
    check_denied(w.dp.req("POST", f"/v2/{theirs}/blobs/uploads/", t),
                 deny_message(u.arn, "ecr:InitiateLayerUpload", arn(theirs), "identity"))
    # the variable matches below the user's prefix only, not the prefix itself
    check_denied(w.dp.get_manifest(name, "v1", t), deny_message(u.arn, "ecr:BatchGetImage", arn(name), "identity"))


# --------------------------------------------------------------------------------------------
# 6. Anonymous


def test_anonymous_pulls_public(w):
    r = w.dp.get_manifest("public", "v1")
    assert r.status_code == 200 and r.text == w.base.manifest
    for b in w.base.blobs:
        r = w.dp.req("GET", f"/v2/public/blobs/{sha256(b)}")
        assert r.status_code == 200 and r.content == b
    need("skopeo")
    with tempfile.TemporaryDirectory(prefix="berth-access-") as tmp:
        skopeo_copy(f"docker://{w.srv.hostport}/public:v1", f"dir:{Path(tmp) / 'p'}", "--src-tls-verify=false",
                    "--src-no-creds", env=skopeo_env(tmp))
        assert (Path(tmp) / "p" / "manifest.json").read_text() == w.base.manifest
        # but not a private one
        res = skopeo_copy(f"docker://{w.srv.hostport}/app:v1", f"dir:{Path(tmp) / 'a'}",
                          "--src-tls-verify=false", "--src-no-creds", env=skopeo_env(tmp), check=False)
        assert res.returncode != 0 and ("401" in res.stderr or "unauthorized" in res.stderr.lower()), res.stderr


def test_anonymous_learns_nothing(w):
    """A private repository, a missing one, tag lists and the catalog all answer alike."""
    answers = {}
    for what, method, path in [
        ("private manifest", "GET", "/v2/app/manifests/v1"),
        ("private missing tag", "GET", "/v2/app/manifests/nope"),
        ("missing repository", "GET", "/v2/does-not-exist/manifests/v1"),
        ("private blob", "GET", f"/v2/app/blobs/{sha256(w.base.config)}"),
        ("private tags", "GET", "/v2/app/tags/list"),
        ("missing repository tags", "GET", "/v2/does-not-exist/tags/list"),
        ("public tags", "GET", "/v2/public/tags/list"),
        ("catalog", "GET", "/v2/_catalog"),
        ("base", "GET", "/v2/"),
    ]:
        r = w.dp.req(method, path)
        check_401(r, w.srv)
        # Every answer carries its own request id (header and detail.requestId); the rest must
        # be byte-for-byte alike.
        body = r.json()
        request_id = body["errors"][0]["detail"].pop("requestId")
        assert request_id == r.headers["x-amzn-RequestId"], body
        answers[what] = (r.status_code, r.headers.get("Content-Type"), json.dumps(body, sort_keys=True))
    assert len(set(answers.values())) == 1, answers


def test_anonymous_cannot_push_public(w):
    check_401(w.dp.req("POST", "/v2/public/blobs/uploads/"), w.srv)
    check_401(w.dp.put_manifest("public", "anon", w.base), w.srv)
    check_401(w.dp.req("DELETE", f"/v2/public/manifests/{w.base.digest}"), w.srv)
    check_401(w.dp.req("POST", f"/v2/public/blobs/uploads/?digest={sha256(b'x')}", data=b"x"), w.srv)
    assert w.dp.get_manifest("public", "v1").status_code == 200


# --------------------------------------------------------------------------------------------
# Cross-repository mounts and monolithic uploads need the matching permissions


def test_mount_needs_read_access_to_the_source(w):
    t = w.tokens["seeds"]  # push to app, nothing on other
    secret_layer = os.urandom(128)
    assert w.dp.upload("other", secret_layer, w.root).status_code == 201
    d = sha256(secret_layer)
    r = w.dp.req("POST", f"/v2/app/blobs/uploads/?mount={d}&from=other", t)
    # no read access to `other`: no mount, a plain upload session instead
    assert r.status_code == 202, (r.status_code, r.text)
    assert w.dp.req("HEAD", f"/v2/app/blobs/{d}", w.root).status_code == 404
    # the root may read `other`: the blob is mounted
    r = w.dp.req("POST", f"/v2/app/blobs/uploads/?mount={d}&from=other", w.root)
    assert r.status_code == 201, (r.status_code, r.text)


def test_monolithic_upload_needs_every_push_action(w):
    u = create_iam_user(w.srv, uid("init-only"), inline={"p": doc(LOGIN, {
        "Effect": "Allow", "Action": "ecr:InitiateLayerUpload", "Resource": arn("app")})})
    t = u.token()
    data = os.urandom(32)
    r = w.dp.req("POST", f"/v2/app/blobs/uploads/?digest={sha256(data)}", t, data=data)
    check_denied(r, deny_message(u.arn, "ecr:UploadLayerPart", arn("app"), "identity"))
    assert w.dp.req("POST", "/v2/app/blobs/uploads/", t).status_code == 202
    r = w.dp.req("POST", f"/v2/app/blobs/uploads/?digest={sha256(data)}", w.tokens["seeds"], data=data)
    assert r.status_code == 201, r.text


# --------------------------------------------------------------------------------------------
# 7. Tokens


def test_tampered_token_is_401(w):
    pw = w.seeds.password()
    i = len(pw) // 2
    bad = pw[:i] + ("A" if pw[i] != "A" else "B") + pw[i + 1:]
    tok = base64.b64encode(f"AWS:{bad}".encode()).decode()
    check_401(w.dp.get_manifest("app", "v1", tok), w.srv)
    check_401(w.dp.get_manifest("app", "v1", base64.b64encode(b"AWS:garbage").decode()), w.srv)
    check_401(w.dp.req("GET", "/v2/", base64.b64encode(f"AWS:{bad}".encode()).decode()), w.srv)


def test_token_of_deactivated_or_deleted_key(w):
    name = uid("rotating")
    u = create_iam_user(w.srv, name, managed=[MANAGED + "AmazonEC2ContainerRegistryReadOnly"])
    t = u.token()
    assert w.dp.get_manifest("app", "v1", t).status_code == 200
    w.iam.update_access_key(UserName=name, AccessKeyId=u.akid, Status="Inactive")
    check_401(w.dp.get_manifest("app", "v1", t), w.srv)
    check_401(w.dp.req("GET", "/v2/", t), w.srv)
    w.iam.update_access_key(UserName=name, AccessKeyId=u.akid, Status="Active")
    assert w.dp.get_manifest("app", "v1", t).status_code == 200
    w.iam.delete_access_key(UserName=name, AccessKeyId=u.akid)
    check_401(w.dp.get_manifest("app", "v1", t), w.srv)
    check_401(w.dp.req("GET", "/v2/_catalog", t), w.srv)


def test_token_of_deleted_user(w):
    name = uid("leaver")
    u = create_iam_user(w.srv, name, managed=[MANAGED + "AmazonEC2ContainerRegistryReadOnly"])
    t = u.token()
    assert w.dp.get_manifest("app", "v1", t).status_code == 200
    w.iam.detach_user_policy(UserName=name, PolicyArn=MANAGED + "AmazonEC2ContainerRegistryReadOnly")
    check_denied(w.dp.get_manifest("app", "v1", t), deny_message(u.arn, "ecr:BatchGetImage", arn("app"), "identity"))
    w.iam.delete_access_key(UserName=name, AccessKeyId=u.akid)
    w.iam.delete_user(UserName=name)
    check_401(w.dp.get_manifest("app", "v1", t), w.srv)


def _mint_password(server_key, claims):
    """A registry password for `claims`, made the way berth makes them (see
    crates/berth/tests/auth.rs `mint_password`)."""
    import hashlib
    import hmac

    token_key = hmac.new(server_key, b"berth registry token key v1", hashlib.sha256).digest()
    key_id = "k1"
    payload = base64.b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode()
    expiration = claims["expires_at"]
    mac_input = b"berth-registry-token\0"
    for part in ["2", "DATA_KEY", key_id, payload]:
        mac_input += part.encode() + b"\0"
    mac_input += str(expiration).encode()
    tag = hmac.new(token_key, mac_input, hashlib.sha256).digest()
    datakey = bytes([1, len(key_id)]) + key_id.encode() + tag
    envelope = json.dumps({"payload": payload, "datakey": base64.b64encode(datakey).decode(), "version": "2",
                           "type": "DATA_KEY", "expiration": expiration}, separators=(",", ":"))
    return base64.b64encode(envelope.encode()).decode()


def test_expired_token_is_403_denied(w):
    import time

    server_key = bytes.fromhex((Path(w.srv.data_dir) / "server.key").read_text().strip())
    pw = w.seeds.password()
    envelope = json.loads(base64.b64decode(pw))
    claims = json.loads(base64.b64decode(envelope["payload"]))
    assert _mint_password(server_key, claims) == pw, "token minting no longer matches berth's"
    now = int(time.time())

    def token(issued, expires):
        c = dict(claims, issued_at=issued, expires_at=expires)
        return base64.b64encode(f"AWS:{_mint_password(server_key, c)}".encode()).decode()

    assert w.dp.get_manifest("app", "v1", token(now - 60, now + 3600)).status_code == 200
    expired = token(now - 13 * 3600, now - 3600)
    for r in [w.dp.get_manifest("app", "v1", expired), w.dp.req("POST", "/v2/app/blobs/uploads/", expired),
              w.dp.get_manifest("other", "v1", expired)]:
        check_denied(r, "Your authorization token has expired. Reauthenticate and try again.")


# --------------------------------------------------------------------------------------------
# 8. Repository and registry policy API (AWS CLI)

EXAMPLE_POLICY = {
    "Version": "2008-10-17",
    "Statement": [{
        "Sid": "allow public pull",
        "Effect": "Allow",
        "Principal": "*",
        "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
    }],
}
# What ECR stores and returns for it (awscli examples/ecr/set-repository-policy.rst).
EXAMPLE_POLICY_TEXT = (
    '{\n  "Version" : "2008-10-17",\n  "Statement" : [ {\n    "Sid" : "allow public pull",\n'
    '    "Effect" : "Allow",\n    "Principal" : "*",\n'
    '    "Action" : [ "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer" ]\n'
    '  } ]\n}'
)


def test_repository_policy_api(w):
    repo = uid("pol")
    w.ecr.create_repository(repositoryName=repo)
    want = {"registryId": A, "repositoryName": repo, "policyText": EXAMPLE_POLICY_TEXT}

    res = aws_cli(w.srv, "get-repository-policy", "--repository-name", repo)
    not_found = f"Repository policy does not exist for the repository with name '{repo}' in the registry with id '{A}'"
    assert res.returncode != 0
    assert res.stderr.strip() == cli_error_line("RepositoryPolicyNotFoundException", "GetRepositoryPolicy", not_found)

    res = aws_cli(w.srv, "set-repository-policy", "--repository-name", repo,
                  "--policy-text", json.dumps(EXAMPLE_POLICY, indent=4))
    assert cli_json(res) == want
    assert cli_json(aws_cli(w.srv, "get-repository-policy", "--repository-name", repo)) == want
    # setting the normalized text again is a no-op
    assert cli_json(aws_cli(w.srv, "set-repository-policy", "--repository-name", repo,
                            "--policy-text", EXAMPLE_POLICY_TEXT)) == want
    # the policy is in force: anonymous pulls
    w.dp.push(repo, w.base, "v1", w.root)
    assert w.dp.get_manifest(repo, "v1").status_code == 200
    assert cli_json(aws_cli(w.srv, "delete-repository-policy", "--repository-name", repo)) == want
    check_401(w.dp.get_manifest(repo, "v1"), w.srv)
    for op, cmd in [("GetRepositoryPolicy", "get-repository-policy"),
                    ("DeleteRepositoryPolicy", "delete-repository-policy")]:
        res = aws_cli(w.srv, cmd, "--repository-name", repo)
        assert res.stderr.strip() == cli_error_line("RepositoryPolicyNotFoundException", op, not_found), res

    # invalid documents
    invalid = "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'"
    for text in ["not json", json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Maybe", "Principal": "*", "Action": "ecr:BatchGetImage"}]}),
            json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*"}]})]:
        res = aws_cli(w.srv, "set-repository-policy", "--repository-name", repo, "--policy-text", text)
        assert res.stderr.strip() == cli_error_line("InvalidParameterException", "SetRepositoryPolicy", invalid), \
            (text, res.stderr)
    # unknown repository
    res = aws_cli(w.srv, "set-repository-policy", "--repository-name", "no-such-repo",
                  "--policy-text", json.dumps(EXAMPLE_POLICY))
    msg = f"The repository with name 'no-such-repo' does not exist in the registry with id '{A}'"
    assert res.stderr.strip() == cli_error_line("RepositoryNotFoundException", "SetRepositoryPolicy", msg)


def test_repository_policy_api_needs_permission(w):
    c = w.seeds.ecr()
    err = client_error(c.get_repository_policy, repositoryName="public")
    check_error(err, "AccessDeniedException",
                deny_message(w.seeds.arn, "ecr:GetRepositoryPolicy", arn("public"), "identity"))
    err = client_error(c.set_repository_policy, repositoryName="app", policyText=json.dumps(EXAMPLE_POLICY))
    check_error(err, "AccessDeniedException",
                deny_message(w.seeds.arn, "ecr:SetRepositoryPolicy", arn("app"), "identity"))
    # the readonly managed policy includes GetRepositoryPolicy
    got = w.readonly.ecr().get_repository_policy(repositoryName="public")
    assert json.loads(got["policyText"]) == w.public_policy


def test_registry_policy_api(w):
    not_found = f"Registry policy does not exist in the registry with id '{A}'"
    res = aws_cli(w.srv, "get-registry-policy")
    assert res.stderr.strip() == cli_error_line("RegistryPolicyNotFoundException", "GetRegistryPolicy", not_found)
    policy = json.dumps(doc({"Sid": "replicate", "Effect": "Allow",
                             "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
                             "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                             "Resource": f"arn:aws:ecr:{REGION}:{A}:repository/*"}))
    want = {"registryId": A, "policyText": policy}
    assert cli_json(aws_cli(w.srv, "put-registry-policy", "--policy-text", policy)) == want
    assert cli_json(aws_cli(w.srv, "get-registry-policy")) == want
    assert cli_json(aws_cli(w.srv, "delete-registry-policy")) == want
    for op, cmd in [("GetRegistryPolicy", "get-registry-policy"), ("DeleteRegistryPolicy", "delete-registry-policy")]:
        res = aws_cli(w.srv, cmd)
        assert res.stderr.strip() == cli_error_line("RegistryPolicyNotFoundException", op, not_found), res
    res = aws_cli(w.srv, "put-registry-policy", "--policy-text", "{")
    invalid = "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid registry policy provided'"
    assert res.stderr.strip() == cli_error_line("InvalidParameterException", "PutRegistryPolicy", invalid), res
    err = client_error(w.seeds.ecr().get_registry_policy)
    check_error(err, "AccessDeniedException", deny_message(w.seeds.arn, "ecr:GetRegistryPolicy", "*", "identity"))
