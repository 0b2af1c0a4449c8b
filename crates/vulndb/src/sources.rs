//! Streaming advisory sources: a JSON file, a directory tree, or an osv.dev `all.zip`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::{Advisory, Error, parse};

/// Caps that keep a hostile or broken source from exhausting memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest record (file or uncompressed zip entry) read, in bytes.
    pub max_record_bytes: u64,
    /// Most entries a zip archive may have (all entries, not only `*.json`).
    pub max_zip_entries: usize,
    /// Most uncompressed bytes read from one zip archive in total.
    pub max_zip_bytes: u64,
}

impl Default for Limits {
    /// 16 MiB per record; 2,000,000 entries and 8 GiB uncompressed per archive
    /// (osv.dev's largest per-ecosystem archives are far below both).
    fn default() -> Self {
        Limits { max_record_bytes: 16 << 20, max_zip_entries: 2_000_000, max_zip_bytes: 8 << 30 }
    }
}

/// Reads advisories from `path` with the default [`Limits`]; see
/// [`read_sources_with_limits`].
pub fn read_sources(path: &Path) -> impl Iterator<Item = Result<Advisory, Error>> + use<> {
    read_sources_with_limits(path, Limits::default())
}

/// Reads advisories from `path`, one record in memory at a time:
///
/// - a file whose name ends in `.zip` (or that starts with a zip signature): every
///   entry whose name ends in `.json`, at any depth, in archive order;
/// - another file: one JSON record;
/// - a directory: every `*.json` file below it (recursively, by sorted name;
///   symbolic links to directories are not followed).
///
/// A record that cannot be read or parsed yields an error naming the file or entry
/// (`archive!entry`) and reading goes on; an archive that cannot be opened or
/// exceeds [`Limits::max_zip_entries`] / [`Limits::max_zip_bytes`] yields one error
/// and ends that archive.
pub fn read_sources_with_limits(path: &Path, limits: Limits) -> impl Iterator<Item = Result<Advisory, Error>> + use<> {
    let mut state = Sources { limits, stack: Vec::new(), zip: None };
    let meta = std::fs::metadata(path);
    match meta {
        Err(e) => state.stack.push(Pending::Failed(Error::Io { name: path.display().to_string(), source: e })),
        Ok(m) if m.is_dir() => state.stack.push(Pending::Dir(path.to_path_buf())),
        Ok(_) => state.stack.push(Pending::File(path.to_path_buf(), true)),
    }
    state
}

enum Pending {
    Dir(PathBuf),
    /// A file; `true` when named by the caller (then a zip is opened as an archive).
    File(PathBuf, bool),
    Failed(Error),
}

struct ZipState {
    name: String,
    archive: zip::ZipArchive<BufReader<File>>,
    next: usize,
    bytes: u64,
}

struct Sources {
    limits: Limits,
    /// Work still to do, last first.
    stack: Vec<Pending>,
    zip: Option<ZipState>,
}

fn io_err(name: &Path, source: std::io::Error) -> Error {
    Error::Io { name: name.display().to_string(), source }
}

/// Reads at most `limit` bytes; more is an error.
fn read_capped(r: impl Read, limit: u64, name: &str) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    r.take(limit + 1).read_to_end(&mut buf).map_err(|e| Error::Io { name: name.to_string(), source: e })?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge {
            name: name.to_string(),
            message: format!("record is larger than {limit} bytes"),
        });
    }
    Ok(buf)
}

fn parse_named(bytes: &[u8], name: &str) -> Result<Advisory, Error> {
    parse(bytes).map_err(|e| Error::Record { name: name.to_string(), source: Box::new(e) })
}

fn is_zip(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")) {
        return true;
    }
    let mut sig = [0u8; 4];
    File::open(path).and_then(|mut f| f.read_exact(&mut sig)).is_ok() && sig == *b"PK\x03\x04"
}

impl Sources {
    fn open_zip(&mut self, path: &Path) -> Option<Error> {
        let name = path.display().to_string();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => return Some(io_err(path, e)),
        };
        let archive = match zip::ZipArchive::new(BufReader::new(file)) {
            Ok(a) => a,
            Err(e) => {
                return Some(Error::Zip { name, message: e.to_string() });
            }
        };
        if archive.len() > self.limits.max_zip_entries {
            return Some(Error::TooLarge {
                message: format!(
                    "archive has {} entries, more than the limit of {}",
                    archive.len(),
                    self.limits.max_zip_entries
                ),
                name,
            });
        }
        self.zip = Some(ZipState { name, archive, next: 0, bytes: 0 });
        None
    }

    /// The next record of the open archive; `None` when it is exhausted.
    fn next_zip(&mut self) -> Option<Result<Advisory, Error>> {
        let limits = self.limits;
        let z = self.zip.as_mut()?;
        while z.next < z.archive.len() {
            let index = z.next;
            z.next += 1;
            let mut entry = match z.archive.by_index(index) {
                Ok(e) => e,
                Err(e) => {
                    let name = format!("{}!#{index}", z.name);
                    return Some(Err(Error::Zip { name, message: e.to_string() }));
                }
            };
            if entry.is_dir() || !entry.name().to_ascii_lowercase().ends_with(".json") {
                continue;
            }
            let name = format!("{}!{}", z.name, entry.name());
            if entry.size() > limits.max_record_bytes {
                return Some(Err(Error::TooLarge {
                    name,
                    message: format!("record is larger than {} bytes", limits.max_record_bytes),
                }));
            }
            let remaining = limits.max_zip_bytes.saturating_sub(z.bytes);
            let cap = limits.max_record_bytes.min(remaining);
            let bytes = match read_capped(&mut entry, cap, &name) {
                Ok(b) => b,
                Err(e) => {
                    drop(entry);
                    if cap < limits.max_record_bytes {
                        let name = z.name.clone();
                        self.zip = None;
                        return Some(Err(Error::TooLarge {
                            name,
                            message: format!("archive holds more than {} uncompressed bytes", limits.max_zip_bytes),
                        }));
                    }
                    return Some(Err(e));
                }
            };
            z.bytes += bytes.len() as u64;
            return Some(parse_named(&bytes, &name));
        }
        self.zip = None;
        None
    }

    fn push_dir(&mut self, dir: &Path) -> Option<Error> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => return Some(io_err(dir, e)),
        };
        let mut children = Vec::new();
        for entry in rd {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => return Some(io_err(dir, e)),
            };
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                children.push(Pending::Dir(path));
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
                && (ft.is_file() || path.is_file())
            {
                children.push(Pending::File(path, false));
            }
        }
        let key = |p: &Pending| match p {
            Pending::Dir(p) | Pending::File(p, _) => p.clone(),
            Pending::Failed(_) => PathBuf::new(),
        };
        children.sort_by_key(|p| std::cmp::Reverse(key(p)));
        self.stack.extend(children);
        None
    }
}

impl Iterator for Sources {
    type Item = Result<Advisory, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.zip.is_some() {
                if let Some(r) = self.next_zip() {
                    return Some(r);
                }
                continue;
            }
            match self.stack.pop()? {
                Pending::Failed(e) => return Some(Err(e)),
                Pending::Dir(d) => {
                    if let Some(e) = self.push_dir(&d) {
                        return Some(Err(e));
                    }
                }
                Pending::File(p, top) => {
                    if top && is_zip(&p) {
                        if let Some(e) = self.open_zip(&p) {
                            return Some(Err(e));
                        }
                        continue;
                    }
                    let name = p.display().to_string();
                    let r = File::open(&p)
                        .map_err(|e| io_err(&p, e))
                        .and_then(|f| read_capped(f, self.limits.max_record_bytes, &name))
                        .and_then(|b| parse_named(&b, &name));
                    return Some(r);
                }
            }
        }
    }
}
