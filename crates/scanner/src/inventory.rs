//! What the final filesystem says is installed: the OS (os-release), OS packages (dpkg, apk),
//! language packages (Python metadata, npm, Cargo.lock) and packages built into executables
//! (Go build info, cargo-auditable).

use serde::Deserialize;

/// The operating system of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    /// `ID` of os-release (`debian`, `ubuntu`, `alpine`, ...).
    pub id: String,
    /// `VERSION_ID` (or, without it, `etc/debian_version` / `etc/alpine-release`).
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

/// A package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Package {
    /// OSV's ecosystem: `Debian:12`, `Ubuntu:22.04`, `Alpine:v3.19` (`Debian`/`Alpine` when the
    /// release is unknown), `PyPI`, `npm`, `crates.io`, `Go`.
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    /// The source package (dpkg `Source`, apk origin), when it differs from the name.
    pub source_name: Option<String>,
    /// The source package's version, when it differs.
    pub source_version: Option<String>,
    /// The file the package was found in.
    pub path: String,
}

/// The inventory of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub os: Option<OsInfo>,
    /// Sorted, without duplicates.
    pub packages: Vec<Package>,
}

/// Whether the inventory reads the file at `path` (normalized, no leading `/`).
pub(crate) fn interesting(path: &str) -> bool {
    matches!(
        path,
        "etc/os-release"
            | "usr/lib/os-release"
            | "etc/debian_version"
            | "etc/alpine-release"
            | "var/lib/dpkg/status"
            | "lib/apk/db/installed"
    ) || path.starts_with("var/lib/dpkg/status.d/") && !path["var/lib/dpkg/status.d/".len()..].contains('/')
        || python_metadata(path)
        || npm_package_json(path)
        || path == "package-lock.json"
        || path.ends_with("/package-lock.json")
        || path == "Cargo.lock"
        || path.ends_with("/Cargo.lock")
}

fn python_metadata(path: &str) -> bool {
    let mut it = path.rsplit('/');
    let (Some(file), Some(dir)) = (it.next(), it.next()) else { return false };
    (file == "METADATA" && dir.ends_with(".dist-info")) || (file == "PKG-INFO" && dir.ends_with(".egg-info"))
}

/// `.../node_modules/<name>/package.json` or `.../node_modules/@scope/<name>/package.json`.
fn npm_package_json(path: &str) -> bool {
    let Some(rest) = path.strip_suffix("/package.json") else { return false };
    let parts: Vec<&str> = rest.rsplit('/').take(3).collect();
    match parts.as_slice() {
        [_, "node_modules", ..] => true,
        [_, scope, "node_modules"] => scope.starts_with('@'),
        _ => false,
    }
}

/// Headers `Key: value` of an RFC 822-style block (until the first blank line).
fn headers(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().take_while(|l| !l.trim().is_empty()).filter_map(|l| {
        let (k, v) = l.split_once(':')?;
        (!l.starts_with([' ', '\t'])).then(|| (k.trim(), v.trim()))
    })
}

fn os_info(files: &[(String, &[u8])]) -> Option<OsInfo> {
    let get = |p: &str| files.iter().find(|(k, _)| k == p).map(|(_, d)| String::from_utf8_lossy(d).into_owned());
    let text = get("etc/os-release").or_else(|| get("usr/lib/os-release"));
    let mut info = text.map(|t| {
        let mut id = String::new();
        let (mut version_id, mut pretty_name) = (None, None);
        for line in t.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "ID" => id = v,
                "VERSION_ID" => version_id = Some(v),
                "PRETTY_NAME" => pretty_name = Some(v),
                _ => {}
            }
        }
        OsInfo { id, version_id, pretty_name }
    });
    if info.is_none() {
        if get("etc/alpine-release").is_some() {
            info = Some(OsInfo { id: "alpine".into(), version_id: None, pretty_name: None });
        } else if get("etc/debian_version").is_some() {
            info = Some(OsInfo { id: "debian".into(), version_id: None, pretty_name: None });
        }
    }
    let mut info = info.filter(|i| !i.id.is_empty())?;
    if info.version_id.is_none() {
        let fallback = match info.id.as_str() {
            "debian" => get("etc/debian_version"),
            "alpine" => get("etc/alpine-release"),
            _ => None,
        };
        info.version_id = fallback.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    }
    Some(info)
}

/// OSV's ecosystem of the OS packages of `os` (`dpkg` or `apk` databases).
fn os_ecosystem(os: Option<&OsInfo>, db: &str) -> String {
    let version = os.and_then(|o| o.version_id.clone());
    match (os.map(|o| o.id.as_str()), db) {
        (Some("ubuntu"), _) => version.map_or("Ubuntu".into(), |v| format!("Ubuntu:{v}")),
        (Some("alpine"), _) | (None, "apk") => {
            let v = version.and_then(|v| {
                let mut it = v.split('.');
                Some(format!("v{}.{}", it.next()?, it.next()?))
            });
            v.map_or("Alpine".into(), |v| format!("Alpine:{v}"))
        }
        (Some("debian"), _) => {
            let major =
                version.and_then(|v| v.split('.').next().map(str::to_string)).filter(|m| m.parse::<u32>().is_ok());
            major.map_or("Debian".into(), |m| format!("Debian:{m}"))
        }
        _ if db == "apk" => "Alpine".into(),
        _ => "Debian".into(),
    }
}

/// `name (version)` or `name` of a dpkg `Source` field.
fn dpkg_source(v: &str) -> (String, Option<String>) {
    match v.split_once('(') {
        Some((n, rest)) => (n.trim().to_string(), Some(rest.trim_end_matches(')').trim().to_string())),
        None => (v.trim().to_string(), None),
    }
}

fn dpkg(eco: &str, path: &str, text: &str, need_status: bool, out: &mut Vec<Package>) {
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut status, mut source) = (None, None, None, None);
        for (k, v) in headers(stanza.trim_start_matches('\n')) {
            match k {
                "Package" => name = Some(v),
                "Version" => version = Some(v),
                "Status" => status = Some(v),
                "Source" => source = Some(v),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else { continue };
        let installed = status.map(|s| s.split_whitespace().last() == Some("installed"));
        if installed == Some(false) || (need_status && installed.is_none()) {
            continue;
        }
        let (source_name, source_version) = match source.map(dpkg_source) {
            Some((s, v)) => (Some(s).filter(|s| s != name), v.filter(|v| v != version)),
            None => (None, None),
        };
        out.push(Package {
            ecosystem: eco.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            source_name,
            source_version,
            path: path.to_string(),
        });
    }
}

fn apk(eco: &str, path: &str, text: &str, out: &mut Vec<Package>) {
    for block in text.split("\n\n") {
        let (mut name, mut version, mut origin) = (None, None, None);
        for line in block.lines() {
            match line.split_once(':') {
                Some(("P", v)) => name = Some(v.trim()),
                Some(("V", v)) => version = Some(v.trim()),
                Some(("o", v)) => origin = Some(v.trim()),
                _ => {}
            }
        }
        if let (Some(n), Some(v)) = (name, version) {
            out.push(Package {
                ecosystem: eco.to_string(),
                name: n.to_string(),
                version: v.to_string(),
                source_name: origin.filter(|o| *o != n).map(str::to_string),
                source_version: None,
                path: path.to_string(),
            });
        }
    }
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become one `-`.
pub(crate) fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn pkg(eco: &str, name: &str, version: &str, path: &str) -> Option<Package> {
    let (name, version) = (name.trim(), version.trim());
    (!name.is_empty() && !version.is_empty()).then(|| Package {
        ecosystem: eco.to_string(),
        name: name.to_string(),
        version: version.to_string(),
        source_name: None,
        source_version: None,
        path: path.to_string(),
    })
}

fn python(path: &str, text: &str, out: &mut Vec<Package>) {
    let (mut name, mut version) = (None, None);
    for (k, v) in headers(text) {
        match k {
            "Name" if name.is_none() => name = Some(v),
            "Version" if version.is_none() => version = Some(v),
            _ => {}
        }
    }
    if let (Some(n), Some(v)) = (name, version) {
        out.extend(pkg("PyPI", &pep503(n), v, path));
    }
}

#[derive(Deserialize)]
struct NpmPackage {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct NpmLock {
    #[serde(rename = "lockfileVersion")]
    lockfile_version: Option<u32>,
    packages: Option<std::collections::BTreeMap<String, NpmLockEntry>>,
    dependencies: Option<std::collections::BTreeMap<String, NpmLockV1>>,
}

#[derive(Deserialize)]
struct NpmLockEntry {
    version: Option<String>,
    name: Option<String>,
    #[serde(default)]
    link: bool,
}

#[derive(Deserialize)]
struct NpmLockV1 {
    version: Option<String>,
    dependencies: Option<std::collections::BTreeMap<String, NpmLockV1>>,
}

fn npm_lock_v1(path: &str, deps: &std::collections::BTreeMap<String, NpmLockV1>, depth: u32, out: &mut Vec<Package>) {
    if depth > 64 {
        return;
    }
    for (name, d) in deps {
        if let Some(v) = &d.version {
            out.extend(pkg("npm", name, v, path));
        }
        if let Some(sub) = &d.dependencies {
            npm_lock_v1(path, sub, depth + 1, out);
        }
    }
}

fn npm_lock(path: &str, data: &[u8], out: &mut Vec<Package>) {
    let Ok(lock) = serde_json::from_slice::<NpmLock>(data) else { return };
    if let Some(packages) = lock.packages.filter(|_| lock.lockfile_version.unwrap_or(1) >= 2) {
        for (key, e) in packages {
            if key.is_empty() || e.link {
                continue;
            }
            let name = e.name.clone().or_else(|| key.rsplit_once("node_modules/").map(|(_, n)| n.to_string()));
            if let (Some(n), Some(v)) = (name, e.version) {
                out.extend(pkg("npm", &n, &v, path));
            }
        }
    } else if let Some(deps) = &lock.dependencies {
        npm_lock_v1(path, deps, 0, out);
    }
}

#[derive(Deserialize)]
struct CargoLock {
    #[serde(default)]
    package: Vec<CargoPackage>,
}

#[derive(Deserialize)]
struct CargoPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// Crates from a registry (path and git dependencies are not published crates).
fn cargo_lock(path: &str, text: &str, out: &mut Vec<Package>) {
    let Ok(lock) = toml::from_str::<CargoLock>(text) else { return };
    for p in lock.package {
        if p.source.as_deref().is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+")) {
            out.extend(pkg("crates.io", &p.name, &p.version, path));
        }
    }
}

/// Packages built into an ELF executable: Go build info, cargo-auditable's `.dep-v0`.
pub(crate) fn binary_packages(path: &str, data: &[u8]) -> Vec<Package> {
    let mut out = go_buildinfo(path, data);
    out.extend(cargo_auditable(path, data));
    out
}

const GO_MAGIC: &[u8] = b"\xff Go buildinf:";

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Go ≥ 1.18 build info: the magic, pointer size, flags (bit 1: inline strings), padding to 32
/// bytes, then the Go version and the module info as varint-prefixed strings.
fn go_buildinfo(path: &str, data: &[u8]) -> Vec<Package> {
    let Some(at) = data.windows(GO_MAGIC.len()).position(|w| w == GO_MAGIC) else { return Vec::new() };
    let head = &data[at..];
    if head.len() < 32 || head[15] & 0x2 == 0 {
        return Vec::new();
    }
    let mut rest = &head[32..];
    let mut strings = Vec::new();
    for _ in 0..2 {
        let Some((len, n)) = varint(rest) else { return Vec::new() };
        let len = len as usize;
        if len > rest.len() - n {
            return Vec::new();
        }
        strings.push(String::from_utf8_lossy(&rest[n..n + len]).into_owned());
        rest = &rest[n + len..];
    }
    let (go, mut modinfo) = (strings[0].clone(), strings[1].clone());
    if modinfo.len() >= 33 && modinfo.as_bytes()[modinfo.len() - 17] == b'\n' {
        modinfo = modinfo[16..modinfo.len() - 16].to_string();
    }
    let mut out = Vec::new();
    if let Some(v) = go.strip_prefix("go") {
        let v = v.split([' ', '-']).next().unwrap_or(v);
        out.extend(pkg("Go", "stdlib", v, path));
    }
    let mut last_dep: Option<usize> = None;
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", m, v, ..] if *v != "(devel)" => {
                out.extend(pkg("Go", m, v, path));
                last_dep = None;
            }
            ["dep", m, v, ..] => {
                out.extend(pkg("Go", m, v, path));
                last_dep = Some(out.len() - 1);
            }
            ["=>", m, v, ..] => {
                // The dependency above is replaced by this module: report what was built.
                if let Some(i) = last_dep.take().filter(|i| *i < out.len()) {
                    if v.starts_with('v') {
                        out[i].name = m.to_string();
                        out[i].version = v.to_string();
                    } else {
                        out.remove(i);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The `.dep-v0` section of an ELF file (64- or 32-bit, little-endian).
fn elf_section<'a>(data: &'a [u8], want: &str) -> Option<&'a [u8]> {
    let rd = |off: usize, n: usize| -> Option<u64> {
        let b = data.get(off..off + n)?;
        Some(b.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
    };
    if data.get(5) != Some(&1) {
        return None; // big-endian: not supported
    }
    let is64 = *data.get(4)? == 2;
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (rd(0x28, 8)?, rd(0x3a, 2)?, rd(0x3c, 2)?, rd(0x3e, 2)?)
    } else {
        (rd(0x20, 4)?, rd(0x2e, 2)?, rd(0x30, 2)?, rd(0x32, 2)?)
    };
    let (shoff, shentsize) = (usize::try_from(shoff).ok()?, shentsize as usize);
    let section = |i: u64| -> Option<(u64, usize, usize)> {
        let base = shoff.checked_add(usize::try_from(i).ok()?.checked_mul(shentsize)?)?;
        if is64 {
            Some((rd(base, 4)?, usize::try_from(rd(base + 0x18, 8)?).ok()?, usize::try_from(rd(base + 0x20, 8)?).ok()?))
        } else {
            Some((rd(base, 4)?, usize::try_from(rd(base + 0x10, 4)?).ok()?, usize::try_from(rd(base + 0x14, 4)?).ok()?))
        }
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let names = data.get(str_off..str_off.checked_add(str_size)?)?;
    for i in 0..shnum.min(4096) {
        let (name_off, off, size) = section(i)?;
        let name = names.get(name_off as usize..)?;
        let name = &name[..name.iter().position(|c| *c == 0).unwrap_or(name.len())];
        if name == want.as_bytes() {
            return data.get(off..off.checked_add(size)?);
        }
    }
    None
}

#[derive(Deserialize)]
struct AuditableDeps {
    #[serde(default)]
    packages: Vec<AuditablePackage>,
}

#[derive(Deserialize)]
struct AuditablePackage {
    name: String,
    version: String,
    source: Option<String>,
}

fn cargo_auditable(path: &str, data: &[u8]) -> Vec<Package> {
    use std::io::Read;
    let Some(section) = elf_section(data, ".dep-v0") else { return Vec::new() };
    let mut json = Vec::new();
    let decoder = flate2::read::ZlibDecoder::new(section);
    if decoder.take(16 << 20).read_to_end(&mut json).is_err() {
        return Vec::new();
    }
    let Ok(deps) = serde_json::from_slice::<AuditableDeps>(&json) else { return Vec::new() };
    deps.packages
        .into_iter()
        .filter(|p| matches!(p.source.as_deref(), Some("crates.io" | "registry")))
        .filter_map(|p| pkg("crates.io", &p.name, &p.version, path))
        .collect()
}

/// The inventory of the final filesystem's interesting files (`files`, with links resolved)
/// and the packages found in executables.
pub(crate) fn build(files: &[(String, &[u8])], binaries: Vec<Package>) -> Inventory {
    let os = os_info(files);
    let mut packages = binaries;
    for (path, data) in files {
        let text = || String::from_utf8_lossy(data);
        if path == "var/lib/dpkg/status" {
            dpkg(&os_ecosystem(os.as_ref(), "dpkg"), path, &text(), true, &mut packages);
        } else if path.starts_with("var/lib/dpkg/status.d/") {
            dpkg(&os_ecosystem(os.as_ref(), "dpkg"), path, &text(), false, &mut packages);
        } else if path == "lib/apk/db/installed" {
            apk(&os_ecosystem(os.as_ref(), "apk"), path, &text(), &mut packages);
        } else if python_metadata(path) {
            python(path, &text(), &mut packages);
        } else if npm_package_json(path) {
            if let Ok(NpmPackage { name: Some(n), version: Some(v) }) = serde_json::from_slice::<NpmPackage>(data) {
                packages.extend(pkg("npm", &n, &v, path));
            }
        } else if path.ends_with("package-lock.json") {
            npm_lock(path, data, &mut packages);
        } else if path.ends_with("Cargo.lock") {
            cargo_lock(path, &text(), &mut packages);
        }
    }
    packages.sort();
    packages.dedup();
    Inventory { os, packages }
}
