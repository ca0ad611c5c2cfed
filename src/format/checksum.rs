//! Checksums (§7): CRC-32/ISO-HDLC ("IEEE", as in zlib and PNG) for structures, blocks and
//! records; BLAKE3 for whole shard files and the archive root.
//!
//! The CRC is the one `crc32fast` computes: polynomial 0x04C11DB7 reflected, initial value
//! and final XOR 0xFFFFFFFF. Its check value, the CRC of ASCII "123456789", is 0xCBF43926.
//! It is not CRC-32C (Castagnoli).

use std::sync::{Arc, Mutex};

/// CRC-32/ISO-HDLC of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Adds `bytes` to a BLAKE3 hash, on every core when there are enough of them: BLAKE3's
/// tree splits a large input into independent halves, and hashing on one core would cap a
/// writer, a scan or a verify at that core's speed.
pub fn blake3_update(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    const PARALLEL_FROM: usize = 128 << 10;
    match hashing_pool() {
        Some(pool) if bytes.len() >= PARALLEL_FROM => pool.install(|| {
            hasher.update_rayon(bytes);
        }),
        _ => {
            hasher.update(bytes);
        }
    }
}

/// Adds `bytes` to a BLAKE3 hash on every core while `beside` runs on one of them, and
/// returns what `beside` returns: work that needs the same bytes but not the digest keeps
/// the cores busy instead of waiting for it.
pub fn blake3_update_beside<R: Send>(
    hasher: &mut blake3::Hasher,
    bytes: &[u8],
    beside: impl FnOnce() -> R + Send,
) -> R {
    match hashing_pool() {
        Some(pool) => {
            pool.join(
                || {
                    hasher.update_rayon(bytes);
                },
                beside,
            )
            .1
        }
        None => {
            hasher.update(bytes);
            beside()
        }
    }
}

/// The threads that hash, started on first use and started again in a process forked from
/// one that used them. A forked child has none of its parent's threads, so rayon's global
/// pool would wait for them for ever (a Python data-loader worker forked after its parent
/// verified an archive, say). `None`, hashing on the caller's thread, when the pool cannot
/// be built or its lock was held across the fork.
fn hashing_pool() -> Option<Arc<rayon_core::ThreadPool>> {
    static POOL: Mutex<Option<(u32, Arc<rayon_core::ThreadPool>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = POOL.try_lock().ok()?;
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return Some(pool.clone());
        }
    }
    // The parent's pool has no threads here; dropping it would signal threads that do not
    // exist, so it is forgotten instead.
    if let Some(stale) = slot.take() {
        std::mem::forget(stale);
    }
    let pool = rayon_core::ThreadPoolBuilder::new()
        .thread_name(|i| format!("shardpack-hash-{i}"))
        .build()
        .ok()?;
    let pool = Arc::new(pool);
    *slot = Some((pid, pool.clone()));
    Some(pool)
}

/// The standard check value of the CRC variant: `crc32(b"123456789")`.
pub const CRC32_CHECK_VALUE: u32 = 0xCBF4_3926;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_the_ieee_variant() {
        assert_eq!(crc32(b"123456789"), CRC32_CHECK_VALUE);
    }
}
