//! Parse untrusted bytes as a manifest: never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardpack::fuzzing::parse_manifest(data);
});
