//! WebDataset tars in and out (issue #13): import groups members as webdataset does,
//! export writes deterministic tars, and a round trip is the identity on samples. Damaged
//! and truncated tars give `ErrorKind::Tar` naming the member and offset and leave nothing.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use shardpack::pack::PackOptions;
use shardpack::webdataset::{
    export, import, ExportOptions, SkipReason, TarPattern, TarSource, EXPORT_MTIME,
};
use shardpack::{Archive, ErrorKind, TarProblem, WriterBuilder};

/// A sample as the tests compare them: key, then (field, bytes) in stored order.
type Sample = (String, Vec<(String, Vec<u8>)>);

fn header(size: usize) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// A tar of regular members, written by the `tar` crate (ustar, GNU long names).
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        b.append_data(&mut header(data.len()), name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// One pax `key=value` record, its length prefix counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// Appends a pax extended header naming the next member `path`.
fn append_pax_path(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let record = pax_record("path", path);
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(record.len() as u64);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_cksum();
    b.append(&h, record.as_slice()).unwrap();
}

/// Appends a member of `kind` with a raw name (no path checks), `size` bytes of `data`.
fn append_raw(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
        h.set_link_name("target.jpg").unwrap();
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn import_bytes(
    tars: Vec<Vec<u8>>,
    out: &Path,
) -> shardpack::Result<shardpack::webdataset::ImportReport> {
    import_with(tars, out, &PackOptions::new())
}

fn import_with(
    tars: Vec<Vec<u8>>,
    out: &Path,
    options: &PackOptions,
) -> shardpack::Result<shardpack::webdataset::ImportReport> {
    let sources = tars
        .into_iter()
        .enumerate()
        .map(|(i, t)| TarSource::Reader {
            name: PathBuf::from(format!("t{i}.tar")),
            reader: Box::new(Cursor::new(t)),
        })
        .collect();
    import(
        sources,
        out,
        WriterBuilder::new().threads(1),
        options,
        &mut |_, _| {},
    )
}

fn samples(path: &Path) -> Vec<Sample> {
    Archive::open(path)
        .unwrap()
        .iter()
        .map(|s| {
            let s = s.unwrap();
            let fields = s
                .fields()
                .map(|(n, d)| (n.to_string(), d.to_vec()))
                .collect();
            (s.key().to_string(), fields)
        })
        .collect()
}

fn sample(key: &str, fields: &[(&str, &[u8])]) -> Sample {
    (
        key.to_string(),
        fields
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_vec()))
            .collect(),
    )
}

fn export_to(archive: &Path, dir: &Path, shard_size: Option<u64>) -> Vec<PathBuf> {
    let archive = Archive::open(archive).unwrap();
    let pattern = TarPattern::parse(&dir.join("out-%06d.tar").to_string_lossy()).unwrap();
    let options = ExportOptions::new().shard_size(shard_size);
    let report = export(&archive, &pattern, &options, &mut |_, _| {}).unwrap();
    report.tars.into_iter().map(|t| t.path).collect()
}

fn tar_error(e: &shardpack::Error) -> (&shardpack::TarLocation, &TarProblem) {
    match e.kind() {
        ErrorKind::Tar { location, problem } => (location, problem),
        other => panic!("expected ErrorKind::Tar, got {other:?}"),
    }
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Names of every kind the issue lists: long (over 100 and over 255 bytes), unicode,
/// several dots, no extension, an uppercase extension, empty data.
fn awkward_members() -> Vec<(String, Vec<u8>)> {
    let over_100 = format!("{}/sample.jpg", "d".repeat(120));
    let over_255 = format!("{}/{}.seg.png", "long".repeat(40), "x".repeat(150));
    vec![
        ("train/0001.jpg".into(), noise(1, 3000)),
        ("train/0001.json".into(), br#"{"label": 1}"#.to_vec()),
        ("train/0001.seg.png".into(), noise(2, 10)),
        ("train/0002.JPG".into(), noise(3, 700)),
        ("train/0002.cls".into(), b"7".to_vec()),
        (over_100, noise(4, 512)),
        (over_255, noise(5, 513)),
        ("ünïcödé/日本.txt".into(), "unicode".as_bytes().to_vec()),
        ("noext/README".into(), b"readme".to_vec()),
        ("empty.bin".into(), Vec::new()),
        ("z/9.a.".into(), b"trailing dot".to_vec()),
    ]
}

fn awkward_tar() -> Vec<u8> {
    let members = awkward_members();
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    tar_of(&refs)
}

#[test]
fn import_groups_members_the_webdataset_way() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a");
    let report = import_bytes(vec![awkward_tar()], &out).unwrap();
    let got = samples(&out);
    let m = awkward_members();
    let want = vec![
        sample(
            "train/0001",
            &[("jpg", &m[0].1), ("json", &m[1].1), ("seg.png", &m[2].1)],
        ),
        // The field name is lowercased, as webdataset's group_by_keys does.
        sample("train/0002", &[("cls", &m[4].1), ("jpg", &m[3].1)]),
        sample(&format!("{}/sample", "d".repeat(120)), &[("jpg", &m[5].1)]),
        sample(
            &format!("{}/{}", "long".repeat(40), "x".repeat(150)),
            &[("seg.png", &m[6].1)],
        ),
        sample("ünïcödé/日本", &[("txt", &m[7].1)]),
        // No extension: the whole name is the key, the field name empty (webdataset
        // would skip the member; pack maps such a file the same way).
        sample("noext/README", &[("", &m[8].1)]),
        sample("empty", &[("bin", &[])]),
        // `9.a.` splits at its first dot, as webdataset's expression does.
        sample("z/9", &[("a.", &m[10].1)]),
    ];
    assert_eq!(got, want);
    assert_eq!(report.tars.len(), 1);
    assert_eq!(report.tars[0].members, 11);
    assert_eq!(report.tars[0].samples, 8);
    assert_eq!(report.skipped_count, 0);
}

#[test]
fn import_export_import_is_the_identity_and_export_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let _ = import_bytes(vec![awkward_tar()], &first).unwrap();
    let (d1, d2) = (tmp.path().join("x1"), tmp.path().join("x2"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let tars1 = export_to(&first, &d1, None);
    let tars2 = export_to(&first, &d2, None);
    assert_eq!(tars1.len(), 1);
    let bytes1 = std::fs::read(&tars1[0]).unwrap();
    assert_eq!(bytes1, std::fs::read(&tars2[0]).unwrap(), "byte-identical");
    let second = tmp.path().join("second");
    let _ = import_bytes(vec![bytes1.clone()], &second).unwrap();
    assert_eq!(
        samples(&first),
        samples(&second),
        "keys, fields, bytes, order"
    );
    // And the export of the re-import is the same bytes again.
    let d3 = tmp.path().join("x3");
    std::fs::create_dir_all(&d3).unwrap();
    let tars3 = export_to(&second, &d3, None);
    assert_eq!(std::fs::read(&tars3[0]).unwrap(), bytes1);
}

#[test]
fn exported_headers_are_fixed_and_read_by_an_independent_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let _ = import_bytes(vec![awkward_tar()], &a).unwrap();
    let tars = export_to(&a, tmp.path(), None);
    let bytes = std::fs::read(&tars[0]).unwrap();
    let mut names = Vec::new();
    let mut reader = tar::Archive::new(bytes.as_slice());
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.mode().unwrap(), 0o444);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.mtime().unwrap(), EXPORT_MTIME);
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        assert!(h.as_ustar().is_some());
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        names.push((name, data));
    }
    // Members in archive order, fields in name order; the long names came through.
    let want: Vec<String> = samples(&a)
        .into_iter()
        .flat_map(|(k, fields)| {
            fields.into_iter().map(move |(f, _)| {
                if f.is_empty() {
                    k.clone()
                } else {
                    format!("{k}.{f}")
                }
            })
        })
        .collect();
    let got: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(got, want);
    assert!(got.iter().any(|n| n.len() > 255));
    // The size the report gives is the file's.
    assert_eq!(bytes.len() % 512, 0);
    assert!(bytes.ends_with(&[0; 1024]));
}

#[test]
fn shard_size_starts_new_tars_between_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let members: Vec<(String, Vec<u8>)> = (0..20)
        .flat_map(|i| {
            [
                (format!("{i:03}.bin"), noise(i, 1000 + i as usize * 50)),
                (format!("{i:03}.txt"), format!("sample {i}").into_bytes()),
            ]
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let a = tmp.path().join("a");
    let _ = import_bytes(vec![tar_of(&refs)], &a).unwrap();
    let limit = 8 * 1024;
    let dir = tmp.path().join("x");
    std::fs::create_dir_all(&dir).unwrap();
    let tars = export_to(&a, &dir, Some(limit));
    assert!(tars.len() > 2, "{} tars", tars.len());
    let mut total = Vec::new();
    for (i, path) in tars.iter().enumerate() {
        assert_eq!(path, &dir.join(format!("out-{i:06}.tar")));
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.len() as u64 <= limit,
            "{} is {} bytes",
            path.display(),
            bytes.len()
        );
        let b = tmp.path().join(format!("b{i}"));
        let _ = import_bytes(vec![bytes], &b).unwrap();
        let got = samples(&b);
        assert!(!got.is_empty());
        for s in &got {
            assert_eq!(s.1.len(), 2, "a sample is never split");
        }
        total.extend(got);
    }
    assert_eq!(total, samples(&a));
    // A sample larger than the limit gets a tar of its own.
    let dir = tmp.path().join("tiny");
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(export_to(&a, &dir, Some(100)).len(), 20);
}

#[test]
fn pax_paths_gnu_long_names_dot_slash_and_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_path("./train/").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_cksum();
    b.append(&dir, &[][..]).unwrap();
    let pax_name = format!("train/{}.json", "p".repeat(300));
    append_pax_path(&mut b, &pax_name);
    b.append_data(&mut header(2), "ignored-by-pax.json", &b"{}"[..])
        .unwrap();
    append_pax_path(&mut b, &format!("train/{}.jpg", "p".repeat(300)));
    b.append_data(&mut header(3), "ignored-too.jpg", &b"jpg"[..])
        .unwrap();
    let gnu_long = format!("./train/{}.txt", "g".repeat(200));
    b.append_data(&mut header(4), &gnu_long, &b"long"[..])
        .unwrap();
    append_raw(&mut b, "./././x.cls", tar::EntryType::Regular, b"1");
    let a = tmp.path().join("a");
    let _ = import_bytes(vec![b.into_inner().unwrap()], &a).unwrap();
    let key = format!("train/{}", "p".repeat(300));
    assert_eq!(
        samples(&a),
        vec![
            sample(&key, &[("jpg", b"jpg"), ("json", b"{}")]),
            sample(&format!("train/{}", "g".repeat(200)), &[("txt", b"long")]),
            sample("x", &[("cls", b"1")]),
        ]
    );
}

#[test]
fn gzip_and_zstd_are_recognised_by_their_magic_not_the_name() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = awkward_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
    let want = {
        let a = tmp.path().join("plain");
        let _ = import_bytes(vec![plain.clone()], &a).unwrap();
        samples(&a)
    };
    for (name, bytes, kind) in [
        (
            "gz",
            gz.clone(),
            shardpack::webdataset::TarCompression::Gzip,
        ),
        (
            "zst",
            zst.clone(),
            shardpack::webdataset::TarCompression::Zstd,
        ),
    ] {
        // Written under a misleading `.tar` name: the first bytes decide.
        let file = tmp.path().join(format!("{name}.tar"));
        std::fs::write(&file, &bytes).unwrap();
        let a = tmp.path().join(name);
        let report = import(
            vec![TarSource::File(file)],
            &a,
            WriterBuilder::new(),
            &PackOptions::new(),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(report.tars[0].compression, kind);
        assert_eq!(samples(&a), want, "{name}");
    }
    // Two gzip members one after the other are one stream, as gzip -d reads them.
    let half = plain.len() / 2 / 512 * 512;
    let mut multi = Vec::new();
    for part in [&plain[..half], &plain[half..]] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        multi.extend(e.finish().unwrap());
    }
    let a = tmp.path().join("multi");
    let _ = import_bytes(vec![multi], &a).unwrap();
    assert_eq!(samples(&a), want);
    // A cut compressed stream is truncated, a damaged one damaged; nothing is left.
    for (name, bytes) in [("gz", &gz), ("zst", &zst)] {
        let a = tmp.path().join(format!("cut-{name}"));
        let e = import_bytes(vec![bytes[..bytes.len() - 9].to_vec()], &a).unwrap_err();
        assert!(
            matches!(
                tar_error(&e).1,
                TarProblem::Truncated { .. } | TarProblem::Damaged { .. }
            ),
            "{name}: {e}"
        );
        assert!(!a.exists());
    }
    let mut bad = gz.clone();
    let at = bad.len() - 6;
    bad[at] ^= 0xff; // the CRC-32 of the gzip trailer
    let a = tmp.path().join("bad-gz");
    let e = import_bytes(vec![bad], &a).unwrap_err();
    assert!(matches!(tar_error(&e).1, TarProblem::Damaged { .. }), "{e}");
    assert!(!a.exists());
    // bzip2 and xz are named, not misread.
    for magic in [
        &b"BZh91AY&SY"[..],
        &[0xfd, b'7', b'z', b'X', b'Z', 0, 0][..],
    ] {
        let e = import_bytes(vec![magic.to_vec()], &tmp.path().join("u")).unwrap_err();
        assert!(
            matches!(tar_error(&e).1, TarProblem::Unsupported { .. }),
            "{e}"
        );
    }
}

#[test]
fn brace_patterns_name_the_shards_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let k = format!("{i:04}.txt");
        let tar = tar_of(&[(k.as_str(), format!("shard {i}").as_bytes())]);
        std::fs::write(tmp.path().join(format!("shard-{i:06}.tar")), tar).unwrap();
    }
    let pattern = tmp.path().join("shard-{000000..000002}.tar");
    let sources = TarSource::from_arg(&pattern.to_string_lossy()).unwrap();
    assert_eq!(sources.len(), 3);
    let a = tmp.path().join("a");
    let mut calls = Vec::new();
    let report = import(
        sources,
        &a,
        WriterBuilder::new(),
        &PackOptions::new(),
        &mut |done, total| calls.push((done, total)),
    )
    .unwrap();
    assert_eq!(report.tars.len(), 3);
    let keys: Vec<String> = samples(&a).into_iter().map(|s| s.0).collect();
    assert_eq!(keys, ["0000", "0001", "0002"]);
    let total: u64 = (0..3)
        .map(|i| {
            std::fs::metadata(tmp.path().join(format!("shard-{i:06}.tar")))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(calls.last(), Some(&(total, total)));
    // A list pattern, and a missing shard: an I/O error naming it, nothing left behind.
    let missing = tmp.path().join("shard-{000000,000007}.tar");
    let b = tmp.path().join("b");
    let e = import(
        TarSource::from_arg(&missing.to_string_lossy()).unwrap(),
        &b,
        WriterBuilder::new(),
        &PackOptions::new(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        e.is_io() && e.to_string().contains("shard-000007.tar"),
        "{e}"
    );
    assert!(!b.exists());
}

/// The offset of the header of the member named `name` in a plain tar.
fn header_offset(tar: &[u8], name: &str) -> u64 {
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if e.path_bytes().as_ref() == name.as_bytes() {
            return e.raw_header_position();
        }
    }
    panic!("no member {name}");
}

#[test]
fn a_damaged_header_names_the_member_before_it_and_its_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tar_of(&[("a.jpg", &noise(1, 600)), ("b.jpg", b"b"), ("c.jpg", b"c")]);
    let at = header_offset(&tar, "b.jpg");
    let mut bad = tar.clone();
    bad[at as usize + 10] ^= 0x55; // inside the name: the header checksum fails
    let out = tmp.path().join("a");
    let e = import_bytes(vec![bad], &out).unwrap_err();
    let (location, problem) = tar_error(&e);
    assert!(matches!(problem, TarProblem::Damaged { .. }), "{e}");
    assert_eq!(location.offset, at);
    assert_eq!(location.after.as_deref(), Some("a.jpg"));
    assert_eq!(location.file, Path::new("t0.tar"));
    assert!(e.to_string().contains("after member \"a.jpg\""), "{e}");
    assert!(
        !out.exists(),
        "a failed import removes the folder it created"
    );
}

#[test]
fn truncated_tars_name_the_member_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tar_of(&[("a.jpg", &noise(1, 600)), ("b.jpg", &noise(2, 2000))]);
    let b_at = header_offset(&tar, "b.jpg");
    // Cut inside b's data.
    let out = tmp.path().join("a");
    let e = import_bytes(vec![tar[..b_at as usize + 512 + 100].to_vec()], &out).unwrap_err();
    let (location, problem) = tar_error(&e);
    assert!(matches!(problem, TarProblem::Truncated { .. }), "{e}");
    assert_eq!(location.member.as_deref(), Some("b.jpg"));
    assert_eq!(location.offset, b_at);
    assert!(!out.exists());
    // Cut exactly after b's data: no end-of-archive marker.
    let end = b_at as usize + 512 + 2048;
    let e = import_bytes(vec![tar[..end].to_vec()], &out).unwrap_err();
    let (location, problem) = tar_error(&e);
    assert!(matches!(problem, TarProblem::Truncated { .. }), "{e}");
    assert_eq!(location.offset, end as u64);
    assert_eq!(location.after.as_deref(), Some("b.jpg"));
    assert!(!out.exists());
    // Every prefix of the tar is refused, without a panic, and leaves nothing; the whole
    // tar, and the tar with one zero block only, are accepted.
    let cuts: Vec<usize> = (0..tar.len())
        .step_by(97)
        .chain((0..tar.len()).step_by(512))
        .collect();
    for cut in cuts {
        if cut >= end + 512 {
            continue;
        }
        let e = import_bytes(vec![tar[..cut].to_vec()], &out).unwrap_err();
        assert!(
            matches!(tar_error(&e).1, TarProblem::Truncated { .. }),
            "cut at {cut}: {e}"
        );
        assert!(!out.exists(), "cut at {cut}");
    }
    let _ = import_bytes(vec![tar[..end + 512].to_vec()], &out).unwrap();
    assert_eq!(samples(&out).len(), 2);
}

#[test]
fn a_huge_size_in_a_header_costs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A pax size of 1 PB, then 10 bytes of data: refused before anything is read.
    let mut b = tar::Builder::new(Vec::new());
    let record = pax_record("size", "1000000000000000");
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(record.len() as u64);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_cksum();
    b.append(&h, record.as_slice()).unwrap();
    b.append_data(&mut header(10), "a.bin", &[0u8; 10][..])
        .unwrap();
    let out = tmp.path().join("a");
    let e = import_bytes(vec![b.into_inner().unwrap()], &out).unwrap_err();
    let (location, problem) = tar_error(&e);
    assert!(matches!(problem, TarProblem::Refused { .. }), "{e}");
    assert_eq!(location.member.as_deref(), Some("a.bin"));
    assert!(!out.exists());
    // 3 GiB claimed in the ustar size field, 10 bytes there: truncated, at once.
    let mut tar = tar_of(&[("a.bin", &[7u8; 10])]);
    let mut h = header(3 << 30);
    h.set_path("a.bin").unwrap();
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    let e = import_bytes(vec![tar], &out).unwrap_err();
    assert!(
        matches!(tar_error(&e).1, TarProblem::Truncated { .. }),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn keys_must_be_contiguous_and_fields_unique() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a");
    let tar = tar_of(&[("a.jpg", b"1"), ("b.jpg", b"2"), ("a.json", b"3")]);
    let at = header_offset(&tar, "a.json");
    let e = import_bytes(vec![tar], &out).unwrap_err();
    let (location, problem) = tar_error(&e);
    assert_eq!(problem, &TarProblem::KeyReused { key: "a".into() });
    assert_eq!(
        (location.member.as_deref(), location.offset),
        (Some("a.json"), at)
    );
    assert!(!out.exists());
    // The same key in the next tar is another sample with the same key: refused too.
    let e = import_bytes(
        vec![tar_of(&[("a.jpg", b"1")]), tar_of(&[("a.json", b"2")])],
        &out,
    )
    .unwrap_err();
    let (location, problem) = tar_error(&e);
    assert!(matches!(problem, TarProblem::KeyReused { .. }), "{e}");
    assert_eq!(location.file, Path::new("t1.tar"));
    // Two members with one field name (here after lowercasing), as webdataset refuses.
    let e = import_bytes(vec![tar_of(&[("a.jpg", b"1"), ("a.JPG", b"2")])], &out).unwrap_err();
    assert_eq!(
        tar_error(&e).1,
        &TarProblem::DuplicateField {
            key: "a".into(),
            field: "jpg".into()
        }
    );
    assert!(!out.exists());
}

#[test]
fn links_and_devices_are_refused_or_skipped_and_meta_names_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    append_raw(&mut b, "a.jpg", tar::EntryType::Regular, b"jpg");
    append_raw(&mut b, "__key__", tar::EntryType::Regular, b"ignored");
    append_raw(&mut b, "__meta__/info.json", tar::EntryType::Regular, b"{}");
    append_raw(&mut b, "b.jpg", tar::EntryType::Symlink, b"");
    append_raw(&mut b, "c.jpg", tar::EntryType::Link, b"");
    append_raw(&mut b, "d.dev", tar::EntryType::Char, b"");
    append_raw(&mut b, "e.fifo", tar::EntryType::Fifo, b"");
    append_raw(&mut b, "f.jpg", tar::EntryType::Regular, b"f");
    let tar = b.into_inner().unwrap();
    let out = tmp.path().join("a");
    let e = import_bytes(vec![tar.clone()], &out).unwrap_err();
    let (location, problem) = tar_error(&e);
    assert_eq!(
        problem,
        &TarProblem::Special {
            kind: "a symbolic link".into()
        }
    );
    assert_eq!(location.member.as_deref(), Some("b.jpg"));
    assert!(!out.exists());
    let report = import_with(vec![tar], &out, &PackOptions::new().skip_special(true)).unwrap();
    assert_eq!(
        samples(&out),
        vec![
            sample("a", &[("jpg", b"jpg")]),
            sample("f", &[("jpg", b"f")])
        ]
    );
    let reasons: Vec<(&str, &SkipReason)> = report
        .skipped
        .iter()
        .map(|s| (s.member.as_str(), &s.reason))
        .collect();
    let special = |k: &str| SkipReason::Special { kind: k.into() };
    assert_eq!(
        reasons,
        vec![
            ("__key__", &SkipReason::Meta),
            ("__meta__/info.json", &SkipReason::Meta),
            ("b.jpg", &special("a symbolic link")),
            ("c.jpg", &special("a hard link")),
            ("d.dev", &special("a character device")),
            ("e.fifo", &special("a FIFO")),
        ]
    );
}

#[test]
fn hostile_names_are_refused_with_their_member() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a");
    for name in [
        "../escape.jpg",
        "/etc/passwd.txt",
        "a//b.jpg",
        "a/./b.jpg",
        "d/.x",
        "a\nb.jpg",
    ] {
        let mut b = tar::Builder::new(Vec::new());
        append_raw(&mut b, name, tar::EntryType::Regular, b"x");
        let e = import_bytes(vec![b.into_inner().unwrap()], &out).unwrap_err();
        let (location, problem) = tar_error(&e);
        assert!(
            matches!(problem, TarProblem::BadName { .. }),
            "{name:?}: {e}"
        );
        assert_eq!(location.member.as_deref(), Some(name));
        assert!(!out.exists());
    }
    // A pax path hides nothing: its `..` is seen.
    let mut b = tar::Builder::new(Vec::new());
    append_pax_path(&mut b, "x/../../escape.jpg");
    b.append_data(&mut header(1), "innocent.jpg", &b"x"[..])
        .unwrap();
    let e = import_bytes(vec![b.into_inner().unwrap()], &out).unwrap_err();
    assert!(matches!(tar_error(&e).1, TarProblem::BadName { .. }), "{e}");
    // A name that is not UTF-8.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(1);
    h.as_ustar_mut().unwrap().name[..6].copy_from_slice(b"\xff\xfe.jpg");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let e = import_bytes(vec![b.into_inner().unwrap()], &out).unwrap_err();
    assert!(matches!(tar_error(&e).1, TarProblem::BadName { .. }), "{e}");
}

#[test]
fn export_refuses_names_that_would_read_back_otherwise_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a");
    let mut w = WriterBuilder::new().create(&path).unwrap();
    w.append("0001", &[("jpg", &noise(1, 4000))]).unwrap();
    w.append("0002", &[("jpg", &noise(2, 4000))]).unwrap();
    // Key `a.b`, field `c` would be member `a.b.c`: key `a`, field `b.c` on the way back.
    w.append("a.b", &[("c", b"x")]).unwrap();
    w.finish().unwrap();
    let archive = Archive::open(&path).unwrap();
    let dir = tmp.path().join("x");
    std::fs::create_dir_all(&dir).unwrap();
    let pattern = TarPattern::parse(&dir.join("out-%d.tar").to_string_lossy()).unwrap();
    let options = ExportOptions::new().shard_size(Some(5000));
    let e = export(&archive, &pattern, &options, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains("\"a.b\""), "{e}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "the finished tars and the partial one are removed"
    );
    // An existing file is never overwritten.
    std::fs::write(dir.join("out-0.tar"), b"mine").unwrap();
    let e = export(&archive, &pattern, &ExportOptions::new(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidInput { .. }), "{e}");
    assert_eq!(std::fs::read(dir.join("out-0.tar")).unwrap(), b"mine");
}

#[test]
fn an_empty_archive_exports_one_empty_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a");
    let _ = WriterBuilder::new()
        .create(&path)
        .unwrap()
        .finish()
        .unwrap();
    let tars = export_to(&path, tmp.path(), None);
    assert_eq!(std::fs::read(&tars[0]).unwrap(), vec![0u8; 1024]);
    let b = tmp.path().join("b");
    let _ = import_bytes(vec![vec![0u8; 1024]], &b).unwrap();
    assert!(samples(&b).is_empty());
}
