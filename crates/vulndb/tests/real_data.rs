//! Reads the real OSV snapshots in shared/vulndb (outside the repository; see its
//! README.md for sources and licences). Skipped, with a notice, when absent.
//! Directory: `$BERTH_VULNDB_DIR`, else `../../../shared/vulndb` from this crate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use berth_vulndb::{Advisory, Severity, compare, read_sources};

fn data_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("BERTH_VULNDB_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vulndb"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("NOTICE: {} not found, real-data test skipped (set BERTH_VULNDB_DIR)", dir.display());
        None
    }
}

fn load(dir: &std::path::Path, eco: &str) -> Vec<Advisory> {
    let start = Instant::now();
    let all: Vec<Advisory> =
        read_sources(&dir.join(eco).join("all.zip")).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{eco}: {e}"));
    eprintln!("{eco}: {} records in {:?}", all.len(), start.elapsed());
    all
}

fn find<'a>(all: &'a [Advisory], id: &str) -> &'a Advisory {
    all.iter().find(|a| a.id == id).unwrap_or_else(|| panic!("{id} missing"))
}

/// Versions that `compare` cannot parse: (range events of ECOSYSTEM/SEMVER ranges,
/// `versions[]` entries, which still match by exact string).
fn unparseable(all: &[Advisory]) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut listed = Vec::new();
    for a in all {
        for e in &a.affected {
            for r in e.ranges.iter().filter(|r| r.kind != "GIT") {
                for ev in &r.events {
                    let v = match ev {
                        berth_vulndb::Event::Introduced(v)
                        | berth_vulndb::Event::Fixed(v)
                        | berth_vulndb::Event::LastAffected(v)
                        | berth_vulndb::Event::Limit(v) => v,
                    };
                    if v != "0" && v != "*" && compare(&e.ecosystem, v, v).is_none() {
                        out.push(format!("{} {} {v}", a.id, e.ecosystem));
                    }
                }
            }
            for v in &e.versions {
                if compare(&e.ecosystem, v, v).is_none() {
                    listed.push(format!("{} {} {v}", a.id, e.ecosystem));
                }
            }
        }
    }
    (out, listed)
}

fn summary(eco: &str, all: &[Advisory]) {
    let mut sev: HashMap<Severity, usize> = HashMap::new();
    for a in all {
        *sev.entry(a.severity).or_default() += 1;
    }
    let (events, listed) = unparseable(all);
    eprintln!(
        "{eco}: severities {sev:?}; unparseable: {} range events {:?}, {} versions[] entries {:?}",
        events.len(),
        &events[..events.len().min(5)],
        listed.len(),
        &listed[..listed.len().min(5)]
    );
}

#[test]
fn real_osv_snapshots() {
    let Some(dir) = data_dir() else { return };
    let start = Instant::now();
    let crates = load(&dir, "crates.io");
    let go = load(&dir, "Go");
    let pypi = load(&dir, "PyPI");
    eprintln!("all three archives: {:?}", start.elapsed());

    let withdrawn = |all: &[Advisory]| all.iter().filter(|a| a.withdrawn).count();
    assert_eq!((crates.len(), withdrawn(&crates)), (1206, 13));
    assert_eq!((go.len(), withdrawn(&go)), (4291, 17));
    assert_eq!((pypi.len(), withdrawn(&pypi)), (2661, 10));
    for (eco, all) in [("crates.io", &crates), ("Go", &go), ("PyPI", &pypi)] {
        summary(eco, all);
        let (events, listed) = unparseable(all);
        // Two PyPA ranges use legacy (non-PEP 440) versions; their events are dropped.
        let expected: &[&str] =
            if eco == "PyPI" { &["PYSEC-2019-125 PyPI 2019-09-12", "PYSEC-2021-371 PyPI 0.2.0-n653"] } else { &[] };
        assert_eq!(events, expected, "{eco}: unparseable range events");
        assert!(listed.len() * 20 < all.len(), "{eco}: too many unparseable versions[]");
    }

    // RustSec: hyper, SEMVER introduced 0.0.0-0, fixed 0.14.10; CVSS 3.1 5.3.
    let a = find(&crates, "RUSTSEC-2021-0078");
    assert_eq!(a.cve.as_deref(), Some("CVE-2021-32715"));
    assert_eq!(a.cvss3.as_ref().map(|c| c.base_score), Some(5.3));
    assert_eq!(a.severity, Severity::Medium);
    assert_eq!(a.url.as_deref(), Some("https://rustsec.org/advisories/RUSTSEC-2021-0078.html"));
    assert!(a.affects("crates.io", "hyper", "0.14.9"));
    assert!(a.affects("crates.io", "hyper", "0.1.0"));
    assert!(!a.affects("crates.io", "hyper", "0.14.10"));
    assert!(!a.affects("crates.io", "hyper", "1.0.0"));
    assert!(!a.affects("crates.io", "hyperx", "0.14.9"));

    // PyPA: flask, ECOSYSTEM ranges 0..2.2.5 and 2.3.0..2.3.2, plus a GIT range.
    let a = find(&pypi, "PYSEC-2023-62");
    assert_eq!(a.cve.as_deref(), Some("CVE-2023-30861"));
    for (v, want) in [
        ("0.12", true),
        ("2.2.4", true),
        ("2.2.5", false),
        ("2.3.0", true),
        ("2.3.1", true),
        ("2.3.2", false),
        ("3.0.0", false),
    ] {
        assert_eq!(a.affects("PyPI", "Flask", v), want, "flask {v}");
    }

    // Go: stdlib and golang.org/x/net entries in one record.
    let a = find(&go, "GO-2023-1571");
    for (v, want) in [("v1.19.5", true), ("1.19.6", false), ("v1.20.0", true), ("v1.20.1", false)] {
        assert_eq!(a.affects("Go", "stdlib", v), want, "stdlib {v}");
    }
    assert!(a.affects("Go", "golang.org/x/net", "v0.6.0"));
    assert!(!a.affects("Go", "golang.org/x/net", "v0.7.0"));
    // Go: fixed at a pseudo-version.
    let a = find(&go, "GO-2022-0969");
    assert!(a.affects("Go", "golang.org/x/net", "v0.0.0-20220101000000-aaaaaaaaaaaa"));
    assert!(!a.affects("Go", "golang.org/x/net", "v0.0.0-20220906165146-f3363e06e74c"));
    assert!(!a.affects("Go", "golang.org/x/net", "v0.1.0"));
    assert!(a.affects("Go", "stdlib", "v1.18.5"));
    assert!(!a.affects("Go", "stdlib", "v1.18.6"));

    // Withdrawn records affect nothing.
    for all in [&crates, &go, &pypi] {
        for a in all.iter().filter(|a| a.withdrawn) {
            for e in &a.affected {
                for v in e.versions.iter().take(1) {
                    assert!(!a.affects(&e.ecosystem, &e.name, v), "{}", a.id);
                }
            }
        }
    }
}
