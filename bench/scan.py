#!/usr/bin/env python3
"""Vulnerability scanning benchmark (issue 12): how long `berth vulndb import` takes for all of
../shared/vulndb (crates.io, Go and PyPI `all.zip`), and how long a scan of a large image takes,
from StartImageScan to COMPLETE, with the server's peak memory while it scans.

The image: --size-mb of incompressible data in --layers uncompressed tar layers (one big file
each) plus a layer with --packages packages: a Debian dpkg status database (half of them) and
Python dist-info directories (the other half; some pinned at versions the PyPI advisories name,
so that the scan has findings to report). Distribution has no scanner: no ratio (Harbor's
scanning runs Trivy, a separate service).

Usage: python3 bench/scan.py [--bin target/release/berth] [--vulndb ../shared/vulndb]
       [--size-mb 500] [--layers 5] [--packages 1000] [--gzip]
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import scale  # noqa: E402


def big_layer(path, mb, seed):
    """An uncompressed tar file at `path` holding one `mb` MiB file of pseudo-random bytes."""
    with open(path, "wb") as out:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
            info = tarfile.TarInfo(f"opt/data/blob-{seed}.bin")
            info.size = mb << 20
            info.mode = 0o644

            class Rand(io.RawIOBase):
                def __init__(self):
                    self.left = info.size
                    self.block = os.urandom(1 << 20)

                def readable(self):
                    return True

                def readinto(self, b):
                    n = min(len(b), self.left, len(self.block))
                    b[:n] = self.block[:n]
                    self.block = self.block[n:] or os.urandom(1 << 20)
                    self.left -= n
                    return n

            tf.addfile(info, io.BufferedReader(Rand(), 1 << 20))


def package_layer(n):
    files = {"etc/os-release": b'ID=debian\nVERSION_ID="12"\n'}
    stanzas = []
    for i in range(n // 2):
        stanzas.append(f"Package: pkg{i}\nStatus: install ok installed\nVersion: 1.{i}-1\nArchitecture: amd64\n")
    files["var/lib/dpkg/status"] = "\n".join(stanzas).encode()
    real = [("jinja2", "2.10"), ("flask", "0.12"), ("requests", "2.19.0"), ("urllib3", "1.24.1"), ("django", "2.2.1"),
            ("pyyaml", "5.1"), ("pillow", "6.2.0"), ("werkzeug", "0.15.0")]
    for i in range(n - n // 2):
        name, ver = real[i] if i < len(real) else (f"pypkg{i}", f"0.{i}.0")
        files[f"usr/lib/python3/dist-packages/{name}-{ver}.dist-info/METADATA"] = \
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def upload_file(conn, repo, path):
    """Monolithic upload of a file (POST, then PUT with the bytes); its digest and size."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    size = os.path.getsize(path)
    status, hd, body = conn.call("POST", f"/v2/{repo}/blobs/uploads/")
    scale.expect("POST upload", status, body, ok=(202,))
    loc = urllib.parse.urlparse(hd["Location"])
    q = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(digest)
    with open(path, "rb") as f:
        status, _, body = conn.call("PUT", f"{loc.path}?{q}", f.read(), {"Content-Type": "application/octet-stream"})
    scale.expect(f"PUT {digest}", status, body, ok=(201,))
    return digest, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/berth")
    ap.add_argument("--vulndb", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "vulndb"))
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--packages", type=int, default=1000)
    ap.add_argument("--gzip", action="store_true", help="gzip the big layers (level 1)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="berth-scan-bench-")
    results = {}
    try:
        data = os.path.join(work, "berth-data")
        proc, base = scale.start_berth(args.bin, data, {}, os.path.join(work, "berth.log"))
        try:
            env = dict(os.environ, BERTH_ACCOUNT_ID=scale.ACCOUNT, BERTH_SERVER_KEY=scale.SERVER_KEY)
            zips = [os.path.join(args.vulndb, e, "all.zip") for e in ("crates.io", "Go", "PyPI")]
            t0 = time.perf_counter()
            r = subprocess.run([args.bin, "vulndb", "import", *zips, "--data-dir", data], env=env,
                               capture_output=True, text=True)
            results["import_s"] = time.perf_counter() - t0
            scale.must(r.returncode == 0, f"vulndb import: {r.stderr}")
            scale.log(f"import: {r.stdout.strip()} ({results['import_s']:.1f} s wall)")
            auth = scale.berth_auth(base)
            conn = scale.Conn(base, auth)
            repo = "bench/scan"
            scale.ecr_call(conn, base, "CreateRepository", {"repositoryName": repo})
            descs = []
            per = max(1, args.size_mb // max(1, args.layers))
            for i in range(args.layers):
                p = os.path.join(work, f"layer{i}.tar")
                big_layer(p, per, i)
                mt = "application/vnd.oci.image.layer.v1.tar"
                if args.gzip:
                    subprocess.run(["gzip", "-1", "-n", p], check=True)
                    p, mt = p + ".gz", mt + "+gzip"
                d, s = upload_file(conn, repo, p)
                os.unlink(p)
                descs.append({"mediaType": mt, "digest": d, "size": s})
            p = os.path.join(work, "packages.tar")
            with open(p, "wb") as f:
                f.write(package_layer(args.packages))
            d, s = upload_file(conn, repo, p)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})
            cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
            cp = os.path.join(work, "config.json")
            with open(cp, "wb") as f:
                f.write(cfg)
            cd, cs = upload_file(conn, repo, cp)
            m = json.dumps({"schemaVersion": 2, "mediaType": scale.MT,
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                            "layers": descs}).encode()
            scale.put_manifest(conn, repo, "big", m, scale.sha256(m))
            total = sum(x["size"] for x in descs)
            rss_before = scale.rss_kib(proc.pid)[0]
            t0 = time.perf_counter()
            scale.ecr_call(conn, base, "StartImageScan", {"repositoryName": repo, "imageId": {"imageTag": "big"}})
            peak = rss_before
            while True:
                out = scale.ecr_call(conn, base, "DescribeImageScanFindings",
                                     {"repositoryName": repo, "imageId": {"imageTag": "big"}, "maxResults": 1000})
                peak = max(peak, scale.rss_kib(proc.pid)[0])
                st = out["imageScanStatus"]["status"]
                if st != "IN_PROGRESS":
                    break
                time.sleep(0.05)
            secs = time.perf_counter() - t0
            peak = max(peak, scale.rss_kib(proc.pid)[1])  # the high-water mark covers between polls
            scale.must(st == "COMPLETE", f"scan status {out['imageScanStatus']}")
            findings = out["imageScanFindings"]["findings"]
            results.update({"image_bytes": total, "packages": args.packages, "scan_s": secs,
                            "findings": len(findings), "counts": out["imageScanFindings"]["findingSeverityCounts"],
                            "rss_before_kib": rss_before, "rss_peak_kib": peak})
            scale.log(f"scan: {total / 2**20:.0f} MiB, {args.packages} packages: {secs:.2f} s, "
                      f"{len(findings)} findings, RSS {rss_before} -> peak {peak} KiB")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| what | Berth |\n|---|---|")
    print(f"| `berth vulndb import` of crates.io + Go + PyPI all.zip | {results['import_s']:.1f} s |")
    print(f"| scan of a {results['image_bytes'] / 2**20:.0f} MiB{' gzip' if args.gzip else ''} image, {results['packages']} packages "
          f"(StartImageScan to COMPLETE) | {results['scan_s']:.2f} s, {results['findings']} findings |")
    print(f"| server RSS before / peak during the scan | {results['rss_before_kib'] / 1024:.0f} / "
          f"{results['rss_peak_kib'] / 1024:.0f} MiB |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
