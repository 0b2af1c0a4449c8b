//! Hostile layers: each fails with the expected error (or is safely
//! ignored), never panics, and stays within bounded memory.

mod common;

use std::io::{self, Read};

use berth_scanner::{Compression, Limits, ScanError, Scanner};
use common::*;

const STATUS: &[u8] = b"Package: bash\nStatus: install ok installed\nVersion: 5.2\n";

fn add(limits: Limits, c: Compression, data: &[u8]) -> Result<(), ScanError> {
    Scanner::new(limits).add_layer(c, data)
}

fn limit_err(r: Result<(), ScanError>, cap: &str) {
    match r {
        Err(ScanError::LimitExceeded(msg)) => assert!(msg.contains(cap), "{msg} should name {cap}"),
        other => panic!("expected LimitExceeded({cap}), got {other:?}"),
    }
}

fn corrupt(r: Result<(), ScanError>) -> String {
    match r {
        Err(ScanError::Corrupt(msg)) => msg,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn escaping_paths_fail_the_layer() {
    for p in ["../etc/passwd", "a/../../etc/passwd", "./../x", "/../x"] {
        let msg = corrupt(add(Limits::default(), Compression::None, &layer(&[E::File(p, b"x")])));
        assert!(msg.contains("escapes"), "{p}: {msg}");
    }
    let msg = corrupt(add(Limits::default(), Compression::None, &layer(&[E::Hardlink("x", "../../etc/shadow")])));
    assert!(msg.contains("escapes"), "{msg}");
}

#[test]
fn absolute_paths_are_taken_from_the_root() {
    let inv = scan(&[layer(&[
        E::File("/etc/os-release", b"ID=debian\nVERSION_ID=12\n"),
        E::File("//var/lib/dpkg/./status", STATUS),
    ])]);
    assert_eq!(triples(&inv), vec![t("Debian:12", "bash", "5.2")]);
}

#[test]
fn symlinks_never_leave_the_image() {
    // An absolute or climbing target resolves inside the image's tree.
    let inv = scan(&[layer(&[
        E::File("usr/lib/os-release", b"ID=debian\nVERSION_ID=12\n"),
        E::Symlink("etc/os-release", "../../../../../../usr/lib/os-release"),
    ])]);
    assert_eq!(inv.os.unwrap().id, "debian");
    let inv = scan(&[layer(&[E::Symlink("etc/os-release", "/etc/../../../proc/self/environ")])]);
    assert_eq!(inv.os, None);
}

#[test]
fn symlink_loops_terminate() {
    let inv = scan(&[layer(&[
        E::Symlink("etc/os-release", "../usr/lib/os-release"),
        E::Symlink("usr/lib/os-release", "/etc/os-release"),
        E::Symlink("etc/debian_version", "debian_version"),
        E::File("var/lib/dpkg/status", STATUS),
    ])]);
    assert_eq!(inv.os, None);
    assert_eq!(triples(&inv), vec![t("Debian", "bash", "5.2")]);
}

fn bomb() -> Vec<u8> {
    layer(&[E::File("zeros", &vec![0u8; 4 << 20])])
}

#[test]
fn tar_bomb_hits_the_ratio_cap() {
    let limits = Limits { ratio_grace: 64 << 10, max_ratio: 100, ..Limits::default() };
    let data = gzip(&bomb());
    assert!(data.len() < 40_000);
    limit_err(add(limits.clone(), Compression::Gzip, &data), "max_ratio");
    limit_err(add(limits.clone(), Compression::Zstd, &zstd(&bomb())), "max_ratio");
    limit_err(add(limits, Compression::Detect, &data), "max_ratio");
}

#[test]
fn small_compressible_files_pass_the_ratio_cap() {
    // Below the grace size, any ratio is fine.
    let limits = Limits { ratio_grace: 1 << 20, max_ratio: 2, ..Limits::default() };
    add(limits, Compression::Gzip, &gzip(&layer(&[E::File("zeros", &[0u8; 100_000])]))).unwrap();
}

#[test]
fn tar_bomb_hits_the_total_cap() {
    let limits = Limits { max_total_size: 1 << 20, ..Limits::default() };
    limit_err(add(limits.clone(), Compression::Gzip, &gzip(&bomb())), "max_total_size");
    limit_err(add(limits.clone(), Compression::None, &bomb()), "max_total_size");
    // The total counts across layers.
    let half = layer(&[E::File("f", &[1u8; 600 << 10])]);
    let mut s = Scanner::new(limits);
    s.add_layer(Compression::None, &half[..]).unwrap();
    limit_err(s.add_layer(Compression::None, &half[..]), "max_total_size");
}

#[test]
fn entry_size_cap() {
    let limits = Limits { max_entry_size: 1000, ..Limits::default() };
    limit_err(add(limits, Compression::None, &layer(&[E::File("f", &[1u8; 2000])])), "max_entry_size");
}

#[test]
fn interesting_file_size_cap() {
    let limits = Limits { max_file_read: 1000, ..Limits::default() };
    let mut big = STATUS.to_vec();
    big.resize(5000, b'\n');
    limit_err(add(limits.clone(), Compression::None, &layer(&[E::File("var/lib/dpkg/status", &big)])), "max_file_read");
    // Uninteresting files of that size are streamed through.
    add(limits, Compression::None, &layer(&[E::File("var/lib/other", &big)])).unwrap();
}

#[test]
fn too_many_entries() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<E> = names.iter().map(|n| E::File(n, b"x")).collect();
    let limits = Limits { max_entries: 10, ..Limits::default() };
    limit_err(add(limits.clone(), Compression::None, &layer(&entries)), "max_entries");
    // The count spans layers.
    let mut s = Scanner::new(limits);
    s.add_layer(Compression::None, &layer(&entries[..6])[..]).unwrap();
    limit_err(s.add_layer(Compression::None, &layer(&entries[..6])[..]), "max_entries");
}

#[test]
fn huge_pax_and_gnu_long_name_headers() {
    let limits = Limits { max_header_size: 1024, ..Limits::default() };
    let mut pax = Vec::new();
    let value = "a".repeat(8000);
    let record = format!("path={value}\n");
    let len = record.len() + 5; // "8010 " prefix
    pax.extend(format!("{len} {record}").into_bytes());
    limit_err(add(limits.clone(), Compression::None, &layer(&[E::Raw(b'x', b"pax", pax.clone())])), "max_header_size");
    limit_err(
        add(limits.clone(), Compression::None, &layer(&[E::Raw(b'L', b"././@LongLink", vec![b'a'; 5000])])),
        "max_header_size",
    );
    limit_err(
        add(limits.clone(), Compression::None, &layer(&[E::Raw(b'g', b"global", vec![b'a'; 5000])])),
        "max_header_size",
    );
    // A header claiming an enormous size fails before anything is read.
    let mut l = layer(&[E::Raw(b'x', b"pax", b"10 path=a\n".to_vec())]);
    l[124..136].copy_from_slice(b"77777777777\0");
    let h: &mut [u8] = &mut l[..512];
    let mut sum: u32 =
        h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    sum &= 0o7777777;
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    limit_err(add(limits, Compression::None, &l), "max_header_size");
}

#[test]
fn pax_and_gnu_long_names_are_honoured() {
    let long_dir = "d/".repeat(60);
    let path = format!("{long_dir}site-packages/p.dist-info/METADATA");
    let record = format!("path={path}\n");
    let mut len = record.len() + 4;
    if format!("{len} {record}").len() != len {
        len += 1;
    }
    let pax = format!("{len} {record}").into_bytes();
    let meta = b"Name: p\nVersion: 1\n".to_vec();
    let mut gnu_name = format!("{long_dir}site-packages/q.dist-info/METADATA").into_bytes();
    gnu_name.push(0);
    let inv = scan(&[layer(&[
        E::Raw(b'x', b"pax", pax),
        E::Raw(b'0', b"truncated-name", meta.clone()),
        E::Raw(b'L', b"././@LongLink", gnu_name),
        E::Raw(b'0', b"other", b"Name: q\nVersion: 2\n".to_vec()),
    ])]);
    assert_eq!(triples(&inv), vec![t("PyPI", "p", "1"), t("PyPI", "q", "2")]);
    assert_eq!(inv.packages[0].path, path);
}

#[test]
fn path_length_cap() {
    let limits = Limits { max_path_len: 100, ..Limits::default() };
    let mut name = vec![b'a'; 300];
    name.push(0);
    limit_err(
        add(limits, Compression::None, &layer(&[E::Raw(b'L', b"././@LongLink", name), E::File("x", b"")])),
        "max_path_len",
    );
}

#[test]
fn truncated_and_garbage_input() {
    let l = layer(&[E::File("var/lib/dpkg/status", STATUS), E::File("big", &[7u8; 5000])]);
    // Cut inside a header, inside data.
    for cut in [100, 700, 2000] {
        let msg = corrupt(add(Limits::default(), Compression::None, &l[..cut]));
        assert!(msg.contains("truncated"), "{cut}: {msg}");
    }
    let gz = gzip(&l);
    let msg = corrupt(add(Limits::default(), Compression::Gzip, &gz[..gz.len() / 2]));
    assert!(msg.contains("truncated"), "{msg}");
    let zs = zstd(&l);
    corrupt(add(Limits::default(), Compression::Zstd, &zs[..zs.len() / 2]));
    // Not a tar at all.
    let msg = corrupt(add(Limits::default(), Compression::None, &[b'z'; 2048]));
    assert!(msg.contains("tar header"), "{msg}");
    // Not gzip / zstd.
    corrupt(add(Limits::default(), Compression::Gzip, b"definitely not gzip data"));
    corrupt(add(Limits::default(), Compression::Zstd, b"definitely not zstd data"));
    // Valid gzip of garbage.
    corrupt(add(Limits::default(), Compression::Gzip, &gzip(&[b'q'; 1000])));
}

struct Failing(usize);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "blob store went away"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(0x1f);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn reader_errors_are_io_errors() {
    for c in [Compression::None, Compression::Gzip, Compression::Zstd, Compression::Detect] {
        match Scanner::new(Limits::default()).add_layer(c, Failing(0)) {
            Err(ScanError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("{c:?}: expected Io, got {other:?}"),
        }
    }
    let l = layer(&[E::File("big", &[7u8; 5000])]);
    let r = (&l[..3000]).chain(Failing(0));
    assert!(matches!(Scanner::new(Limits::default()).add_layer(Compression::None, r), Err(ScanError::Io(_))));
}

#[test]
fn a_failed_layer_is_not_applied() {
    let mut s = Scanner::new(Limits::default());
    s.add_layer(Compression::None, &layer(&[E::File("var/lib/dpkg/status", STATUS)])[..]).unwrap();
    let mut bad = layer(&[E::File("var/lib/dpkg/.wh.status", b""), E::File("x", &[1u8; 3000])]);
    bad.truncate(2000);
    assert!(s.add_layer(Compression::None, &bad[..]).is_err());
    let inv = s.finish();
    assert_eq!(triples(&inv), vec![t("Debian", "bash", "5.2")]);
}

#[test]
fn bad_checksum_and_bad_numbers() {
    let mut l = layer(&[E::File("f", b"x")]);
    l[0] = b'g';
    assert!(corrupt(add(Limits::default(), Compression::None, &l)).contains("checksum"));
    let mut l = layer(&[E::File("f", b"x")]);
    l[124..136].copy_from_slice(b"9999999999\0\0");
    corrupt(add(Limits::default(), Compression::None, &l));
}

#[test]
fn hostile_binaries_are_ignored() {
    // An ELF whose section table points past the end, a .dep-v0 that is not zlib,
    // a Go build info whose lengths point past the end.
    let mut bad_elf = elf(&[(".dep-v0", b"not zlib at all")]);
    bad_elf[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut go = elf(&[(".go.buildinfo", &go_buildinfo("go1.21.0", "mod\tm\tv1.0.0\t\n"))]);
    let at = go.windows(14).position(|w| w == b"\xff Go buildinf:").unwrap();
    go[at + 32] = 0xff;
    go[at + 33] = 0xff;
    let bomb = zlib(&vec![b' '; 10 << 20]);
    let limits = Limits { max_file_read: 1 << 20, ..Limits::default() };
    let inv = scan_with(
        limits,
        &[layer(&[
            E::Exec("a", bad_elf),
            E::Exec("b", elf(&[(".dep-v0", b"not zlib at all")])),
            E::Exec("c", go),
            E::Exec("d", elf(&[(".dep-v0", &bomb)])),
            E::Exec("e", b"\x7fELF".to_vec()),
        ])],
    )
    .unwrap();
    assert!(inv.packages.is_empty(), "{:?}", inv.packages);
}
