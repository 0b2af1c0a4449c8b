"""TLS (issue 13): a self-signed CA Berth makes, operator certificates reloaded without restart,
HTTP/2 and HTTP/1.1 through ALPN, plain HTTP refused, `aws:SecureTransport`, mutual TLS; driven
with the AWS CLI, boto3, skopeo, curl and requests, each verifying the server's certificate."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from ecrlib import ACCOUNT_ID, REGION, ROOT_AKID, ROOT_SECRET, create_iam_user, push_image, start_berth, stop_berth, unique
from tlslib import Ca


def ecr_over_tls(srv, ca, akid=ROOT_AKID, secret=ROOT_SECRET):
    return boto3.client("ecr", endpoint_url=srv.url, region_name=REGION, aws_access_key_id=akid,
                        aws_secret_access_key=secret, verify=str(ca), config=Config(retries={"total_max_attempts": 1}))


def aws(srv, *args, ca=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ROOT_AKID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET, AWS_CONFIG_FILE="/nonexistent/c",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent/s", AWS_EC2_METADATA_DISABLED="true")
    exe = shutil.which("aws")
    cmd = ([exe] if exe else [sys.executable, "-m", "awscli"]) + list(args)
    cmd += ["--endpoint-url", srv.url, "--region", REGION, "--output", "json"]
    if ca:
        cmd += ["--ca-bundle", str(ca)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tls_server():
    srv = start_berth({"BERTH_TLS_SELF_SIGNED": "true"})
    yield srv
    stop_berth(srv)


def test_self_signed_ca_is_written_and_verifies(tls_server, monkeypatch, tmp_path):
    srv = tls_server
    assert srv.url.startswith("https://127.0.0.1:")
    ca = srv.data_dir / "tls" / "ca.pem"
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (os.stat(srv.data_dir / "tls" / "ca.key").st_mode & 0o077) == 0, "the CA key is owner-only"
    # The AWS CLI verifies with --ca-bundle, and refuses without it.
    r = aws(srv, "ecr", "describe-repositories", ca=ca)
    assert r.returncode == 0, r.stderr
    r = aws(srv, "ecr", "describe-repositories")
    assert r.returncode != 0 and "SSL validation failed" in r.stderr, r.stderr
    # boto3 and a push through the data plane (requests), verified.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    ecr = ecr_over_tls(srv, ca)
    repo = unique("tls-app")
    ecr.create_repository(repositoryName=repo)
    push_image(srv, ecr, repo, "v1")
    pw = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = __import__("base64").b64decode(pw).decode().split(":", 1)[1]
    # skopeo with the CA in --cert-dir; without it, the certificate is refused.
    if shutil.which("skopeo"):
        certs = tmp_path / "certs"
        certs.mkdir()
        shutil.copy(ca, certs / "ca.crt")
        ref = f"docker://{srv.hostport}/{repo}:v1"
        r = subprocess.run(["skopeo", "inspect", "--cert-dir", str(certs), "--creds", f"AWS:{password}", ref],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["Name"] == f"{srv.hostport}/{repo}"
        r = subprocess.run(["skopeo", "inspect", "--creds", f"AWS:{password}", ref], capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "certificate" in r.stderr, r.stderr


def test_http2_and_http11_are_served_and_plain_http_is_refused(tls_server):
    srv = tls_server
    ca = srv.data_dir / "tls" / "ca.pem"
    for flag, version in (("--http2", "HTTP/2 401"), ("--http1.1", "HTTP/1.1 401")):
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", flag, "--cacert", str(ca), f"{srv.url}/v2/"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(version), r.stdout
    plain = requests.get(f"http://{srv.hostport}/v2/", timeout=10)
    assert plain.status_code == 400
    assert plain.text == "Client sent an HTTP request to an HTTPS server.\n"
    # localhost is in the certificate too.
    port = srv.hostport.rsplit(":", 1)[1]
    assert requests.get(f"https://localhost:{port}/v2/", verify=str(ca), timeout=10).status_code == 401


def test_secure_transport_is_true_over_tls(tls_server):
    srv = tls_server
    ca = srv.data_dir / "tls" / "ca.pem"
    secure_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:DescribeRepositories",
                   "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}
    import ecrlib

    iam = boto3.client("iam", endpoint_url=srv.url, region_name=REGION, aws_access_key_id=ROOT_AKID,
                       aws_secret_access_key=ROOT_SECRET, verify=str(ca))
    name = unique("tlsuser")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(secure_only))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    ecr_over_tls(srv, ca, key["AccessKeyId"], key["SecretAccessKey"]).describe_repositories()
    assert ecrlib.ACCOUNT_ID == ACCOUNT_ID  # (the user lives in the default account)


def test_renewed_certificate_is_picked_up_without_restart(tmp_path):
    old_ca, new_ca = Ca("old CA"), Ca("new CA")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    c, k = old_ca.issue()
    cert.write_bytes(c)
    key.write_bytes(k)
    (tmp_path / "old.pem").write_bytes(old_ca.pem())
    (tmp_path / "new.pem").write_bytes(new_ca.pem())
    srv = start_berth({"BERTH_TLS_CERT": str(cert), "BERTH_TLS_KEY": str(key)})
    try:
        url = f"{srv.url}/v2/"
        assert requests.get(url, verify=str(tmp_path / "old.pem"), timeout=10).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=str(tmp_path / "new.pem"), timeout=10)
        c, k = new_ca.issue()
        # Renewal as certbot and cert-manager do it: new files in place (key first).
        (tmp_path / "k.tmp").write_bytes(k)
        (tmp_path / "c.tmp").write_bytes(c)
        os.replace(tmp_path / "k.tmp", key)
        os.replace(tmp_path / "c.tmp", cert)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert requests.get(url, verify=str(tmp_path / "new.pem"), timeout=10).status_code == 401
                break
            except requests.exceptions.SSLError:
                assert time.monotonic() < deadline, "the renewed certificate was not picked up within 20 s"
                time.sleep(0.5)
        # A broken renewal (a key that does not match) keeps the certificate in use.
        _, other_key = new_ca.issue()
        key.write_bytes(other_key)
        time.sleep(3)
        assert requests.get(url, verify=str(tmp_path / "new.pem"), timeout=10).status_code == 401
    finally:
        stop_berth(srv)


def test_mutual_tls(tmp_path):
    server_ca, client_ca = Ca("server CA"), Ca("client CA")
    c, k = server_ca.issue()
    (tmp_path / "server.pem").write_bytes(c)
    (tmp_path / "server.key").write_bytes(k)
    (tmp_path / "server-ca.pem").write_bytes(server_ca.pem())
    (tmp_path / "client-ca.pem").write_bytes(client_ca.pem())
    cc, ck = client_ca.issue(cn="ci-runner", dns=(), ips=(), client=True)
    (tmp_path / "client.pem").write_bytes(cc)
    (tmp_path / "client.key").write_bytes(ck)
    stranger_c, stranger_k = Ca("stranger").issue(cn="stranger", dns=(), ips=(), client=True)
    (tmp_path / "stranger.pem").write_bytes(stranger_c)
    (tmp_path / "stranger.key").write_bytes(stranger_k)
    srv = start_berth({"BERTH_TLS_CERT": str(tmp_path / "server.pem"), "BERTH_TLS_KEY": str(tmp_path / "server.key"),
                       "BERTH_TLS_CLIENT_CA": str(tmp_path / "client-ca.pem")})
    try:
        url, verify = f"{srv.url}/v2/", str(tmp_path / "server-ca.pem")
        ok = requests.get(url, verify=verify, cert=(str(tmp_path / "client.pem"), str(tmp_path / "client.key")), timeout=10)
        assert ok.status_code == 401
        for cert in (None, (str(tmp_path / "stranger.pem"), str(tmp_path / "stranger.key"))):
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                requests.get(url, verify=verify, cert=cert, timeout=10)
    finally:
        stop_berth(srv)


def test_bad_tls_settings_are_refused(tmp_path):
    binary = os.environ.get("BERTH_BIN") or str(__import__("ecrlib").REPO_ROOT / "target" / "debug" / "berth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}

    def serve(**extra):
        return subprocess.run([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d")],
                              env={**env, **extra}, capture_output=True, text=True, timeout=60)

    r = serve(BERTH_TLS_CERT=str(tmp_path / "missing.pem"))
    assert r.returncode != 0 and "tls_key" in r.stderr, r.stderr
    r = serve(BERTH_TLS_CERT=str(tmp_path / "missing.pem"), BERTH_TLS_KEY=str(tmp_path / "missing.key"))
    assert r.returncode != 0 and "missing.pem" in r.stderr, r.stderr
    (tmp_path / "junk.pem").write_text("not a certificate")
    r = serve(BERTH_TLS_CERT=str(tmp_path / "junk.pem"), BERTH_TLS_KEY=str(tmp_path / "junk.pem"))
    assert r.returncode != 0 and "junk.pem" in r.stderr, r.stderr
    r = serve(BERTH_TLS_SELF_SIGNED="true", BERTH_TLS_CERT=str(tmp_path / "junk.pem"), BERTH_TLS_KEY=str(tmp_path / "junk.pem"))
    assert r.returncode != 0 and "tls_self_signed" in r.stderr, r.stderr
    r = serve(BERTH_TLS_CLIENT_CA=str(tmp_path / "junk.pem"))
    assert r.returncode != 0 and "tls_client_ca" in r.stderr, r.stderr


def test_postgres_metadata_over_verified_tls(tmp_path):
    """A PostgreSQL URL asking for TLS (`sslmode=verify-full`, `sslrootcert=`) is verified:
    the right CA connects, another CA stops the server at start with the reason."""
    import tempfile

    from ecrlib import REPO_ROOT

    if not (shutil.which("initdb") or list(__import__("glob").glob("/usr/lib/postgresql/*/bin/initdb"))):
        pytest.skip("no PostgreSQL server here")
    ca, other = Ca("pg CA"), Ca("another CA")
    tls_dir = tmp_path / "pgtls"
    tls_dir.mkdir()
    c, k = ca.issue(cn="127.0.0.1", dns=("localhost",), ips=("127.0.0.1",))
    (tls_dir / "server.crt").write_bytes(c)
    (tls_dir / "server.key").write_bytes(k)
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    (tmp_path / "other.pem").write_bytes(other.pem())
    pg = Path(tempfile.mkdtemp(prefix="berth-pgtls-"))
    os.chmod(pg, 0o755)
    script = str(REPO_ROOT / "scripts" / "postgres.sh")
    r = subprocess.run(["bash", script, "start", str(pg / "db")], env={**os.environ, "BERTH_PG_TLS_DIR": str(tls_dir)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    url = r.stdout.strip()
    try:
        good = f"{url}?sslmode=verify-full&sslrootcert={tmp_path / 'ca.pem'}"
        srv = start_berth({"BERTH_METADATA": good})
        try:
            ecr = boto3.client("ecr", endpoint_url=srv.url, region_name=REGION, aws_access_key_id=ROOT_AKID,
                               aws_secret_access_key=ROOT_SECRET)
            ecr.create_repository(repositoryName=unique("pgtls"))
        finally:
            stop_berth(srv)
        binary = os.environ.get("BERTH_BIN") or str(REPO_ROOT / "target" / "debug" / "berth")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env["BERTH_METADATA"] = f"{url}?sslmode=verify-full&sslrootcert={tmp_path / 'other.pem'}"
        r = subprocess.run([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d2")],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0
        assert "certificate" in r.stderr.lower() or "unknownissuer" in r.stderr.lower(), r.stderr[-2000:]
    finally:
        subprocess.run(["bash", script, "stop", str(pg / "db")], capture_output=True, timeout=60)
        shutil.rmtree(pg, ignore_errors=True)
