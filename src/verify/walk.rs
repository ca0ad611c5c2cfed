//! The physical walk over a shard's blocks, resynchronising on sync markers after damage
//! (§13.1).

use super::*;

impl Verifier {
    /// Walks the data region block by block through the block headers alone, as a reader
    /// without an index would, resynchronising on sync markers after damage.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn walk_blocks(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        data_offset: u64,
        end: u64,
        align: u64,
        header: Option<&ShardHeader>,
        view: Option<&IndexView<'_>>,
    ) -> Vec<(u64, BlockHeader)> {
        let shard = Some(number);
        let mut blocks = Vec::new();
        let mut pos = data_offset;
        let mut next_number = 0u32;
        let mut damaged_ranges = 0u32;
        let mut next_ordinal = header.map(|h| h.first_ordinal);
        while pos < end {
            let decoded = if pos + BLOCK_HEADER_LEN as u64 <= end {
                BlockHeader::decode(&copy_array(bytes, pos))
            } else {
                Err(DecodeError::new(
                    0,
                    Defect::truncated(
                        Structure::BlockHeader,
                        BLOCK_HEADER_LEN as u64,
                        Some(end - pos),
                    ),
                ))
            };
            let h = match decoded {
                Ok(h) => h,
                Err(d) => {
                    let resync = find_sync(bytes, pos + align, end, align);
                    self.push_defect(d, path, number, pos, resync - pos);
                    // Naming the samples costs a pass over the block table: done for the first
                    // damaged ranges only, so a hostile shard cannot make it quadratic.
                    damaged_ranges += 1;
                    if let Some(view) = view.filter(|_| damaged_ranges <= 64) {
                        // The damaged blocks are the ones the index places in this range.
                        let lost: Vec<BlockEntry> = (0..view.layout.block_count)
                            .filter_map(|b| {
                                block_entry(view, b).filter(|e| {
                                    view.layout.check_block(b, e).is_ok()
                                        && e.offset >= pos
                                        && e.offset < resync
                                })
                            })
                            .collect();
                        if let (Some(ea), Some(eb)) = (lost.first(), lost.last()) {
                            // check_block bounds both ends by the record count.
                            let first = ea.first_record;
                            let last = eb.first_record + eb.record_count - 1;
                            if last >= first {
                                self.affects(
                                    Some([
                                        view.first_ordinal + u64::from(first),
                                        view.first_ordinal + u64::from(last),
                                    ]),
                                    view.keys(first, last - first + 1),
                                );
                            }
                        }
                    }
                    pos = resync;
                    next_number = u32::MAX;
                    continue;
                }
            };
            let payload = pos + BLOCK_HEADER_LEN as u64;
            let Some(payload_end) = payload.checked_add(h.stored_len).filter(|&e| e <= end) else {
                self.push(
                    path.to_path_buf(),
                    shard,
                    pos,
                    0,
                    Defect::invalid(
                        Structure::Block {
                            block: h.block_number,
                        },
                        "length",
                        format!("a payload ending before byte {end}"),
                        format!("{} bytes", h.stored_len),
                    ),
                );
                pos = find_sync(bytes, pos + align, end, align);
                next_number = u32::MAX;
                continue;
            };
            let ordinals = Some([
                h.first_ordinal,
                h.first_ordinal + u64::from(h.record_count) - 1,
            ]);
            if next_number != u32::MAX && h.block_number != next_number {
                self.push(
                    path.to_path_buf(),
                    shard,
                    pos + block::BLOCK_NUMBER_OFFSET as u64,
                    4,
                    Defect::mismatch(
                        Structure::BlockHeader,
                        "block number",
                        next_number,
                        h.block_number,
                    ),
                );
            }
            if h.shard_number != number {
                self.push(
                    path.to_path_buf(),
                    shard,
                    pos + block::SHARD_NUMBER_OFFSET as u64,
                    4,
                    Defect::mismatch(
                        Structure::BlockHeader,
                        "shard number",
                        number,
                        h.shard_number,
                    ),
                );
            }
            if let Some(sh) = header {
                // A dictionary shard's compressed blocks are all codec 2, no other's are.
                let compressed = sh.compressed_codec();
                if h.codec != Codec::Stored && h.codec != compressed {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        pos + block::CODEC_OFFSET as u64,
                        1,
                        Defect::invalid(
                            Structure::Block {
                                block: h.block_number,
                            },
                            "codec",
                            format!("0 or {} ({})", compressed.to_byte(), compressed.name()),
                            h.codec.to_byte(),
                        ),
                    );
                }
            }
            if let Some(want) = next_ordinal.filter(|_| next_number != u32::MAX) {
                if h.first_ordinal != want {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        pos + block::FIRST_ORDINAL_OFFSET as u64,
                        8,
                        Defect::mismatch(
                            Structure::BlockHeader,
                            "first ordinal",
                            want,
                            h.first_ordinal,
                        ),
                    );
                }
            }
            let stored = bytes
                .get(payload as usize..payload_end as usize)
                .unwrap_or_default();
            // A proven shard's bytes are the writer's: its CRCs only locate damage, and there
            // is none (§13.1).
            let crc = if self.proven {
                h.payload_crc
            } else {
                checksum::crc32(stored)
            };
            if crc != h.payload_crc {
                self.push(
                    path.to_path_buf(),
                    shard,
                    payload,
                    h.stored_len,
                    Defect::crc(
                        Structure::BlockPayload {
                            block: h.block_number,
                        },
                        h.payload_crc,
                        crc,
                    ),
                );
                let keys = view
                    .and_then(|v| {
                        block_entry(v, h.block_number)
                            .map(|e| v.keys(e.first_record, e.record_count))
                    })
                    .unwrap_or_default();
                self.affects(ordinals, keys);
            }
            let next = align_up(payload_end, align).unwrap_or(end).min(end);
            self.check_zero(
                path,
                number,
                bytes,
                payload_end,
                next,
                Structure::BlockPadding,
            );
            blocks.push((pos, h));
            next_number = h.block_number.wrapping_add(1);
            next_ordinal = Some(h.first_ordinal + u64::from(h.record_count));
            pos = next;
        }
        blocks
    }
}

/// The next aligned offset at or after `from` (and before `end`) holding a valid block
/// header, or `end`.
pub(super) fn find_sync(bytes: &[u8], from: u64, end: u64, align: u64) -> u64 {
    let mut pos = from;
    while pos + BLOCK_HEADER_LEN as u64 <= end {
        let at = pos as usize;
        if bytes.get(at..at + 8) == Some(&BLOCK_SYNC[..])
            && BlockHeader::decode(&copy_array(bytes, pos)).is_ok()
        {
            return pos;
        }
        pos += align;
    }
    end
}
