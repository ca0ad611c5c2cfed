//! WebDataset tar shards in and out: [`import`] groups the members of tar files into
//! samples and writes an archive; [`export`] writes an archive's samples as tar shards that
//! the `webdataset` package and GNU tar read unmodified.
//!
//! # Names
//!
//! A member's name is split into key and field name by WebDataset's own rule,
//! `base_plus_ext` in webdataset's `tariterators.py`: the regular expression
//! `^((?:.*/|)[^.]+)[.]([^/]*)$`, so the key ends at the first dot of the last path
//! component (`train/0001.seg.png` → key `train/0001`, field `seg.png`), and the field name
//! is lowercased, as its `group_by_keys` does by default. [`member_key`] implements it.
//! Where shardpack differs, it is to keep data that webdataset would drop:
//!
//! - a name the expression does not match (no dot in the last component, like `README`)
//!   becomes a field with an empty name under the whole name as key, as `pack` and
//!   format-spec.md §13.4 map a file without an extension; webdataset skips such members;
//! - leading `./` components are removed (`./0001.jpg` is key `0001`; webdataset would make
//!   it `./0001`, which is not a usable key).
//!
//! Names that webdataset reserves for metadata (a first component `__…__`, such as
//! `__key__` or `__meta__/x.json`) are skipped, as webdataset's `tar_file_iterator` skips
//! them, and reported. A name that is absolute, has an empty, `.` or `..` component, a NUL
//! or a line break, or that would give a key ending in `/` (`d/.x`, which webdataset reads
//! as key `d/`) is refused: a key must be a path that [`crate::extract`] can write.
//!
//! # Grouping
//!
//! Consecutive members with the same key form one sample, within one tar file, as
//! webdataset's `group_by_keys` groups them (it yields an end-of-shard marker between
//! files, so a sample never spans two tars). Two members of one sample with the same field
//! name are refused, as webdataset refuses them. A key that comes back later, after another
//! key or in a later tar, is refused: webdataset would yield two samples with that key, and
//! an archive's keys are unique. Fields are stored in field-name order.
//!
//! # Export
//!
//! Each field becomes the member `key.field` (the key alone for an empty field name: the
//! path [`crate::extract`] writes, format-spec.md §13.4), members of a sample in field-name
//! order, samples in archive order. Headers are ustar with GNU long-name records for names
//! that do not fit (so GNU tar, Python's `tarfile` and the `tar` crate all read them), mode
//! 0o444, uid and gid 0, empty user and group names, and the fixed mtime
//! [`EXPORT_MTIME`]: the same archive always exports to the same bytes. A sample whose
//! member names would not import back to the same key and field (key `a.b` with field `c`
//! would read back as key `a`, field `b.c`) is refused.

mod braces;
mod export;
mod import;
mod input;

pub use braces::{expand_braces, MAX_EXPANSION};
pub use export::{export, ExportOptions, ExportReport, ExportedTar, TarPattern, EXPORT_MTIME};
pub use import::{
    import, ImportReport, ImportedTar, SkipReason, SkippedMember, MAX_SKIPPED_LISTED,
};
pub use input::{TarCompression, TarSource};

use crate::extract::safe_components;

/// WebDataset's `base_plus_ext`: the key is the name up to the first dot of its last
/// component, provided that component does not start with a dot, and the field name the
/// rest; otherwise the expression `^((?:.*/|)[^.]+)[.]([^/]*)$` may still match with the
/// key ending at an earlier `/` (`d/.x` → `d/`, `x`), or not match at all (`None`).
fn base_plus_ext(name: &str) -> Option<(&str, &str)> {
    // The candidate starts of `[^.]+`, in the order the backtracking expression tries
    // them: after the last '/', after each earlier one, then the start of the name.
    let starts = name
        .rmatch_indices('/')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(0));
    for start in starts {
        let rest = name.get(start..)?;
        let Some(dot) = rest.find('.') else {
            continue;
        };
        if dot == 0 {
            continue;
        }
        let suffix = rest.get(dot + 1..)?;
        if suffix.contains('/') {
            continue;
        }
        return Some((name.get(..start + dot)?, suffix));
    }
    None
}

/// True for the names webdataset's `tar_file_iterator` skips as metadata: a first
/// component that starts and ends with `__` (`__key__`, `__meta__/x.json`).
fn is_meta_name(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or_default();
    first.len() >= 4 && first.starts_with("__") && first.ends_with("__")
        || !name.contains('/') && name.starts_with("__") && name.ends_with("__")
}

/// What a member name means to [`import`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberName {
    /// A field of the sample `key`.
    Field {
        /// The sample's key.
        key: String,
        /// The field name, lowercased as webdataset does.
        field: String,
    },
    /// A name webdataset reserves for metadata; skipped.
    Meta,
}

/// Maps a tar member's name to a key and field name by the rules of this module's
/// documentation; `None` names a member that is metadata.
///
/// # Errors
/// The reason a name is refused (absolute, an empty, `.` or `..` component, a NUL or line
/// break, a key ending in `/`, a key over 4096 or a field name over 255 bytes).
///
/// # Panics
/// Never.
///
/// ```
/// use shardpack::webdataset::{member_key, MemberName};
/// let field = |k: &str, f: &str| MemberName::Field { key: k.into(), field: f.into() };
/// assert_eq!(member_key("train/0001.seg.PNG"), Ok(field("train/0001", "seg.png")));
/// assert_eq!(member_key("./0001.jpg"), Ok(field("0001", "jpg")));
/// assert_eq!(member_key("README"), Ok(field("README", "")));
/// assert_eq!(member_key("__meta__/info.json"), Ok(MemberName::Meta));
/// assert!(member_key("../etc/passwd.txt").is_err());
/// ```
pub fn member_key(name: &str) -> std::result::Result<MemberName, String> {
    let (key, field) = match split_member(name)? {
        None => return Ok(MemberName::Meta),
        Some(split) => split,
    };
    Ok(MemberName::Field {
        key: key.to_owned(),
        field: field.to_lowercase(),
    })
}

/// [`member_key`] before lowercasing the field name, borrowing from `name`.
fn split_member(name: &str) -> std::result::Result<Option<(&str, &str)>, String> {
    let mut name = name;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    if is_meta_name(name) {
        return Ok(None);
    }
    if name.contains('\n') {
        return Err("a line break in a name (webdataset's expression treats it specially)".into());
    }
    safe_components(name).map_err(|e| unsafe_reason(&e))?;
    let (key, field) = base_plus_ext(name).unwrap_or((name, ""));
    if safe_components(key).is_err() {
        return Err(format!(
            "webdataset reads it as key {key:?} and field {field:?}, and a key must be a \
             relative path without empty, '.' or '..' components"
        ));
    }
    if key.len() > crate::format::MAX_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes, more than the {} a key may have",
            key.len(),
            crate::format::MAX_KEY_BYTES
        ));
    }
    if field.len() > crate::format::MAX_FIELD_NAME_BYTES {
        return Err(format!(
            "the field name is {} bytes, more than the {} a field name may have",
            field.len(),
            crate::format::MAX_FIELD_NAME_BYTES
        ));
    }
    Ok(Some((key, field)))
}

/// The reason of a [`safe_components`] refusal, without its subject.
fn unsafe_reason(e: &crate::Error) -> String {
    match e.kind() {
        crate::ErrorKind::InvalidInput { reason, .. } => reason.clone(),
        _ => e.to_string(),
    }
}

/// The member name of a field: `key.field`, or the key alone for an empty field name.
fn member_name(key: &str, field: &str) -> String {
    crate::extract::field_path(key, field)
}

/// Refuses a field whose member name would not import back as the same key and field.
fn check_exportable(key: &str, field: &str) -> std::result::Result<String, String> {
    let name = member_name(key, field);
    match split_member(&name) {
        Ok(Some((k, f))) if k == key && f == field => Ok(name),
        Ok(Some((k, f))) => Err(format!(
            "its member {name:?} would read back as key {k:?} and field {f:?}"
        )),
        Ok(None) => Err(format!(
            "its member {name:?} is a name webdataset skips as metadata"
        )),
        Err(reason) => Err(format!(
            "its member {name:?} is refused on import: {reason}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(k: &str, f: &str) -> MemberName {
        MemberName::Field {
            key: k.into(),
            field: f.into(),
        }
    }

    #[test]
    fn base_plus_ext_matches_the_webdataset_expression() {
        // Expected values worked out from `^((?:.*/|)[^.]+)[.]([^/]*)$` by hand.
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("a.jpg", Some(("a", "jpg"))),
            ("a.seg.png", Some(("a", "seg.png"))),
            ("x/y/a.b.c", Some(("x/y/a", "b.c"))),
            ("d.x/a.b", Some(("d.x/a", "b"))),
            ("a.", Some(("a", ""))),
            ("a.b.", Some(("a", "b."))),
            ("README", None),
            ("dir.x/README", None),
            (".hidden", None),
            ("..x", None),
            ("d/.x", Some(("d/", "x"))),
            ("a/b/.x.y", Some(("a/b/", "x.y"))),
            ("a.b/.x", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(base_plus_ext(name), *want, "{name:?}");
        }
    }

    #[test]
    fn meta_names_are_webdatasets() {
        for name in ["__key__", "__meta__/a.json", "____", "___", "__"] {
            assert!(is_meta_name(name), "{name:?}");
        }
        for name in ["__a__b/x.json", "a/__key__", "_x_.json", "__a_.txt"] {
            assert!(!is_meta_name(name), "{name:?}");
        }
    }

    #[test]
    fn member_names_map_to_keys_or_are_refused() {
        assert_eq!(member_key("a.JPG"), Ok(field("a", "jpg")));
        assert_eq!(member_key("././a.b"), Ok(field("a", "b")));
        assert_eq!(member_key(".hidden"), Ok(field(".hidden", "")));
        assert_eq!(member_key("a."), Ok(field("a", "")));
        assert_eq!(member_key("./__key__"), Ok(MemberName::Meta));
        for bad in [
            "/etc/passwd.x",
            "a/../b.x",
            "a//b.x",
            "a/./b.x",
            "d/.x",
            "a\nb.x",
            "a\0.x",
            "./",
            "",
        ] {
            assert!(member_key(bad).is_err(), "{bad:?} accepted");
        }
        let long_field = format!("a.{}", "f".repeat(256));
        assert!(member_key(&long_field).is_err());
        let long_key = format!("{}.x", "k/".repeat(2100));
        assert!(member_key(&long_key).is_err());
    }

    #[test]
    fn export_refuses_names_that_read_back_otherwise() {
        assert_eq!(check_exportable("a", "jpg").as_deref(), Ok("a.jpg"));
        assert_eq!(check_exportable("a", "").as_deref(), Ok("a"));
        assert_eq!(check_exportable("a", "JPG").as_deref(), Ok("a.JPG"));
        assert!(check_exportable("a.b", "c").is_err());
        assert!(check_exportable("a.", "").is_err());
        assert!(check_exportable("d/.hidden", "").is_err());
        assert!(check_exportable("__key__", "").is_err());
        assert!(check_exportable("../x", "y").is_err());
    }
}
