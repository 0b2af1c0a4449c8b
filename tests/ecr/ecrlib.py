"""Shared fixtures and helpers for the ECR control-plane tests.

One `berth serve` per test session (temp data dir, random port), driven through boto3, the
AWS CLI (v1) and raw SigV4-signed requests. Every test uses its own repository names (uuid
suffix), so tests never depend on each other's state; tests that count repositories use
an account of their own (created with `berth admin create-account`).

Expected texts come from /work/shared/reference/ECR-BEHAVIOUR.md and the botocore model
(botocore/data/ecr/2015-09-21/service-2.json).
"""

import base64
import datetime
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from unittest import mock

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]

ACCOUNT_ID = "111111111111"
ROOT_AKID = "AKIAIOSFODNN7EXAMPLE"
ROOT_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"
JSON_CT = "application/x-amz-json-1.1"

# Server-side validation texts, verbatim from ECR-BEHAVIOUR.md section 2.
NAME_REGEX_MSG = (
    "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
    "'must satisfy regular expression "
    "'(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''"
)
NAME_MIN_MSG = (
    "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
    "'must have length greater than or equal to 2'"
)
BAD_SIGNATURE_MSG = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNRECOGNIZED_CLIENT_MSG = "The security token included in the request is invalid."


def not_found_msg(name, account=ACCOUNT_ID):
    return f"The repository with name '{name}' does not exist in the registry with id '{account}'"


def exists_msg(name, account=ACCOUNT_ID):
    return f"The repository with name '{name}' already exists in the registry with id '{account}'"


def not_empty_msg(name, account=ACCOUNT_ID):
    return (
        f"The repository with name '{name}' in registry with id '{account}' "
        "cannot be deleted because it still contains images"
    )


def arn_of(name, account=ACCOUNT_ID, region=REGION):
    return f"arn:aws:ecr:{region}:{account}:repository/{name}"


def unique(prefix="repo"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------------------
# The server


class Server:
    def __init__(self, binary, data_dir, env, proc, url, log_path):
        self.binary = binary
        self.data_dir = data_dir
        self.env = env
        self.proc = proc
        self.url = url  # http://127.0.0.1:PORT
        self.hostport = url.split("://", 1)[1]
        self.log_path = log_path
        self._accounts = {ACCOUNT_ID: (ROOT_AKID, ROOT_SECRET)}
        self._lock = threading.Lock()

    def admin(self, *args, timeout=60):
        env = dict(self.env)
        env["BERTH_DATA_DIR"] = str(self.data_dir)
        return subprocess.run(
            [self.binary, "admin", *args, "--data-dir", str(self.data_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def create_account(self, account_id):
        """`berth admin create-account` -> dict(AccountId, AccessKeyId, SecretAccessKey)."""
        res = self.admin("create-account", "--account-id", account_id)
        assert res.returncode == 0, (
            f"berth admin create-account --account-id {account_id} failed "
            f"(rc={res.returncode}):\nstdout={res.stdout}\nstderr={res.stderr}"
        )
        doc = parse_json_output(res.stdout)
        assert set(doc) >= {"AccountId", "AccessKeyId", "SecretAccessKey"}, doc
        return doc

    def account(self, account_id):
        """Credentials of `account_id`, creating the account once per session."""
        with self._lock:
            if account_id not in self._accounts:
                doc = self.create_account(account_id)
                assert doc["AccountId"] == account_id, doc
                self._accounts[account_id] = (doc["AccessKeyId"], doc["SecretAccessKey"])
            return self._accounts[account_id]

    def log_tail(self, n=60):
        try:
            return "".join(Path(self.log_path).read_text(errors="replace").splitlines(True)[-n:])
        except OSError:
            return ""


def parse_json_output(text):
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    # tolerate log lines around the JSON document
    start, end = text.find("{"), text.rfind("}")
    assert start != -1 and end > start, f"no JSON object in output: {text!r}"
    return json.loads(text[start : end + 1])


def _server_env():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BERTH_") and not k.startswith("AWS_") and k != "RUST_LOG"
    }
    env.update(
        BERTH_ACCOUNT_ID=ACCOUNT_ID,
        BERTH_ROOT_ACCESS_KEY_ID=ROOT_AKID,
        BERTH_ROOT_SECRET_ACCESS_KEY=ROOT_SECRET,
        BERTH_REGIONS=f"{REGION},{OTHER_REGION}",
    )
    # BERTH_TEST_BACKEND=postgres: each server gets a fresh database on BERTH_TEST_POSTGRES_URL.
    if os.environ.get("BERTH_TEST_BACKEND") == "postgres":
        url = os.environ["BERTH_TEST_POSTGRES_URL"]
        db = f"berth_py_{os.getpid()}_{time.time_ns()}"
        subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", f"CREATE DATABASE {db}"], check=True)
        env["BERTH_METADATA"] = url.rsplit("/", 1)[0] + "/" + db
    return env


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("BERTH_BIN") or str(REPO_ROOT / "target" / "debug" / "berth")
    if not Path(binary).exists():
        pytest.fail(f"berth binary not found at {binary} (build it or set BERTH_BIN)")
    tmp = Path(tempfile.mkdtemp(prefix="berth-ecr-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    log_path = tmp / "server.log"
    env = _server_env()
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        bufsize=1,
    )
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
            with open(tmp / "server.stdout", "a") as f:
                f.write(line)

    threading.Thread(target=pump, daemon=True).start()
    url = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        m = re.search(r"berth listening on (https?://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail(
            "berth did not print 'berth listening on http://127.0.0.1:PORT' within 60s; "
            f"stderr:\n{log_path.read_text(errors='replace')[-4000:]}"
        )
    srv = Server(binary, data_dir, env, proc, url, log_path)
    try:
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if os.environ.get("BERTH_KEEP_DATA"):
            print(f"berth data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Clients

NO_RETRY = {"total_max_attempts": 1}


def make_client(server, region=REGION, akid=ROOT_AKID, secret=ROOT_SECRET, validate=True):
    return boto3.client(
        "ecr",
        endpoint_url=server.url,
        region_name=region,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(
            retries=NO_RETRY,
            parameter_validation=validate,
            connect_timeout=10,
            read_timeout=60,
        ),
    )


@pytest.fixture(scope="session")
def ecr(server):
    return make_client(server)


@pytest.fixture(scope="session")
def ecr_raw(server):
    """Same as `ecr` but without botocore's client-side minimum checks."""
    return make_client(server, validate=False)


@pytest.fixture(scope="session")
def ecr_eu(server):
    return make_client(server, region=OTHER_REGION)


@pytest.fixture
def repo(ecr):
    """A fresh repository in account 111111111111/us-east-1, deleted (force) afterwards."""
    name = unique("fx")
    ecr.create_repository(repositoryName=name)
    yield name
    try:
        ecr.delete_repository(repositoryName=name, force=True)
    except ClientError:
        pass


def client_error(callable_, *args, **kwargs):
    with pytest.raises(ClientError) as ei:
        callable_(*args, **kwargs)
    return ei.value


def check_error(err, code, message=None, *, prefix=None, status=400):
    """Exact __type (code), message and HTTP status of a botocore ClientError."""
    got_code = err.response["Error"].get("Code")
    got_msg = err.response["Error"].get("Message")
    got_status = err.response["ResponseMetadata"]["HTTPStatusCode"]
    summary = f"got status={got_status} code={got_code!r} message={got_msg!r}"
    assert got_code == code, summary
    if message is not None:
        assert got_msg == message, summary
    if prefix is not None:
        assert got_msg is not None and got_msg.startswith(prefix), summary
    if status is not None:
        assert got_status == status, summary
    return got_msg


def all_repositories(client, **kwargs):
    out = []
    for page in client.get_paginator("describe_repositories").paginate(**kwargs):
        out.extend(page["repositories"])
    return out


def repo_names(client):
    return {r["repositoryName"] for r in all_repositories(client)}


def assert_absent(client, name, account=ACCOUNT_ID):
    err = client_error(client.describe_repositories, repositoryNames=[name])
    check_error(err, "RepositoryNotFoundException", not_found_msg(name, account))


# --------------------------------------------------------------------------------------------
# Raw SigV4 requests


class RawResponse:
    def __init__(self, resp):
        self.resp = resp
        self.status = resp.status_code
        self.headers = resp.headers
        self.text = resp.text
        try:
            self.json = resp.json()
        except ValueError:
            self.json = None

    @property
    def error_type(self):
        """`__type` as botocore reads it (the part after '#')."""
        if not isinstance(self.json, dict):
            return None
        t = self.json.get("__type") or self.json.get("code")
        return t.rsplit("#", 1)[-1] if isinstance(t, str) else t

    @property
    def message(self):
        if not isinstance(self.json, dict):
            return None
        return self.json.get("message", self.json.get("Message"))

    def __repr__(self):
        return f"<{self.status} {dict(self.headers)} {self.text[:500]!r}>"


def raw_call(
    server,
    operation,
    body,
    *,
    akid=ROOT_AKID,
    secret=ROOT_SECRET,
    region=REGION,
    service="ecr",
    sign=True,
    when=None,
    target=None,
    send_body=None,
    headers=None,
    drop_headers=(),
):
    """POST / with an X-Amz-Target, signed by botocore's SigV4Auth unless sign=False.

    when: naive UTC datetime to sign with (clock skew tests).
    send_body: bytes to send instead of the signed body (tampering).
    """
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Content-Type": JSON_CT}
    if target is None and operation is not None:
        target = f"{TARGET_PREFIX}.{operation}"
    if target is not None:
        hdrs["X-Amz-Target"] = target
    if headers:
        hdrs.update(headers)
    req = AWSRequest(method="POST", url=server.url + "/", data=body, headers=hdrs)
    if sign:
        signer = botocore.auth.SigV4Auth(Credentials(akid, secret), service, region)
        if when is not None:
            with mock.patch("botocore.auth.get_current_datetime", return_value=when):
                signer.add_auth(req)
        else:
            signer.add_auth(req)
    prepared = req.prepare()
    out_headers = {k: v for k, v in prepared.headers.items() if k.lower() not in drop_headers}
    resp = requests.post(
        server.url + "/",
        data=send_body if send_body is not None else prepared.body,
        headers=out_headers,
        timeout=30,
    )
    return RawResponse(resp)


def check_raw_error(r, code, message=None, *, prefix=None, status=400):
    assert r.status == status, r
    assert r.error_type == code, r
    if message is not None:
        assert r.message == message, r
    if prefix is not None:
        assert r.message is not None and r.message.startswith(prefix), r
    return r.message


# --------------------------------------------------------------------------------------------
# AWS CLI


def aws_cli(server, *args, akid=ROOT_AKID, secret=ROOT_SECRET, region=REGION, timeout=120, service="ecr"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=akid,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_CONFIG_FILE="/nonexistent/berth-ecr-tests/config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/berth-ecr-tests/credentials",
        AWS_EC2_METADATA_DISABLED="true",
    )
    exe = shutil.which("aws")
    cmd = [exe] if exe else [sys.executable, "-m", "awscli"]
    cmd += [service, *args, "--endpoint-url", server.url, "--region", region, "--output", "json"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def cli_json(res):
    assert res.returncode == 0, f"rc={res.returncode}\nstdout={res.stdout}\nstderr={res.stderr}"
    return json.loads(res.stdout) if res.stdout.strip() else None


def cli_error_line(code, operation, message):
    return f"An error occurred ({code}) when calling the {operation} operation: {message}"


# --------------------------------------------------------------------------------------------
# Data plane: push a tiny OCI image (to make a repository non-empty)


def basic_auth_header(client):
    tok = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return "Basic " + tok


def _upload_blob(server, name, data, auth):
    digest = "sha256:" + __import__("hashlib").sha256(data).hexdigest()
    r = requests.post(
        f"{server.url}/v2/{name}/blobs/uploads/", headers={"Authorization": auth}, timeout=30
    )
    assert r.status_code == 202, (r.status_code, r.headers, r.text)
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = server.url + loc
    sep = "&" if "?" in loc else "?"
    r = requests.put(
        f"{loc}{sep}digest={digest}",
        data=data,
        headers={"Authorization": auth, "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert r.status_code == 201, (r.status_code, r.headers, r.text)
    return digest, len(data)


def push_image(server, client, name, tag="v1"):
    auth = basic_auth_header(client)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    layer = os.urandom(512)
    cdig, csize = _upload_blob(server, name, config, auth)
    ldig, lsize = _upload_blob(server, name, layer, auth)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cdig,
                "size": csize,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": ldig,
                    "size": lsize,
                }
            ],
        }
    ).encode()
    r = requests.put(
        f"{server.url}/v2/{name}/manifests/{tag}",
        data=manifest,
        headers={"Authorization": auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=30,
    )
    assert r.status_code == 201, (r.status_code, r.headers, r.text)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def b64decode(s):
    return base64.b64decode(s + "=" * (-len(s) % 4))


# --------------------------------------------------------------------------------------------
# IAM and STS (Query API on the same port)

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
FORM_CT = "application/x-www-form-urlencoded; charset=utf-8"


def make_iam(server, akid=ROOT_AKID, secret=ROOT_SECRET, validate=True, service="iam"):
    """A boto3 `iam` (or `sts`, with service="sts") client against Berth."""
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(
            retries=NO_RETRY,
            parameter_validation=validate,
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def make_sts(server, akid=ROOT_AKID, secret=ROOT_SECRET):
    return make_iam(server, akid, secret, service="sts")


def query_call(
    server, params, *, akid=ROOT_AKID, secret=ROOT_SECRET, service="iam", region=REGION, send_body=None
):
    """POST / with a form-encoded Query API body, signed by botocore's SigV4Auth."""
    from urllib.parse import urlencode

    params = dict(params)
    params.setdefault("Version", "2011-06-15" if service == "sts" else "2010-05-08")
    body = urlencode(params).encode()
    req = AWSRequest(method="POST", url=server.url + "/", data=body, headers={"Content-Type": FORM_CT})
    botocore.auth.SigV4Auth(Credentials(akid, secret), service, region).add_auth(req)
    prepared = req.prepare()
    return requests.post(
        server.url + "/",
        data=send_body if send_body is not None else prepared.body,
        headers=dict(prepared.headers.items()),
        timeout=30,
    )


def aws_cmd(server, service, *args, akid=ROOT_AKID, secret=ROOT_SECRET, region=REGION, timeout=120):
    """`aws <service> <args...> --endpoint-url <server>` (AWS CLI v1) with the given credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=akid,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_CONFIG_FILE="/nonexistent/berth-ecr-tests/config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/berth-ecr-tests/credentials",
        AWS_EC2_METADATA_DISABLED="true",
    )
    exe = shutil.which("aws")
    cmd = [exe] if exe else [sys.executable, "-m", "awscli"]
    cmd += [service, *args, "--endpoint-url", server.url, "--region", region, "--output", "json"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def purge_iam_user(iam, name):
    """Delete a user and everything it owns (keys, policies, memberships); ignores absence."""
    try:
        for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
        for p in iam.list_user_policies(UserName=name)["PolicyNames"]:
            iam.delete_user_policy(UserName=name, PolicyName=p)
        for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
            iam.detach_user_policy(UserName=name, PolicyArn=p["PolicyArn"])
        for g in iam.list_groups_for_user(UserName=name)["Groups"]:
            iam.remove_user_from_group(GroupName=g["GroupName"], UserName=name)
        iam.delete_user(UserName=name)
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchEntity":
            raise


def purge_iam_group(iam, name):
    """Delete a group with its members removed and policies deleted; ignores absence."""
    try:
        for u in iam.get_group(GroupName=name)["Users"]:
            iam.remove_user_from_group(GroupName=name, UserName=u["UserName"])
        for p in iam.list_group_policies(GroupName=name)["PolicyNames"]:
            iam.delete_group_policy(GroupName=name, PolicyName=p)
        for p in iam.list_attached_group_policies(GroupName=name)["AttachedPolicies"]:
            iam.detach_group_policy(GroupName=name, PolicyArn=p["PolicyArn"])
        iam.delete_group(GroupName=name)
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchEntity":
            raise


# --------------------------------------------------------------------------------------------
# Access control (test_access.py): a berth with extra settings, IAM users with keys, tokens.
# Kept in this block; appended only.


def start_berth(extra_env=None):
    """Start `berth serve` like the `server` fixture, with `extra_env` added (e.g. a registry
    domain); returns the Server. Stop it with `stop_berth`."""
    binary = os.environ.get("BERTH_BIN") or str(REPO_ROOT / "target" / "debug" / "berth")
    if not Path(binary).exists():
        pytest.fail(f"berth binary not found at {binary} (build it or set BERTH_BIN)")
    tmp = Path(tempfile.mkdtemp(prefix="berth-access-"))
    (tmp / "data").mkdir()
    env = _server_env()
    env.update(extra_env or {})
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp / "data")],
        env=env, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
    )
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    deadline, url = time.monotonic() + 60, None
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            m = re.search(r"berth listening on (https?://127\.0\.0\.1:\d+)", lines.get(timeout=0.2))
            url = m.group(1) if m else None
        except queue.Empty:
            pass
    if url is None:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail(f"berth did not start:\n{(tmp / 'server.log').read_text(errors='replace')[-4000:]}")
    srv = Server(binary, tmp / "data", env, proc, url, tmp / "server.log")
    srv._tmp, srv._logfile = tmp, log
    return srv


def stop_berth(srv):
    srv.proc.terminate()
    try:
        srv.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait()
    srv._logfile.close()
    if os.environ.get("BERTH_KEEP_DATA"):
        print(f"berth data kept in {srv._tmp}")
    else:
        shutil.rmtree(srv._tmp, ignore_errors=True)


class IamUser:
    """An IAM user with one access key (`akid`, `secret`)."""

    def __init__(self, server, account, name, arn, akid, secret):
        self.server, self.account, self.name, self.arn = server, account, name, arn
        self.akid, self.secret = akid, secret

    def ecr(self, region=REGION):
        return make_client(self.server, region=region, akid=self.akid, secret=self.secret)

    def token(self):
        """The authorizationToken (base64 of `AWS:<password>`), usable as the Basic credential."""
        return self.ecr().get_authorization_token()["authorizationData"][0]["authorizationToken"]

    def password(self):
        return b64decode(self.token()).decode().split(":", 1)[1]


def create_iam_user(server, name, *, inline=None, managed=(), root=(ROOT_AKID, ROOT_SECRET)):
    """Create user `name` in the account of `root` credentials, with inline policies
    ({policy name: document}) and attached managed policy ARNs, and one access key."""
    iam = make_iam(server, *root)
    u = iam.create_user(UserName=name)["User"]
    for pname, doc in (inline or {}).items():
        iam.put_user_policy(UserName=name, PolicyName=pname, PolicyDocument=json.dumps(doc))
    for arn in managed:
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    k = iam.create_access_key(UserName=name)["AccessKey"]
    account = u["Arn"].split(":")[4]
    return IamUser(server, account, name, u["Arn"], k["AccessKeyId"], k["SecretAccessKey"])


def root_token(server, akid=ROOT_AKID, secret=ROOT_SECRET):
    c = make_client(server, akid=akid, secret=secret)
    return c.get_authorization_token()["authorizationData"][0]["authorizationToken"]


def deny_message(principal_arn, action, resource, reason):
    """AWS's AccessDenied text. reason: "identity"/"resource" (no policy allows) or
    "identity-deny"/"resource-deny" (explicit deny)."""
    head = f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource}"
    if reason.endswith("-deny"):
        kind = "an identity-based" if reason.startswith("identity") else "a resource-based"
        return f"{head} with an explicit deny in {kind} policy"
    kind = "identity-based" if reason == "identity" else "resource-based"
    return f"{head} because no {kind} policy allows the {action} action"


# end of the access-control block
# --------------------------------------------------------------------------------------------
