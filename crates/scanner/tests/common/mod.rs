//! Builders for test layers, ELF files and Go build info.
#![allow(dead_code)]

use std::io::Write;

use berth_scanner::{Compression, Inventory, Limits, Package, ScanError, Scanner};

/// One tar entry to write.
pub enum E<'a> {
    File(&'a str, &'a [u8]),
    Exec(&'a str, Vec<u8>),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// A raw header: typeflag, path bytes, data.
    Raw(u8, &'a [u8], Vec<u8>),
}

fn header(kind: tar::EntryType, path: &[u8], size: u64, mode: u32, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    let bytes = h.as_mut_bytes();
    let n = path.len().min(100);
    bytes[..n].copy_from_slice(&path[..n]);
    let l = link.len().min(100);
    bytes[157..157 + l].copy_from_slice(&link[..l]);
    h.set_cksum();
    h
}

/// An uncompressed tar layer.
pub fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(p, data) => {
                b.append(&header(tar::EntryType::Regular, p.as_bytes(), data.len() as u64, 0o644, b""), *data).unwrap()
            }
            E::Exec(p, data) => b
                .append(&header(tar::EntryType::Regular, p.as_bytes(), data.len() as u64, 0o755, b""), &data[..])
                .unwrap(),
            E::Dir(p) => b.append(&header(tar::EntryType::Directory, p.as_bytes(), 0, 0o755, b""), &[][..]).unwrap(),
            E::Symlink(p, t) => {
                b.append(&header(tar::EntryType::Symlink, p.as_bytes(), 0, 0o777, t.as_bytes()), &[][..]).unwrap()
            }
            E::Hardlink(p, t) => {
                b.append(&header(tar::EntryType::Link, p.as_bytes(), 0, 0o644, t.as_bytes()), &[][..]).unwrap()
            }
            E::Raw(kind, p, data) => {
                b.append(&header(tar::EntryType::new(*kind), p, data.len() as u64, 0o644, b""), &data[..]).unwrap()
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Scans uncompressed layers with default limits.
pub fn scan(layers: &[Vec<u8>]) -> Inventory {
    scan_with(Limits::default(), layers).unwrap()
}

pub fn scan_with(limits: Limits, layers: &[Vec<u8>]) -> Result<Inventory, ScanError> {
    let mut s = Scanner::new(limits);
    for l in layers {
        s.add_layer(Compression::None, &l[..])?;
    }
    Ok(s.finish())
}

/// (ecosystem, name, version) of every package.
pub fn triples(inv: &Inventory) -> Vec<(String, String, String)> {
    inv.packages.iter().map(|p| (p.ecosystem.clone(), p.name.clone(), p.version.clone())).collect()
}

pub fn t(e: &str, n: &str, v: &str) -> (String, String, String) {
    (e.to_string(), n.to_string(), v.to_string())
}

pub fn find<'a>(inv: &'a Inventory, name: &str) -> &'a Package {
    inv.packages.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no package {name}: {:?}", inv.packages))
}

/// A minimal little-endian ELF64 executable with the given sections.
pub fn elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // 64-bit
    out[5] = 1; // little endian
    out[6] = 1; // version
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    let mut strtab = vec![0u8];
    let mut secs = Vec::new();
    for (name, data) in sections {
        while !out.len().is_multiple_of(16) {
            out.push(0);
        }
        let off = out.len();
        out.extend_from_slice(data);
        let name_off = strtab.len();
        strtab.extend_from_slice(name.as_bytes());
        strtab.push(0);
        secs.push((name_off as u32, 1u32, off as u64, data.len() as u64));
    }
    let shstr_name = strtab.len();
    strtab.extend_from_slice(b".shstrtab\0");
    let str_off = out.len();
    out.extend_from_slice(&strtab);
    secs.push((shstr_name as u32, 3, str_off as u64, strtab.len() as u64));
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let shoff = out.len();
    out.extend_from_slice(&[0u8; 64]);
    for (name, kind, off, size) in &secs {
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // flags
        out.extend_from_slice(&0u64.to_le_bytes()); // addr
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&[0u8; 8]); // link, info
        out.extend_from_slice(&1u64.to_le_bytes()); // align
        out.extend_from_slice(&0u64.to_le_bytes()); // entsize
    }
    out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
    out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    out[0x3c..0x3e].copy_from_slice(&((secs.len() + 1) as u16).to_le_bytes());
    out[0x3e..0x40].copy_from_slice(&(secs.len() as u16).to_le_bytes());
    out
}

fn uvarint(mut v: usize, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Go 1.18+ build info: magic, pointer size, flags (inline strings), padding
/// to 32 bytes, then the varint-prefixed version and modinfo (in sentinels).
pub fn go_buildinfo(version: &str, modinfo: &str) -> Vec<u8> {
    let mut b = b"\xff Go buildinf:".to_vec();
    b.push(8);
    b.push(2);
    b.resize(32, 0);
    uvarint(version.len(), &mut b);
    b.extend_from_slice(version.as_bytes());
    let mut wrapped = b"\x30\x77\xaf\x0c\x92\x74\x08\x02\x41\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
    wrapped.extend_from_slice(modinfo.as_bytes());
    wrapped.extend_from_slice(b"\xf9\x32\x43\x31\x86\x18\x20\x72\x00\x82\x42\x10\x41\x16\xd8\xf2");
    uvarint(wrapped.len(), &mut b);
    b.extend_from_slice(&wrapped);
    b
}
