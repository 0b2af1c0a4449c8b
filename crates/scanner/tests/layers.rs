//! Layer semantics: whiteouts, opaque directories, replacements, compressions.

mod common;

use berth_scanner::{Compression, Limits, Scanner};
use common::*;

const STATUS: &[u8] = b"Package: bash\nStatus: install ok installed\nVersion: 5.2\n";
const STATUS2: &[u8] = b"Package: zsh\nStatus: install ok installed\nVersion: 5.9\n";

fn names(inv: &berth_scanner::Inventory) -> Vec<&str> {
    inv.packages.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn whiteout_removes_a_lower_package_database() {
    let inv =
        scan(&[layer(&[E::File("var/lib/dpkg/status", STATUS)]), layer(&[E::File("var/lib/dpkg/.wh.status", b"")])]);
    assert!(inv.packages.is_empty());
}

#[test]
fn whiteout_of_a_directory_removes_everything_below() {
    let inv = scan(&[
        layer(&[
            E::File("var/lib/dpkg/status", STATUS),
            E::File("app/node_modules/a/package.json", br#"{"name":"a","version":"1"}"#),
        ]),
        layer(&[E::File("var/lib/.wh.dpkg", b""), E::File("./app/.wh.node_modules", b"")]),
    ]);
    assert!(inv.packages.is_empty());
}

#[test]
fn whiteout_does_not_touch_similar_names() {
    let inv = scan(&[
        layer(&[
            E::File("a/site-packages/x.dist-info/METADATA", b"Name: x\nVersion: 1\n"),
            E::File("a/site-packages-old/../site-packages/y.dist-info/METADATA", b"Name: y\nVersion: 1\n"),
            E::File("a/site-packagesX/z.dist-info/METADATA", b"Name: z\nVersion: 1\n"),
        ]),
        layer(&[E::File("a/site-packages/.wh.x.dist-info", b"")]),
    ]);
    assert_eq!(names(&inv), vec!["y"]);
}

#[test]
fn whiteout_hides_lower_layers_only() {
    // The same layer writes a new database and whites out the old one
    // (in either order): the new one stays.
    for order in 0..2 {
        let wh = E::File("var/lib/dpkg/.wh.status", b"");
        let new = E::File("var/lib/dpkg/status", STATUS2);
        let upper = if order == 0 { layer(&[wh, new]) } else { layer(&[new, wh]) };
        let inv = scan(&[layer(&[E::File("var/lib/dpkg/status", STATUS)]), upper]);
        assert_eq!(names(&inv), vec!["zsh"], "order {order}");
    }
}

#[test]
fn file_re_added_after_whiteout_is_reported() {
    let inv = scan(&[
        layer(&[E::File("var/lib/dpkg/status", STATUS)]),
        layer(&[E::File("var/lib/dpkg/.wh.status", b"")]),
        layer(&[E::File("var/lib/dpkg/status", STATUS2)]),
    ]);
    assert_eq!(names(&inv), vec!["zsh"]);
}

#[test]
fn opaque_directory_hides_lower_content_but_keeps_its_own() {
    let pj = |n: &str| format!(r#"{{"name":"{n}","version":"1.0.0"}}"#).into_bytes();
    let (a, b, c) = (pj("a"), pj("b"), pj("c"));
    let inv = scan(&[
        layer(&[E::File("app/node_modules/a/package.json", &a), E::File("app/keep/node_modules/c/package.json", &c)]),
        // The opaque marker comes after the same layer's own content.
        layer(&[E::File("app/node_modules/b/package.json", &b), E::File("app/node_modules/.wh..wh..opq", b"")]),
    ]);
    assert_eq!(names(&inv), vec!["b", "c"]);
}

#[test]
fn opaque_root_hides_everything_below() {
    let inv = scan(&[
        layer(&[E::File("var/lib/dpkg/status", STATUS), E::File("etc/os-release", b"ID=debian\nVERSION_ID=12\n")]),
        layer(&[E::File(".wh..wh..opq", b""), E::File("lib/apk/db/installed", b"P:a\nV:1\n")]),
    ]);
    assert_eq!(inv.os, None);
    assert_eq!(triples(&inv), vec![t("Alpine", "a", "1")]);
}

#[test]
fn later_entries_override_earlier_ones() {
    let inv = scan(&[
        layer(&[E::File("var/lib/dpkg/status", STATUS)]),
        // Replaced by a file that holds no installed package.
        layer(&[E::File("var/lib/dpkg/status", b"Package: bash\nStatus: deinstall ok config-files\nVersion: 5.2\n")]),
    ]);
    assert!(inv.packages.is_empty());
    // Within a layer, too.
    let inv = scan(&[layer(&[E::File("var/lib/dpkg/status", STATUS), E::File("var/lib/dpkg/status", STATUS2)])]);
    assert_eq!(names(&inv), vec!["zsh"]);
}

#[test]
fn a_file_replacing_a_directory_removes_its_content() {
    let inv =
        scan(&[layer(&[E::File("var/lib/dpkg/status", STATUS)]), layer(&[E::Symlink("var/lib/dpkg", "/nowhere")])]);
    assert!(inv.packages.is_empty());
    // A directory entry over an existing directory changes nothing.
    let inv = scan(&[layer(&[E::File("var/lib/dpkg/status", STATUS)]), layer(&[E::Dir("var/lib/dpkg/")])]);
    assert_eq!(names(&inv), vec!["bash"]);
}

#[test]
fn whiteout_of_a_binary() {
    let bin = elf(&[(".go.buildinfo", &go_buildinfo("go1.21.0", "mod\tm\tv1.0.0\t\n"))]);
    let inv = scan(&[layer(&[E::Exec("usr/bin/app", bin)]), layer(&[E::File("usr/bin/.wh.app", b"")])]);
    assert!(inv.packages.is_empty());
}

fn sample_layer() -> Vec<u8> {
    layer(&[
        E::File("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        E::File("var/lib/dpkg/status", STATUS),
        E::File("big/filler", &vec![b'x'; 300_000]),
        E::File("app/node_modules/a/package.json", br#"{"name":"a","version":"1.0.0"}"#),
    ])
}

#[test]
fn gzip_zstd_and_plain_layers_agree() {
    let plain = sample_layer();
    let expected = scan(std::slice::from_ref(&plain));
    assert_eq!(expected.packages.len(), 2);
    for (c, data) in [
        (Compression::None, plain.clone()),
        (Compression::Gzip, gzip(&plain)),
        (Compression::Zstd, zstd(&plain)),
        (Compression::Detect, plain.clone()),
        (Compression::Detect, gzip(&plain)),
        (Compression::Detect, zstd(&plain)),
    ] {
        let mut s = Scanner::new(Limits::default());
        s.add_layer(c, &data[..]).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!(s.finish(), expected, "{c:?}");
    }
}

#[test]
fn multi_member_gzip() {
    let plain = sample_layer();
    let (a, b) = plain.split_at(1000);
    let mut data = gzip(a);
    data.extend(gzip(b));
    let mut s = Scanner::new(Limits::default());
    s.add_layer(Compression::Gzip, &data[..]).unwrap();
    assert_eq!(s.finish().packages.len(), 2);
}

#[test]
fn layers_of_mixed_compressions() {
    let mut s = Scanner::new(Limits::default());
    s.add_layer(Compression::Gzip, &gzip(&layer(&[E::File("var/lib/dpkg/status", STATUS)]))[..]).unwrap();
    s.add_layer(Compression::Zstd, &zstd(&layer(&[E::File("var/lib/dpkg/.wh.status", b"")]))[..]).unwrap();
    s.add_layer(Compression::None, &layer(&[E::File("var/lib/dpkg/status", STATUS2)])[..]).unwrap();
    assert_eq!(names(&s.finish()), vec!["zsh"]);
}

#[test]
fn empty_layer_and_tar_without_end_marker() {
    let mut s = Scanner::new(Limits::default());
    s.add_layer(Compression::None, &[][..]).unwrap();
    s.add_layer(Compression::Gzip, &gzip(&[])[..]).unwrap();
    let l = layer(&[E::File("var/lib/dpkg/status", STATUS)]);
    // Cut the two zero blocks of the end marker: a clean end of stream at a header boundary.
    s.add_layer(Compression::None, &l[..l.len() - 1024]).unwrap();
    assert_eq!(names(&s.finish()), vec!["bash"]);
}
