//! Read untrusted bytes as a one-shard archive by ordinal and by scan: the two readers must
//! never disagree about a sample.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardpack::fuzzing::readers_agree(data);
});
