//! Generations in a tape stream (format-spec.md §16.5): appending after the final entry,
//! reading and verifying every generation and the chain, unstreaming into a folder with
//! the same chain, a repeated key refused, and an interrupted append (the stream cut at
//! every record) leaving the previous generation whole and the next append able to go on.

mod common;

use std::fs;
use std::path::Path;

use shardpack::stream::{unstream, StreamItem, StreamReader};
use shardpack::{Archive, Compression, ErrorKind, Limits, VerifyOptions, WriterBuilder};

const RECORD: u32 = 4096;

fn key(generation: u32, i: u32) -> String {
    format!("g{generation}/{i:04}")
}

fn data(generation: u32, i: u32) -> Vec<u8> {
    common::noise(
        u64::from(generation) * 1000 + u64::from(i),
        200 + (i as usize % 5) * 90,
    )
}

fn builder() -> WriterBuilder {
    WriterBuilder::new()
        .compression(Compression::None)
        .align(64)
        .block_size(1024)
        .shard_size(4096)
        .stream_record(RECORD)
}

/// Writes generation 1 of 12 samples as a stream file.
fn first_generation(path: &Path) {
    let file = fs::File::create(path).unwrap();
    let mut writer = builder().create_stream(Box::new(file), path).unwrap();
    for i in 0..12 {
        writer.append(&key(1, i), &[("bin", &data(1, i))]).unwrap();
    }
    writer.finish().unwrap();
}

/// Appends `count` samples of `generation` to the stream file.
fn append(path: &Path, generation: u32, count: u32) -> shardpack::Manifest {
    let mut writer = WriterBuilder::new().append_stream_file(path).unwrap();
    for i in 0..count {
        writer
            .append(&key(generation, i), &[("bin", &data(generation, i))])
            .unwrap();
    }
    writer.finish().unwrap()
}

fn expected(up_to: u32) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = (0..12).map(|i| (key(1, i), data(1, i))).collect();
    for generation in 2..=up_to {
        out.extend((0..7).map(|i| (key(generation, i), data(generation, i))));
    }
    out
}

/// A stream's samples (key, `bin` field) in stream order.
type Samples = Vec<(String, Vec<u8>)>;

/// A stream's manifests: kind, generation number, root.
type Manifests = Vec<(shardpack::EntryKind, u64, String)>;

/// Every sample of a stream, and its manifests.
fn read_stream(bytes: &[u8]) -> (Samples, Manifests) {
    let reader = StreamReader::new(bytes, "s", Limits::default()).unwrap();
    let (mut samples, mut manifests) = (Vec::new(), Vec::new());
    for item in reader {
        match item.unwrap() {
            StreamItem::Sample(s) => {
                samples.push((s.key().to_owned(), s.field("bin").unwrap().to_vec()));
            }
            StreamItem::Manifest { kind, manifest } => {
                manifests.push((kind, manifest.generation_number(), manifest.root.clone()));
            }
            _ => {}
        }
    }
    (samples, manifests)
}

fn verify(bytes: &[u8]) -> shardpack::StreamVerifyReport {
    shardpack::verify_stream(bytes, "s", &VerifyOptions::default()).unwrap()
}

#[test]
fn two_appends_give_three_generations_each_readable_and_chained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.stream");
    first_generation(&path);
    let one = fs::read(&path).unwrap();
    let root1 = verify(&one).root.unwrap();
    let g2 = append(&path, 2, 7);
    let two = fs::read(&path).unwrap();
    let g3 = append(&path, 3, 7);
    let three = fs::read(&path).unwrap();
    // Appending never changes a byte before the end of the previous generation.
    assert_eq!(&two[..one.len()], &one[..]);
    assert_eq!(&three[..two.len()], &two[..]);
    assert_eq!(three.len() % RECORD as usize, 0);
    assert_eq!(g2.generation.as_ref().unwrap().parent, root1);
    assert_eq!(g3.generation.as_ref().unwrap().parent, g2.root);
    assert_eq!(g3.generation_number(), 3);

    for (generation, bytes) in [(1, &one), (2, &two), (3, &three)] {
        let report = verify(bytes);
        assert!(
            report.is_ok(),
            "generation {generation}: {:?}",
            report.findings
        );
        assert_eq!(report.generation, u64::from(generation));
        let (samples, manifests) = read_stream(bytes);
        assert_eq!(samples, expected(generation));
        let finals: Vec<_> = manifests
            .iter()
            .filter(|m| m.0 == shardpack::EntryKind::Final)
            .map(|m| m.1)
            .collect();
        assert_eq!(finals, (1..=u64::from(generation)).collect::<Vec<_>>());
        // Checkpoints of a later generation carry its number too.
        assert!(manifests.windows(2).all(|w| w[0].1 <= w[1].1));
    }
    assert_eq!(verify(&three).root.as_deref(), Some(g3.root.as_str()));

    // Unstreamed, the folder has the same chain: every generation opens and verifies.
    let folder = dir.path().join("folder");
    let report = unstream(&three[..], "s", &folder, Limits::default()).unwrap();
    assert!(report.complete);
    assert_eq!(report.generation, 3);
    let verified = shardpack::verify(&folder, &VerifyOptions::default()).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.findings);
    for generation in 1..=3u32 {
        let archive = Archive::options()
            .generation(u64::from(generation))
            .open(&folder)
            .unwrap();
        let samples: Vec<_> = archive
            .iter()
            .map(|s| {
                let s = s.unwrap();
                (s.key().to_owned(), s.field("bin").unwrap().to_vec())
            })
            .collect();
        assert_eq!(samples, expected(generation));
    }
    assert_eq!(Archive::open(&folder).unwrap().manifest().root, g3.root);
}

#[test]
fn a_key_of_an_earlier_generation_is_refused_and_the_stream_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.stream");
    first_generation(&path);
    append(&path, 2, 7);
    let before = fs::read(&path).unwrap();
    let mut writer = WriterBuilder::new().append_stream_file(&path).unwrap();
    writer.append("g3/0000", &[("bin", b"new")]).unwrap();
    let err = writer
        .append(&key(1, 4), &[("bin", b"again")])
        .expect_err("a key of generation 1");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { .. }),
        "{err}"
    );
    drop(writer);
    // The unfinished append is cut back: the stream is what it was.
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn an_interrupted_append_leaves_the_previous_generation_and_the_next_append_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.stream");
    first_generation(&path);
    let one = fs::read(&path).unwrap();
    let root1 = verify(&one).root.unwrap();
    append(&path, 2, 7);
    let two = fs::read(&path).unwrap();
    let appended = two.len() - one.len();
    assert!(
        appended >= 4 * RECORD as usize,
        "the append spans several records"
    );
    // A killed append leaves a prefix of what it writes: cut it at every record and in
    // the middle of records.
    let cuts: Vec<usize> = (one.len() + 1..two.len())
        .filter(|n| n % RECORD as usize == 0 || n % RECORD as usize == 1000)
        .collect();
    assert!(cuts.len() >= 8);
    for cut in cuts {
        let torn = &two[..cut];
        // Readers see generation 1 whole, then the tear.
        let report = verify(torn);
        assert!(!report.complete, "cut {cut}");
        assert_eq!(report.root.as_deref(), Some(root1.as_str()), "cut {cut}");
        assert_eq!(report.generation, 1);
        assert!(report.samples >= 12);
        let folder = dir.path().join(format!("u{cut}"));
        let unstreamed = unstream(torn, "s", &folder, Limits::default()).unwrap();
        assert!(!unstreamed.complete);
        assert!(unstreamed.samples >= 12, "cut {cut}");
        let folder_report = shardpack::verify(&folder, &VerifyOptions::default()).unwrap();
        assert!(
            folder_report.is_ok(),
            "cut {cut}: {:?}",
            folder_report.findings
        );
        fs::remove_dir_all(&folder).unwrap();

        // The next append cuts the unfinished bytes off and writes generation 2 again,
        // with the same keys.
        fs::write(&path, torn).unwrap();
        let manifest = append(&path, 2, 7);
        assert_eq!(manifest.generation.as_ref().unwrap().parent, root1);
        assert_eq!(fs::read(&path).unwrap(), two, "cut {cut}");
    }
}

#[test]
fn a_stream_without_a_final_manifest_or_with_damage_is_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.stream");
    first_generation(&path);
    let one = fs::read(&path).unwrap();

    // Torn before its first final entry: no generation to append to.
    fs::write(&path, &one[..one.len() - RECORD as usize]).unwrap();
    let err = WriterBuilder::new()
        .append_stream_file(&path)
        .err()
        .expect("no final manifest");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { .. }),
        "{err}"
    );

    // Damage inside a generation is not cut off: it is the reader's error.
    let mut damaged = one.clone();
    damaged[RECORD as usize + 300] ^= 0x40;
    fs::write(&path, &damaged).unwrap();
    let err = WriterBuilder::new()
        .append_stream_file(&path)
        .err()
        .expect("damaged");
    assert!(matches!(err.kind(), ErrorKind::Corrupt { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), damaged, "nothing was cut");

    // A sink that cannot be cut back refuses a torn tail.
    fs::write(&path, &one).unwrap();
    append(&path, 2, 7);
    let two = fs::read(&path).unwrap();
    let torn = &two[..one.len() + RECORD as usize + 10];
    let err = WriterBuilder::new()
        .append_stream(torn, Box::new(std::io::sink()), "s")
        .err()
        .expect("a torn tail on a sink");
    assert!(matches!(err.kind(), ErrorKind::Corrupt { .. }), "{err}");
}

#[test]
fn another_stream_glued_after_a_final_entry_is_not_a_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.stream");
    first_generation(&path);
    let one = fs::read(&path).unwrap();
    // A second, independent stream's items glued after the first's final entry: its shards
    // restart at number 0 and its manifests name no parent.
    let other = dir.path().join("o.stream");
    first_generation(&other);
    let mut glued = one.clone();
    glued.extend_from_slice(&fs::read(&other).unwrap()[RECORD as usize..]);
    let report = verify(&glued);
    assert!(!report.is_ok());
    assert!(!report.findings.is_empty());
}
