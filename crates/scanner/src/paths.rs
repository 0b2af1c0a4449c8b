//! Path normalization and the classification of the files the inventory needs.

/// Normalizes a tar entry path: strips leading `/` and `./`, drops empty and
/// `.` components, folds `a/../b`. Returns `None` when a `..` would climb
/// above the root. The root itself is `""`.
pub(crate) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// Resolves a symlink `target` found at `link` inside the image: relative
/// targets start from the link's directory, absolute ones from the root, and
/// `..` at the root stays at the root (as in a chroot), so the result never
/// leaves the image.
pub(crate) fn resolve_link(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if !target.starts_with('/') {
        parts.extend(link.split('/').filter(|c| !c.is_empty()));
        parts.pop();
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Splits `dir/name` into (`dir`, `name`); the root directory is `""`.
pub(crate) fn split_last(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// `dir/name`, or `name` when `dir` is the root.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

/// Files of the OS identification.
pub(crate) const OS_RELEASE: &str = "etc/os-release";
pub(crate) const USR_OS_RELEASE: &str = "usr/lib/os-release";
pub(crate) const DEBIAN_VERSION: &str = "etc/debian_version";
pub(crate) const ALPINE_RELEASE: &str = "etc/alpine-release";

/// What an interesting file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// os-release, debian_version, alpine-release: kept raw, links resolved.
    Os,
    /// `var/lib/dpkg/status`.
    Dpkg,
    /// `var/lib/dpkg/status.d/*` (distroless).
    DpkgDir,
    /// `lib/apk/db/installed`.
    Apk,
    /// `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`, `*.egg-info` files.
    Python,
    /// `node_modules/[@scope/]name/package.json`.
    NpmPackage,
    /// `package-lock.json` outside `node_modules`.
    NpmLock,
    /// `Cargo.lock`.
    CargoLock,
}

fn is_site_dir(c: &str) -> bool {
    c == "site-packages" || c == "dist-packages"
}

/// Whether (and as what) the inventory needs the file at `path`.
pub(crate) fn classify(path: &str) -> Option<Class> {
    match path {
        OS_RELEASE | USR_OS_RELEASE | DEBIAN_VERSION | ALPINE_RELEASE => return Some(Class::Os),
        "var/lib/dpkg/status" => return Some(Class::Dpkg),
        "lib/apk/db/installed" => return Some(Class::Apk),
        _ => {}
    }
    let comps: Vec<&str> = path.split('/').collect();
    let n = comps.len();
    let last = comps[n - 1];
    let parent = if n >= 2 { comps[n - 2] } else { "" };
    let grand = if n >= 3 { comps[n - 3] } else { "" };
    if let Some(dir) = path.strip_prefix("var/lib/dpkg/status.d/") {
        if !dir.contains('/') && !dir.starts_with('.') && !dir.ends_with(".md5sums") {
            return Some(Class::DpkgDir);
        }
        return None;
    }
    if last == "METADATA" && parent.ends_with(".dist-info") && is_site_dir(grand) {
        return Some(Class::Python);
    }
    if last == "PKG-INFO" && parent.ends_with(".egg-info") {
        return Some(Class::Python);
    }
    if last.ends_with(".egg-info") && is_site_dir(parent) {
        return Some(Class::Python);
    }
    if last == "Cargo.lock" {
        return Some(Class::CargoLock);
    }
    let nm = comps.iter().rposition(|&c| c == "node_modules");
    if last == "package-lock.json" && nm.is_none() {
        return Some(Class::NpmLock);
    }
    if last == "package.json"
        && let Some(i) = nm
    {
        let rest = &comps[i + 1..n - 1];
        let ok = match rest {
            [name] => !name.starts_with('.'),
            [scope, name] => scope.starts_with('@') && scope.len() > 1 && !name.starts_with('.'),
            _ => false,
        };
        if ok {
            return Some(Class::NpmPackage);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("./etc//os-release").as_deref(), Some("etc/os-release"));
        assert_eq!(normalize("/usr/./lib/../lib/x").as_deref(), Some("usr/lib/x"));
        assert_eq!(normalize("./").as_deref(), Some(""));
        assert_eq!(normalize("../etc/passwd"), None);
        assert_eq!(normalize("a/../../b"), None);
    }

    #[test]
    fn resolves_links_inside_the_root() {
        assert_eq!(resolve_link("etc/os-release", "../usr/lib/os-release"), "usr/lib/os-release");
        assert_eq!(resolve_link("etc/os-release", "../../../../usr/lib/os-release"), "usr/lib/os-release");
        assert_eq!(resolve_link("etc/os-release", "/usr/lib/os-release"), "usr/lib/os-release");
        assert_eq!(resolve_link("etc/os-release", "os-release.d/x"), "etc/os-release.d/x");
    }

    #[test]
    fn classifies() {
        assert_eq!(classify("usr/lib/python3/dist-packages/foo-1.0.dist-info/METADATA"), Some(Class::Python));
        assert_eq!(classify("app/foo.dist-info/METADATA"), None);
        assert_eq!(classify("app/node_modules/@scope/x/package.json"), Some(Class::NpmPackage));
        assert_eq!(classify("app/node_modules/x/lib/package.json"), None);
        assert_eq!(classify("app/node_modules/.bin/package.json"), None);
        assert_eq!(classify("app/package-lock.json"), Some(Class::NpmLock));
        assert_eq!(classify("app/node_modules/x/package-lock.json"), None);
        assert_eq!(classify("var/lib/dpkg/status.d/base"), Some(Class::DpkgDir));
        assert_eq!(classify("var/lib/dpkg/status.d/base.md5sums"), None);
        assert_eq!(classify("etc/passwd"), None);
    }
}
