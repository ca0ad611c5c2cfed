//! Open and read costs at two archive sizes 1000x apart: opening must not grow with the
//! number of samples, and a `get` is a few in-place index reads plus one record.
//!
//! `cargo bench --bench read`

use std::hint::black_box;
use std::path::Path;

mod common;

use common::ordinals;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shardpack::{Archive, Compression, Writer};

const SIZES: [u64; 2] = [1_000, 1_000_000];
const SAMPLE_BYTES: usize = 100;

fn build(dir: &Path, samples: u64, compression: Compression) -> std::path::PathBuf {
    let path = dir.join(format!("{samples}-{compression:?}"));
    // One shard at either size, so that open cost compares like with like.
    let mut w = Writer::builder()
        .shard_size(1 << 30)
        .compression(compression)
        .create(&path)
        .unwrap();
    let mut data = vec![0u8; SAMPLE_BYTES];
    for i in 0..samples {
        data[..8].copy_from_slice(&i.to_le_bytes());
        w.append(
            &format!("train/{i:09}"),
            &[("bin", &data), ("cls", &(i % 10).to_le_bytes())],
        )
        .unwrap();
    }
    w.finish().unwrap();
    path
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("read");
    group.sample_size(30);
    group.measurement_time(std::time::Duration::from_secs(3));
    for &n in &SIZES {
        for compression in [Compression::None, Compression::Zstd { level: 3 }] {
            let codec = if compression == Compression::None {
                "stored"
            } else {
                "zstd"
            };
            let path = build(tmp.path(), n, compression);
            group.bench_with_input(
                BenchmarkId::new(format!("open/{codec}"), n),
                &path,
                |b, p| b.iter(|| black_box(Archive::open(p).unwrap())),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("open+first_get/{codec}"), n),
                &path,
                |b, p| {
                    b.iter(|| {
                        let a = Archive::open(p).unwrap();
                        black_box(a.get(n / 2).unwrap().field("cls").unwrap()[0])
                    })
                },
            );
            let archive = Archive::open(&path).unwrap();
            let mut seq = ordinals(n);
            group.bench_function(BenchmarkId::new(format!("get/{codec}"), n), |b| {
                b.iter(|| {
                    black_box(
                        archive
                            .get(seq.next().unwrap())
                            .unwrap()
                            .field("bin")
                            .unwrap()
                            .len(),
                    )
                })
            });
            let mut seq = ordinals(n);
            group.bench_function(BenchmarkId::new(format!("get_by_key/{codec}"), n), |b| {
                b.iter(|| {
                    let key = format!("train/{:09}", seq.next().unwrap());
                    black_box(archive.get_by_key(&key).unwrap().unwrap().ordinal())
                })
            });
        }
    }
    group.finish();
}

/// Small text records, as the `ssd` profile packs them: a trained dictionary and one zstd
/// frame per record, so a `get` decodes one frame.
fn build_text(dir: &Path, samples: u64) -> std::path::PathBuf {
    let path = dir.join(format!("text-{samples}"));
    let mut w = shardpack::WriterBuilder::for_profile(shardpack::MediaProfile::ssd())
        .create(&path)
        .unwrap();
    let words = [
        "the", "archive", "of", "samples", "reads", "fast", "through", "a", "map", "and", "every",
        "byte", "is", "checked", "by", "its", "crc", "on", "each", "read",
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..samples {
        let mut text = String::new();
        while text.len() < 2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(words[(x % words.len() as u64) as usize]);
            text.push(' ');
        }
        w.append(
            &format!("doc/{i:09}"),
            &[("txt", text.as_bytes()), ("cls", &(i % 10).to_le_bytes())],
        )
        .unwrap();
    }
    w.finish().unwrap();
    path
}

/// Random `get`s from one archive by 1 and by 2 threads at once, each thread with its own
/// clone: the time per get of all threads together, so that 2 threads at 1.8x one thread's
/// rate show as 0.55x its time.
fn bench_threads(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let n = 100_000;
    let archives = [
        ("text-dictionary", build_text(tmp.path(), n)),
        ("zstd", build(tmp.path(), n, Compression::Zstd { level: 3 })),
        ("stored", build(tmp.path(), n, Compression::None)),
    ];
    let mut group = c.benchmark_group("get_threads");
    group.sample_size(20);
    group.measurement_time(std::time::Duration::from_secs(4));
    for (name, path) in &archives {
        let archive = Archive::open(path).unwrap();
        // Map every shard first: the threads measure reads, not the first open.
        for ordinal in (0..n).step_by(997) {
            black_box(archive.get(ordinal).unwrap().record_bytes().len());
        }
        for threads in [1u64, 2] {
            group.throughput(criterion::Throughput::Elements(threads));
            group.bench_function(BenchmarkId::new(*name, format!("{threads}-threads")), |b| {
                b.iter_custom(|iters| {
                    let start = std::time::Instant::now();
                    std::thread::scope(|scope| {
                        for t in 0..threads {
                            let archive = archive.clone();
                            scope.spawn(move || {
                                let mut seq = ordinals(n).skip(t as usize * 7919);
                                for _ in 0..iters {
                                    let sample = archive.get(seq.next().unwrap()).unwrap();
                                    black_box(sample.record_bytes().len());
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, bench_threads);
criterion_main!(benches);
