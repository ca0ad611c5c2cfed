//! Verify untrusted bytes as the only shard of a manifest-less archive: never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardpack::fuzzing::verify_shard(data);
});
