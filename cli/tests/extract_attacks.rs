//! `extract` against the path attacks that archive tools keep falling for: nothing is ever
//! written outside the target folder.
//!
//! - CVE-2001-1267 (GNU tar): `../` in member names.
//! - CVE-2016-6321 (GNU tar): `..` hidden after a normalisable prefix.
//! - CVE-2007-4559 (Python tarfile): absolute paths and `..` on extractall.
//! - Zip Slip (2018): `../../` in zip entry names.
//! - RUSTSEC-2021-0080 (tar-rs): writing through a symbolic link planted in the target.

use std::path::Path;
use std::process::Command;

use shardpack::Writer;

fn pack_keys(dir: &Path, keys: &[&str]) {
    let mut w = Writer::builder().create(dir).unwrap();
    for key in keys {
        w.append(key, &[("txt", b"pwned".as_slice())]).unwrap();
    }
    w.finish().unwrap();
}

fn extract(archive: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shardpack"))
        .arg("extract")
        .arg(archive)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

/// Every file under `root`, recursively.
fn all_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn traversal_and_absolute_paths_never_leave_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    let archive = tmp.path().join("evil");
    let keys = [
        "../escape-cve-2001-1267",
        "a/../../escape-cve-2016-6321",
        "./../escape-dot",
        "/tmp/escape-cve-2007-4559-absolute",
        "../../../../../../tmp/escape-zip-slip",
        "a/b/../../../escape-deep",
        "ok/inside",
    ];
    pack_keys(&archive, &keys);
    let out = sandbox.join("out");
    let o = extract(&archive, &out);
    assert_eq!(
        o.status.code(),
        Some(1),
        "refused entries make exit status 1"
    );
    for f in all_files(tmp.path()) {
        assert!(
            f.starts_with(&out) || f.starts_with(&archive),
            "{} written outside the target",
            f.display()
        );
    }
    assert!(
        out.join("ok/inside.txt").exists(),
        "the safe entry is still extracted"
    );
    assert!(!Path::new("/tmp/escape-cve-2007-4559-absolute.txt").exists());
    assert!(!Path::new("/tmp/escape-zip-slip.txt").exists());
}

#[test]
fn a_symlink_in_the_target_is_never_followed_rustsec_2021_0080() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let archive = tmp.path().join("evil");
    pack_keys(&archive, &["link/payload"]);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
    // The target is not empty, so extract refuses it outright...
    assert_eq!(extract(&archive, &out).status.code(), Some(2));
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    // ...and an archive can never plant a link itself: extract creates only folders and
    // regular files, with O_CREAT|O_EXCL, so it neither follows nor replaces one.
    let out2 = tmp.path().join("out2");
    assert!(extract(&archive, &out2).status.success());
    assert!(std::fs::symlink_metadata(out2.join("link"))
        .unwrap()
        .is_dir());
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
}
