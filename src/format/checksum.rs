//! Checksums (§7): CRC-32/ISO-HDLC ("IEEE", as in zlib and PNG) for structures, blocks and
//! records; BLAKE3 for whole shard files and the archive root.
//!
//! The CRC is the one `crc32fast` computes: polynomial 0x04C11DB7 reflected, initial value
//! and final XOR 0xFFFFFFFF. Its check value, the CRC of ASCII "123456789", is 0xCBF43926.
//! It is not CRC-32C (Castagnoli).

/// CRC-32/ISO-HDLC of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Adds `bytes` to a BLAKE3 hash, on every core when there are enough of them: BLAKE3's
/// tree splits a large input into independent halves, and hashing on one core would cap a
/// writer, a scan or a verify at that core's speed.
pub fn blake3_update(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    const PARALLEL_FROM: usize = 128 << 10;
    if bytes.len() >= PARALLEL_FROM {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
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
