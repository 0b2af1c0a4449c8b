//! Applying layers to the virtual tree of interesting files, and building the
//! inventory from the final tree.

use std::collections::BTreeMap;
use std::io::Read;

use crate::paths::{self, Class, classify, join, split_last};
use crate::stream::{Meter, Metered, decoder};
use crate::tar::{Kind, TarReader};
use crate::{Compression, Inventory, Limits, Package, ScanError, binary, parsers};

/// Where OS packages came from; their ecosystem is decided at the end, from the OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Dpkg,
    Apk,
    /// Language packages: the ecosystem is already set.
    Lang,
}

/// What the scanner keeps about one path of the final filesystem. Only
/// interesting paths are kept; everything else is forgotten once streamed.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Raw content of an OS identification file.
    OsFile(Vec<u8>),
    /// A symlink at an OS identification path (raw target).
    Symlink(String),
    /// Packages parsed from the file at this path.
    Packages(Origin, Vec<Package>),
}

/// Changes one layer makes: deletions in the lower layers, then its own nodes.
#[derive(Debug, Default)]
pub(crate) struct Upper {
    /// Paths removed from the lower layers together with everything under them.
    delete_trees: Vec<String>,
    /// Directories whose lower content is hidden (opaque whiteouts).
    delete_children: Vec<String>,
    nodes: BTreeMap<String, Node>,
}

fn under<'m>(map: &'m BTreeMap<String, Node>, dir: &str) -> impl Iterator<Item = &'m String> {
    let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    map.range(prefix.clone()..).map(|(k, _)| k).take_while(move |k| k.starts_with(&prefix))
}

fn has_under(map: &BTreeMap<String, Node>, dir: &str) -> bool {
    under(map, dir).next().is_some()
}

fn remove_under(map: &mut BTreeMap<String, Node>, dir: &str) {
    let keys: Vec<String> = under(map, dir).cloned().collect();
    for k in keys {
        map.remove(&k);
    }
}

impl Upper {
    /// Applies this layer over `tree`.
    pub fn apply(self, tree: &mut BTreeMap<String, Node>) {
        for p in &self.delete_trees {
            tree.remove(p);
            remove_under(tree, p);
        }
        for d in &self.delete_children {
            remove_under(tree, d);
        }
        tree.extend(self.nodes);
    }

    /// A non-directory at `path` replaces whatever was there, and below it.
    fn replace_tree(&mut self, lower: &BTreeMap<String, Node>, path: &str) {
        self.nodes.remove(path);
        remove_under(&mut self.nodes, path);
        if lower.contains_key(path) || has_under(lower, path) {
            self.delete_trees.push(path.to_string());
        }
    }
}

/// Reads one layer against the tree of the layers below it.
pub(crate) fn read_layer<R: Read>(
    limits: &Limits,
    lower: &BTreeMap<String, Node>,
    entries: &mut u64,
    total: &mut u64,
    compression: Compression,
    reader: R,
) -> Result<Upper, ScanError> {
    let meter = Meter::default();
    let (decoded, compressed) = decoder(compression, reader, &meter)?;
    let metered = Metered { inner: decoded, meter: meter.clone(), limits, before: *total, bytes: 0, compressed };
    let mut tar = TarReader::new(metered, limits, meter);
    let mut upper = Upper::default();
    let result = read_entries(limits, lower, entries, &mut tar, &mut upper);
    *total = total.saturating_add(tar.get_ref().bytes);
    result.map(|()| upper)
}

fn read_entries<R: Read>(
    limits: &Limits,
    lower: &BTreeMap<String, Node>,
    entries: &mut u64,
    tar: &mut TarReader<'_, R>,
    upper: &mut Upper,
) -> Result<(), ScanError> {
    while let Some(entry) = tar.next_entry(entries)? {
        let path = entry.path;
        if path.is_empty() {
            continue; // the root directory itself
        }
        let (dir, name) = split_last(&path);
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                if lower.keys().next().is_some() && (dir.is_empty() || has_under(lower, dir)) {
                    upper.delete_children.push(dir.to_string());
                }
            } else if !hidden.is_empty() && !hidden.starts_with(".wh.") {
                let target = join(dir, hidden);
                if lower.contains_key(&target) || has_under(lower, &target) {
                    upper.delete_trees.push(target);
                }
            }
            // Other `.wh..wh.*` names are aufs metadata: ignored.
            continue;
        }
        if entry.kind == Kind::Dir {
            // A directory replaces a file at its path but keeps what lies below it.
            upper.nodes.remove(&path);
            if lower.contains_key(&path) {
                upper.delete_trees.push(path.clone());
                // delete_trees would also drop lower children; a file has none.
            }
            continue;
        }
        upper.replace_tree(lower, &path);
        let class = classify(&path);
        match entry.kind {
            Kind::File => {
                if let Some(class) = class {
                    if entry.size > limits.max_file_read {
                        return Err(ScanError::LimitExceeded(format!(
                            "max_file_read: {path} is {} bytes, more than {}",
                            entry.size, limits.max_file_read
                        )));
                    }
                    let data = tar.read_data(entry.size)?;
                    if let Some(node) = parse(class, &path, data) {
                        upper.nodes.insert(path, node);
                    }
                } else if entry.mode & 0o111 != 0 && entry.size >= 4 {
                    let head = tar.read_data(4)?;
                    if head == b"\x7fELF" {
                        let pkgs = if entry.size <= limits.max_binary_size {
                            let mut data = head;
                            data.extend(tar.read_data(entry.size)?);
                            binary::scan(&data, &path, limits)
                        } else {
                            // Too large to buffer: only Go build info, searched chunk by chunk.
                            let max_info = usize::try_from(limits.max_file_read.min(1 << 20)).unwrap_or(1 << 20);
                            binary::go_stream(head, &path, max_info, |n| tar.read_data(n))?
                        };
                        if !pkgs.is_empty() {
                            upper.nodes.insert(path, Node::Packages(Origin::Lang, pkgs));
                        }
                    }
                }
            }
            Kind::HardLink => {
                let target = upper.nodes.get(&entry.link).or_else(|| lower.get(&entry.link)).cloned();
                if let Some(node) = target {
                    let node = match node {
                        Node::Packages(origin, mut pkgs) => {
                            for p in &mut pkgs {
                                p.path.clone_from(&path);
                            }
                            Node::Packages(origin, pkgs)
                        }
                        other => other,
                    };
                    upper.nodes.insert(path, node);
                }
            }
            Kind::Symlink => {
                if class == Some(Class::Os) {
                    upper.nodes.insert(path, Node::Symlink(entry.link));
                }
            }
            Kind::Dir | Kind::Other => {}
        }
    }
    Ok(())
}

fn parse(class: Class, path: &str, data: Vec<u8>) -> Option<Node> {
    let text = || String::from_utf8_lossy(&data).into_owned();
    let (origin, pkgs) = match class {
        Class::Os => return Some(Node::OsFile(data)),
        Class::Dpkg => (Origin::Dpkg, parsers::dpkg(&text(), path, true)),
        Class::DpkgDir => (Origin::Dpkg, parsers::dpkg(&text(), path, false)),
        Class::Apk => (Origin::Apk, parsers::apk(&text(), path)),
        Class::Python => (Origin::Lang, parsers::python(&text(), path)),
        Class::NpmPackage => (Origin::Lang, parsers::npm_package(&data, path)),
        Class::NpmLock => (Origin::Lang, parsers::npm_lock(&data, path)),
        Class::CargoLock => (Origin::Lang, parsers::cargo_lock(&text(), path)),
    };
    // An empty database still hides the one below it, so it is kept.
    Some(Node::Packages(origin, pkgs))
}

/// The content of the OS file at `path`, following symlinks inside the tree.
fn os_file<'t>(limits: &Limits, tree: &'t BTreeMap<String, Node>, path: &str) -> Option<&'t [u8]> {
    let mut path = path.to_string();
    for _ in 0..=limits.max_link_hops {
        match tree.get(&path)? {
            Node::OsFile(data) => return Some(data),
            Node::Symlink(target) => path = paths::resolve_link(&path, target),
            Node::Packages(..) => return None,
        }
    }
    None
}

/// The inventory of the final tree.
pub(crate) fn inventory(limits: &Limits, tree: BTreeMap<String, Node>) -> Inventory {
    let read = |p: &str| os_file(limits, &tree, p).map(|d| String::from_utf8_lossy(d).into_owned());
    let os = parsers::os_info(
        read(paths::OS_RELEASE).or_else(|| read(paths::USR_OS_RELEASE)).as_deref(),
        read(paths::DEBIAN_VERSION).as_deref(),
        read(paths::ALPINE_RELEASE).as_deref(),
    );
    let (dpkg_eco, apk_eco) = parsers::os_ecosystems(os.as_ref());
    let mut packages = Vec::new();
    for node in tree.into_values() {
        if let Node::Packages(origin, pkgs) = node {
            for mut p in pkgs {
                match origin {
                    Origin::Dpkg => p.ecosystem.clone_from(&dpkg_eco),
                    Origin::Apk => p.ecosystem.clone_from(&apk_eco),
                    Origin::Lang => {}
                }
                packages.push(p);
            }
        }
    }
    let key = |p: &Package| (p.ecosystem.clone(), p.name.clone(), p.version.clone(), p.path.clone());
    packages.sort_by(|a, b| {
        (&a.ecosystem, &a.name, &a.version, &a.path, &a.source_name, &a.source_version).cmp(&(
            &b.ecosystem,
            &b.name,
            &b.version,
            &b.path,
            &b.source_name,
            &b.source_version,
        ))
    });
    packages.dedup_by(|a, b| key(a) == key(b));
    Inventory { os, packages }
}
