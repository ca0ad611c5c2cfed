//! Packing keeps memory bounded whatever a file's size (issue #10): a sample larger than a
//! block is copied from its file in pieces straight into the shard, never held whole.

use std::fs;

use shardpack::pack::{pack_folder, PackOptions};
use shardpack::{Archive, WriterBuilder};

/// Peak memory of the process while packing a 96 MiB sparse file with 64 KiB blocks: before,
/// the whole file was read into memory (and copied into its block); now the process grows
/// by a few pieces of 1 MiB. Alone in its test binary, so that no other test (nor a panic's backtrace) counts.
#[test]
fn packing_a_file_many_blocks_large_keeps_memory_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    fs::create_dir_all(&input).unwrap();
    let len = 96u64 << 20;
    fs::File::create(input.join("big.bin"))
        .unwrap()
        .set_len(len)
        .unwrap();
    fs::write(input.join("small.txt"), b"small").unwrap();
    let before = peak_rss_bytes();
    let mut outs = Vec::new();
    for compression in [
        shardpack::Compression::None,
        shardpack::Compression::Zstd { level: 1 },
    ] {
        let out = tmp.path().join(format!("{compression:?}"));
        let report = pack_folder(
            &input,
            &out,
            WriterBuilder::new()
                .block_size(64 << 10)
                .compression(compression),
            &PackOptions::new(),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(report.file_bytes, len + 5);
        outs.push(out);
    }
    let grew = peak_rss_bytes().saturating_sub(before);
    assert!(
        grew < 32 << 20,
        "peak grew by {grew} bytes while packing {len}"
    );
    for out in outs {
        let archive = Archive::open(&out).unwrap();
        let sample = archive.get_by_key("big").unwrap().unwrap();
        let data = sample.field("bin").unwrap();
        assert!(data.len() as u64 == len && data.iter().all(|&b| b == 0));
    }
}

/// The peak resident set (`VmHWM`) of this process, in bytes.
fn peak_rss_bytes() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
