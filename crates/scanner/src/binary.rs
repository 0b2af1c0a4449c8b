//! Executables: cargo-auditable's `.dep-v0` ELF section and Go build info.
//! The whole executable is in memory (bounded by `Limits::max_binary_size`);
//! every offset read from it is bounds-checked.

use std::io::Read;

use serde_json::Value;

use crate::{Limits, Package};

/// Packages recorded in the ELF executable `data` found at `path`.
pub(crate) fn scan(data: &[u8], path: &str, limits: &Limits) -> Vec<Package> {
    let sections = elf_sections(data).unwrap_or_default();
    let section = |name: &[u8]| sections.iter().find(|s| s.name == name).and_then(|s| s.data);
    let mut out = Vec::new();
    if let Some(dep) = section(b".dep-v0") {
        out.extend(auditable(dep, path, limits.max_file_read));
    }
    let go = match section(b".go.buildinfo") {
        Some(buildinfo) => go_buildinfo(buildinfo, path),
        None => None,
    };
    match go {
        Some(pkgs) => out.extend(pkgs),
        None => out.extend(go_buildinfo(data, path).unwrap_or_default()),
    }
    out
}

struct Section<'a> {
    name: &'a [u8],
    data: Option<&'a [u8]>,
}

fn read_uint(data: &[u8], off: usize, len: usize, le: bool) -> Option<u64> {
    let bytes = data.get(off..off.checked_add(len)?)?;
    let mut v: u64 = 0;
    if le {
        for &b in bytes.iter().rev() {
            v = (v << 8) | u64::from(b);
        }
    } else {
        for &b in bytes {
            v = (v << 8) | u64::from(b);
        }
    }
    Some(v)
}

fn slice(data: &[u8], off: u64, size: u64) -> Option<&[u8]> {
    let off = usize::try_from(off).ok()?;
    let size = usize::try_from(size).ok()?;
    data.get(off..off.checked_add(size)?)
}

/// The named sections of an ELF file (32 or 64 bit, either endianness).
fn elf_sections(data: &[u8]) -> Option<Vec<Section<'_>>> {
    if data.get(..4)? != b"\x7fELF" {
        return None;
    }
    let is64 = match data.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match data.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u = |off: usize, len: usize| read_uint(data, off, len, le);
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (u(0x28, 8)?, u(0x3a, 2)?, u(0x3c, 2)?, u(0x3e, 2)?)
    } else {
        (u(0x20, 4)?, u(0x2e, 2)?, u(0x30, 2)?, u(0x32, 2)?)
    };
    let need = if is64 { 64 } else { 40 };
    if shoff == 0 || shentsize < need || shnum == 0 {
        return None;
    }
    // (name offset, type, offset, size)
    let header = |i: u64| -> Option<(u64, u64, u64, u64)> {
        let base = usize::try_from(shoff.checked_add(i.checked_mul(shentsize)?)?).ok()?;
        if is64 {
            Some((u(base, 4)?, u(base + 4, 4)?, u(base + 24, 8)?, u(base + 32, 8)?))
        } else {
            Some((u(base, 4)?, u(base + 4, 4)?, u(base + 16, 4)?, u(base + 20, 4)?))
        }
    };
    const SHT_NOBITS: u64 = 8;
    let (_, _, str_off, str_size) = header(shstrndx)?;
    let strtab = slice(data, str_off, str_size)?;
    let mut out = Vec::new();
    for i in 0..shnum {
        let Some((name, kind, off, size)) = header(i) else { continue };
        let Some(name) = usize::try_from(name).ok().and_then(|n| strtab.get(n..)) else { continue };
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        let data = if kind == SHT_NOBITS { None } else { slice(data, off, size) };
        out.push(Section { name, data });
    }
    Some(out)
}

/// cargo-auditable: zlib-compressed JSON `{"packages":[{"name","version","source"}]}`;
/// packages from `crates.io` or another registry are reported.
fn auditable(section: &[u8], path: &str, max: u64) -> Vec<Package> {
    let mut json = Vec::new();
    let decoder = flate2::read::ZlibDecoder::new(section);
    if decoder.take(max.saturating_add(1)).read_to_end(&mut json).is_err() || json.len() as u64 > max {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&json) else { return Vec::new() };
    let Some(pkgs) = v.get("packages").and_then(Value::as_array) else { return Vec::new() };
    let mut out = Vec::new();
    for p in pkgs {
        let s = |k: &str| p.get(k).and_then(Value::as_str);
        let registry = matches!(s("source"), Some(src) if src == "crates.io" || src.starts_with("registry"));
        if let (true, Some(name), Some(version)) = (registry, s("name"), s("version"))
            && !name.trim().is_empty()
            && !version.trim().is_empty()
        {
            out.push(go_pkg("crates.io", name, version, path));
        }
    }
    out
}

fn go_pkg(ecosystem: &str, name: &str, version: &str, path: &str) -> Package {
    Package {
        ecosystem: ecosystem.to_string(),
        name: name.trim().to_string(),
        version: version.trim().to_string(),
        source_name: None,
        source_version: None,
        path: path.to_string(),
    }
}

const GO_MAGIC: &[u8; 14] = b"\xff Go buildinf:";

fn uvarint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn varint_str<'a>(data: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(uvarint(data, pos)?).ok()?;
    let s = data.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some(s)
}

/// Go build info (Go 1.18+ inline-string format) found at a 16-byte aligned
/// offset of `data`. `None` when there is none (or only the older,
/// pointer-based format, which needs the binary's memory layout).
fn go_buildinfo(data: &[u8], path: &str) -> Option<Vec<Package>> {
    let mut at = 0;
    while let Some(found) = find(&data[at..], GO_MAGIC) {
        let off = at + found;
        if off.is_multiple_of(16)
            && let Some(pkgs) = go_parse(&data[off..], path)
        {
            return Some(pkgs);
        }
        at = off + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn go_parse(info: &[u8], path: &str) -> Option<Vec<Package>> {
    let flags = *info.get(15)?;
    if flags & 0x2 == 0 || info.len() < 32 {
        return None;
    }
    let mut pos = 32;
    let version = varint_str(info, &mut pos)?;
    let modinfo = varint_str(info, &mut pos)?;
    let modinfo = if modinfo.len() >= 32 { &modinfo[16..modinfo.len() - 16] } else { modinfo };
    let version = String::from_utf8_lossy(version);
    let modinfo = String::from_utf8_lossy(modinfo);
    let mut out = Vec::new();
    if let Some(v) = version.split_whitespace().next().and_then(|v| v.strip_prefix("go"))
        && !v.is_empty()
    {
        out.push(go_pkg("Go", "stdlib", v, path));
    }
    // Index in `out` of the module the next `=>` line replaces.
    let mut last: Option<usize> = None;
    for line in modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod", m, v, ..] | ["dep", m, v, ..] => {
                last = None;
                let v = v.trim();
                if v.is_empty() || v == "(devel)" || m.trim().is_empty() {
                    continue;
                }
                last = Some(out.len());
                out.push(go_pkg("Go", m, v, path));
            }
            ["=>", m, v, ..] => {
                // A replacement by another module version takes the place of
                // the module; a replacement by a local directory (no version)
                // leaves the original requirement reported.
                if let Some(i) = last.take()
                    && !v.trim().is_empty()
                    && !m.trim().is_empty()
                {
                    out[i] = go_pkg("Go", m, v, path);
                }
            }
            _ => {}
        }
    }
    Some(out)
}

/// Searches an executable too large to buffer for Go build info, chunk by
/// chunk: `head` is what was already read, `next(n)` returns up to `n` more
/// bytes (empty at the end). At most one chunk plus `max_info` bytes after a
/// candidate magic are held at a time.
pub(crate) fn go_stream<E>(
    head: Vec<u8>,
    path: &str,
    max_info: usize,
    mut next: impl FnMut(u64) -> Result<Vec<u8>, E>,
) -> Result<Vec<Package>, E> {
    const CHUNK: u64 = 1 << 20;
    let keep = GO_MAGIC.len() - 1;
    // `window[0]` is at file offset `base`; the search resumes at `start`.
    let (mut window, mut base, mut start) = (head, 0u64, 0usize);
    loop {
        while let Some(found) = window.get(start..).and_then(|w| find(w, GO_MAGIC)) {
            let at = start + found;
            if (base + at as u64).is_multiple_of(16) {
                window.drain(..at);
                base += at as u64;
                while window.len() < max_info {
                    let more = next((max_info - window.len()) as u64)?;
                    if more.is_empty() {
                        break;
                    }
                    window.extend(more);
                }
                if let Some(pkgs) = go_parse(&window, path) {
                    return Ok(pkgs);
                }
                start = 1;
            } else {
                start = at + 1;
            }
        }
        let chunk = next(CHUNK)?;
        if chunk.is_empty() {
            return Ok(Vec::new());
        }
        let drop_to = window.len().saturating_sub(keep);
        window.drain(..drop_to);
        base += drop_to as u64;
        start = 0;
        window.extend(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_elf_is_ignored() {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(64, 0xff);
        assert!(scan(&elf, "x", &Limits::default()).is_empty());
        assert!(scan(b"\x7fELF", "x", &Limits::default()).is_empty());
    }

    #[test]
    fn go_stream_finds_aligned_build_info_across_chunks() {
        let mut bin = b"\x7fELF".to_vec();
        bin.resize((1 << 20) + 5, 0);
        bin.extend(GO_MAGIC); // unaligned decoy
        while !bin.len().is_multiple_of(16) {
            bin.push(0);
        }
        // Straddles the second chunk boundary.
        bin.resize(2 << 20, 0);
        bin.extend(GO_MAGIC);
        bin.extend([8, 2]);
        bin.resize(bin.len() + 16, 0);
        bin.extend([8]);
        bin.extend(b"go1.20.1");
        bin.extend([0]);
        bin.resize(bin.len() + 100, 7);
        let mut pos = 4;
        let pkgs = go_stream::<()>(bin[..4].to_vec(), "p", 1 << 16, |n| {
            let end = (pos + n as usize).min(bin.len());
            let out = bin[pos..end].to_vec();
            pos = end;
            Ok(out)
        })
        .unwrap();
        assert_eq!(pkgs.len(), 1);
        assert_eq!(pkgs[0].version, "1.20.1");
    }

    #[test]
    fn go_varints_out_of_bounds() {
        let mut info = GO_MAGIC.to_vec();
        info.extend([8, 2]);
        info.resize(32, 0);
        info.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(go_parse(&info, "x").is_none());
    }
}
