//! A `pack` killed at any point (SIGKILL: no cleanup runs) never leaves an archive that
//! `verify` calls complete: the manifest is written last and atomically.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn killed_pack_never_leaves_a_complete_looking_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for i in 0..60u32 {
        let data: Vec<u8> = (0..200_000u32)
            .map(|x| (x.wrapping_mul(2_654_435_761).wrapping_add(i) >> 11) as u8)
            .collect();
        std::fs::write(input.join(format!("{i:03}.bin")), data).unwrap();
    }
    // How long a whole pack takes here, to spread the kills over it.
    let start = Instant::now();
    let full = tmp.path().join("full");
    let ok = Command::new(env!("CARGO_BIN_EXE_shardpack"))
        .args(["pack", "--shard-size", "2M"])
        .arg(&input)
        .arg("-o")
        .arg(&full)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let total = start.elapsed().max(Duration::from_millis(20));
    let (mut killed, mut finished) = (0, 0);
    for i in 0..24u32 {
        let out = tmp.path().join(format!("k{i}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardpack"))
            .args(["pack", "--shard-size", "2M"])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(total * i / 20);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !out.exists() {
            killed += 1;
            continue;
        }
        let report = shardpack::verify(&out, &Default::default()).unwrap();
        if status.success() {
            finished += 1;
        } else {
            killed += 1;
        }
        if out.join("manifest.json").exists() {
            // The manifest is the last thing written: once it is there (even if the kill
            // came before the process exited), the archive must be whole.
            assert!(
                report.is_ok() && report.complete,
                "a manifest was written, so everything before it must be: {:#?}",
                report.findings
            );
        } else {
            assert!(!status.success());
            assert!(
                !report.complete,
                "killed at {i}/20 of the run, yet verify calls it complete: {report:#?}"
            );
            assert!(
                shardpack::Archive::open(&out).is_err(),
                "a killed pack cannot be opened as an archive"
            );
        }
    }
    assert!(
        killed >= 10,
        "only {killed} runs were killed mid-way ({finished} finished)"
    );
}
