//! Inventories of synthetic images, one ecosystem at a time.

mod common;

use berth_scanner::OsInfo;
use common::*;

const DEBIAN_OS: &[u8] =
    b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

const DPKG_STATUS: &[u8] = b"Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u4
Description: GNU C Library
 Contains the standard libraries.

Package: oldpkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: bash
Status: install ok installed
Architecture: amd64
Version:  5.2.15-2+b2 
";

#[test]
fn debian_image() {
    let inv = scan(&[layer(&[
        E::Dir("etc/"),
        E::File("etc/os-release", DEBIAN_OS),
        E::File("etc/debian_version", b"12.5\n"),
        E::File("var/lib/dpkg/status", DPKG_STATUS),
    ])]);
    assert_eq!(
        inv.os,
        Some(OsInfo {
            id: "debian".into(),
            version_id: Some("12".into()),
            pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into())
        })
    );
    assert_eq!(triples(&inv), vec![t("Debian:12", "bash", "5.2.15-2+b2"), t("Debian:12", "libc6", "2.36-9+deb12u4")]);
    let libc = find(&inv, "libc6");
    assert_eq!(libc.source_name.as_deref(), Some("glibc"));
    assert_eq!(libc.source_version.as_deref(), Some("2.36-9+deb12u4"));
    assert_eq!(libc.path, "var/lib/dpkg/status");
    assert_eq!(find(&inv, "bash").source_name, None);
}

#[test]
fn debian_version_fallback_without_os_release() {
    let inv = scan(&[layer(&[E::File("etc/debian_version", b"12.5\n"), E::File("var/lib/dpkg/status", DPKG_STATUS)])]);
    assert_eq!(inv.os.as_ref().map(|o| (o.id.as_str(), o.version_id.as_deref())), Some(("debian", Some("12.5"))));
    assert_eq!(inv.packages[0].ecosystem, "Debian:12");
}

#[test]
fn unknown_os_uses_bare_ecosystems() {
    let inv = scan(&[layer(&[
        E::File("var/lib/dpkg/status", DPKG_STATUS),
        E::File("lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\n"),
    ])]);
    assert_eq!(inv.os, None);
    assert_eq!(
        triples(&inv),
        vec![
            t("Alpine", "musl", "1.2.4-r2"),
            t("Debian", "bash", "5.2.15-2+b2"),
            t("Debian", "libc6", "2.36-9+deb12u4")
        ]
    );
}

#[test]
fn alpine_image() {
    let apk = b"C:Q1abc=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
o:musl
m:Timo

C:Q1def=
P:libcrypto3
V:3.1.4-r5
o:openssl
";
    let inv = scan(&[layer(&[
        E::File("etc/alpine-release", b"3.19.1\n"),
        E::File(
            "etc/os-release",
            b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
        ),
        E::File("lib/apk/db/installed", apk),
    ])]);
    assert_eq!(inv.os.as_ref().unwrap().id, "alpine");
    assert_eq!(
        triples(&inv),
        vec![t("Alpine:v3.19", "libcrypto3", "3.1.4-r5"), t("Alpine:v3.19", "musl", "1.2.4_git20230717-r4")]
    );
    assert_eq!(find(&inv, "libcrypto3").source_name.as_deref(), Some("openssl"));
}

#[test]
fn alpine_release_fallback() {
    let inv =
        scan(&[layer(&[E::File("etc/alpine-release", b"3.18.6\n"), E::File("lib/apk/db/installed", b"P:a\nV:1\n")])]);
    assert_eq!(triples(&inv), vec![t("Alpine:v3.18", "a", "1")]);
}

#[test]
fn ubuntu_image_with_os_release_symlink() {
    let inv = scan(&[layer(&[
        E::File(
            "usr/lib/os-release",
            b"NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nPRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\n",
        ),
        E::Symlink("etc/os-release", "../usr/lib/os-release"),
        E::File(
            "var/lib/dpkg/status",
            b"Package: zlib1g\nStatus: install ok installed\nSource: zlib\nVersion: 1:1.2.11.dfsg-2ubuntu9.2\n",
        ),
    ])]);
    let os = inv.os.as_ref().unwrap();
    assert_eq!((os.id.as_str(), os.version_id.as_deref()), ("ubuntu", Some("22.04")));
    assert_eq!(os.pretty_name.as_deref(), Some("Ubuntu 22.04.3 LTS"));
    assert_eq!(triples(&inv), vec![t("Ubuntu:22.04", "zlib1g", "1:1.2.11.dfsg-2ubuntu9.2")]);
}

#[test]
fn usr_lib_os_release_alone() {
    let inv = scan(&[layer(&[E::File("usr/lib/os-release", b"ID=\"debian\"\nVERSION_ID=\"11\"\n")])]);
    assert_eq!(inv.os.unwrap().version_id.as_deref(), Some("11"));
}

#[test]
fn distroless_status_d() {
    let inv = scan(&[layer(&[
        E::File("etc/os-release", DEBIAN_OS),
        E::File(
            "var/lib/dpkg/status.d/base-files",
            b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n",
        ),
        E::File("var/lib/dpkg/status.d/base-files.md5sums", b"abc  etc/issue\n"),
        E::File(
            "var/lib/dpkg/status.d/libssl3",
            b"Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n\nPackage: openssl-extra\nVersion: 1\n",
        ),
    ])]);
    assert_eq!(
        triples(&inv),
        vec![
            t("Debian:12", "base-files", "12.4+deb12u5"),
            t("Debian:12", "libssl3", "3.0.11-1~deb12u2"),
            t("Debian:12", "openssl-extra", "1"),
        ]
    );
    assert_eq!(find(&inv, "libssl3").path, "var/lib/dpkg/status.d/libssl3");
    assert_eq!(find(&inv, "libssl3").source_name.as_deref(), Some("openssl"));
}

#[test]
fn python_distributions() {
    let inv = scan(&[layer(&[
        E::File(
            "usr/lib/python3/dist-packages/Foo_Bar.baz-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: Foo_Bar.baz\nVersion: 1.0\n\nName: not-this\n",
        ),
        E::File(
            "usr/local/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n",
        ),
        E::File("opt/app/legacy.egg-info/PKG-INFO", b"Metadata-Version: 1.0\nName: Legacy\nVersion: 0.1\n"),
        E::File("usr/lib/python3/site-packages/six-1.16.0.egg-info", b"Name: six\nVersion: 1.16.0\n"),
        E::File("usr/lib/python3/site-packages/broken.dist-info/METADATA", b"Name: broken\n"),
        E::File("opt/notsite/x.dist-info/METADATA", b"Name: x\nVersion: 1\n"),
    ])]);
    assert_eq!(
        triples(&inv),
        vec![
            t("PyPI", "foo-bar-baz", "1.0"),
            t("PyPI", "legacy", "0.1"),
            t("PyPI", "requests", "2.31.0"),
            t("PyPI", "six", "1.16.0")
        ]
    );
    assert_eq!(
        find(&inv, "requests").path,
        "usr/local/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA"
    );
}

#[test]
fn npm_packages_and_lockfiles() {
    let lock_v3 = br#"{"name":"app","lockfileVersion":3,"packages":{
        "":{"name":"app","version":"1.0.0"},
        "node_modules/express":{"version":"4.18.2"},
        "node_modules/express/node_modules/debug":{"version":"2.6.9"},
        "node_modules/@types/node":{"version":"20.1.0"},
        "node_modules/alias":{"name":"real-name","version":"1.2.3"},
        "node_modules/local":{"resolved":"packages/local","link":true},
        "packages/local":{"version":"0.0.1"},
        "node_modules/gitdep":{"version":"git+ssh://git@example.com/x.git#abc"}
    }}"#;
    let lock_v1 = br#"{"name":"old","lockfileVersion":1,"dependencies":{
        "left-pad":{"version":"1.3.0","dependencies":{"nested":{"version":"0.1.0"}}},
        "filedep":{"version":"file:../x"}
    }}"#;
    let inv = scan(&[layer(&[
        E::File("app/node_modules/lodash/package.json", br#"{"name":"lodash","version":"4.17.21"}"#),
        E::File("app/node_modules/@babel/core/package.json", br#"{"name":"@babel/core","version":"7.23.0"}"#),
        E::File("app/node_modules/nover/package.json", br#"{"name":"nover"}"#),
        E::File("app/node_modules/lodash/fp/package.json", br#"{"name":"inner","version":"0"}"#),
        E::File("app/node_modules/bad/package.json", b"{not json"),
        E::File("app/package-lock.json", lock_v3),
        E::File("old/package-lock.json", lock_v1),
    ])]);
    assert_eq!(
        triples(&inv),
        vec![
            t("npm", "@babel/core", "7.23.0"),
            t("npm", "@types/node", "20.1.0"),
            t("npm", "debug", "2.6.9"),
            t("npm", "express", "4.18.2"),
            t("npm", "left-pad", "1.3.0"),
            t("npm", "lodash", "4.17.21"),
            t("npm", "nested", "0.1.0"),
            t("npm", "real-name", "1.2.3"),
        ]
    );
    assert_eq!(find(&inv, "express").path, "app/package-lock.json");
    assert_eq!(find(&inv, "lodash").path, "app/node_modules/lodash/package.json");
}

#[test]
fn cargo_lock() {
    let lock = br#"# This file is automatically @generated by Cargo.
version = 3

[[package]]
name = "myapp"
version = "0.1.0"
dependencies = [
 "serde",
]

[[package]]
name = "serde"
version = "1.0.193"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "abc"

[[package]]
name = "gitdep"
version = "0.2.0"
source = "git+https://example.com/gitdep#abc"

[[package]]
name = "sparse"
version = "2.0.0"
source = "sparse+https://index.crates.io/"

[metadata]
name = "ignored"
"#;
    let inv = scan(&[layer(&[E::File("src/app/Cargo.lock", lock)])]);
    assert_eq!(triples(&inv), vec![t("crates.io", "serde", "1.0.193"), t("crates.io", "sparse", "2.0.0")]);
    assert_eq!(inv.packages[0].path, "src/app/Cargo.lock");
}

#[test]
fn cargo_auditable_binary() {
    let json = br#"{"packages":[
        {"name":"myapp","version":"0.1.0","source":"local","root":true},
        {"name":"serde","version":"1.0.193","source":"crates.io","kind":"runtime"},
        {"name":"private","version":"0.3.0","source":"registry"},
        {"name":"gitdep","version":"0.1.0","source":"git"}
    ]}"#;
    let bin = elf(&[(".text", b"\x90\x90\x90\x90"), (".dep-v0", &zlib(json))]);
    let inv = scan(&[layer(&[
        E::Exec("usr/local/bin/myapp", bin.clone()),
        // Not executable: not looked at.
        E::File("usr/share/doc/myapp.bin", &bin),
    ])]);
    assert_eq!(triples(&inv), vec![t("crates.io", "private", "0.3.0"), t("crates.io", "serde", "1.0.193")]);
    assert_eq!(inv.packages[0].path, "usr/local/bin/myapp");
}

const MODINFO: &str = "path\texample.com/app\nmod\texample.com/app\tv1.4.0\th1:abc=\ndep\tgolang.org/x/net\tv0.17.0\th1:def=\ndep\tgithub.com/old/lib\tv1.0.0\th1:x=\n=>\tgithub.com/new/lib\tv1.1.0\th1:y=\ndep\tgithub.com/local/lib\tv0.1.0\n=>\t../local\t\ndep\tgithub.com/pkg/errors\tv0.9.1\th1:z=\nbuild\t-compiler=gc\n";

#[test]
fn go_binary_with_buildinfo_section() {
    let bin = elf(&[(".text", b"\xc3"), (".go.buildinfo", &go_buildinfo("go1.21.4", MODINFO))]);
    let inv = scan(&[layer(&[E::Exec("app", bin)])]);
    assert_eq!(
        triples(&inv),
        vec![
            t("Go", "example.com/app", "v1.4.0"),
            t("Go", "github.com/local/lib", "v0.1.0"),
            t("Go", "github.com/new/lib", "v1.1.0"),
            t("Go", "github.com/pkg/errors", "v0.9.1"),
            t("Go", "golang.org/x/net", "v0.17.0"),
            t("Go", "stdlib", "1.21.4"),
        ]
    );
    assert!(inv.packages.iter().all(|p| p.path == "app"));
}

#[test]
fn go_binary_found_by_scanning() {
    // No section headers: the magic is found at a 16-byte aligned offset.
    let mut bin = b"\x7fELF\x02\x01\x01".to_vec();
    bin.resize(48, 0);
    bin.extend_from_slice(b"\xff Go buildinf:"); // unaligned decoy
    bin.resize(64, 0);
    bin.extend(go_buildinfo(
        "go1.22.0 X:boringcrypto",
        "path\tcmd\nmod\tcmd\t(devel)\t\ndep\tgithub.com/a/b\tv1.0.0\th1:q=\n",
    ));
    let inv = scan(&[layer(&[E::Exec("usr/bin/tool", bin)])]);
    assert_eq!(triples(&inv), vec![t("Go", "github.com/a/b", "v1.0.0"), t("Go", "stdlib", "1.22.0")]);
}

fn limits_small() -> berth_scanner::Limits {
    berth_scanner::Limits { max_binary_size: 64, ..Default::default() }
}

#[test]
fn oversized_binaries_are_searched_for_go_build_info_only() {
    let bin = elf(&[(".go.buildinfo", &go_buildinfo("go1.21.4", MODINFO))]);
    let limits = berth_scanner::Limits { max_binary_size: 64, ..Default::default() };
    let inv = scan_with(limits, &[layer(&[E::Exec("app", bin)])]).unwrap();
    // Too large for sections: only the Go build info, found by a streaming search.
    assert_eq!(inv.packages.len(), 6, "{:?}", inv.packages);
    let json = br#"{"packages":[{"name":"serde","version":"1.0.193","source":"crates.io"}]}"#;
    let bin = elf(&[(".dep-v0", &zlib(json))]);
    let inv = scan_with(limits_small(), &[layer(&[E::Exec("app", bin)])]).unwrap();
    assert!(inv.packages.is_empty());
}

#[test]
fn packages_are_sorted_and_deduplicated() {
    let meta = b"Name: a\nVersion: 1\n" as &[u8];
    let inv = scan(&[
        layer(&[E::File("x/site-packages/a.dist-info/METADATA", meta)]),
        layer(&[
            E::File("x/site-packages/a.dist-info/METADATA", meta),
            E::File("y/site-packages/a.dist-info/METADATA", meta),
        ]),
    ]);
    let paths: Vec<&str> = inv.packages.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["x/site-packages/a.dist-info/METADATA", "y/site-packages/a.dist-info/METADATA"]);
}

#[test]
fn hard_link_to_an_interesting_file() {
    let inv = scan(&[layer(&[
        E::File("usr/lib/os-release", DEBIAN_OS),
        E::Hardlink("etc/os-release", "usr/lib/os-release"),
        E::File("a/site-packages/p.dist-info/METADATA", b"Name: p\nVersion: 2\n"),
        E::Hardlink("b/site-packages/p.dist-info/METADATA", "./a/site-packages/p.dist-info/METADATA"),
    ])]);
    assert_eq!(inv.os.unwrap().id, "debian");
    let paths: Vec<&str> = inv.packages.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["a/site-packages/p.dist-info/METADATA", "b/site-packages/p.dist-info/METADATA"]);
}

#[test]
fn media_types() {
    use berth_scanner::Compression;
    assert_eq!(Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip"), Some(Compression::Gzip));
    assert_eq!(Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"), Some(Compression::Zstd));
    assert_eq!(Compression::from_media_type("application/vnd.oci.image.layer.v1.tar"), Some(Compression::None));
    assert_eq!(
        Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        Some(Compression::Gzip)
    );
    assert_eq!(
        Compression::from_media_type("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip; x=y"),
        Some(Compression::Gzip)
    );
    assert_eq!(Compression::from_media_type("application/vnd.oci.image.config.v1+json"), None);
    assert_eq!(Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+bzip2"), None);
    assert_eq!(Compression::sniff(b"\x1f\x8b\x08"), Compression::Gzip);
    assert_eq!(Compression::sniff(b"\x28\xb5\x2f\xfd"), Compression::Zstd);
    assert_eq!(Compression::sniff(b"etc/"), Compression::None);
}
