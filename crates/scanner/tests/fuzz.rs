//! Property tests: arbitrary bytes and mutated layers never panic, whatever
//! the compression.

mod common;

use berth_scanner::{Compression, Limits, Scanner};
use common::*;
use proptest::prelude::*;

const ALL: [Compression; 4] = [Compression::None, Compression::Gzip, Compression::Zstd, Compression::Detect];

fn small_limits() -> Limits {
    Limits {
        max_entries: 1000,
        max_entry_size: 1 << 20,
        max_total_size: 4 << 20,
        max_ratio: 1000,
        ratio_grace: 1 << 20,
        max_file_read: 1 << 20,
        max_binary_size: 1 << 20,
        max_header_size: 64 << 10,
        max_path_len: 4096,
        max_link_hops: 40,
    }
}

fn valid_layer() -> Vec<u8> {
    let bin = elf(&[
        (".dep-v0", &zlib(br#"{"packages":[{"name":"serde","version":"1.0.0","source":"crates.io"}]}"#)),
        (".go.buildinfo", &go_buildinfo("go1.21.4", "mod\tm\tv1.0.0\t\ndep\td\tv0.1.0\t\n")),
    ]);
    layer(&[
        E::File("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        E::Symlink("usr/lib/os-release", "../../etc/os-release"),
        E::File("var/lib/dpkg/status", b"Package: a\nStatus: install ok installed\nVersion: 1\nSource: s (2)\n"),
        E::File("lib/apk/db/installed", b"P:b\nV:2\no:o\n"),
        E::File("x/site-packages/p.dist-info/METADATA", b"Name: P_q\nVersion: 3\n"),
        E::File("x/node_modules/n/package.json", br#"{"name":"n","version":"4"}"#),
        E::File("x/package-lock.json", br#"{"packages":{"node_modules/m":{"version":"5"}}}"#),
        E::File("x/Cargo.lock", b"[[package]]\nname = \"c\"\nversion = \"6\"\nsource = \"registry+x\"\n"),
        E::Exec("bin/app", bin),
        E::File("var/lib/dpkg/.wh.other", b""),
        E::Hardlink("etc/os-release2", "etc/os-release"),
    ])
}

fn run(c: Compression, data: &[u8]) {
    let mut s = Scanner::new(small_limits());
    let _ = s.add_layer(c, data);
    let _ = s.add_layer(c, data);
    let _ = s.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        for c in ALL {
            run(c, &data);
        }
    }

    #[test]
    fn arbitrary_bytes_with_magic_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096), which in 0usize..2) {
        let mut d = if which == 0 { vec![0x1f, 0x8b, 0x08, 0] } else { vec![0x28, 0xb5, 0x2f, 0xfd] };
        d.extend(data);
        run(Compression::Detect, &d);
    }

    #[test]
    fn mutated_layers_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        cut in any::<usize>(),
        truncate in any::<bool>(),
    ) {
        let mut l = valid_layer();
        let len = l.len();
        for (at, b) in &flips {
            l[at % len] = *b;
        }
        if truncate {
            l.truncate(cut % (len + 1));
        }
        // The mutated tar, plain and compressed (a valid stream of a broken tar).
        run(Compression::None, &l);
        run(Compression::Gzip, &gzip(&l));
        run(Compression::Zstd, &zstd(&l));
        // A valid tar inside a mutated compressed stream.
        let valid = valid_layer();
        for (c, mut z) in [(Compression::Gzip, gzip(&valid)), (Compression::Zstd, zstd(&valid))] {
            let zl = z.len();
            for (at, b) in &flips {
                z[at % zl] = *b;
            }
            run(c, &z);
        }
    }

    #[test]
    fn mutated_headers_never_panic(at in 0usize..512, b in any::<u8>(), entry in 0usize..11) {
        // Flip a byte of one header, and fix its checksum so the header is parsed.
        let mut l = valid_layer();
        let mut off = 0;
        for _ in 0..entry {
            let size = std::str::from_utf8(&l[off + 124..off + 135]).ok().and_then(|s| u64::from_str_radix(s.trim_matches(|c| c == '\0' || c == ' '), 8).ok()).unwrap_or(0) as usize;
            let next = off + 512 + size.div_ceil(512) * 512;
            if next + 512 > l.len() { break; }
            off = next;
        }
        l[off + at] = b;
        let sum: u32 = l[off..off + 512].iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { u32::from(x) }).sum();
        l[off + 148..off + 156].copy_from_slice(format!("{:06o}\0 ", sum & 0o777777).as_bytes());
        run(Compression::None, &l);
    }
}

#[test]
fn the_valid_layer_is_valid() {
    let mut s = Scanner::new(small_limits());
    s.add_layer(Compression::None, &valid_layer()[..]).unwrap();
    let inv = s.finish();
    assert_eq!(inv.packages.len(), 10, "{:?}", inv.packages);
}
