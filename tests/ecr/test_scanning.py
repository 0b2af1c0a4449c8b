"""Image scanning through boto3 and the AWS CLI: advisories imported with `berth vulndb import`
(real OSV records from tests/fixtures/osv, plus one hand-written Debian fixture), images built
here with known package databases and lock files, scanned on push and on demand; exact findings
(what must be found, and what must not: versions just outside a range, a package removed by a
whiteout), ECR's errors, pagination, the waiter, DescribeImages' scan fields, and the registry's
scanning configuration."""

import io
import json
import os
import subprocess
import tarfile
import time

import pytest
import requests

from ecrlib import (
    ACCOUNT_ID,
    _upload_blob,
    aws_cli,
    basic_auth_header,
    check_error,
    cli_json,
    client_error,
    create_iam_user,
    make_client,
    make_iam,
    start_berth,
    stop_berth,
    unique,
)
from imagelib import sha256

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "osv")

OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def layer(files, whiteouts=()):
    """An uncompressed tar layer with `files` ({path: bytes}) and `.wh.` entries for
    `whiteouts` (paths removed from lower layers)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        entries = dict(files)
        for w in whiteouts:
            d, _, base = w.rpartition("/")
            entries[f"{d}/.wh.{base}" if d else f".wh.{base}"] = b""
        for path, data in sorted(entries.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def dist_info(name, version):
    return {f"usr/lib/python3/dist-packages/{name}-{version}.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()}


def cargo_lock(*pkgs):
    text = "version = 3\n\n" + "".join(
        f'[[package]]\nname = "{n}"\nversion = "{v}"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n\n'
        for n, v in pkgs)
    return {"app/Cargo.lock": text.encode()}


def dpkg(*pkgs):
    stanzas = "".join(
        f"Package: {p}\nStatus: install ok installed\nSource: {src}\nVersion: {v}\nArchitecture: amd64\n\n"
        for p, src, v in pkgs)
    return {"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": stanzas.encode()}


def push(server, ecr, name, tag, layers):
    """Push an image made of `layers` (tar bytes, bottom first); its digest."""
    auth = basic_auth_header(ecr)
    descs = []
    for data in layers:
        d, size = _upload_blob(server, name, data, auth)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size})
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag,
                         "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in descs]}}).encode()
    cd, cs = _upload_blob(server, name, config, auth)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                           "layers": descs}).encode()
    r = requests.put(f"{server.url}/v2/{name}/manifests/{tag}", data=manifest,
                     headers={"Authorization": auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                     timeout=30)
    assert r.status_code == 201, r.text
    return sha256(manifest)


def berth(server, *args):
    env = dict(server.env)
    return subprocess.run([server.binary, *args, "--data-dir", str(server.data_dir)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def advisories(server):
    out = berth(server, "vulndb", "import", FIXTURES)
    assert out.returncode == 0, out.stderr
    assert "imported 5 advisories (0 withdrawn)" in out.stdout, out.stdout
    return out


def wait_complete(ecr, name, digest):
    ecr.get_waiter("image_scan_complete").wait(repositoryName=name, imageId={"imageDigest": digest},
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return ecr.describe_image_scan_findings(repositoryName=name, imageId={"imageDigest": digest})


def found(resp):
    """{(name, package, version, severity)} of a findings response."""
    out = set()
    for f in resp["imageScanFindings"]["findings"]:
        attrs = {a["key"]: a.get("value") for a in f["attributes"]}
        out.add((f["name"], attrs["package_name"], attrs["package_version"], f["severity"]))
    return out


def test_scan_on_push_finds_exactly_the_affected_packages(server, ecr, advisories):
    name = unique("scan-push")
    ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
    digest = push(server, ecr, name, "v1", [
        layer(dpkg(("libssl3", "openssl", "3.0.11-1~deb12u1"), ("zlib1g", "zlib", "1:1.2.13.dfsg-1"))),
        layer({**dist_info("Jinja2", "2.10"), **cargo_lock(("smallvec", "0.6.9"), ("serde", "1.0.0"))}),
    ])
    resp = wait_complete(ecr, name, digest)
    assert resp["imageScanStatus"]["status"] == "COMPLETE", resp["imageScanStatus"]
    assert found(resp) == {
        ("CVE-2020-28493", "jinja2", "2.10", "UNDEFINED"),
        ("CVE-2019-10906", "jinja2", "2.10", "UNDEFINED"),
        ("CVE-2019-15551", "smallvec", "0.6.9", "CRITICAL"),
        ("CVE-2018-25023", "smallvec", "0.6.9", "UNDEFINED"),
        ("CVE-0000-0001", "libssl3", "3.0.11-1~deb12u1", "HIGH"),
    }
    f = resp["imageScanFindings"]
    assert f["findingSeverityCounts"] == {"CRITICAL": 1, "HIGH": 1, "UNDEFINED": 3}
    crit = [x for x in f["findings"] if x["severity"] == "CRITICAL"][0]
    attrs = {a["key"]: a["value"] for a in crit["attributes"]}
    assert attrs["CVSS3_SCORE"] == "9.8" and attrs["CVSS3_VECTOR"].startswith("CVSS:3.0/AV:N/AC:L")
    assert "RUSTSEC-2019-0009" in attrs["aliases"] and crit["uri"].startswith("http")
    assert "imageScanCompletedAt" in f and "vulnerabilitySourceUpdatedAt" in f
    # DescribeImages carries the status and the summary.
    d = ecr.describe_images(repositoryName=name)["imageDetails"][0]
    assert d["imageScanStatus"]["status"] == "COMPLETE"
    assert d["imageScanFindingsSummary"]["findingSeverityCounts"] == {"CRITICAL": 1, "HIGH": 1, "UNDEFINED": 3}
    # Pages of one finding each walk the same findings.
    seen, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = ecr.describe_image_scan_findings(repositoryName=name, imageId={"imageDigest": digest}, maxResults=1, **kw)
        seen.extend(page["imageScanFindings"]["findings"])
        token = page.get("nextToken")
        if not token:
            break
    assert seen == f["findings"]
    # The scan is in the audit trail as a service event.
    record = None
    for _ in range(50):
        out = cli_json(aws_cli(server, "lookup-events", "--lookup-attributes",
                               "AttributeKey=EventName,AttributeValue=ImageScanCompleted", service="cloudtrail"))
        records = [json.loads(e["CloudTrailEvent"]) for e in out["Events"]]
        record = next((r for r in records if r["serviceEventDetails"]["repositoryName"] == name), None)
        if record:
            break
        time.sleep(0.1)
    assert record and record["eventType"] == "AwsServiceEvent", record
    assert record["serviceEventDetails"] == {"repositoryName": name, "imageDigest": digest, "scanStatus": "COMPLETE",
                                             "findingSeverityCounts": {"CRITICAL": 1, "HIGH": 1, "UNDEFINED": 3}}
    # The AWS CLI's waiter works too.
    res = aws_cli(server, "wait", "image-scan-complete", "--repository-name", name, "--image-id", f"imageDigest={digest}")
    assert res.returncode == 0, res.stderr
    # No SBOM artifact unless asked for: the repository holds exactly the pushed image.
    assert [i["imageDigest"] for i in ecr.describe_images(repositoryName=name)["imageDetails"]] == [digest]



def test_versions_just_outside_ranges_and_whited_out_packages_are_not_reported(server, ecr, advisories):
    name = unique("scan-edges")
    ecr.create_repository(repositoryName=name)
    digest = push(server, ecr, name, "v1", [
        layer({**dist_info("Jinja2", "2.10.1"), **cargo_lock(("smallvec", "0.6.10")),
               **dpkg(("libssl3", "openssl", "3.0.11-1~deb12u2"))}),
        # A second Python package only in the lower layer, removed by the upper one.
        layer(dist_info("jinja2", "2.10")),
        layer({}, whiteouts=["usr/lib/python3/dist-packages/jinja2-2.10.dist-info"]),
    ])
    check_error(client_error(ecr.describe_image_scan_findings, repositoryName=name, imageId={"imageDigest": digest}),
                "ScanNotFoundException")
    r = ecr.start_image_scan(repositoryName=name, imageId={"imageTag": "v1"})
    assert r["imageScanStatus"] == {"status": "IN_PROGRESS"} and r["imageId"]["imageDigest"] == digest
    resp = wait_complete(ecr, name, digest)
    assert found(resp) == {
        ("CVE-2020-28493", "jinja2", "2.10.1", "UNDEFINED"),   # fixed in 2.11.3; 2.10.1 fixes the other
        ("CVE-2018-25023", "smallvec", "0.6.10", "UNDEFINED"),  # 0.6.10 fixes RUSTSEC-2019-0009
    }
    # Once per image per 24 hours, as ECR.
    check_error(client_error(ecr.start_image_scan, repositoryName=name, imageId={"imageDigest": digest}),
                "LimitExceededException")


def test_scan_errors_are_ecrs(server, ecr, advisories):
    name = unique("scan-err")
    ecr.create_repository(repositoryName=name)
    check_error(client_error(ecr.start_image_scan, repositoryName=name, imageId={"imageTag": "nope"}),
                "ImageNotFoundException")
    check_error(client_error(ecr.start_image_scan, repositoryName=unique("none"), imageId={"imageTag": "x"}),
                "RepositoryNotFoundException")
    check_error(client_error(ecr.describe_image_scan_findings, repositoryName=name, imageId={"imageTag": "nope"}),
                "ImageNotFoundException")
    push(server, ecr, name, "v1", [layer({"etc/hostname": b"x\n"})])
    ecr.start_image_scan(repositoryName=name, imageId={"imageTag": "v1"})
    resp = wait_complete(ecr, name, ecr.describe_images(repositoryName=name)["imageDetails"][0]["imageDigest"])
    assert resp["imageScanFindings"]["findings"] == [] and resp["imageScanFindings"]["findingSeverityCounts"] == {}
    check_error(client_error(ecr.describe_image_scan_findings, repositoryName=name, imageId={"imageTag": "v1"},
                             nextToken="garbage"), "InvalidParameterException")


def test_registry_scanning_configuration_rules_scan_matching_repositories_on_push(server, ecr, advisories):
    prefix = unique("scanrule")
    before = ecr.get_registry_scanning_configuration()
    assert before["registryId"] == ACCOUNT_ID
    try:
        rules = [{"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": f"{prefix}-prod*", "filterType": "WILDCARD"}]}]
        r = ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
        assert r["registryScanningConfiguration"] == {"scanType": "BASIC", "rules": rules}
        assert ecr.get_registry_scanning_configuration()["scanningConfiguration"] == {"scanType": "BASIC", "rules": rules}
        for n in (f"{prefix}-prod1", f"{prefix}-dev1"):
            ecr.create_repository(repositoryName=n)
        cfg = ecr.batch_get_repository_scanning_configuration(repositoryNames=[f"{prefix}-prod1", f"{prefix}-dev1", f"{prefix}-gone"])
        by = {c["repositoryName"]: c for c in cfg["scanningConfigurations"]}
        assert by[f"{prefix}-prod1"]["scanFrequency"] == "SCAN_ON_PUSH" and by[f"{prefix}-prod1"]["scanOnPush"] is True
        assert by[f"{prefix}-prod1"]["appliedScanFilters"] == rules[0]["repositoryFilters"]
        assert by[f"{prefix}-dev1"]["scanFrequency"] == "MANUAL" and by[f"{prefix}-dev1"]["appliedScanFilters"] == []
        assert cfg["failures"] == [{"repositoryName": f"{prefix}-gone", "failureCode": "REPOSITORY_NOT_FOUND",
                                    "failureReason": "REPOSITORY_NOT_FOUND"}]
        d = push(server, ecr, f"{prefix}-prod1", "v1", [layer(dist_info("jinja2", "2.10"))])
        assert len(found(wait_complete(ecr, f"{prefix}-prod1", d))) == 2
        d = push(server, ecr, f"{prefix}-dev1", "v1", [layer(dist_info("jinja2", "2.10"))])
        check_error(client_error(ecr.describe_image_scan_findings, repositoryName=f"{prefix}-dev1",
                                 imageId={"imageDigest": d}), "ScanNotFoundException")
        # What Berth cannot do is refused, not stored.
        check_error(client_error(ecr.put_registry_scanning_configuration, scanType="ENHANCED", rules=[]),
                    "InvalidParameterException")
        check_error(client_error(ecr.put_registry_scanning_configuration, scanType="BASIC", rules=[
            {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "Bad!", "filterType": "WILDCARD"}]}]),
            "ValidationException")
        assert ecr.get_registry_scanning_configuration()["scanningConfiguration"]["rules"] == rules
    finally:
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])


def test_an_import_skips_unreadable_records_names_them_and_keeps_the_rest(server, tmp_path):
    good = {"id": "FIXTURE-IMPORT-OK", "summary": "FIXTURE (not a real advisory)", "modified": "2026-12-03T00:00:00Z",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "berth-import-fixture"}, "versions": ["1.0"]}]}
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "broken.json").write_text('{"id": "FIXTURE-BROKEN", "affected": [')
    (tmp_path / "not-osv.json").write_text('["a list, not an advisory"]')
    out = berth(server, "vulndb", "import", str(tmp_path))
    assert out.returncode != 0, out
    assert "imported 1 advisories (0 withdrawn)" in out.stdout, out.stdout
    assert "broken.json" in out.stderr and "not-osv.json" in out.stderr, out.stderr
    assert "2 record(s) could not be read and were skipped" in out.stderr, out.stderr
    missing = berth(server, "vulndb", "import", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "no such file or directory" in missing.stderr, missing.stderr


def test_put_image_scanning_configuration_and_the_vulndb_status(server, ecr, advisories):
    name = unique("scan-cfg")
    ecr.create_repository(repositoryName=name)
    r = ecr.put_image_scanning_configuration(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    out = berth(server, "vulndb", "status", "--output", "json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["advisories"] >= 5 and any(i["records"] >= 5 for i in st["imports"]), st


def test_an_index_reports_the_union_of_its_platforms(server, ecr, advisories):
    name = unique("scan-index")
    ecr.create_repository(repositoryName=name)
    amd = push(server, ecr, name, "amd64", [layer(dist_info("jinja2", "2.10.1"))])
    arm = push(server, ecr, name, "arm64", [layer(cargo_lock(("smallvec", "0.6.12")))])
    auth = basic_auth_header(ecr)

    def desc(d, arch):
        r = requests.get(f"{server.url}/v2/{name}/manifests/{d}",
                         headers={"Authorization": auth, "Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=30)
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(r.content),
                "platform": {"architecture": arch, "os": "linux"}}

    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [desc(amd, "amd64"), desc(arm, "arm64")]}).encode()
    r = requests.put(f"{server.url}/v2/{name}/manifests/multi", data=index,
                     headers={"Authorization": auth, "Content-Type": "application/vnd.oci.image.index.v1+json"}, timeout=30)
    assert r.status_code == 201, r.text
    ecr.start_image_scan(repositoryName=name, imageId={"imageTag": "multi"})
    resp = wait_complete(ecr, name, sha256(index))
    assert found(resp) == {
        ("CVE-2020-28493", "jinja2", "2.10.1", "UNDEFINED"),
        ("CVE-2018-25023", "smallvec", "0.6.12", "UNDEFINED"),
    }


def test_with_sbom_referrers_on_a_scan_publishes_a_cyclonedx_sbom_referrer():
    server = start_berth({"BERTH_SCAN_SBOM_REFERRERS": "true", "BERTH_JOB_POLL_MS": "50", "BERTH_SCAN_INTERVAL_SECS": "0"})
    try:
        out = berth(server, "vulndb", "import", FIXTURES)
        assert out.returncode == 0, out.stderr
        ecr = make_client(server)
        name = unique("scan-sbom")
        ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
        digest = push(server, ecr, name, "v1", [
            layer(dpkg(("libssl3", "openssl", "3.0.11-1~deb12u1"))),
            layer({**dist_info("Jinja2", "2.10"), **cargo_lock(("smallvec", "0.6.9"), ("serde", "1.0.0"))}),
        ])
        assert len(found(wait_complete(ecr, name, digest))) == 5
        # The scan published a CycloneDX SBOM as a referrer of the image.
        auth = basic_auth_header(ecr)
        r = requests.get(f"{server.url}/v2/{name}/referrers/{digest}", headers={"Authorization": auth}, timeout=30)
        assert r.status_code == 200, r.text
        sboms = [m for m in r.json()["manifests"] if m.get("artifactType") == "application/vnd.cyclonedx+json"]
        assert len(sboms) == 1, r.json()
        m = requests.get(f"{server.url}/v2/{name}/manifests/{sboms[0]['digest']}",
                         headers={"Authorization": auth, "Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=30).json()
        assert m["subject"]["digest"] == digest
        bom = requests.get(f"{server.url}/v2/{name}/blobs/{m['layers'][0]['digest']}", headers={"Authorization": auth},
                           timeout=30).json()
        assert bom["bomFormat"] == "CycloneDX" and bom["metadata"]["component"]["version"] == digest
        purls = {c.get("purl") for c in bom["components"]}
        assert {"pkg:pypi/jinja2@2.10", "pkg:cargo/smallvec@0.6.9", "pkg:cargo/serde@1.0.0",
                "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?distro=debian-12"} <= purls, purls
        # The SBOM is not scanned itself (not an image).
        check_error(client_error(ecr.describe_image_scan_findings, repositoryName=name,
                                 imageId={"imageDigest": sboms[0]["digest"]}), "ScanNotFoundException")
        # A rescan's SBOM replaces the earlier one: they do not pile up.
        first = sboms[0]["digest"]
        before = ecr.describe_image_scan_findings(repositoryName=name, imageId={"imageDigest": digest})["imageScanFindings"]["imageScanCompletedAt"]
        time.sleep(1.1)  # the SBOM carries its time: the new one differs
        ecr.start_image_scan(repositoryName=name, imageId={"imageDigest": digest})
        for _ in range(100):
            r = requests.get(f"{server.url}/v2/{name}/referrers/{digest}", headers={"Authorization": auth}, timeout=30)
            sboms = [m for m in r.json()["manifests"] if m.get("artifactType") == "application/vnd.cyclonedx+json"]
            done = ecr.describe_image_scan_findings(repositoryName=name, imageId={"imageDigest": digest})
            if done["imageScanStatus"]["status"] == "COMPLETE" and done.get("imageScanFindings", {}).get("imageScanCompletedAt", before) > before \
                    and [m["digest"] for m in sboms] != [first]:
                break
            time.sleep(0.1)
        assert len(sboms) == 1 and sboms[0]["digest"] != first, sboms
    finally:
        stop_berth(server)


def test_continuous_scan_rescans_after_an_advisory_import(server, ecr, advisories, tmp_path):
    prefix = unique("scancont")
    rules = [{"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": f"{prefix}*", "filterType": "WILDCARD"}]}]
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
    try:
        name = f"{prefix}-app"
        ecr.create_repository(repositoryName=name)
        cfg = ecr.batch_get_repository_scanning_configuration(repositoryNames=[name])["scanningConfigurations"][0]
        assert (cfg["scanFrequency"], cfg["scanOnPush"]) == ("CONTINUOUS_SCAN", True)
        pkg = f"{prefix}-pkg"
        digest = push(server, ecr, name, "v1", [layer(dist_info(pkg, "1.0"))])
        assert found(wait_complete(ecr, name, digest)) == set()
        # A new advisory naming the package: the import queues a rescan, which finds it.
        record = {"id": f"FIXTURE-{prefix}", "summary": "FIXTURE (not a real advisory)", "modified": "2026-12-03T00:00:00Z",
                  "affected": [{"package": {"ecosystem": "PyPI", "name": pkg},
                                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]}
        (tmp_path / "fixture.json").write_text(json.dumps(record))
        out = berth(server, "vulndb", "import", str(tmp_path / "fixture.json"))
        assert out.returncode == 0 and "queued 1 scans" in out.stdout, (out.stdout, out.stderr)
        for _ in range(300):
            resp = ecr.describe_image_scan_findings(repositoryName=name, imageId={"imageDigest": digest})
            if resp["imageScanStatus"]["status"] == "COMPLETE" and found(resp):
                break
            time.sleep(0.1)
        assert found(resp) == {(f"FIXTURE-{prefix}", pkg, "1.0", "UNDEFINED")}
    finally:
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])


def test_the_pull_gate_refuses_vulnerable_and_unscanned_images_except_with_the_bypass(server, ecr, advisories):
    name = unique("gated")
    ecr.create_repository(repositoryName=name)
    bad = push(server, ecr, name, "bad", [layer(cargo_lock(("smallvec", "0.6.9")))])       # CRITICAL + UNDEFINED
    low = push(server, ecr, name, "low", [layer(dist_info("jinja2", "2.10.1"))])            # UNDEFINED only
    unscanned = push(server, ecr, name, "new", [layer(cargo_lock(("serde", "1.0.0")))])
    for d in (bad, low):
        ecr.start_image_scan(repositoryName=name, imageId={"imageDigest": d})
        wait_complete(ecr, name, d)
    out = server.admin("set-pull-gate", "--repository-name", name, "--severity", "high")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pullGate"] == {"severity": "HIGH", "allowUnscanned": False}
    pull = {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": "*"}
    user = create_iam_user(server, unique("puller"), inline={"pull": {"Version": "2012-10-17", "Statement": [pull]}})
    auth = {"Authorization": "Basic " + user.token(), "Accept": "application/vnd.oci.image.manifest.v1+json"}

    def get(ref):
        return requests.get(f"{server.url}/v2/{name}/manifests/{ref}", headers=auth, timeout=30)

    r = get("bad")
    assert r.status_code == 403, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "DENIED" and "CRITICAL: 1" in err["message"] and "berth:BypassPullGate" in err["message"], err
    assert get(bad).status_code == 403
    assert get("low").status_code == 200, "UNDEFINED is below HIGH"
    r = get("new")
    assert r.status_code == 403 and "has not been scanned" in r.json()["errors"][0]["message"], r.text
    # BatchGetImage is gated the same way, image by image.
    got = user.ecr().batch_get_image(repositoryName=name, imageIds=[{"imageTag": "bad"}, {"imageTag": "low"}])
    assert [i["imageId"]["imageDigest"] for i in got["images"]] == [low]
    (fail,) = got["failures"]
    assert fail["imageId"] == {"imageTag": "bad"} and fail["failureCode"] == "ImageInaccessible", fail
    assert "CRITICAL: 1" in fail["failureReason"], fail
    # Break-glass: the bypass action lets the user pull.
    iam = make_iam(server)
    bypass = {"Effect": "Allow", "Action": "berth:BypassPullGate", "Resource": "*"}
    iam.put_user_policy(UserName=user.name, PolicyName="bypass",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [bypass]}))
    deadline = time.monotonic() + 10
    while get("bad").status_code != 200:
        assert time.monotonic() < deadline, "the bypass was not honoured"
        time.sleep(0.2)
    iam.delete_user_policy(UserName=user.name, PolicyName="bypass")
    # Unscanned images allowed through; then the gate removed.
    assert server.admin("set-pull-gate", "--repository-name", name, "--severity", "HIGH", "--allow-unscanned").returncode == 0
    deadline = time.monotonic() + 10
    while get("new").status_code != 200:
        assert time.monotonic() < deadline, "--allow-unscanned was not honoured"
        time.sleep(0.2)
    assert get("bad").status_code == 403
    assert server.admin("set-pull-gate", "--repository-name", name, "--off").returncode == 0
    deadline = time.monotonic() + 10
    while get("bad").status_code != 200:
        assert time.monotonic() < deadline, "--off was not honoured"
        time.sleep(0.2)
    bad_sev = server.admin("set-pull-gate", "--repository-name", name, "--severity", "SEVERE")
    assert bad_sev.returncode != 0 and "must be one of" in bad_sev.stderr, bad_sev.stderr
