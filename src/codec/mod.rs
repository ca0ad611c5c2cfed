//! Block compression (§5): zstd frames, bounded on the way in, and shard dictionaries.

pub(crate) mod dictionary;

use std::cell::RefCell;
use std::io::Read;

use crate::limits::{EAGER_ALLOC_BYTES, ZSTD_WINDOW_LOG_MAX};

/// Why a payload failed to decode.
#[derive(Debug)]
pub(crate) enum DecodeFailure {
    /// zstd rejected the frame.
    Zstd(String),
    /// The frame decoded to a different length than the header declares.
    Length { declared: u64, got: u64 },
}

impl std::fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeFailure::Zstd(message) => write!(f, "zstd error: {message}"),
            DecodeFailure::Length { declared, got } => {
                write!(
                    f,
                    "a frame of {got} bytes where the header declares {declared}"
                )
            }
        }
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn new_decompressor() -> std::io::Result<zstd::bulk::Decompressor<'static>> {
    let mut d = zstd::bulk::Decompressor::new()?;
    d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(
        ZSTD_WINDOW_LOG_MAX,
    ))?;
    Ok(d)
}

/// Checks that `stored` is exactly one zstd frame declaring a content size of `raw_len`
/// (§5.2): libzstd alone would also accept concatenated and skippable frames.
fn check_single_frame(stored: &[u8], raw_len: u64) -> Result<(), DecodeFailure> {
    let frame_len = zstd::zstd_safe::find_frame_compressed_size(stored)
        .map_err(|code| DecodeFailure::Zstd(zstd::zstd_safe::get_error_name(code).to_string()))?;
    if frame_len != stored.len() {
        return Err(DecodeFailure::Zstd(format!(
            "a frame of {frame_len} bytes followed by {} other bytes",
            stored.len() - frame_len.min(stored.len())
        )));
    }
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) if size == raw_len => {}
        Ok(Some(size)) => {
            return Err(DecodeFailure::Length {
                declared: raw_len,
                got: size,
            })
        }
        _ => return Err(DecodeFailure::Zstd("a frame without a content size".into())),
    }
    Ok(())
}

/// Decompresses `stored` into exactly `raw_len` bytes. The caller has checked `raw_len`
/// against [`crate::Limits::max_block_bytes`].
fn decompress(stored: &[u8], raw_len: u64) -> Result<Vec<u8>, DecodeFailure> {
    check_single_frame(stored, raw_len)?;
    if raw_len <= EAGER_ALLOC_BYTES {
        let mut out = Vec::with_capacity(raw_len as usize + 1);
        let result = DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(new_decompressor()?);
            }
            match slot.as_mut() {
                Some(d) => d.decompress_to_buffer(stored, &mut out),
                None => Err(std::io::Error::other("no decompressor")),
            }
        });
        let n = result.map_err(|e| DecodeFailure::Zstd(e.to_string()))?;
        if n as u64 != raw_len {
            return Err(DecodeFailure::Length {
                declared: raw_len,
                got: n as u64,
            });
        }
        return Ok(out);
    }
    let mut decoder = zstd::stream::read::Decoder::with_buffer(stored)
        .map_err(|e| DecodeFailure::Zstd(e.to_string()))?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|e| DecodeFailure::Zstd(e.to_string()))?;
    let mut out = Vec::with_capacity(EAGER_ALLOC_BYTES as usize);
    // One byte past the declared length tells a long frame from an exact one.
    decoder
        .take(raw_len.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DecodeFailure::Zstd(e.to_string()))?;
    if out.len() as u64 != raw_len {
        return Err(DecodeFailure::Length {
            declared: raw_len,
            got: out.len() as u64,
        });
    }
    Ok(out)
}

/// Decodes a compressed block payload of `record_count` records into exactly `raw_len`
/// bytes: one frame (codec 1), or one frame per record with the shard's dictionary (codec
/// 2). The caller has checked `raw_len` against [`crate::Limits::max_block_bytes`].
pub(crate) fn decode_block(
    codec: crate::format::Codec,
    payload: &[u8],
    record_count: u32,
    raw_len: u64,
    dictionary: Option<&dictionary::DecodingDictionary>,
) -> Result<Vec<u8>, DecodeFailure> {
    match (codec, dictionary) {
        (crate::format::Codec::ZstdDictionary, Some(d)) => {
            dictionary::decode_block(payload, record_count, raw_len, d)
        }
        (crate::format::Codec::ZstdDictionary, None) => Err(DecodeFailure::Zstd(
            "a dictionary block without an intact shard dictionary".into(),
        )),
        _ => decompress(payload, raw_len),
    }
}

/// Compresses blocks at one level, reusing its context.
pub(crate) struct Compressor(zstd::bulk::Compressor<'static>);

impl Compressor {
    pub(crate) fn new(level: i32) -> std::io::Result<Self> {
        let mut c = zstd::bulk::Compressor::new(level)?;
        // A content size in the frame lets any zstd tool check the length; no checksum,
        // since the block CRC covers the stored bytes.
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
        Ok(Compressor(c))
    }

    pub(crate) fn compress(&mut self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        self.0.compress(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8]) -> Vec<u8> {
        Compressor::new(3).unwrap().compress(data).unwrap()
    }

    #[test]
    fn exact_length_is_required() {
        let data = vec![7u8; 5000];
        let f = frame(&data);
        assert_eq!(decompress(&f, 5000).unwrap(), data);
        assert!(matches!(
            decompress(&f, 4999),
            Err(DecodeFailure::Length { .. })
        ));
        assert!(matches!(
            decompress(&f, 5001),
            Err(DecodeFailure::Length { .. })
        ));
    }

    #[test]
    fn trailing_bytes_and_second_frames_are_refused() {
        let data = vec![1u8; 1000];
        let mut f = frame(&data);
        f.extend_from_slice(&frame(&data));
        assert!(decompress(&f, 2000).is_err(), "two frames");
        let mut g = frame(&data);
        g.push(0);
        assert!(decompress(&g, 1000).is_err(), "trailing byte");
    }

    #[test]
    fn a_frame_without_content_size_is_refused() {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
            .unwrap();
        let f = c.compress(&[5u8; 3000]).unwrap();
        assert!(matches!(decompress(&f, 3000), Err(DecodeFailure::Zstd(_))));
    }
}
