//! A minimal streaming tar reader (ustar, GNU and PAX) with bounded memory:
//! extended headers are capped by `Limits::max_header_size`, entry data is
//! never read unless the caller asks for it.

use std::io::{self, Read};

use crate::paths::normalize;
use crate::stream::Meter;
use crate::{Limits, ScanError};

const BLOCK: usize = 512;

/// The kind of a tar entry, as far as the scanner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    HardLink,
    Symlink,
    Dir,
    /// Devices, FIFOs, unknown types: replace what was there, hold nothing.
    Other,
}

/// One entry's header.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Normalized path (no leading `/`, no `.`/`..` components); `""` is the root.
    pub path: String,
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    /// Hard links: normalized target path; symlinks: raw target.
    pub link: String,
}

pub(crate) struct TarReader<'l, R> {
    r: R,
    limits: &'l Limits,
    meter: Meter,
    /// Unread data bytes of the current entry, then its padding.
    pending: u64,
    padding: u64,
    done: bool,
}

fn corrupt(msg: impl Into<String>) -> ScanError {
    ScanError::Corrupt(msg.into())
}

/// Parses a numeric header field: octal text, or GNU base-256 when the high bit is set.
fn number(field: &[u8], what: &str) -> Result<u64, ScanError> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        if first & 0x40 != 0 {
            return Err(corrupt(format!("negative {what} in tar header")));
        }
        let mut v: u64 = u64::from(first & 0x3f);
        for &b in &field[1..] {
            if v >> 56 != 0 {
                return Err(corrupt(format!("{what} overflows in tar header")));
            }
            v = (v << 8) | u64::from(b);
        }
        return Ok(v);
    }
    let mut v: u64 = 0;
    let mut seen = false;
    for &b in field {
        match b {
            b'0'..=b'7' => {
                seen = true;
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or_else(|| corrupt(format!("{what} overflows in tar header")))?;
            }
            b' ' | 0 if !seen => {}
            b' ' | 0 => break,
            _ => return Err(corrupt(format!("invalid {what} in tar header"))),
        }
    }
    Ok(v)
}

fn text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn checksum_ok(h: &[u8; BLOCK]) -> Result<bool, ScanError> {
    let want = number(&h[148..156], "checksum")?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    Ok(want == unsigned || i64::try_from(want).is_ok_and(|w| w == signed))
}

/// Extended attributes gathered from PAX and GNU headers for the next entry.
#[derive(Default)]
struct Ext {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
}

fn parse_pax(data: &[u8], ext: &mut Ext) -> Result<(), ScanError> {
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(|| corrupt("bad PAX record"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("bad PAX record length"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(corrupt("bad PAX record length"));
        }
        let record = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(|| corrupt("bad PAX record"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => ext.path = Some(value.to_vec()),
            b"linkpath" => ext.link = Some(value.to_vec()),
            b"size" => {
                let s = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                ext.size = Some(s.ok_or_else(|| corrupt("bad PAX size"))?);
            }
            _ => {}
        }
    }
    Ok(())
}

impl<'l, R: Read> TarReader<'l, R> {
    pub fn new(r: R, limits: &'l Limits, meter: Meter) -> Self {
        TarReader { r, limits, meter, pending: 0, padding: 0, done: false }
    }

    /// The underlying (metered) reader.
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    fn io(&self, e: io::Error) -> ScanError {
        self.meter.error(e)
    }

    fn skip(&mut self, n: u64) -> Result<(), ScanError> {
        let got = io::copy(&mut (&mut self.r).take(n), &mut io::sink()).map_err(|e| self.io(e))?;
        if got != n {
            return Err(corrupt("truncated layer"));
        }
        Ok(())
    }

    fn skip_rest(&mut self) -> Result<(), ScanError> {
        let n = self.pending + self.padding;
        self.pending = 0;
        self.padding = 0;
        self.skip(n)
    }

    /// Reads up to `max` bytes of the current entry's data.
    pub fn read_data(&mut self, max: u64) -> Result<Vec<u8>, ScanError> {
        let n = self.pending.min(max);
        let mut buf = Vec::with_capacity(usize::try_from(n.min(1 << 20)).unwrap_or(0));
        let got = (&mut self.r).take(n).read_to_end(&mut buf).map_err(|e| self.io(e))?;
        if got as u64 != n {
            return Err(corrupt("truncated layer"));
        }
        self.pending -= n;
        Ok(buf)
    }

    /// Reads one 512-byte block; `Ok(false)` on a clean end of stream.
    fn block(&mut self, buf: &mut [u8; BLOCK]) -> Result<bool, ScanError> {
        let mut got = 0;
        while got < BLOCK {
            match self.r.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(corrupt("truncated tar header")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(true)
    }

    fn path(&self, raw: &[u8], what: &str) -> Result<String, ScanError> {
        if raw.len() > self.limits.max_path_len {
            return Err(ScanError::LimitExceeded(format!(
                "max_path_len: {what} of {} bytes exceeds {}",
                raw.len(),
                self.limits.max_path_len
            )));
        }
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    /// The next entry, after skipping what is left of the current one.
    /// `Ok(None)` at the end of the archive. `entries` counts every header.
    pub fn next_entry(&mut self, entries: &mut u64) -> Result<Option<Entry>, ScanError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut ext = Ext::default();
        let mut h = [0u8; BLOCK];
        loop {
            if !self.block(&mut h)? {
                self.done = true;
                return Ok(None);
            }
            if h.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            *entries += 1;
            if *entries > self.limits.max_entries {
                return Err(ScanError::LimitExceeded(format!(
                    "max_entries: more than {} tar entries",
                    self.limits.max_entries
                )));
            }
            if !checksum_ok(&h)? {
                return Err(corrupt("bad tar header checksum"));
            }
            let header_size = number(&h[124..136], "size")?;
            let typeflag = h[156];
            match typeflag {
                b'x' | b'L' | b'K' => {
                    if header_size > self.limits.max_header_size {
                        return Err(ScanError::LimitExceeded(format!(
                            "max_header_size: extended header of {header_size} bytes exceeds {}",
                            self.limits.max_header_size
                        )));
                    }
                    self.pending = header_size;
                    let data = self.read_data(header_size)?;
                    self.skip(padding(header_size))?;
                    match typeflag {
                        b'x' => parse_pax(&data, &mut ext)?,
                        b'L' => ext.path = Some(text(&data).to_vec()),
                        _ => ext.link = Some(text(&data).to_vec()),
                    }
                    continue;
                }
                b'g' => {
                    // Global PAX header: nothing the scanner needs.
                    if header_size > self.limits.max_header_size {
                        return Err(ScanError::LimitExceeded(format!(
                            "max_header_size: global header of {header_size} bytes exceeds {}",
                            self.limits.max_header_size
                        )));
                    }
                    self.skip(header_size + padding(header_size))?;
                    continue;
                }
                _ => {}
            }
            let size = ext.size.unwrap_or(header_size);
            if size > self.limits.max_entry_size {
                return Err(ScanError::LimitExceeded(format!(
                    "max_entry_size: entry of {size} bytes exceeds {}",
                    self.limits.max_entry_size
                )));
            }
            let name = match ext.path.take() {
                Some(p) => p,
                None => {
                    let name = text(&h[0..100]);
                    let prefix = text(&h[345..500]);
                    if &h[257..263] == b"ustar\0" && !prefix.is_empty() {
                        let mut full = prefix.to_vec();
                        full.push(b'/');
                        full.extend_from_slice(name);
                        full
                    } else {
                        name.to_vec()
                    }
                }
            };
            let link = match ext.link.take() {
                Some(l) => l,
                None => text(&h[157..257]).to_vec(),
            };
            let name = self.path(&name, "entry path")?;
            let path = normalize(&name).ok_or_else(|| corrupt(format!("entry path escapes the root: {name:?}")))?;
            let link = self.path(&link, "link target")?;
            let mode = u32::try_from(number(&h[100..108], "mode")? & 0o7777).unwrap_or(0);
            let kind = match typeflag {
                b'0' | 0 | b'7' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'5' => Kind::Dir,
                b'S' if h[482] != 0 => return Err(corrupt("extended GNU sparse entries are not supported")),
                _ => Kind::Other,
            };
            // A file whose name ends in '/' is a directory in old tars.
            let kind = if kind == Kind::File && name.ends_with('/') { Kind::Dir } else { kind };
            let link = if kind == Kind::HardLink {
                normalize(&link).ok_or_else(|| corrupt(format!("hard link target escapes the root: {link:?}")))?
            } else {
                link
            };
            // Header-only types carry no data, whatever the size field says.
            let header_only = matches!(typeflag, b'1'..=b'6') || kind == Kind::Dir;
            let data = if header_only { 0 } else { size };
            self.pending = data;
            self.padding = padding(data);
            return Ok(Some(Entry { path, kind, size: data, mode, link }));
        }
    }
}

fn padding(n: u64) -> u64 {
    (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64
}
