"""README.md "Quick start", run verbatim as a shell script.

The ```sh block of the Quick start section is executed as it stands, with only these
substitutions:
  * the port: `REGISTRY=127.0.0.1:5000` -> `REGISTRY=127.0.0.1:<free port>`, and the server's
    listen address through `BERTH_LISTEN` (the README relies on the 127.0.0.1:5000 default);
  * the image name: `my-app:latest` -> a unique local name, built offline first (umoci ->
    skopeo docker-archive -> `docker load`); nothing is pulled from the internet.
`cargo run --release -- serve &` stays in the script: a `cargo` stand-in on PATH runs the
already-built binary (target/debug/berth, or $BERTH_BIN) with the arguments after `--`; an `aws`
stand-in waits until that server accepts connections, then runs the real AWS CLI (the README
starts the server in the background and goes straight on).

The script runs under `bash -e -o pipefail -x` with a private working directory (so
`./berth-data` is temporary), a private DOCKER_CONFIG (the login goes nowhere else), and no AWS
configuration files. The xtrace lines split the output into one chunk per command, and each
step's output is checked. Without a docker engine the README's skopeo variant runs instead
(its login line verbatim; `skopeo copy` for push and pull); with one, test_quickstart_skopeo
runs that variant too.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from ecrlib import ACCOUNT_ID, REGION, REPO_ROOT
from imagelib import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_MANIFEST,
    layout_manifest,
    need,
    run,
    umoci_layout,
)

README = REPO_ROOT / "README.md"
MARK = "+QS+ "
BACKGROUND = "cargo run "
TRACE_RE = re.compile(r"^\++QS\+ ")  # bash repeats PS4's first character per nesting level
REPO = "my-app-repo"

CARGO_SHIM = r"""#!/usr/bin/env bash
# Stand-in for `cargo run --release -- ARGS`: the already-built berth binary with ARGS.
if [ "$1" != run ]; then echo "cargo stand-in: only 'cargo run' is supported" >&2; exit 2; fi
while [ $# -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
echo $$ > "$QS_PIDFILE"
exec "$QS_BERTH_BIN" "$@" >>"$QS_SERVER_LOG" 2>&1
"""

AWS_SHIM = r"""#!/usr/bin/env bash
# Stand-in for `aws`: wait (up to 60 s) for the server the README started in the background.
for _ in $(seq 600); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$QS_PORT") 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -n "$QS_REAL_AWS" ]; then exec "$QS_REAL_AWS" "$@"; fi
exec "$QS_PYTHON" -m awscli "$@"
"""


# --------------------------------------------------------------------------------------------
# README extraction


def readme_quickstart():
    """(the ```sh block of the Quick start section, the README's skopeo login line)."""
    text = README.read_text()
    m = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README.md has no '## Quick start' section"
    section = m.group(1)
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)
    assert blocks, "Quick start has no ```sh block"
    logins = [x for x in re.findall(r"`([^`\n]+)`", section) if "skopeo login" in x]
    assert len(logins) == 1, f"expected one skopeo login line in the Quick start section, got {logins}"
    return blocks[0], logins[0]


def substitute(script, port, image):
    for old, new in (("REGISTRY=127.0.0.1:5000", f"REGISTRY=127.0.0.1:{port}"), ("my-app:latest", image)):
        assert script.count(old) == 1, f"Quick start should contain {old!r} exactly once:\n{script}"
        script = script.replace(old, new)
    return script


def skopeo_variant(script, login_line, layout):
    """The README's docker-less path: its skopeo login line, then `skopeo copy` for push/pull."""
    out = []
    for line in script.splitlines():
        s = line.strip()
        if s.startswith("aws ecr get-login-password") and "docker login" in s:
            out.append(login_line)
        elif s.startswith("docker tag "):
            continue
        elif s.startswith("docker push "):
            out.append(
                f"skopeo copy --dest-tls-verify=false --digestfile pushed.digest "
                f"oci:{layout}:latest docker://$REGISTRY/{REPO}:latest"
            )
        elif s.startswith("docker pull "):
            out.append(f"skopeo copy --src-tls-verify=false docker://$REGISTRY/{REPO}:latest oci:pulled:latest")
        else:
            out.append(line)
    text = "\n".join(out) + "\n"
    assert "docker" not in re.sub(r"#.*", "", text).replace("docker://", ""), text
    return text


# --------------------------------------------------------------------------------------------
# Running it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker_works():
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def split_trace(output):
    """[(command, output)] from the xtrace-marked combined output (commands in trace order)."""
    steps, cmd, buf = [], None, []
    for line in output.splitlines():
        m = TRACE_RE.match(line)
        if m and line[m.end():].startswith(BACKGROUND):
            # `cargo run ... &` is traced by its own subshell, at any point among the next
            # commands' lines; it prints nothing itself (the stand-in logs to a file)
            steps.append((line[m.end():], ""))
            continue
        if m:
            if cmd is not None:
                steps.append((cmd, "\n".join(buf)))
            cmd, buf = line[m.end():], []
        else:
            buf.append(line)
    if cmd is not None:
        steps.append((cmd, "\n".join(buf)))
    return [(c, o) for c, o in steps if c != ". ./quickstart.sh"]


def step(steps, prefix):
    found = [(c, o) for c, o in steps if c.startswith(prefix)]
    assert len(found) == 1, f"expected one command starting {prefix!r}, got {[c for c, _ in found]}"
    return found[0][1]


def json_of(out, what):
    start, end = out.find("{"), out.rfind("}")
    assert start != -1 and end > start, f"{what}: no JSON in output:\n{out}"
    return json.loads(out[start : end + 1])


class Quickstart:
    def __init__(self, tmp, port):
        self.tmp = Path(tmp)
        self.port = port
        self.registry = f"127.0.0.1:{port}"
        self.work = self.tmp / "work"
        self.work.mkdir()
        shims = self.tmp / "shims"
        shims.mkdir()
        for name, text in (("cargo", CARGO_SHIM), ("aws", AWS_SHIM)):
            (shims / name).write_text(text)
            (shims / name).chmod(0o755)
        self.pidfile = self.tmp / "berth.pid"
        self.server_log = self.tmp / "berth.log"
        binary = os.environ.get("BERTH_BIN") or str(REPO_ROOT / "target" / "debug" / "berth")
        if not Path(binary).exists():
            pytest.fail(f"berth binary not found at {binary} (build it or set BERTH_BIN)")
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("BERTH_", "AWS_", "DOCKER_", "REGISTRY_AUTH")) and k != "RUST_LOG"
        }
        real_aws = shutil.which("aws") or ""
        env.update(
            PATH=f"{shims}{os.pathsep}{env.get('PATH', '')}",
            BERTH_LISTEN=self.registry,
            QS_PORT=str(port),
            QS_PIDFILE=str(self.pidfile),
            QS_SERVER_LOG=str(self.server_log),
            QS_BERTH_BIN=binary,
            QS_REAL_AWS=real_aws,
            QS_PYTHON=sys.executable,
            AWS_CONFIG_FILE=str(self.tmp / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.tmp / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_PAGER="",
            DOCKER_CONFIG=str(self.tmp / "docker-config"),
            REGISTRY_AUTH_FILE=str(self.tmp / "containers-auth.json"),
            XDG_RUNTIME_DIR=str(self.tmp),
        )
        self.env = env

    def run_script(self, script, timeout=600):
        path = self.work / "quickstart.sh"
        path.write_text(script)
        wrapper = f"PS4='{MARK}'; set -x; . ./quickstart.sh"
        res = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", wrapper],
            cwd=self.work, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=timeout,
        )
        return res.returncode, res.stdout

    def aws(self, *args):
        env = dict(self.env)
        env.update(AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE",
                   AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                   AWS_DEFAULT_REGION=REGION)
        res = subprocess.run(["aws", "ecr", *args, "--endpoint-url", f"http://{self.registry}", "--output", "json"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res
        return json.loads(res.stdout)

    def stop_server(self):
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(150):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def check_common(qs, steps, output):
    """Steps shared by both variants: server start, create-repository, describe, delete."""
    cmds = [c for c, _ in steps]
    assert "cargo run --release -- serve" in cmds, cmds
    log = qs.server_log.read_text(errors="replace")
    assert f"berth listening on http://{qs.registry}" in log, log[-2000:]

    repo = json_of(step(steps, "aws ecr create-repository"), "create-repository")["repository"]
    created_at = repo.pop("createdAt")
    assert isinstance(created_at, (int, float))
    assert repo == {
        "repositoryArn": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{REPO}",
        "registryId": ACCOUNT_ID,
        "repositoryName": REPO,
        "repositoryUri": f"{qs.registry}/{REPO}",
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": {"scanOnPush": True},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    }


def check_describe_and_delete(qs, steps, digest, manifest_type, config_type):
    described = json_of(step(steps, "aws ecr describe-images"), "describe-images")
    (d,) = described["imageDetails"]
    assert d["imageDigest"] == digest, (d, digest)
    assert d["imageTags"] == ["latest"]
    assert d["repositoryName"] == REPO and d["registryId"] == ACCOUNT_ID
    assert d["imageManifestMediaType"] == manifest_type
    assert d["artifactMediaType"] == config_type
    assert isinstance(d["imageSizeInBytes"], int) and d["imageSizeInBytes"] > 0
    assert isinstance(d["imagePushedAt"], (int, float))

    deleted = json_of(step(steps, "aws ecr batch-delete-image"), "batch-delete-image")
    assert deleted == {"imageIds": [{"imageDigest": digest, "imageTag": "latest"}], "failures": []}
    # and describe-images is empty afterwards
    assert qs.aws("describe-images", "--repository-name", REPO) == {"imageDetails": []}


# --------------------------------------------------------------------------------------------
# The tests


def test_quickstart_verbatim():
    need("umoci", "skopeo")
    if not docker_works():
        run_skopeo_variant()
        return
    block, _ = readme_quickstart()
    port = free_port()
    image = f"berth-quickstart-{uuid.uuid4().hex[:12]}:latest"
    remote = f"127.0.0.1:{port}/{REPO}:latest"
    with tempfile.TemporaryDirectory(prefix="berth-quickstart-") as tmp:
        qs = Quickstart(tmp, port)
        try:
            # my-app:latest, built offline and loaded into docker
            layout, _, _ = umoci_layout(Path(tmp) / "build", "latest",
                                        {"hello.txt": f"hello from {image}\n".encode()})
            tar = Path(tmp) / "my-app.tar"
            run("skopeo", "copy", "--quiet", f"oci:{layout}:latest", f"docker-archive:{tar}:{image}")
            loaded = run("docker", "load", "-i", str(tar)).stdout
            assert f"Loaded image: {image}" in loaded, loaded

            script = substitute(block, port, image)
            rc, output = qs.run_script(script)
            steps = split_trace(output)
            assert rc == 0, f"quick start failed (rc={rc}); last step: {steps[-1][0] if steps else None}\n{output}"
            check_common(qs, steps, output)

            login = step(steps, "aws ecr get-login-password") + "\n" + step(steps, "docker login")
            assert "Login Succeeded" in login, login
            assert step(steps, f"docker tag {image}").strip() == ""
            pushed = step(steps, f"docker push {qs.registry}/{REPO}:latest")
            m = re.search(r"^latest: digest: (sha256:[0-9a-f]{64}) size: (\d+)$", pushed, re.M)
            assert m, pushed
            digest = m.group(1)
            pulled = step(steps, f"docker pull {qs.registry}/{REPO}:latest")
            assert f"Digest: {digest}" in pulled, pulled
            assert f"Status: Image is up to date for {remote}" in pulled, pulled

            described = json_of(step(steps, "aws ecr describe-images"), "describe-images")
            mt = described["imageDetails"][0]["imageManifestMediaType"]
            config_type = DOCKER_CONFIG if mt == DOCKER_MANIFEST else OCI_CONFIG
            assert mt in (DOCKER_MANIFEST, OCI_MANIFEST), mt
            check_describe_and_delete(qs, steps, digest, mt, config_type)
        finally:
            qs.stop_server()
            subprocess.run(["docker", "rmi", "--force", image, remote], capture_output=True, timeout=120)
            subprocess.run(["docker", "logout", f"127.0.0.1:{port}"], capture_output=True, timeout=60,
                           env=qs.env)
        left = subprocess.run(["docker", "images", "-q", image], capture_output=True, text=True).stdout
        assert left.strip() == "", f"docker image {image} left behind"


def test_quickstart_skopeo():
    """The README's docker-less variant (skopeo login, skopeo copy), also where docker works."""
    need("umoci", "skopeo")
    if not docker_works():
        pytest.skip("test_quickstart_verbatim already ran the skopeo variant (no docker engine)")
    run_skopeo_variant()


def run_skopeo_variant():
    block, login_line = readme_quickstart()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="berth-quickstart-") as tmp:
        qs = Quickstart(tmp, port)
        try:
            layout, digest, mbytes = umoci_layout(Path(tmp) / "build", "latest", {"hello.txt": b"hello skopeo\n"})
            script = skopeo_variant(substitute(block, port, "unused-my-app:latest"), login_line, layout)
            rc, output = qs.run_script(script)
            steps = split_trace(output)
            assert rc == 0, f"quick start failed (rc={rc}); last step: {steps[-1][0] if steps else None}\n{output}"
            check_common(qs, steps, output)
            login = step(steps, "aws ecr get-login-password") + "\n" + step(steps, "skopeo login")
            assert "Login Succeeded!" in login, login
            assert (qs.work / "pushed.digest").read_text().strip() == digest
            _, pulled = layout_of(qs.work / "pulled")
            assert pulled == mbytes  # pulled back byte-identical
            check_describe_and_delete(qs, steps, digest, OCI_MANIFEST, OCI_CONFIG)
        finally:
            qs.stop_server()


def layout_of(path):
    return layout_manifest(path, "latest")
