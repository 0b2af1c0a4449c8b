//! Reading advisory sources: single files, directory trees, zip archives, limits.

use std::io::Write;
use std::path::Path;

use berth_vulndb::{Error, Limits, read_sources, read_sources_with_limits};

fn record(id: &str) -> String {
    format!(r#"{{"id": "{id}", "affected": [{{"package": {{"ecosystem": "npm", "name": "x"}}}}]}}"#)
}

fn ids(path: &Path, limits: Limits) -> (Vec<String>, Vec<String>) {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for r in read_sources_with_limits(path, limits) {
        match r {
            Ok(a) => ok.push(a.id),
            Err(e) => errs.push(e.to_string()),
        }
    }
    (ok, errs)
}

fn write_zip(path: &Path, entries: &[(&str, &str)]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in entries {
        if name.ends_with('/') {
            w.add_directory(*name, opts).unwrap();
        } else {
            w.start_file(*name, opts).unwrap();
            w.write_all(body.as_bytes()).unwrap();
        }
    }
    w.finish().unwrap();
}

#[test]
fn single_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("A-1.json");
    std::fs::write(&p, record("A-1")).unwrap();
    let (ok, errs) = ids(&p, Limits::default());
    assert_eq!(ok, ["A-1"]);
    assert!(errs.is_empty());
    // A single file is read whatever its name.
    let q = dir.path().join("record.txt");
    std::fs::write(&q, record("A-2")).unwrap();
    assert_eq!(ids(&q, Limits::default()).0, ["A-2"]);
}

#[test]
fn directory_tree_sorted_recursive_and_errors_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("b/c")).unwrap();
    std::fs::write(d.join("b/c/B-2.json"), record("B-2")).unwrap();
    std::fs::write(d.join("b/B-1.json"), record("B-1")).unwrap();
    std::fs::write(d.join("A-1.json"), record("A-1")).unwrap();
    std::fs::write(d.join("README.md"), "not a record").unwrap();
    std::fs::write(d.join("c.json"), "{broken").unwrap();
    let (ok, errs) = ids(d, Limits::default());
    assert_eq!(ok, ["A-1", "B-1", "B-2"]);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("c.json"), "{}", errs[0]);
}

#[test]
fn zip_entries_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("all.zip");
    write_zip(
        &p,
        &[
            ("A-1.json", &record("A-1")),
            ("sub/", ""),
            ("sub/deeper/B-1.json", &record("B-1")),
            ("LICENSE", "text"),
            ("bad.json", "[]"),
        ],
    );
    let (ok, errs) = ids(&p, Limits::default());
    assert_eq!(ok, ["A-1", "B-1"]);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("all.zip!bad.json"), "{}", errs[0]);
}

#[test]
fn limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("all.zip");
    let big = format!(r#"{{"id": "BIG", "details": "{}"}}"#, "x".repeat(5000));
    write_zip(&p, &[("A-1.json", &record("A-1")), ("BIG.json", &big), ("C-1.json", &record("C-1"))]);

    // Per record: the big entry fails, named; the others are read.
    let limits = Limits { max_record_bytes: 1000, ..Limits::default() };
    let (ok, errs) = ids(&p, limits);
    assert_eq!(ok, ["A-1", "C-1"]);
    assert!(errs[0].contains("BIG.json") && errs[0].contains("larger than 1000"), "{}", errs[0]);

    // Entry count: the archive is refused at once.
    let limits = Limits { max_zip_entries: 2, ..Limits::default() };
    let (ok, errs) = ids(&p, limits);
    assert!(ok.is_empty());
    assert!(errs[0].contains("3 entries"), "{}", errs[0]);

    // Total uncompressed bytes: reading stops with one error.
    let limits = Limits { max_zip_bytes: 2000, ..Limits::default() };
    let (ok, errs) = ids(&p, limits);
    assert_eq!(ok, ["A-1"]);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("uncompressed bytes"), "{}", errs[0]);

    // A plain file over the cap.
    let f = dir.path().join("BIG.json");
    std::fs::write(&f, &big).unwrap();
    let (ok, errs) = ids(&f, Limits { max_record_bytes: 100, ..Limits::default() });
    assert!(ok.is_empty());
    assert!(errs[0].contains("BIG.json"), "{}", errs[0]);
}

#[test]
fn missing_path_and_corrupt_zip() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let all: Vec<_> = read_sources(&missing).collect();
    assert_eq!(all.len(), 1);
    assert!(matches!(&all[0], Err(Error::Io { name, .. }) if name.contains("nope")));

    let p = dir.path().join("all.zip");
    std::fs::write(&p, b"PK\x03\x04 definitely not a zip").unwrap();
    let all: Vec<_> = read_sources(&p).collect();
    assert_eq!(all.len(), 1);
    assert!(matches!(&all[0], Err(Error::Zip { name, .. }) if name.contains("all.zip")));
}
