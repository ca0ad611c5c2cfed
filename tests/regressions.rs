//! Replays every input under `tests/regressions/<target>/` through the fuzz target of the
//! same name (`src/fuzzing.rs`): each file is an input that once crashed or hung a target,
//! and must now run to completion. The golden vectors are replayed too, so the replay itself
//! is exercised even while the folders hold no crash.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("read_shard", shardpack::fuzzing::read_shard),
    ("parse_manifest", shardpack::fuzzing::parse_manifest),
    ("verify_shard", shardpack::fuzzing::verify_shard),
    ("read_stream", shardpack::fuzzing::read_stream),
    ("repair", shardpack::fuzzing::repair),
    ("readers_agree", shardpack::fuzzing::readers_agree),
];

#[test]
fn replay_regressions_and_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for (name, target) in TARGETS {
        for folder in [
            root.join("tests/regressions").join(name),
            root.join("fuzz/seeds").join(name),
        ] {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_file() && path.extension().is_none_or(|e| e != "md") {
                    target(&std::fs::read(&path).unwrap());
                    replayed += 1;
                }
            }
        }
    }
    assert!(replayed >= 8, "only {replayed} inputs replayed");
}
