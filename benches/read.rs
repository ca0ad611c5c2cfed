//! Open and read costs at two archive sizes 1000x apart: opening must not grow with the
//! number of samples, and a `get` is a few in-place index reads plus one record.
//!
//! `cargo bench --bench read`

use std::hint::black_box;
use std::path::Path;

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

/// A cheap deterministic sequence of ordinals spread over the archive.
fn ordinals(n: u64) -> impl Iterator<Item = u64> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    })
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

criterion_group!(benches, bench);
criterion_main!(benches);
