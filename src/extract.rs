//! Extraction: recreating a sample's files under a folder, never writing outside it.
//!
//! A field is written to `key.field` (the key alone for an empty field name), the path
//! [`pack`](crate::pack) read it from. Paths are checked before anything is written:
//! absolute paths, `..`, `.` and empty components are refused, no symbolic link is created
//! or followed, and no existing file is overwritten. The target folder must be new or empty,
//! so that nothing planted in it beforehand (such as a symbolic link) can be followed.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::io::Dir;
use crate::{Archive, Error, Result, Sample};

/// The relative path a sample's field is extracted to: `key.field`, or `key` for an empty
/// field name. It is checked by [`safe_components`] before use.
#[must_use]
pub fn field_path(key: &str, field: &str) -> String {
    if field.is_empty() {
        key.to_string()
    } else {
        format!("{key}.{field}")
    }
}

/// The '/'-separated components of `rel`, refusing anything that could leave the target
/// folder: an absolute path, an empty, `.` or `..` component, or a NUL byte.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] naming the path.
pub fn safe_components(rel: &str) -> Result<Vec<&str>> {
    if rel.starts_with('/') {
        return Err(Error::invalid_input(
            format!("{rel:?}"),
            "refusing an absolute path",
        ));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(Error::invalid_input(
            format!("{rel:?}"),
            "refusing an unsafe path (an empty, '.' or '..' component, or a NUL byte)",
        ));
    }
    Ok(parts)
}

/// A field that could not be extracted.
#[derive(Debug)]
#[non_exhaustive]
pub struct ExtractFailure {
    /// The sample's ordinal.
    pub ordinal: u64,
    /// The sample's key.
    pub key: String,
    /// The field's name.
    pub field: String,
    /// Why: an unsafe path, something in the way, or an I/O error.
    pub error: Error,
}

/// What [`extract`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
#[must_use]
pub struct ExtractReport {
    /// Samples read.
    pub samples: u64,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Fields that could not be written; everything else was.
    pub failures: Vec<ExtractFailure>,
    /// Damaged samples, which could not be read; everything else was extracted.
    pub damaged: Vec<Error>,
}

impl ExtractReport {
    /// True when every sample was read and every file written.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty() && self.damaged.is_empty()
    }
}

/// Writes samples' files into one target folder.
#[derive(Debug)]
pub struct Extractor {
    dir: PathBuf,
    /// The target folder, open: every file is created relative to it, one component at a
    /// time, so no path is too long and none is resolved again from its start.
    root: Dir,
}

impl Extractor {
    /// An extractor into `dir`, which must not exist (it is created) or be an empty folder.
    ///
    /// # Errors
    /// `dir` is not a folder or not empty ([`crate::ErrorKind::InvalidInput`]), or cannot be
    /// read or created.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {
                let mut entries =
                    fs::read_dir(&dir).map_err(|e| Error::io(&dir, "read folder", e))?;
                if entries.next().is_some() {
                    return Err(Error::invalid_input(
                        dir.display().to_string(),
                        "the output folder is not empty; extract into a new folder",
                    ));
                }
            }
            Ok(_) => {
                return Err(Error::invalid_input(
                    dir.display().to_string(),
                    "the output exists and is not a folder",
                ))
            }
            Err(_) => fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?,
        }
        let root = Dir::open(&dir).map_err(|e| Error::io(&dir, "open", e))?;
        Ok(Extractor { dir, root })
    }

    /// The target folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes every field of `sample` at its [`field_path`], counting it in `report`; a
    /// field that cannot be written is added to `report.failures` and the others are
    /// still written.
    pub fn extract_sample(&self, sample: &Sample, report: &mut ExtractReport) {
        report.samples += 1;
        for (name, data) in sample.fields() {
            match write_inside(&self.root, &self.dir, &field_path(sample.key(), name), data) {
                Ok(()) => {
                    report.files += 1;
                    report.bytes += data.len() as u64;
                }
                Err(error) => report.failures.push(ExtractFailure {
                    ordinal: sample.ordinal(),
                    key: sample.key().to_string(),
                    field: name.to_string(),
                    error,
                }),
            }
        }
    }
}

/// Extracts every sample of `archive` into `dir` (new or empty), calling
/// `progress(bytes_written, raw_bytes_total)` after each sample. A refused field or a
/// damaged sample is reported and the rest is extracted.
///
/// # Errors
/// `dir` cannot be used (see [`Extractor::new`]), an error other than damage while
/// reading the archive, or an I/O error while writing (a full disk): the extraction stops
/// there and, if it created `dir`, removes it, so that a failed extraction leaves nothing.
pub fn extract(
    archive: &Archive,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExtractReport> {
    let created = fs::symlink_metadata(dir).is_err();
    let extractor = Extractor::new(dir)?;
    let total = archive.manifest().totals.raw_bytes;
    let mut report = ExtractReport::default();
    let failed = |e: Error| {
        if created {
            let _ = fs::remove_dir_all(dir);
        }
        Err(e)
    };
    for item in archive.iter() {
        match item {
            Ok(sample) => extractor.extract_sample(&sample, &mut report),
            Err(e) if e.is_corruption() => report.damaged.push(e),
            Err(e) => return failed(e),
        }
        // A write that failed for want of room or rights fails every one after it: a
        // local I/O error, not a refused sample.
        if report.failures.last().is_some_and(|f| f.error.is_io()) {
            let Some(last) = report.failures.pop() else {
                break;
            };
            return failed(last.error);
        }
        progress(report.bytes, total);
    }
    Ok(report)
}

/// Extracts the samples of a stream as they pass (see [`crate::stream::StreamReader`]) into
/// `dir` (new or empty), stopping at the first damage: a stream cannot be resynchronised in
/// one pass, so everything before the damage is written and the damage is in
/// [`ExtractReport::damaged`]. A refused field is reported and the rest is extracted.
///
/// # Errors
/// As [`extract`]: `dir` cannot be used, or an I/O error while writing (a full disk) stops
/// the extraction and removes `dir` if this call created it.
pub fn extract_stream<R: std::io::Read>(
    stream: crate::stream::StreamReader<R>,
    dir: &Path,
) -> Result<ExtractReport> {
    let created = fs::symlink_metadata(dir).is_err();
    let extractor = Extractor::new(dir)?;
    let mut report = ExtractReport::default();
    for item in stream {
        match item {
            Ok(crate::stream::StreamItem::Sample(sample)) => {
                extractor.extract_sample(&sample, &mut report);
            }
            Ok(_) => {}
            Err(e) if e.is_io() => {
                // Reading the stream failed (not its bytes: the device): a local error.
                if created {
                    let _ = fs::remove_dir_all(dir);
                }
                return Err(e);
            }
            Err(e) => {
                report.damaged.push(e);
                break;
            }
        }
        if report.failures.last().is_some_and(|f| f.error.is_io()) {
            if created {
                let _ = fs::remove_dir_all(dir);
            }
            let Some(last) = report.failures.pop() else {
                break;
            };
            return Err(last.error);
        }
    }
    Ok(report)
}

/// Writes `data` at `rel` under the open folder `root` (named `root_path` in errors),
/// creating folders one component at a time with `mkdirat` and entering each with `openat`
/// (`O_DIRECTORY | O_NOFOLLOW`), so that nothing that is not a real folder (such as a
/// symbolic link) is passed through; the file is created with `O_CREAT | O_EXCL |
/// O_NOFOLLOW`, never overwriting or following anything.
fn write_inside(root: &Dir, root_path: &Path, rel: &str, data: &[u8]) -> Result<()> {
    let parts = safe_components(rel)?;
    let Some((file_name, folders)) = parts.split_last() else {
        return Err(Error::invalid_input("\"\"", "refusing an empty path"));
    };
    let mut path = root_path.to_path_buf();
    let mut opened: Option<Dir> = None;
    for part in folders {
        path.push(part);
        let parent = opened.as_ref().unwrap_or(root);
        let name = OsStr::new(part);
        let dir = match parent.open_dir(name) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match parent.create_dir(name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&path, "create", e)),
                }
                parent.open_dir(name).map_err(|e| refuse_or_io(&path, e))?
            }
            Err(e) => return Err(refuse_or_io(&path, e)),
        };
        opened = Some(dir);
    }
    path.push(file_name);
    let parent = opened.as_ref().unwrap_or(root);
    let mut file = parent
        .create_file(OsStr::new(file_name))
        .map_err(|e| Error::io(&path, "create", e))?;
    file.write_all(data)
        .map_err(|e| Error::io(&path, "write", e))?;
    Ok(())
}

/// A folder component that is a symbolic link (`ELOOP`) or not a folder (`ENOTDIR`) is
/// refused; anything else is an I/O error.
fn refuse_or_io(path: &Path, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => Error::invalid_input(
            path.display().to_string(),
            "refusing to write through something that is not a folder",
        ),
        _ => Error::io(path, "open folder", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Writer};

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "",
            "a/",
            "a\0b",
        ] {
            let e = safe_components(bad).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::InvalidInput { .. }),
                "{bad:?}"
            );
        }
        assert_eq!(
            safe_components("a/b c/..d").unwrap(),
            vec!["a", "b c", "..d"]
        );
        assert_eq!(field_path("a/b", "json"), "a/b.json");
        assert_eq!(field_path("a/b", ""), "a/b");
    }

    #[test]
    fn extract_writes_inside_and_reports_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("a");
        let mut w = Writer::builder().create(&archive).unwrap();
        for key in ["../escape", "/etc/evil", "ok/..", "fine", "dir/x"] {
            w.append(
                key,
                &[("txt", b"payload".as_slice()), ("", b"bare".as_slice())],
            )
            .unwrap();
        }
        w.finish().unwrap();
        let archive = Archive::open(&archive).unwrap();
        let out = tmp.path().join("out");
        let mut last = (0, 0);
        let report = extract(&archive, &out, &mut |d, t| last = (d, t)).unwrap();
        assert!(!report.is_ok());
        assert_eq!(report.samples, 5);
        // "../escape" and "/etc/evil" lose both fields; "ok/.." loses its bare field only.
        assert_eq!(report.failures.len(), 5, "{:?}", report.failures);
        assert_eq!(report.files, 5);
        assert_eq!(last.0, report.bytes);
        assert_eq!(fs::read(out.join("fine.txt")).unwrap(), b"payload");
        assert_eq!(fs::read(out.join("fine")).unwrap(), b"bare");
        assert_eq!(fs::read(out.join("ok/...txt")).unwrap(), b"payload");
        assert!(out.join("dir/x.txt").exists());
        assert!(!tmp.path().join("escape.txt").exists());
        // The target must be new or empty.
        let e = Extractor::new(&out).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidInput { .. }));
        assert!(e.to_string().contains("not empty"));
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let root = tmp.path().join("out");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let dir = Dir::open(&root).unwrap();
        let e = write_inside(&dir, &root, "link/payload", b"x").unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
        std::os::unix::fs::symlink(outside.join("f"), root.join("file")).unwrap();
        assert!(write_inside(&dir, &root, "file", b"x").is_err());
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
    }
}
