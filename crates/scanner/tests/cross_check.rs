//! A second, independent set of cases (written alongside the crate by another hand): layers
//! built here with known package databases, whiteouts and hostile content.

use berth_scanner::*;
use std::io::{Read, Write};

/// A tar layer: (path, contents, mode) regular files; `links` (path, target, hard).
fn tar_layer(files: &[(&str, &[u8], u32)], links: &[(&str, &str, bool)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    for (path, target, hard) in links {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(if *hard { tar::EntryType::Link } else { tar::EntryType::Symlink });
        b.append_link(&mut h, path, target).unwrap();
    }
    b.into_inner().unwrap()
}

fn files(list: &[(&str, &[u8])]) -> Vec<u8> {
    let v: Vec<(&str, &[u8], u32)> = list.iter().map(|(p, d)| (*p, *d, 0o644)).collect();
    tar_layer(&v, &[])
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn scan(layers: &[(Compression, Vec<u8>)]) -> Result<Inventory, ScanError> {
    scan_with(Limits::default(), layers)
}

fn scan_with(limits: Limits, layers: &[(Compression, Vec<u8>)]) -> Result<Inventory, ScanError> {
    let mut s = Scanner::new(limits);
    for (c, l) in layers {
        s.add_layer(*c, l.as_slice())?;
    }
    Ok(s.finish())
}

fn names(inv: &Inventory) -> Vec<(String, String, String)> {
    inv.packages.iter().map(|p| (p.ecosystem.clone(), p.name.clone(), p.version.clone())).collect()
}

fn t(e: &str, n: &str, v: &str) -> (String, String, String) {
    (e.into(), n.into(), v.into())
}

const DEBIAN: &[u8] = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
const STATUS: &[u8] = b"Package: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2+b1\n\nPackage: old\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: zlib1g\nStatus: install ok installed\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n";

#[test]
fn debian_dpkg_with_sources_and_no_removed_packages() {
    let inv = scan(&[(Compression::Gzip, gz(&files(&[("etc/os-release", DEBIAN), ("var/lib/dpkg/status", STATUS)])))])
        .unwrap();
    assert_eq!(inv.os.as_ref().unwrap().id, "debian");
    assert_eq!(
        names(&inv),
        vec![t("Debian:12", "libssl3", "3.0.11-1~deb12u2+b1"), t("Debian:12", "zlib1g", "1:1.2.13.dfsg-1")]
    );
    let ssl = &inv.packages[0];
    assert_eq!(
        (ssl.source_name.as_deref(), ssl.source_version.as_deref()),
        (Some("openssl"), Some("3.0.11-1~deb12u2"))
    );
    assert_eq!(inv.packages[1].source_name.as_deref(), Some("zlib"));
    assert_eq!(ssl.path, "var/lib/dpkg/status");
}

#[test]
fn ubuntu_alpine_and_distroless() {
    let ubuntu = files(&[("etc/os-release", b"ID=ubuntu\nVERSION_ID=\"22.04\"\n"), ("var/lib/dpkg/status", STATUS)]);
    assert_eq!(names(&scan(&[(Compression::None, ubuntu)]).unwrap())[0].0, "Ubuntu:22.04");
    let alpine = files(&[
        ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
        ("lib/apk/db/installed", b"C:Q1abc=\nP:musl\nV:1.2.4-r2\no:musl\n\nP:libcrypto3\nV:3.1.4-r1\no:openssl\n"),
    ]);
    let inv = scan(&[(Compression::None, alpine)]).unwrap();
    assert_eq!(names(&inv), vec![t("Alpine:v3.19", "libcrypto3", "3.1.4-r1"), t("Alpine:v3.19", "musl", "1.2.4-r2")]);
    assert_eq!(inv.packages[0].source_name.as_deref(), Some("openssl"));
    // Distroless: status.d files, no Status lines, os-release through a symlink.
    let distroless = tar_layer(
        &[
            ("usr/lib/os-release", DEBIAN, 0o644),
            ("var/lib/dpkg/status.d/base", b"Package: base-files\nVersion: 12.4+deb12u5\n", 0o644),
            ("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2024a-0+deb12u1\n", 0o644),
        ],
        &[("etc/os-release", "../usr/lib/os-release", false)],
    );
    let inv = scan(&[(Compression::None, distroless)]).unwrap();
    assert_eq!(
        names(&inv),
        vec![t("Debian:12", "base-files", "12.4+deb12u5"), t("Debian:12", "tzdata", "2024a-0+deb12u1")]
    );
}

#[test]
fn language_packages() {
    let lock_v1 = br#"{"lockfileVersion":1,"dependencies":{"lodash":{"version":"4.17.15"},"a":{"version":"1.0.0","dependencies":{"b":{"version":"2.0.0"}}}}}"#;
    let lock_v3 = br#"{"lockfileVersion":3,"packages":{"":{"name":"app","version":"1.0.0"},"node_modules/minimist":{"version":"1.2.5"},"node_modules/@babel/core":{"version":"7.0.0"},"node_modules/x/node_modules/y":{"version":"0.1.0"},"node_modules/l":{"link":true}}}"#;
    let cargo = b"version = 3\n\n[[package]]\nname = \"smallvec\"\nversion = \"0.6.9\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n";
    let layer = files(&[
        (
            "usr/lib/python3/site-packages/Foo_Bar.baz-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: Foo_Bar.baz\nVersion: 1.0\n\nName: ignored\n",
        ),
        (
            "opt/venv/lib/python3.11/site-packages/requests-2.19.0.egg-info/PKG-INFO",
            b"Name: requests\nVersion: 2.19.0\n",
        ),
        ("app/node_modules/express/package.json", br#"{"name":"express","version":"4.17.1"}"#),
        ("app/node_modules/@types/node/package.json", br#"{"name":"@types/node","version":"20.0.0"}"#),
        ("app/node_modules/express/lib/package.json", br#"{"name":"not-a-package","version":"0"}"#),
        ("v1/package-lock.json", lock_v1),
        ("v3/package-lock.json", lock_v3),
        ("src/Cargo.lock", cargo),
    ]);
    let inv = scan(&[(Compression::None, layer)]).unwrap();
    let mut want = vec![
        t("PyPI", "foo-bar-baz", "1.0"),
        t("PyPI", "requests", "2.19.0"),
        t("npm", "express", "4.17.1"),
        t("npm", "@types/node", "20.0.0"),
        t("npm", "lodash", "4.17.15"),
        t("npm", "a", "1.0.0"),
        t("npm", "b", "2.0.0"),
        t("npm", "minimist", "1.2.5"),
        t("npm", "@babel/core", "7.0.0"),
        t("npm", "y", "0.1.0"),
        t("crates.io", "smallvec", "0.6.9"),
    ];
    want.sort();
    let mut got = names(&inv);
    got.dedup();
    assert_eq!(got, want);
    assert!(inv.os.is_none());
}

fn go_binary(version: &str, modinfo: &str) -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01\0".to_vec();
    b.extend(vec![0u8; 200]);
    b.extend_from_slice(GO_MAGIC_FOR_TESTS);
    b.push(8); // pointer size
    b.push(0x2); // inline strings
    b.resize(b.len() + 16, 0);
    for s in [version.to_string(), format!("{}{modinfo}{}", "0".repeat(16), "1".repeat(15) + "\n")] {
        let mut n = s.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            b.push(if n > 0 { byte | 0x80 } else { byte });
            if n == 0 {
                break;
            }
        }
        b.extend_from_slice(s.as_bytes());
    }
    b.extend(vec![0u8; 100]);
    b
}

const GO_MAGIC_FOR_TESTS: &[u8] = b"\xff Go buildinf:";

#[test]
fn go_build_info_and_cargo_auditable() {
    let modinfo = "path\texample.com/app\nmod\texample.com/app\tv1.0.0\th1:x\ndep\tgolang.org/x/net\tv0.7.0\th1:y\ndep\tgithub.com/old/mod\tv1.0.0\th1:z\n=>\tgithub.com/new/mod\tv1.1.0\th1:w\n";
    let go = go_binary("go1.21.4", modinfo);
    // A cargo-auditable ELF: one section `.dep-v0` holding zlib-compressed JSON.
    let json = br#"{"packages":[{"name":"smallvec","version":"0.6.9","source":"crates.io"},{"name":"app","version":"0.1.0","source":"local"}]}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(json).unwrap();
    let dep = z.finish().unwrap();
    let elf = elf_with_section(".dep-v0", &dep);
    let layer =
        tar_layer(&[("usr/bin/app", &go, 0o755), ("usr/bin/rusty", &elf, 0o755), ("usr/bin/noexec", &go, 0o644)], &[]);
    let inv = scan(&[(Compression::None, layer)]).unwrap();
    let mut want = vec![
        t("Go", "stdlib", "1.21.4"),
        t("Go", "example.com/app", "v1.0.0"),
        t("Go", "golang.org/x/net", "v0.7.0"),
        t("Go", "github.com/new/mod", "v1.1.0"),
        t("crates.io", "smallvec", "0.6.9"),
    ];
    want.sort();
    assert_eq!(names(&inv), want);
}

/// A minimal 64-bit little-endian ELF with a section header table: a null section, `name`
/// holding `data`, and `.shstrtab`.
fn elf_with_section(name: &str, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    let data_off = f.len();
    f.extend_from_slice(data);
    let strtab_off = f.len();
    let strtab = format!("\0{name}\0.shstrtab\0");
    f.extend_from_slice(strtab.as_bytes());
    let shoff = f.len();
    let sh = |name_off: u32, off: usize, size: usize| {
        let mut s = vec![0u8; 64];
        s[..4].copy_from_slice(&name_off.to_le_bytes());
        s[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
        s[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
        s
    };
    f.extend(sh(0, 0, 0));
    f.extend(sh(1, data_off, data.len()));
    f.extend(sh(1 + name.len() as u32 + 1, strtab_off, strtab.len()));
    f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
    f
}

#[test]
fn whiteouts_and_opaque_directories() {
    let pkg = |v: &str| format!("Name: jinja2\nVersion: {v}\n").into_bytes();
    let sp = "usr/lib/python3/site-packages";
    let lower = files(&[
        (&format!("{sp}/jinja2-2.10.dist-info/METADATA"), &pkg("2.10")),
        (&format!("{sp}/flask-1.0.dist-info/METADATA"), b"Name: flask\nVersion: 1.0\n"),
        ("opt/app/Cargo.lock", b"[[package]]\nname = \"smallvec\"\nversion = \"0.6.9\"\nsource = \"registry+x\"\n"),
    ]);
    // The upper layer removes jinja2 2.10 and the whole opt/app (opaque), then adds back what it
    // wants: flask stays, the opaque dir keeps what the same layer adds.
    let upper = files(&[
        (&format!("{sp}/.wh.jinja2-2.10.dist-info"), b""),
        ("opt/app/.wh..wh..opq", b""),
        ("opt/app/new/Cargo.lock", b"[[package]]\nname = \"time\"\nversion = \"0.1.0\"\nsource = \"registry+x\"\n"),
    ]);
    let inv = scan(&[(Compression::None, lower.clone()), (Compression::Gzip, gz(&upper))]).unwrap();
    assert_eq!(names(&inv), vec![t("PyPI", "flask", "1.0"), t("crates.io", "time", "0.1.0")]);
    // Re-added after the whiteout: reported again.
    let again = files(&[(&format!("{sp}/jinja2-2.11.3.dist-info/METADATA"), &pkg("2.11.3"))]);
    let inv = scan(&[(Compression::None, lower), (Compression::None, upper), (Compression::None, again)]).unwrap();
    assert!(names(&inv).contains(&t("PyPI", "jinja2", "2.11.3")));
    assert!(!names(&inv).contains(&t("PyPI", "jinja2", "2.10")));
}

#[test]
fn hostile_layers_fail_within_the_caps() {
    // A path escaping the root (written raw: tar builders refuse it).
    let raw = |name: &str, data: &[u8]| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    };
    let escape = raw("../../etc/passwd", b"x");
    assert!(matches!(scan(&[(Compression::None, escape)]), Err(ScanError::Corrupt(m)) if m.contains("escapes")));
    // An absolute path stays inside the root.
    let abs = raw("/etc/os-release", DEBIAN);
    assert_eq!(scan(&[(Compression::None, abs)]).unwrap().os.unwrap().id, "debian");
    // A symlink loop for os-release terminates.
    let looped = tar_layer(
        &[],
        &[("etc/os-release", "os-release", false), ("usr/lib/os-release", "../../etc/os-release", false)],
    );
    assert!(scan(&[(Compression::None, looped)]).unwrap().os.is_none());
    // A link out of the image resolves to nothing.
    let out = tar_layer(&[], &[("etc/os-release", "../../../../../../etc/os-release", false)]);
    assert!(scan(&[(Compression::None, out)]).unwrap().os.is_none());
    // A tar bomb: highly compressible bytes beyond the ratio (and total) caps.
    let zeros = vec![0u8; 40 << 20];
    let bomb = gz(&tar_layer(&[("big", &zeros, 0o644)], &[]));
    let limits = Limits { max_ratio: 100, ..Limits::default() };
    assert!(
        matches!(scan_with(limits, &[(Compression::Gzip, bomb.clone())]), Err(ScanError::LimitExceeded(m)) if m.contains("ratio"))
    );
    let limits = Limits { max_total_size: 1 << 20, ..Limits::default() };
    assert!(
        matches!(scan_with(limits, &[(Compression::Gzip, bomb)]), Err(ScanError::LimitExceeded(m)) if m.contains("uncompressed"))
    );
    // Too many entries; too big an entry.
    let many: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("f{i}"), vec![1u8])).collect();
    let refs: Vec<(&str, &[u8])> = many.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
    let limits = Limits { max_entries: 10, ..Limits::default() };
    assert!(
        matches!(scan_with(limits, &[(Compression::None, files(&refs))]), Err(ScanError::LimitExceeded(m)) if m.contains("entries"))
    );
    let limits = Limits { max_entry_size: 10, ..Limits::default() };
    assert!(matches!(
        scan_with(limits, &[(Compression::None, files(&[("a", &[0u8; 100])]))]),
        Err(ScanError::LimitExceeded(_))
    ));
    // A huge PAX header is refused before it is read.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("././@PaxHeader").unwrap();
    h.set_size(10 << 20);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_cksum();
    b.append(&h, std::io::repeat(b'a').take(10 << 20)).unwrap();
    let pax = b.into_inner().unwrap();
    assert!(matches!(scan(&[(Compression::None, pax)]), Err(ScanError::LimitExceeded(_))));
    // Garbage and truncation are errors, not panics.
    assert!(scan(&[(Compression::Gzip, b"not gzip at all".to_vec())]).is_err());
    let good = files(&[("var/lib/dpkg/status", STATUS)]);
    assert!(scan(&[(Compression::None, good[..700].to_vec())]).is_err());
    assert!(scan(&[(Compression::Zstd, b"\x28\xb5\x2f\xfdgarbage".to_vec())]).is_err());
}

#[test]
fn long_names_through_pax_and_gnu_headers() {
    let long = format!("opt/{}/lib/python3/site-packages/pkg-1.0.dist-info/METADATA", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(26);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, &long, &b"Name: pkg\nVersion: 1.0\n\n\n\n"[..]).unwrap();
    let inv = scan(&[(Compression::None, b.into_inner().unwrap())]).unwrap();
    assert_eq!(names(&inv), vec![t("PyPI", "pkg", "1.0")]);
    assert_eq!(inv.packages[0].path, long);
}

#[test]
fn media_types_and_sniffing() {
    assert_eq!(Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"), Some(Compression::Zstd));
    assert_eq!(
        Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        Some(Compression::Gzip)
    );
    assert_eq!(Compression::from_media_type("application/vnd.oci.image.layer.v1.tar"), Some(Compression::None));
    assert_eq!(Compression::from_media_type("application/vnd.example.sig"), None);
    assert_eq!(Compression::sniff(&gz(b"x")), Compression::Gzip);
    assert_eq!(Compression::sniff(b"\x28\xb5\x2f\xfd..."), Compression::Zstd);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]
    /// Arbitrary bytes, and arbitrary mutations of a valid layer, never panic.
    #[test]
    fn arbitrary_layers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
                                    flips in proptest::collection::vec((0usize..3072, proptest::prelude::any::<u8>()), 0..16)) {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let _ = scan(&[(c, bytes.clone())]);
        }
        let mut layer = files(&[("etc/os-release", DEBIAN), ("var/lib/dpkg/status", STATUS)]);
        for (i, b) in flips {
            let i = i % layer.len();
            layer[i] = b;
        }
        let _ = scan(&[(Compression::None, layer.clone())]);
        let _ = scan(&[(Compression::Gzip, gz(&layer))]);
    }
}
