//! Parsers of the OS identification files, package databases, package
//! metadata and lockfiles. All are total: malformed input yields fewer
//! packages, never an error or a panic.

use serde_json::Value;

use crate::{OsInfo, Package};

fn pkg(ecosystem: &str, name: &str, version: &str, path: &str) -> Option<Package> {
    let (name, version) = (name.trim(), version.trim());
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some(Package {
        ecosystem: ecosystem.to_string(),
        name: name.to_string(),
        version: version.to_string(),
        source_name: None,
        source_version: None,
        path: path.to_string(),
    })
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    let v = if v.len() >= 2 && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    v.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Builds the OS identity from os-release, with the Debian and Alpine fallbacks.
pub(crate) fn os_info(os_release: Option<&str>, debian: Option<&str>, alpine: Option<&str>) -> Option<OsInfo> {
    let debian = debian.map(str::trim).filter(|v| v.starts_with(|c: char| c.is_ascii_digit()));
    let alpine = alpine.map(str::trim).filter(|v| v.starts_with(|c: char| c.is_ascii_digit()));
    let mut info = os_release.and_then(|text| {
        let (mut id, mut version_id, mut pretty_name) = (None, None, None);
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else { continue };
            let v = unquote(v);
            let v = if v.is_empty() { None } else { Some(v) };
            match k.trim() {
                "ID" => id = v,
                "VERSION_ID" => version_id = v,
                "PRETTY_NAME" => pretty_name = v,
                _ => {}
            }
        }
        Some(OsInfo { id: id?.to_ascii_lowercase(), version_id, pretty_name })
    });
    match &mut info {
        Some(i) if i.version_id.is_none() && i.id == "debian" => i.version_id = debian.map(str::to_string),
        Some(i) if i.version_id.is_none() && i.id == "alpine" => i.version_id = alpine.map(str::to_string),
        Some(_) => {}
        None => {
            if let Some(v) = alpine {
                info = Some(OsInfo { id: "alpine".into(), version_id: Some(v.to_string()), pretty_name: None });
            } else if debian.is_some() {
                info = Some(OsInfo { id: "debian".into(), version_id: debian.map(str::to_string), pretty_name: None });
            }
        }
    }
    info
}

/// The ecosystems of dpkg and apk packages for this OS.
pub(crate) fn os_ecosystems(os: Option<&OsInfo>) -> (String, String) {
    let (mut dpkg, mut apk) = ("Debian".to_string(), "Alpine".to_string());
    if let Some(OsInfo { id, version_id: Some(v), .. }) = os {
        let mut nums = v.split('.');
        let major = nums.next().filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
        match id.as_str() {
            "debian" => {
                if let Some(m) = major {
                    dpkg = format!("Debian:{m}");
                }
            }
            "ubuntu" => dpkg = format!("Ubuntu:{v}"),
            "alpine" => {
                let minor = nums.next().filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
                if let (Some(m), Some(n)) = (major, minor) {
                    apk = format!("Alpine:v{m}.{n}");
                }
            }
            _ => {}
        }
    }
    (dpkg, apk)
}

/// Splits a control file into stanzas of (field, value) pairs; continuation
/// lines are ignored (no field the scanner reads spans lines).
fn stanzas(text: &str) -> Vec<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            continue;
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim(), v.trim()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(stanza: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    stanza.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

/// dpkg `status` (or a distroless `status.d` file). A stanza counts when its
/// `Status` says the package is installed (`<want> ok installed`); when
/// `need_status` is false (status.d), stanzas without a `Status` count too.
/// The ecosystem is left empty: it is set from the OS at the end.
pub(crate) fn dpkg(text: &str, path: &str, need_status: bool) -> Vec<Package> {
    let mut out = Vec::new();
    for s in stanzas(text) {
        match field(&s, "Status") {
            Some(st) => {
                let words: Vec<&str> = st.split_whitespace().collect();
                if words.len() != 3 || words[1] != "ok" || words[2] != "installed" {
                    continue;
                }
            }
            None if need_status => continue,
            None => {}
        }
        let (Some(name), Some(version)) = (field(&s, "Package"), field(&s, "Version")) else { continue };
        let Some(mut p) = pkg("", name, version, path) else { continue };
        if let Some(src) = field(&s, "Source") {
            let (sname, sver) = match src.split_once('(') {
                Some((n, v)) => (n.trim(), Some(v.trim_end().trim_end_matches(')').trim())),
                None => (src.trim(), None),
            };
            if !sname.is_empty() {
                p.source_name = Some(sname.to_string());
                p.source_version = sver.filter(|v| !v.is_empty()).map(str::to_string);
            }
        }
        out.push(p);
    }
    out
}

/// apk `installed`: `P:` name, `V:` version, `o:` origin. The ecosystem is
/// left empty: it is set from the OS at the end.
pub(crate) fn apk(text: &str, path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let (mut name, mut version, mut origin): (Option<&str>, Option<&str>, Option<&str>) = (None, None, None);
    let mut flush = |name: &mut Option<&str>, version: &mut Option<&str>, origin: &mut Option<&str>| {
        if let (Some(n), Some(v)) = (name.take(), version.take())
            && let Some(mut p) = pkg("", n, v, path)
        {
            p.source_name = origin.map(str::trim).filter(|o| !o.is_empty()).map(str::to_string);
            out.push(p);
        }
        *name = None;
        *version = None;
        *origin = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut origin);
        } else if let Some(v) = line.strip_prefix("P:") {
            name = Some(v);
        } else if let Some(v) = line.strip_prefix("V:") {
            version = Some(v);
        } else if let Some(v) = line.strip_prefix("o:") {
            origin = Some(v);
        }
    }
    flush(&mut name, &mut version, &mut origin);
    out
}

/// PEP 503 name normalization: lowercase, runs of `-`, `_`, `.` become `-`.
pub(crate) fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
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

/// Python core metadata (`METADATA`, `PKG-INFO`): the `Name` and `Version`
/// headers, before the first blank line.
pub(crate) fn python(text: &str, path: &str) -> Vec<Package> {
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "name" if name.is_none() => name = Some(v),
                "version" if version.is_none() => version = Some(v),
                _ => {}
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) => pkg("PyPI", &pep503(n), v, path).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A `node_modules/.../package.json`: `name` and `version`, both required.
pub(crate) fn npm_package(data: &[u8], path: &str) -> Vec<Package> {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return Vec::new() };
    match (v.get("name").and_then(Value::as_str), v.get("version").and_then(Value::as_str)) {
        (Some(n), Some(ver)) => pkg("npm", n, ver, path).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Versions that name a registry release (not a URL, path or tag).
fn npm_registry_version(v: &str) -> bool {
    let v = v.trim();
    !v.is_empty() && !v.contains(':') && !v.contains('/')
}

fn npm_v1_deps(deps: &Value, path: &str, out: &mut Vec<Package>) {
    let Some(map) = deps.as_object() else { return };
    for (name, entry) in map {
        if let Some(v) = entry.get("version").and_then(Value::as_str)
            && npm_registry_version(v)
            && let Some(p) = pkg("npm", name, v, path)
        {
            out.push(p);
        }
        if let Some(nested) = entry.get("dependencies") {
            npm_v1_deps(nested, path, out);
        }
    }
}

/// `package-lock.json`: lockfile v2/v3 `packages` (keys under
/// `node_modules/`; the root `""`, workspace folders and `link` entries
/// skipped), else the v1 `dependencies` tree. Versions that are URLs,
/// `file:`/`git+` specs or paths are skipped.
pub(crate) fn npm_lock(data: &[u8], path: &str) -> Vec<Package> {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(packages) = v.get("packages").and_then(Value::as_object) {
        for (key, entry) in packages {
            let Some(i) = key.rfind("node_modules/") else { continue };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = entry.get("name").and_then(Value::as_str).unwrap_or(&key[i + "node_modules/".len()..]);
            if let Some(ver) = entry.get("version").and_then(Value::as_str)
                && npm_registry_version(ver)
                && let Some(p) = pkg("npm", name, ver, path)
            {
                out.push(p);
            }
        }
    } else if let Some(deps) = v.get("dependencies") {
        npm_v1_deps(deps, path, &mut out);
    }
    out
}

fn toml_string(v: &str) -> Option<&str> {
    let v = v.trim();
    v.strip_prefix('"')?.strip_suffix('"')
}

/// `Cargo.lock`: every `[[package]]` whose `source` is a registry
/// (`registry+...` or `sparse+...`); path and git dependencies (workspace
/// members included) are skipped, as they are not published releases.
/// A line-based reader of the format cargo writes.
pub(crate) fn cargo_lock(text: &str, path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut in_pkg = false;
    let (mut name, mut version, mut source): (Option<&str>, Option<&str>, Option<&str>) = (None, None, None);
    let mut flush = |name: &mut Option<&str>, version: &mut Option<&str>, source: &mut Option<&str>| {
        if let (Some(n), Some(v), Some(s)) = (name.take(), version.take(), source.take())
            && (s.starts_with("registry+") || s.starts_with("sparse+"))
            && let Some(p) = pkg("crates.io", n, v, path)
        {
            out.push(p);
        }
        *source = None;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            flush(&mut name, &mut version, &mut source);
            in_pkg = line == "[[package]]";
            continue;
        }
        if !in_pkg {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        match k.trim() {
            "name" => name = toml_string(v),
            "version" => version = toml_string(v),
            "source" => source = toml_string(v),
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut source);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_names() {
        assert_eq!(pep503("Foo_Bar.baz"), "foo-bar-baz");
        assert_eq!(pep503("a--_.b"), "a-b");
        assert_eq!(pep503("Django"), "django");
    }

    #[test]
    fn dpkg_source_forms() {
        let text = "Package: a\nStatus: hold ok installed\nVersion: 1\nSource: src (2)\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: c\nStatus: install ok installed\nVersion: 3\nSource: csrc\nDescription: x\n more\n";
        let p = dpkg(text, "s", true);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].source_name.as_deref(), Some("src"));
        assert_eq!(p[0].source_version.as_deref(), Some("2"));
        assert_eq!(p[1].source_name.as_deref(), Some("csrc"));
        assert_eq!(p[1].source_version, None);
    }

    #[test]
    fn ecosystems() {
        let os = |id: &str, v: &str| OsInfo { id: id.into(), version_id: Some(v.into()), pretty_name: None };
        assert_eq!(os_ecosystems(Some(&os("debian", "12"))).0, "Debian:12");
        assert_eq!(os_ecosystems(Some(&os("debian", "12.4"))).0, "Debian:12");
        assert_eq!(os_ecosystems(Some(&os("ubuntu", "22.04"))).0, "Ubuntu:22.04");
        assert_eq!(os_ecosystems(Some(&os("alpine", "3.19.1"))).1, "Alpine:v3.19");
        assert_eq!(os_ecosystems(None), ("Debian".into(), "Alpine".into()));
    }
}
