//! Commands killed at any point (SIGKILL: no cleanup runs) never leave an archive worse
//! than before. A `pack` never leaves an archive that `verify` calls complete: the manifest
//! is written last and atomically. A `protect` or `repair` never changes a byte of a file
//! that was intact, leaves each file either as it was or as the finished command writes it
//! (never half-written, so `verify` never calls valid an archive whose bytes differ from the
//! original), and whatever temporary files it leaves do not stop the same command, run again,
//! from finishing with an archive that verifies.
//!
//! Kill times are seeded and spread over the measured duration of an unkilled run (plus a
//! little after it), so every run of the test kills at the same fractions of the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// Kill points per command.
const KILLS: u32 = 24;

/// SplitMix64: the seeded, deterministic source of the kill times.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The delay of kill `i` of `KILLS`: a random point in the i-th of `KILLS` equal slices
    /// of 110% of `total` (the last slices fall after a normal finish).
    fn delay(&mut self, i: u32, total: Duration) -> Duration {
        let within = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        total.mul_f64(1.1 * (f64::from(i) + within) / f64::from(KILLS))
    }
}

/// Every file of `dir` by name, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn copy_archive(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for (name, bytes) in snapshot(from) {
        std::fs::write(to.join(name), bytes).unwrap();
    }
}

fn shardpack(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardpack"));
    for a in args {
        c.arg(a.as_ref());
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// A packed archive of about 6 MiB in 24 shards, so that protect and repair take tens of
/// milliseconds here.
fn many_shards(tmp: &Path) -> PathBuf {
    let input = tmp.join("in");
    std::fs::create_dir(&input).unwrap();
    for i in 0..40u32 {
        let data: Vec<u8> = (0..150_000u32)
            .map(|x| (x.wrapping_mul(2_654_435_761).wrapping_add(i * 7919) >> 13) as u8)
            .collect();
        std::fs::write(input.join(format!("{i:03}.bin")), data).unwrap();
    }
    let archive = tmp.join("base");
    let ok = shardpack(&[
        &"pack",
        &"--shard-size",
        &"256K",
        &"--compression",
        &"none",
        &input,
        &"-o",
        &archive,
    ])
    .status()
    .unwrap();
    assert!(ok.success());
    archive
}

/// Runs `args` on a copy of `from` at `to` to completion; returns how long it took.
fn timed(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Duration {
    let start = Instant::now();
    let status = shardpack(args).status().unwrap();
    let took = start.elapsed();
    assert!(status.success(), "the unkilled run succeeds");
    took
}

/// Starts `args`, kills it with SIGKILL after `delay` (if it has not finished), and
/// returns whether it finished on its own.
fn kill_after(args: &[&dyn AsRef<std::ffi::OsStr>], delay: Duration) -> bool {
    let mut child = shardpack(args).spawn().unwrap();
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    finished && status.success()
}

/// The names of the temporary files protect and repair leave when interrupted.
fn leftovers(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_keys()
        .filter(|n| n.ends_with(".partial") || n.ends_with(".repair"))
        .collect()
}

/// Asserts that `verify` does not call `dir` valid unless every file is the bytes one of
/// `wants` gives it (the archive before the command, or as the finished command leaves it).
fn verify_is_truthful(dir: &Path, wants: &[&BTreeMap<String, Vec<u8>>], what: &str) {
    let now = snapshot(dir);
    let same = wants
        .iter()
        .any(|want| want.iter().all(|(n, b)| now.get(n) == Some(b)));
    let report = shardpack::verify(dir, &Default::default()).unwrap();
    assert!(
        same || !report.is_ok(),
        "{what}: verify calls the archive valid, yet its bytes differ from the original"
    );
}

#[test]
fn killed_protect_never_harms_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let base = many_shards(tmp.path());
    // The archive already has parity (10%); the killed runs replace it with 30%.
    assert!(shardpack(&[&"protect", &base, &"--parity", &"10"])
        .status()
        .unwrap()
        .success());
    let before = snapshot(&base);
    let old_parity = before["parity.spp"].clone();
    let measure = tmp.path().join("measure");
    // The quickest of three runs: one slowed by other work on the machine would put most
    // kills after the finish.
    let total = (0..3)
        .map(|_| {
            let _ = std::fs::remove_dir_all(&measure);
            copy_archive(&base, &measure);
            timed(&[&"protect", &measure, &"--parity", &"30"])
        })
        .min()
        .unwrap()
        .max(Duration::from_millis(20));
    let new_parity = snapshot(&measure)["parity.spp"].clone();
    assert_ne!(old_parity, new_parity);
    let mut finished_new = before.clone();
    finished_new.insert("parity.spp".into(), new_parity.clone());

    let mut seeded = Seeded(0x5eed_0001);
    let (mut killed, mut mid_write) = (0, 0);
    for i in 0..KILLS {
        let dir = tmp.path().join(format!("k{i}"));
        copy_archive(&base, &dir);
        let delay = seeded.delay(i, total);
        let what = format!("protect killed after {delay:?} of {total:?}");
        if !kill_after(&[&"protect", &dir, &"--parity", &"30"], delay) {
            killed += 1;
        }
        let now = snapshot(&dir);
        // (b) verify is never fooled.
        verify_is_truthful(&dir, &[&before, &finished_new], &what);
        // (a) Shards and manifest untouched; the parity file is the old one or the new one,
        // whole: never half-written.
        for (name, bytes) in &before {
            if name != "parity.spp" {
                assert!(now.get(name) == Some(bytes), "{what}: {name} changed");
            }
        }
        let parity = now.get("parity.spp");
        assert!(
            parity == Some(&old_parity) || parity == Some(&new_parity),
            "{what}: parity.spp is neither the old nor the new parity file ({} bytes)",
            parity.map_or(0, Vec::len)
        );
        if parity == Some(&old_parity) && !leftovers(&dir).is_empty() {
            mid_write += 1;
        }
        // (c) Leftovers do not stop protect from finishing, with the same result.
        let o = shardpack(&[&"protect", &dir, &"--parity", &"30"])
            .status()
            .unwrap();
        assert!(o.success(), "{what}: protect run again fails");
        assert_eq!(snapshot(&dir), finished_new, "{what}: protect run again");
        assert!(
            shardpack::verify(&dir, &Default::default())
                .unwrap()
                .is_ok(),
            "{what}: the archive does not verify after protect ran again"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("protect: {total:?} unkilled, {killed} of {KILLS} killed, {mid_write} mid-write");
    assert!(
        killed >= KILLS / 2,
        "only {killed} of {KILLS} runs were killed"
    );
    assert!(
        mid_write > 0,
        "no kill landed while the parity file was being written"
    );
}

#[test]
fn killed_repair_never_harms_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let base = many_shards(tmp.path());
    assert!(shardpack(&[&"protect", &base, &"--parity", &"30"])
        .status()
        .unwrap()
        .success());
    let pristine = snapshot(&base);
    // Damage: bit flips in two shards, a zeroed run in a third, a deleted fourth, the
    // manifest, and a parity chunk (so that repair also rewrites parity.spp at its end).
    let damaged_dir = tmp.path().join("damaged");
    copy_archive(&base, &damaged_dir);
    let shards: Vec<&String> = pristine.keys().filter(|n| n.ends_with(".shp")).collect();
    assert!(shards.len() >= 12, "{} shards", shards.len());
    let edit = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let path = damaged_dir.join(name);
        let mut b = std::fs::read(&path).unwrap();
        f(&mut b);
        std::fs::write(&path, &b).unwrap();
    };
    edit(shards[1], &|b| b[5000] ^= 0x01);
    edit(shards[3], &|b| b[70_000] ^= 0x80);
    edit(shards[6], &|b| b[10_000..30_000].fill(0));
    std::fs::remove_file(damaged_dir.join(shards[9])).unwrap();
    edit("manifest.json", &|b| b[60] ^= 0x04);
    edit("parity.spp", &|b| {
        let at = b.len() / 3;
        b[at] ^= 0x10
    });
    let damaged = snapshot(&damaged_dir);
    let measure = tmp.path().join("measure");
    copy_archive(&damaged_dir, &measure);
    let total = timed(&[&"repair", &measure]).max(Duration::from_millis(20));
    assert_eq!(
        snapshot(&measure),
        pristine,
        "the unkilled repair restores everything"
    );

    let mut seeded = Seeded(0x5eed_0002);
    let (mut killed, mut partly) = (0, 0);
    for i in 0..KILLS {
        let dir = tmp.path().join(format!("k{i}"));
        copy_archive(&damaged_dir, &dir);
        let delay = seeded.delay(i, total);
        let what = format!("repair killed after {delay:?} of {total:?}");
        if !kill_after(&[&"repair", &dir], delay) {
            killed += 1;
        }
        let now = snapshot(&dir);
        // (b) verify is never fooled.
        verify_is_truthful(&dir, &[&pristine], &what);
        // (a) Every file is as it was before the repair or as the repair writes it (the
        // original): what was intact stays intact, damage is fixed or still there, nothing
        // is newly damaged, nothing half-written.
        let mut fixed = 0;
        for (name, want) in &pristine {
            let got = now.get(name);
            let was = damaged.get(name);
            if was == Some(want) {
                assert!(got == Some(want), "{what}: intact {name} changed");
            } else {
                assert!(
                    got == Some(want) || got == was,
                    "{what}: {name} is neither as it was nor repaired"
                );
                fixed += usize::from(got == Some(want));
            }
        }
        for name in now.keys() {
            assert!(
                pristine.contains_key(name)
                    || name.ends_with(".repair")
                    || name.ends_with(".partial"),
                "{what}: unexpected file {name}"
            );
        }
        if fixed > 0 && fixed < 6 {
            partly += 1;
        }
        // (c) Leftovers do not stop repair from finishing, and the result verifies.
        let o = shardpack(&[&"repair", &dir]).status().unwrap();
        assert!(o.success(), "{what}: repair run again fails");
        assert_eq!(snapshot(&dir), pristine, "{what}: repair run again");
        assert!(
            shardpack::verify(&dir, &Default::default())
                .unwrap()
                .is_ok(),
            "{what}: the archive does not verify after repair ran again"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("repair: {total:?} unkilled, {killed} of {KILLS} killed, {partly} part-way");
    assert!(
        killed >= KILLS / 2,
        "only {killed} of {KILLS} runs were killed"
    );
    assert!(
        partly > 0,
        "no kill landed between two files being repaired"
    );
}

/// A folder of new samples for an append: 30 files of 100 KB, keys unlike `many_shards`'.
fn more_samples(tmp: &Path) -> PathBuf {
    let input = tmp.join("more");
    std::fs::create_dir(&input).unwrap();
    for i in 0..30u32 {
        let data: Vec<u8> = (0..100_000u32)
            .map(|x| (x.wrapping_mul(40_503).wrapping_add(i * 104_729) >> 11) as u8)
            .collect();
        std::fs::write(input.join(format!("new-{i:03}.bin")), data).unwrap();
    }
    input
}

#[test]
fn killed_append_never_harms_the_previous_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let base = many_shards(tmp.path());
    let more = more_samples(tmp.path());
    let before = snapshot(&base);
    let keys_before = keys(&base);
    let measure = tmp.path().join("measure");
    copy_archive(&base, &measure);
    let total = timed(&[&"append", &measure, &more]).max(Duration::from_millis(20));
    let finished = snapshot(&measure);
    let keys_after = keys(&measure);
    assert_eq!(keys_after.len(), keys_before.len() + 30);

    let mut seeded = Seeded(0x5eed_0003);
    let (mut killed, mut with_leftovers) = (0, 0);
    for i in 0..KILLS {
        let dir = tmp.path().join(format!("a{i}"));
        copy_archive(&base, &dir);
        let delay = seeded.delay(i, total);
        let what = format!("append killed after {delay:?} of {total:?}");
        if !kill_after(&[&"append", &dir, &more], delay) {
            killed += 1;
        }
        // The archive verifies, as the previous generation or the new one, never between.
        let report = shardpack::verify(&dir, &Default::default()).unwrap();
        assert!(report.is_ok(), "{what}: {:?}", report.findings);
        let now = keys(&dir);
        assert!(
            now == keys_before || now == keys_after,
            "{what}: {} samples, neither generation",
            now.len()
        );
        // Every file of the previous generation is untouched; manifest.json is one of the
        // two generations' manifests.
        let files = snapshot(&dir);
        for (name, bytes) in &before {
            if name != "manifest.json" {
                assert!(files.get(name) == Some(bytes), "{what}: {name} changed");
            }
        }
        let manifest = files.get("manifest.json");
        assert!(
            manifest == before.get("manifest.json") || manifest == finished.get("manifest.json"),
            "{what}: manifest.json is neither generation's"
        );
        if !report.leftovers.is_empty() {
            with_leftovers += 1;
        }
        // gc removes what the kill left and nothing any generation refers to.
        let gc = shardpack::gc(&dir, true).unwrap();
        let referenced: Vec<String> = snapshot(&dir).into_keys().collect();
        for leftover in &gc.leftovers {
            let name = leftover
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(!referenced.contains(&name), "{what}: gc left {name}");
        }
        let after_gc = shardpack::verify(&dir, &Default::default()).unwrap();
        assert!(
            after_gc.is_ok() && after_gc.leftovers.is_empty(),
            "{what}: after gc"
        );
        assert_eq!(keys(&dir), now, "{what}: gc changed the samples");
        if now == keys_before {
            // The append can be made again and gives the same archive as the unkilled one.
            assert!(
                shardpack(&[&"append", &dir, &more])
                    .status()
                    .unwrap()
                    .success(),
                "{what}: append run again fails"
            );
            assert_eq!(snapshot(&dir), finished, "{what}: append run again");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "append: {total:?} unkilled, {killed} of {KILLS} killed, {with_leftovers} left leftovers"
    );
    assert!(
        killed >= KILLS / 2,
        "only {killed} of {KILLS} runs were killed"
    );
    assert!(
        with_leftovers > 0,
        "no kill landed while shards were being written"
    );
}

/// Every key of the archive in `dir`, in order.
fn keys(dir: &Path) -> Vec<String> {
    let archive = shardpack::Archive::open(dir).unwrap();
    (0..archive.len())
        .map(|i| archive.key(i).unwrap().into_owned())
        .collect()
}

/// `pack -o -` of `input` into the stream file `path`, shards of 256 KiB in 64 KiB records.
fn pack_stream(input: &Path, path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_shardpack"))
        .args([
            "pack",
            "--profile",
            "tape",
            "--shard-size",
            "256K",
            "--align",
            "4096",
        ])
        .args([
            "--block-size",
            "64K",
            "--record-size",
            "64K",
            "--compression",
            "none",
        ])
        .arg(input)
        .args(["-o", "-"])
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The keys of a stream file and whether it is complete, as `verify_stream` and a
/// `StreamReader` see it: every sample up to the first error.
fn stream_state(path: &Path) -> (Vec<String>, shardpack::StreamVerifyReport) {
    let bytes = std::fs::read(path).unwrap();
    let report = shardpack::verify_stream(&bytes[..], path, &Default::default()).unwrap();
    let reader =
        shardpack::stream::StreamReader::new(&bytes[..], path, shardpack::Limits::default())
            .unwrap();
    let keys = reader
        .map_while(Result::ok)
        .filter_map(|item| match item {
            shardpack::stream::StreamItem::Sample(s) => Some(s.key().to_owned()),
            _ => None,
        })
        .collect();
    (keys, report)
}

#[test]
fn killed_stream_append_keeps_the_previous_generation_and_the_next_append_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for i in 0..20u32 {
        let data: Vec<u8> = (0..150_000u32)
            .map(|x| (x.wrapping_mul(2_654_435_761).wrapping_add(i * 7919) >> 13) as u8)
            .collect();
        std::fs::write(input.join(format!("{i:03}.bin")), data).unwrap();
    }
    let more = more_samples(tmp.path());
    let base = tmp.path().join("base.stream");
    pack_stream(&input, &base);
    let before = std::fs::read(&base).unwrap();
    let (keys_before, report) = stream_state(&base);
    assert!(report.is_ok() && report.generation == 1);
    let measure = tmp.path().join("measure.stream");
    std::fs::copy(&base, &measure).unwrap();
    let total = timed(&[&"append", &measure, &more]).max(Duration::from_millis(20));
    let finished = std::fs::read(&measure).unwrap();
    let (keys_after, report) = stream_state(&measure);
    assert!(
        report.is_ok() && report.generation == 2,
        "{:?}",
        report.findings
    );
    assert_eq!(keys_after.len(), keys_before.len() + 30);

    let mut seeded = Seeded(0x5eed_0004);
    let mut killed = 0;
    for i in 0..KILLS {
        let path = tmp.path().join(format!("s{i}.stream"));
        std::fs::copy(&base, &path).unwrap();
        let delay = seeded.delay(i, total);
        let what = format!("stream append killed after {delay:?} of {total:?}");
        if !kill_after(&[&"append", &path, &more], delay) {
            killed += 1;
        }
        let now = std::fs::read(&path).unwrap();
        // The previous generation's bytes are never touched: only bytes after them change.
        assert_eq!(&now[..before.len()], &before[..], "{what}");
        let (keys, report) = stream_state(&path);
        if now == finished {
            assert!(report.is_ok(), "{what}: {:?}", report.findings);
        } else {
            // Torn after generation 1, which reads and verifies whole up to its end.
            assert_eq!(report.generation, 1, "{what}: {:?}", report.findings);
            assert!(keys.starts_with(&keys_before), "{what}");
        }
        // The next append finishes with the same stream as the unkilled one.
        assert!(
            shardpack(&[&"append", &path, &more])
                .status()
                .unwrap()
                .success()
                || now == finished,
            "{what}: append run again fails"
        );
        if now != finished {
            assert_eq!(
                std::fs::read(&path).unwrap(),
                finished,
                "{what}: append run again"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
    eprintln!("stream append: {total:?} unkilled, {killed} of {KILLS} killed");
}
