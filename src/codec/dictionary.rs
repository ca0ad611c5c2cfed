//! Shard dictionaries (§5.5): a zstd dictionary trained on a shard's first records, and
//! blocks whose records are compressed one frame each with it, so that a random read
//! decodes one record instead of a whole block while keeping most of a block's ratio.
//!
//! A codec-2 payload is a frame table, `record_count` u32 end offsets of the frames
//! measured from the end of the table, then the frames, one per record, in record order.

use std::cell::RefCell;
use std::io;

use super::DecodeFailure;
use crate::format::le;
use crate::limits::EAGER_ALLOC_BYTES;

/// Length of one frame-table entry.
pub(crate) const FRAME_ENTRY_LEN: usize = 4;

/// Largest record a codec-2 frame may hold: a reader allocates a frame's declared size up
/// front, so it is bounded like every up-front allocation (a block with a larger record is
/// stored instead).
pub(crate) const MAX_FRAME_CONTENT: u64 = EAGER_ALLOC_BYTES;

/// The writer trains a shard's dictionary on at most this many of its first records…
pub(crate) const TRAINING_RECORDS: usize = 2048;
/// …and at most this many of their bytes: enough for zstd's trainer to find what repeats
/// in small text and JSON records (a 32 KiB dictionary trained on 2,000 such records came
/// within 1% of one trained on 5,000).
pub(crate) const TRAINING_BYTES: usize = 4 << 20;
/// Fewer records than this give the trainer too little to learn from.
pub(crate) const MIN_TRAINING_RECORDS: usize = 64;
/// Records this long or longer on average compress well in whole blocks; a dictionary
/// pays off for small ones only.
pub(crate) const MAX_MEAN_RECORD: usize = 16 << 10;

/// FASTCOVER's segment size `k` and d-mer size `d`, fixed. zstd's default trainer
/// searches four values of `k`, compressing a held-out quarter of the records with each
/// candidate, which took 0.3 s of a shard's packing; at a fixed `k` training takes a fifth
/// of that, and on the bench's text the dictionary compressed as well (docs/design.md §4).
const FASTCOVER_PARAMETERS: (u32, u32) = (200, 8);

/// Smallest block target in a shard with a dictionary: a random read decodes one record
/// whatever the block's size, and larger blocks waste less to alignment padding (half an
/// alignment per block on average: 8% of a 64 KiB block of text compressed to 25 KiB).
pub(crate) const MIN_BLOCK_BYTES: u64 = 1 << 20;

/// Trains a dictionary of at most `size` bytes on `records` (the concatenated records,
/// `lens` their lengths) for frames compressed at `level`, or `None` when the records are
/// too few or too large on average to profit from one, or training fails.
pub(crate) fn train(records: &[u8], lens: &[usize], size: u32, level: i32) -> Option<Vec<u8>> {
    if lens.len() < MIN_TRAINING_RECORDS || records.len() / lens.len() >= MAX_MEAN_RECORD {
        return None;
    }
    crate::io::train_dictionary(records, lens, size as usize, FASTCOVER_PARAMETERS, level)
        .filter(|d| !d.is_empty())
}

/// Compresses a block's records one frame each with a shard dictionary.
pub(crate) struct DictionaryCompressor {
    compressor: zstd::bulk::Compressor<'static>,
    frame: Vec<u8>,
}

impl DictionaryCompressor {
    pub(crate) fn new(level: i32, dictionary: &[u8]) -> io::Result<Self> {
        let mut compressor = zstd::bulk::Compressor::with_dictionary(level, dictionary)?;
        use zstd::zstd_safe::CParameter;
        // The content size lets a reader check each record's length before decoding; the
        // dictionary is the shard's, so its id would only cost 4 bytes per record.
        compressor.set_parameter(CParameter::ContentSizeFlag(true))?;
        compressor.set_parameter(CParameter::DictIdFlag(false))?;
        compressor.set_parameter(CParameter::ChecksumFlag(false))?;
        Ok(DictionaryCompressor {
            compressor,
            frame: Vec::new(),
        })
    }

    /// The codec-2 payload of a block of records laid end to end in `raw` with lengths
    /// `lens`, or `None` when it would not be shorter than `raw` (the block is then
    /// stored) or a frame end would not fit the table's u32.
    pub(crate) fn compress(&mut self, raw: &[u8], lens: &[u32]) -> io::Result<Option<Vec<u8>>> {
        let table_len = lens.len() * FRAME_ENTRY_LEN;
        let mut out = vec![0u8; table_len];
        let mut at = 0usize;
        if lens.iter().any(|&len| u64::from(len) > MAX_FRAME_CONTENT) {
            // A reader decodes a frame in one call into a buffer of its declared size.
            return Ok(None);
        }
        for (i, &len) in lens.iter().enumerate() {
            let record = raw
                .get(at..at + len as usize)
                .ok_or_else(|| io::Error::other("record lengths exceed the block"))?;
            at += len as usize;
            self.frame.clear();
            self.frame
                .reserve(zstd::zstd_safe::compress_bound(record.len()));
            self.compressor
                .compress_to_buffer(record, &mut self.frame)?;
            out.extend_from_slice(&self.frame);
            if out.len() >= raw.len() {
                return Ok(None);
            }
            let Ok(end) = u32::try_from(out.len() - table_len) else {
                return Ok(None);
            };
            le::put(&mut out, i * FRAME_ENTRY_LEN, &end.to_le_bytes());
        }
        Ok((at == raw.len() && out.len() < raw.len()).then_some(out))
    }
}

/// A shard's dictionary, prepared once for decoding.
pub(crate) struct DecodingDictionary(zstd::zstd_safe::DDict<'static>);

impl DecodingDictionary {
    /// Prepares `bytes`, or `None` when zstd cannot load them as a dictionary.
    pub(crate) fn new(bytes: &[u8]) -> Option<Self> {
        zstd::zstd_safe::DDict::try_create(bytes).map(DecodingDictionary)
    }

    /// Checks a shard's dictionary bytes against the header's `crc`, then prepares them;
    /// the error says what was found instead (§5.5).
    pub(crate) fn checked(bytes: &[u8], crc: u32) -> Result<Self, crate::Defect> {
        let structure = crate::Structure::Dictionary;
        let found = crate::format::checksum::crc32(bytes);
        if found != crc {
            return Err(crate::Defect::crc(structure, crc, found));
        }
        Self::new(bytes).ok_or_else(|| {
            crate::Defect::undecodable(structure, "a zstd dictionary", "bytes zstd cannot load")
        })
    }
}

impl std::fmt::Debug for DecodingDictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecodingDictionary")
    }
}

thread_local! {
    static DCTX: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// The frame of record `i` in a codec-2 payload of `record_count` records: its byte range
/// within `payload`.
pub(crate) fn frame_range(
    payload: &[u8],
    record_count: u32,
    i: u32,
) -> Result<std::ops::Range<usize>, DecodeFailure> {
    let table_len = record_count as usize * FRAME_ENTRY_LEN;
    let frames_len = payload
        .len()
        .checked_sub(table_len)
        .ok_or_else(|| DecodeFailure::Zstd("a payload shorter than its frame table".into()))?;
    let end_at = |k: u32| le::u32_at(payload, k as usize * FRAME_ENTRY_LEN) as usize;
    let start = if i == 0 { 0 } else { end_at(i - 1) };
    let end = end_at(i);
    // The frames fill the payload exactly: no bytes hide after the last one.
    let last = record_count.checked_sub(1).map(end_at);
    if last != Some(frames_len) {
        return Err(DecodeFailure::Zstd(format!(
            "a last frame ending at {last:?}, not at the payload's end {frames_len}"
        )));
    }
    if i >= record_count || start >= end || end > frames_len {
        return Err(DecodeFailure::Zstd(format!(
            "frame {i} at {start}..{end} of a frame area of {frames_len} bytes"
        )));
    }
    Ok(table_len + start..table_len + end)
}

/// Decodes one record's frame into exactly `len` bytes appended to `out`.
pub(crate) fn decode_frame(
    frame: &[u8],
    len: u64,
    dictionary: &DecodingDictionary,
    out: &mut Vec<u8>,
) -> Result<(), DecodeFailure> {
    if len > MAX_FRAME_CONTENT {
        return Err(DecodeFailure::Length {
            declared: len,
            got: MAX_FRAME_CONTENT,
        });
    }
    super::check_single_frame(frame, len)?;
    if zstd::zstd_safe::get_dict_id_from_frame(frame).is_some() {
        return Err(DecodeFailure::Zstd(
            "a frame naming a dictionary id (§5.5 forbids it)".into(),
        ));
    }
    let mut decoded = Vec::with_capacity(len as usize);
    let n = DCTX
        .with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = zstd::zstd_safe::DCtx::try_create();
            }
            match slot.as_mut() {
                Some(dctx) => dctx
                    .decompress_using_ddict(&mut decoded, frame, &dictionary.0)
                    .map_err(|code| zstd::zstd_safe::get_error_name(code).to_string()),
                None => Err("cannot create a zstd context".into()),
            }
        })
        .map_err(DecodeFailure::Zstd)?;
    if n as u64 != len {
        return Err(DecodeFailure::Length {
            declared: len,
            got: n as u64,
        });
    }
    if out.is_empty() {
        *out = decoded;
    } else {
        out.extend_from_slice(&decoded);
    }
    Ok(())
}

/// Decodes a whole codec-2 payload of `record_count` records into exactly `raw_len`
/// bytes. Each frame declares its record's length, so no index is needed.
pub(crate) fn decode_block(
    payload: &[u8],
    record_count: u32,
    raw_len: u64,
    dictionary: &DecodingDictionary,
) -> Result<Vec<u8>, DecodeFailure> {
    let mut out = Vec::with_capacity(raw_len.min(crate::limits::EAGER_ALLOC_BYTES) as usize);
    for i in 0..record_count {
        let range = frame_range(payload, record_count, i)?;
        let frame = payload.get(range).unwrap_or_default();
        let len = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(len)) => len,
            _ => return Err(DecodeFailure::Zstd("a frame without a content size".into())),
        };
        if out.len() as u64 + len > raw_len {
            return Err(DecodeFailure::Length {
                declared: raw_len,
                got: out.len() as u64 + len,
            });
        }
        decode_frame(frame, len, dictionary, &mut out)?;
    }
    if out.len() as u64 != raw_len {
        return Err(DecodeFailure::Length {
            declared: raw_len,
            got: out.len() as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> (Vec<u8>, Vec<usize>) {
        let mut data = Vec::new();
        let mut lens = Vec::new();
        for i in 0..500 {
            let r = format!(
                "{{\"id\": {i}, \"text\": \"the quick brown fox {} jumps over the lazy dog {}\"}}",
                i * 7 % 13,
                i % 5
            );
            data.extend_from_slice(r.as_bytes());
            lens.push(r.len());
        }
        (data, lens)
    }

    #[test]
    fn a_block_round_trips_record_by_record_and_whole() {
        let (data, lens) = records();
        let dict = train(&data, &lens, 4096, 3).expect("trains");
        let mut c = DictionaryCompressor::new(3, &dict).unwrap();
        let lens32: Vec<u32> = lens.iter().map(|&l| l as u32).collect();
        let payload = c.compress(&data, &lens32).unwrap().expect("shrinks");
        assert!(
            payload.len() < data.len() / 2,
            "{} of {}",
            payload.len(),
            data.len()
        );
        let d = DecodingDictionary::new(&dict).unwrap();
        let n = lens.len() as u32;
        let mut at = 0;
        for (i, &len) in lens.iter().enumerate() {
            let range = frame_range(&payload, n, i as u32).unwrap();
            let mut out = Vec::new();
            decode_frame(&payload[range], len as u64, &d, &mut out).unwrap();
            assert_eq!(out, &data[at..at + len]);
            at += len;
        }
        assert_eq!(
            decode_block(&payload, n, data.len() as u64, &d).unwrap(),
            data
        );
        assert!(decode_block(&payload, n, data.len() as u64 - 1, &d).is_err());
    }

    #[test]
    fn bad_tables_and_lengths_are_refused() {
        let (data, lens) = records();
        let dict = train(&data, &lens, 4096, 3).unwrap();
        let lens32: Vec<u32> = lens.iter().map(|&l| l as u32).collect();
        let payload = DictionaryCompressor::new(3, &dict)
            .unwrap()
            .compress(&data, &lens32)
            .unwrap()
            .unwrap();
        let n = lens.len() as u32;
        assert!(frame_range(&payload, n, n).is_err(), "past the table");
        assert!(frame_range(&payload[..10], n, 0).is_err(), "table cut");
        let mut trailing = payload.clone();
        trailing.push(0);
        assert!(
            frame_range(&trailing, n, 0).is_err(),
            "bytes after the last frame"
        );
        let mut swapped = payload.clone();
        swapped.copy_within(4..8, 0); // frame 0 ends where frame 1 does
        assert!(frame_range(&swapped, n, 1).is_err(), "empty frame");
        let d = DecodingDictionary::new(&dict).unwrap();
        let range = frame_range(&payload, n, 0).unwrap();
        let mut out = Vec::new();
        assert!(decode_frame(&payload[range], lens[0] as u64 + 1, &d, &mut out).is_err());
    }

    #[test]
    fn a_frame_declaring_a_window_above_2_pow_27_is_refused() {
        let (data, lens) = records();
        let dict = train(&data, &lens, 4096, 3).unwrap();
        let d = DecodingDictionary::new(&dict).unwrap();
        let mut c = DictionaryCompressor::new(3, &dict).unwrap();
        let record = &data[..lens[0]];
        // A record's frame as `compress` makes it, without the check that it shrinks.
        c.frame
            .reserve(zstd::zstd_safe::compress_bound(record.len()));
        c.compressor
            .compress_to_buffer(record, &mut c.frame)
            .unwrap();
        let len = record.len() as u64;
        // A one-frame block: the table's one entry, then the frame.
        let block = |frame: &[u8]| {
            let mut p = (frame.len() as u32).to_le_bytes().to_vec();
            p.extend_from_slice(frame);
            p
        };
        let at_limit = crate::codec::tests::with_window(&c.frame, 27, 0);
        let mut out = Vec::new();
        decode_frame(&at_limit, len, &d, &mut out).unwrap();
        assert_eq!(out, record);
        assert_eq!(decode_block(&block(&at_limit), 1, len, &d).unwrap(), record);
        for (log, declared) in [(28, 1u64 << 28), (31, 1 << 31)] {
            let big = crate::codec::tests::with_window(&c.frame, log, 0);
            let mut out = Vec::new();
            assert!(
                matches!(
                    decode_frame(&big, len, &d, &mut out),
                    Err(DecodeFailure::Window { declared: d, max }) if d == declared && max == 1 << 27
                ),
                "decode_frame, window 2^{log}"
            );
            assert!(out.is_empty());
            assert!(
                matches!(
                    decode_block(&block(&big), 1, len, &d),
                    Err(DecodeFailure::Window { declared: d, max }) if d == declared && max == 1 << 27
                ),
                "decode_block, window 2^{log}"
            );
        }
    }

    #[test]
    fn large_or_few_records_get_no_dictionary() {
        let (data, lens) = records();
        assert!(train(&data[..lens[0] * 10], &lens[..10], 4096, 3).is_none());
        let big = vec![7u8; MAX_MEAN_RECORD * 100];
        assert!(train(&big, &[MAX_MEAN_RECORD; 100], 4096, 3).is_none());
    }

    #[test]
    fn training_is_deterministic_and_stays_inside_its_records() {
        let (data, lens) = records();
        let dict = train(&data, &lens, 4096, 3).expect("trains");
        assert!(!dict.is_empty() && dict.len() <= 4096);
        assert_eq!(train(&data, &lens, 4096, 3), Some(dict));
        // Lengths that claim more bytes than there are train nothing, whatever they say.
        let mut long = lens.clone();
        long[0] += 1;
        assert!(train(&data, &long, 4096, 3).is_none());
        let mut huge = lens;
        huge[1] = usize::MAX;
        assert!(train(&data, &huge, 4096, 3).is_none());
    }
}
