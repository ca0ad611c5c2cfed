//! Open untrusted bytes as a shard and read every record and key: never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardpack::fuzzing::read_shard(data);
});
