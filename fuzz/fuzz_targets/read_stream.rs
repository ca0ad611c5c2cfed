//! Read untrusted bytes as a tape stream: never a panic, never unbounded memory.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardpack::fuzzing::read_stream(data);
});
