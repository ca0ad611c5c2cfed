//! What the benches share.

/// A cheap deterministic sequence spread over `0..n`: the ordinals a bench reads.
pub fn ordinals(n: u64) -> impl Iterator<Item = u64> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    })
}
