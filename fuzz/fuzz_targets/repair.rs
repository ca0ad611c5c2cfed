//! Repair an intact archive with an untrusted parity file: never a panic, never a change.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardpack::fuzzing::repair(data);
});
