//! Packing trusts nothing on disk (issue #10): files are opened relative to their folder
//! (a key of 4,096 bytes is no path too long; a symbolic link swapped in after the walk is
//! refused, never followed), a file's size is checked before and while it is read, and a
//! sample is never held in memory whole, whatever its size.

use std::fs;
use std::path::Path;

use shardpack::pack::{pack_folder, FolderListing, PackOptions};
use shardpack::{Archive, ErrorKind, FieldData, InputChange, Writer, WriterBuilder};

fn pack(listing: &FolderListing, out: &Path) -> shardpack::Result<shardpack::pack::PackReport> {
    listing.pack(
        out,
        WriterBuilder::new(),
        &PackOptions::new(),
        &mut |_, _| {},
    )
}

fn changed(err: &shardpack::Error) -> (&Path, &InputChange) {
    match err.kind() {
        ErrorKind::InputChanged { path, change, .. } => (path, change),
        other => panic!("expected InputChanged, got {other:?}"),
    }
}

/// A key of exactly 4,096 bytes (the format's limit) under a folder whose own path is long:
/// every component is short, the whole path is not.
#[test]
fn a_key_of_4096_bytes_packs_and_extracts() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let mut components: Vec<String> = (0..20)
        .map(|i| format!("{i:02}{}", "d".repeat(198)))
        .collect();
    // 20 × 200 bytes + 20 separators = 4,020; the file name makes up the rest.
    let used: usize = components.iter().map(|c| c.len() + 1).sum();
    components.push("f".repeat(4096 - used));
    let key = components.join("/");
    assert_eq!(key.len(), 4096);
    // Create it one component at a time: the whole path is too long for one call.
    let mut at = input.clone();
    fs::create_dir_all(&at).unwrap();
    std::env::set_current_dir(&at).unwrap();
    for c in &components[..components.len() - 1] {
        fs::create_dir(c).unwrap();
        std::env::set_current_dir(c).unwrap();
        at.push(c);
    }
    fs::write(format!("{}.txt", components.last().unwrap()), b"deep").unwrap();
    std::env::set_current_dir(tmp.path()).unwrap();
    assert!(
        at.join(components.last().unwrap()).as_os_str().len() > 4096,
        "the path itself is too long to open"
    );

    let out = tmp.path().join("a");
    let listing = FolderListing::scan(&input).unwrap();
    assert_eq!(listing.samples()[0].key, key);
    let report = pack(&listing, &out).unwrap();
    assert_eq!(report.manifest.totals.samples, 1);
    let archive = Archive::open(&out).unwrap();
    let sample = archive.get_by_key(&key).unwrap().unwrap();
    assert_eq!(sample.field("txt"), Some(&b"deep"[..]));

    let extracted = tmp.path().join("x");
    let report = shardpack::extract::extract(&archive, &extracted, &mut |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.files, 1);
    // Read it back one component at a time too.
    std::env::set_current_dir(&extracted).unwrap();
    for c in &components[..components.len() - 1] {
        std::env::set_current_dir(c).unwrap();
    }
    let back = fs::read(format!("{}.txt", components.last().unwrap())).unwrap();
    std::env::set_current_dir(tmp.path()).unwrap();
    assert_eq!(back, b"deep");
}

#[test]
fn a_file_replaced_by_a_symlink_after_the_walk_is_refused_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    fs::create_dir_all(input.join("sub")).unwrap();
    fs::write(input.join("sub/a.txt"), b"aaaa").unwrap();
    fs::write(tmp.path().join("secret"), b"sec!").unwrap();
    let listing = FolderListing::scan(&input).unwrap();
    // Same size, so only the link itself can give it away.
    fs::remove_file(input.join("sub/a.txt")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret"), input.join("sub/a.txt")).unwrap();
    let out = tmp.path().join("a");
    let err = pack(&listing, &out).unwrap_err();
    let (path, change) = changed(&err);
    assert_eq!(path, input.join("sub/a.txt"));
    assert_eq!(
        *change,
        InputChange::NotRegular {
            now: "a symbolic link"
        },
        "{err}"
    );
    assert!(!out.exists(), "a failed pack removes what it created");

    // A folder on the way swapped for a link is refused as well.
    fs::remove_file(input.join("sub/a.txt")).unwrap();
    fs::write(input.join("sub/a.txt"), b"aaaa").unwrap();
    let listing = FolderListing::scan(&input).unwrap();
    fs::rename(input.join("sub"), tmp.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("moved"), input.join("sub")).unwrap();
    let err = pack(&listing, &out).unwrap_err();
    assert!(err.is_io(), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_fifo_swapped_in_after_the_walk_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    fs::create_dir_all(&input).unwrap();
    fs::write(input.join("a.txt"), b"").unwrap();
    let listing = FolderListing::scan(&input).unwrap();
    fs::remove_file(input.join("a.txt")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(input.join("a.txt"))
        .status()
        .unwrap();
    assert!(status.success());
    let err = pack(&listing, &tmp.path().join("a")).unwrap_err();
    assert!(
        matches!(changed(&err).1, InputChange::NotRegular { .. }),
        "{err}"
    );
}

#[test]
fn a_file_that_changed_size_since_the_walk_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    fs::create_dir_all(&input).unwrap();
    for (name, grow) in [("grew.bin", true), ("shrank.bin", false)] {
        let _ = fs::remove_dir_all(&input);
        fs::create_dir_all(&input).unwrap();
        fs::write(input.join(name), [7u8; 100]).unwrap();
        let listing = FolderListing::scan(&input).unwrap();
        fs::write(input.join(name), vec![7u8; if grow { 150 } else { 50 }]).unwrap();
        let err = pack(&listing, &tmp.path().join("a")).unwrap_err();
        let (path, change) = changed(&err);
        assert_eq!(path, input.join(name));
        let found = if grow { 150 } else { 50 };
        assert_eq!(
            *change,
            InputChange::Size {
                expected: 100,
                found
            }
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn a_file_source_of_the_wrong_length_is_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    fs::write(&path, [1u8; 10]).unwrap();
    let file = fs::File::open(&path).unwrap();
    let mut w = Writer::builder().create(tmp.path().join("a")).unwrap();
    let err = w
        .append_from("k", &[("bin", FieldData::file(&file, 11, &path))])
        .unwrap_err();
    assert_eq!(
        *changed(&err).1,
        InputChange::Size {
            expected: 11,
            found: 10
        }
    );
    // Nothing of it was kept: the writer goes on.
    w.append_from("k", &[("bin", FieldData::file(&file, 10, &path))])
        .unwrap();
    let m = w.finish().unwrap();
    assert_eq!(m.totals.samples, 1);
}

/// Larger than the format's limit for one record (2^32 bytes, §13.2 rule 2): refused from
/// the file's size, before a byte of it is read (a sparse file: reading it would take
/// seconds and, before, as much memory).
#[test]
fn a_sample_over_the_format_limit_is_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    fs::create_dir_all(&input).unwrap();
    let big = fs::File::create(input.join("huge.bin")).unwrap();
    big.set_len(5 << 30).unwrap();
    drop(big);
    let out = tmp.path().join("a");
    let started = std::time::Instant::now();
    let err = pack_folder(
        &input,
        &out,
        WriterBuilder::new(),
        &PackOptions::new(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { subject, .. } if subject.contains("huge.bin")),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 5, "refused without reading");
    assert!(!out.exists());
}
