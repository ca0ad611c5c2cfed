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
    /// The frame header declares a window larger than a reader allows (§5.2, §14).
    Window { declared: u64, max: u64 },
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
            DecodeFailure::Window { declared, max } => {
                write!(
                    f,
                    "a frame declaring a window of {declared} bytes, more than {max}"
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

/// The magic number that starts every zstd frame (RFC 8878 §3.1.1).
const ZSTD_FRAME_MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();
/// Length of the magic number; the Frame_Header_Descriptor follows it.
const ZSTD_MAGIC_LEN: usize = 4;
/// Frame_Header_Descriptor bit 5: no Window_Descriptor, the window is the content size.
const SINGLE_SEGMENT_FLAG: u8 = 1 << 5;
/// Frame_Header_Descriptor bits 7-6: the size code of Frame_Content_Size.
const CONTENT_SIZE_FLAG_SHIFT: u32 = 6;
/// Frame_Content_Size field lengths by size code (with the single-segment flag, code 0
/// means 1 byte).
const CONTENT_SIZE_FIELD_LEN: [usize; 4] = [0, 2, 4, 8];
/// Frame_Header_Descriptor bits 1-0: the size code of Dictionary_ID.
const DICTIONARY_ID_FIELD_LEN: [usize; 4] = [0, 1, 2, 4];
/// The smallest window exponent: Window_Descriptor exponent 0 is a 2^10-byte window.
const WINDOW_LOG_ABSOLUTE_MIN: u32 = 10;
/// A 2-byte Frame_Content_Size field holds the size minus this.
const CONTENT_SIZE_2_BYTE_OFFSET: u64 = 256;

/// The `Window_Size` a zstd frame header declares (RFC 8878 §3.1.1.1.2), read without
/// decoding anything, or `None` when the bytes do not start with a whole frame header.
///
/// libzstd applies its window limit only when it decodes by streaming; decoding in one
/// call into a buffer of the content size ignores it, so the limit is checked here.
fn frame_window_size(frame: &[u8]) -> Option<u64> {
    if frame.get(..ZSTD_MAGIC_LEN)? != ZSTD_FRAME_MAGIC {
        return None;
    }
    let descriptor = *frame.get(ZSTD_MAGIC_LEN)?;
    let mut at = ZSTD_MAGIC_LEN + 1;
    let single_segment = descriptor & SINGLE_SEGMENT_FLAG != 0;
    if !single_segment {
        // Window_Descriptor: exponent in bits 7-3, mantissa in bits 2-0.
        let window_descriptor = *frame.get(at)?;
        let window_log = WINDOW_LOG_ABSOLUTE_MIN + u32::from(window_descriptor >> 3);
        let window_base = 1u64 << window_log;
        let window_add = (window_base / 8) * u64::from(window_descriptor & 0b111);
        return Some(window_base + window_add);
    }
    // Single segment: the window is Frame_Content_Size, after any Dictionary_ID.
    at += DICTIONARY_ID_FIELD_LEN[usize::from(descriptor & 0b11)];
    let size_code = usize::from(descriptor >> CONTENT_SIZE_FLAG_SHIFT);
    let field_len = match CONTENT_SIZE_FIELD_LEN[size_code] {
        0 => 1,
        n => n,
    };
    let mut bytes = [0u8; 8];
    bytes
        .get_mut(..field_len)?
        .copy_from_slice(frame.get(at..at + field_len)?);
    let value = u64::from_le_bytes(bytes);
    Some(if field_len == 2 {
        value + CONTENT_SIZE_2_BYTE_OFFSET
    } else {
        value
    })
}

/// Refuses a frame whose header declares a window above 2^[`ZSTD_WINDOW_LOG_MAX`] bytes
/// (§5.2, §12.6), before anything is decoded.
fn check_window(frame: &[u8]) -> Result<(), DecodeFailure> {
    let max = 1u64 << ZSTD_WINDOW_LOG_MAX;
    match frame_window_size(frame) {
        Some(declared) if declared <= max => Ok(()),
        Some(declared) => Err(DecodeFailure::Window { declared, max }),
        None => Err(DecodeFailure::Zstd("not a whole zstd frame header".into())),
    }
}

/// Checks that `stored` is exactly one zstd frame declaring a content size of `raw_len`
/// and a window of at most 2^27 bytes (§5.2): libzstd alone would also accept
/// concatenated and skippable frames, and larger windows when decoding in one call.
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
    check_window(stored)
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

/// Compresses one large block fed in pieces (same level and frame parameters as
/// [`Compressor`], the block's size pledged), so that a block too large to hold in memory
/// is compressed in bounded memory. The frame depends only on the bytes, never on how they
/// were cut into pieces; up to the zstd window it is also [`Compressor`]'s frame, beyond it
/// zstd's one-shot and streamed frames differ.
pub(crate) struct StreamCompressor {
    context: zstd::zstd_safe::CCtx<'static>,
    out: Vec<u8>,
}

impl StreamCompressor {
    pub(crate) fn new(level: i32) -> std::io::Result<Self> {
        use zstd::zstd_safe::CParameter;
        let mut context = zstd::zstd_safe::CCtx::create();
        let code = |c: usize| std::io::Error::other(zstd::zstd_safe::get_error_name(c));
        context
            .set_parameter(CParameter::CompressionLevel(level))
            .map_err(code)?;
        context
            .set_parameter(CParameter::ContentSizeFlag(true))
            .map_err(code)?;
        Ok(StreamCompressor {
            context,
            out: Vec::with_capacity(zstd::zstd_safe::CCtx::out_size()),
        })
    }

    /// Starts a frame of exactly `len` bytes.
    pub(crate) fn begin(&mut self, len: u64) -> std::io::Result<()> {
        let code = |c: usize| std::io::Error::other(zstd::zstd_safe::get_error_name(c));
        self.context
            .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(code)?;
        self.context
            .set_pledged_src_size(Some(len))
            .map(|_| ())
            .map_err(code)
    }

    /// Compresses `piece` (with `end`, the frame's last), handing every output piece to
    /// `sink` in order.
    pub(crate) fn feed(
        &mut self,
        piece: &[u8],
        end: bool,
        sink: &mut dyn FnMut(&[u8]) -> crate::Result<()>,
    ) -> crate::Result<()> {
        use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
        let directive = if end {
            ZSTD_EndDirective::ZSTD_e_end
        } else {
            ZSTD_EndDirective::ZSTD_e_continue
        };
        let mut input = zstd::zstd_safe::InBuffer::around(piece);
        loop {
            self.out.clear();
            let mut output = zstd::zstd_safe::OutBuffer::around(&mut self.out);
            let left = self
                .context
                .compress_stream2(&mut output, &mut input, directive)
                .map_err(|c| {
                    crate::Error::io(
                        std::path::Path::new("zstd"),
                        "compress",
                        std::io::Error::other(zstd::zstd_safe::get_error_name(c)),
                    )
                })?;
            if !self.out.is_empty() {
                sink(&self.out)?;
            }
            let done = if end {
                left == 0
            } else {
                input.pos() == piece.len()
            };
            if done {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_block_fed_in_pieces_gives_one_frame_whatever_the_pieces() {
        let mut data = Vec::new();
        let mut x = 0x1234_5678u32;
        while data.len() < 9 << 20 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let word = format!("w{} ", x % 5000);
            data.extend_from_slice(word.as_bytes());
            if x % 7 == 0 {
                data.extend_from_slice(&x.to_le_bytes());
            }
        }
        for level in [-7, 1, 3, 9] {
            for len in [300 << 10, 9 << 20] {
                let raw = &data[..len];
                let whole = Compressor::new(level).unwrap().compress(raw).unwrap();
                let mut s = StreamCompressor::new(level).unwrap();
                let mut streamed: Option<Vec<u8>> = None;
                for piece in [64 << 10, 1 << 20, 12_345] {
                    s.begin(len as u64).unwrap();
                    let mut out = Vec::new();
                    let chunks: Vec<&[u8]> = raw.chunks(piece).collect();
                    for (i, c) in chunks.iter().enumerate() {
                        s.feed(c, i + 1 == chunks.len(), &mut |b| {
                            out.extend_from_slice(b);
                            Ok(())
                        })
                        .unwrap();
                    }
                    if len <= 300 << 10 {
                        assert!(
                            out == whole,
                            "level {level}, {len} bytes, pieces of {piece}"
                        );
                    }
                    // Beyond the window zstd's one-shot and streamed frames differ, but a
                    // streamed frame never depends on how its input was cut.
                    let first = streamed.get_or_insert_with(|| out.clone());
                    assert!(
                        *first == out,
                        "level {level}, {len} bytes, pieces of {piece}"
                    );
                    assert_eq!(decompress(&out, len as u64).unwrap(), raw);
                }
            }
        }
    }

    fn frame(data: &[u8]) -> Vec<u8> {
        Compressor::new(3).unwrap().compress(data).unwrap()
    }

    /// `frame` (one frame with a content size and no dictionary id, as our writers make)
    /// with its header rewritten to declare a window of `2^log + mantissa·2^log/8` bytes
    /// through a Window_Descriptor, and a 4-byte Frame_Content_Size; its blocks unchanged.
    pub(crate) fn with_window(frame: &[u8], log: u32, mantissa: u8) -> Vec<u8> {
        let descriptor = frame[4];
        assert_eq!(descriptor & 0b11, 0, "no dictionary id");
        let single_segment = descriptor & SINGLE_SEGMENT_FLAG != 0;
        let fcs_len = match (descriptor >> 6, single_segment) {
            (0, true) => 1,
            (code, _) => CONTENT_SIZE_FIELD_LEN[usize::from(code)],
        };
        let header_len = 5 + usize::from(!single_segment) + fcs_len;
        let content = zstd::zstd_safe::get_frame_content_size(frame)
            .unwrap()
            .unwrap();
        let mut out = ZSTD_FRAME_MAGIC.to_vec();
        out.push(2 << CONTENT_SIZE_FLAG_SHIFT); // 4-byte content size, not single segment
        out.push(((log - WINDOW_LOG_ABSOLUTE_MIN) as u8) << 3 | mantissa);
        out.extend_from_slice(&(content as u32).to_le_bytes());
        out.extend_from_slice(&frame[header_len..]);
        out
    }

    #[test]
    fn the_window_is_read_from_the_frame_header() {
        let data = vec![9u8; 3000];
        let f = frame(&data);
        // Our writer's small frames are single-segment: the window is the content size.
        assert_eq!(frame_window_size(&f), Some(3000));
        assert_eq!(frame_window_size(&with_window(&f, 20, 0)), Some(1 << 20));
        assert_eq!(
            frame_window_size(&with_window(&f, 27, 3)),
            Some((1 << 27) + 3 * (1 << 24))
        );
        assert_eq!(frame_window_size(&f[..4]), None);
        assert_eq!(frame_window_size(b"not a frame"), None);
    }

    #[test]
    fn a_window_above_2_pow_27_is_refused_before_decoding() {
        let data = vec![9u8; 3000];
        let f = frame(&data);
        // The rewritten header is sound: at the limit the frame still decodes.
        let at_limit = with_window(&f, 27, 0);
        assert_eq!(decompress(&at_limit, 3000).unwrap(), data);
        let codec = crate::format::Codec::Zstd;
        assert_eq!(decode_block(codec, &at_limit, 1, 3000, None).unwrap(), data);
        for (log, mantissa, declared) in [
            (27, 1, (1u64 << 27) + (1 << 24)),
            (28, 0, 1 << 28),
            (31, 0, 1 << 31),
        ] {
            let big = with_window(&f, log, mantissa);
            match decode_block(codec, &big, 1, 3000, None) {
                Err(DecodeFailure::Window { declared: d, max }) => {
                    assert_eq!((d, max), (declared, 1 << 27));
                }
                other => panic!("window 2^{log} + {mantissa}/8: {other:?}"),
            }
        }
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
