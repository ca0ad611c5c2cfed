//! The records of one decoded block, taken one by one, and checked against the record
//! table as they are taken when the shard's index is at hand.

use std::path::Path;

use crate::codec::dictionary::DecodingDictionary;
use crate::format::block::{BlockHeader, BLOCK_HEADER_LEN};
use crate::format::record::PayloadItem;
use crate::format::Codec;
use crate::read::BlockBytes;
use crate::{Defect, Error, Location, Result, Structure};

/// The records of one decoded block, taken one by one (fillers skipped).
pub(crate) struct BlockCursor {
    data: BlockBytes,
    pos: usize,
    ordinal: u64,
    left: u32,
    pub(super) shard: u32,
    /// The block's number.
    pub(super) block: u32,
    /// Where in the decoded payload the record taken last starts.
    pub(super) last_offset: u64,
    /// The shard, opened with its index, when the records walked are to be checked against
    /// the record table as they are taken.
    table: Option<std::sync::Arc<crate::Shard>>,
    /// Shard offset of the block's payload, for error locations.
    payload_offset: u64,
}

impl BlockCursor {
    /// Decodes a block read by a [`ShardScanner`] (at shard offset `rel`).
    pub(crate) fn decode(
        path: &Path,
        shard: u32,
        rel: u64,
        h: &BlockHeader,
        payload: &[u8],
        dictionary: Option<&DecodingDictionary>,
        max: u64,
    ) -> Result<BlockCursor> {
        let data: BlockBytes = match h.codec {
            Codec::Stored => std::sync::Arc::new(payload.to_vec()),
            Codec::Zstd | Codec::ZstdDictionary => {
                if h.raw_len > max {
                    return Err(crate::ErrorKind::LimitExceeded {
                        location: Location::shard(path, shard, rel),
                        limit: "decoded block size",
                        max,
                        got: h.raw_len,
                    }
                    .into());
                }
                let payload_offset = rel + BLOCK_HEADER_LEN as u64;
                crate::codec::decode_block(h.codec, payload, h.record_count, h.raw_len, dictionary)
                    .map_err(|e| {
                        Error::corrupt(
                            Location::shard(path, shard, payload_offset),
                            Defect::undecodable(
                                Structure::BlockFrame {
                                    block: h.block_number,
                                },
                                format!("{} decoded bytes", h.raw_len),
                                e,
                            ),
                        )
                    })
                    .map(std::sync::Arc::new)?
            }
        };
        Ok(BlockCursor::new(data, h, shard, rel))
    }

    /// A cursor over a block's decoded payload `data`, the block at shard offset `rel`.
    pub(crate) fn new(data: BlockBytes, h: &BlockHeader, shard: u32, rel: u64) -> BlockCursor {
        BlockCursor {
            data,
            pos: 0,
            ordinal: h.first_ordinal,
            left: h.record_count,
            shard,
            block: h.block_number,
            last_offset: 0,
            table: None,
            payload_offset: rel + BLOCK_HEADER_LEN as u64,
        }
    }

    /// Checks every record taken against `shard`'s record table as it is taken.
    pub(crate) fn checked_against(mut self, shard: std::sync::Arc<crate::Shard>) -> Self {
        self.table = Some(shard);
        self
    }

    /// True when the records taken are checked against the record table as they are taken;
    /// otherwise the caller logs them in a [`WalkLog`].
    pub(crate) fn is_checked(&self) -> bool {
        self.table.is_some()
    }

    /// The next sample, or `None` after the last; checks the block holds exactly as many
    /// records as its header counts.
    pub(crate) fn next_sample(&mut self, path: &Path) -> Result<Option<crate::Sample>> {
        let at_block = |c: &BlockCursor| Location::shard(path, c.shard, c.payload_offset);
        while self.pos < (*self.data).as_ref().len() {
            let at = self.pos;
            match crate::format::record::item_at((*self.data).as_ref(), at)
                .map_err(|d| d.at(path, Some(self.shard), self.payload_offset))?
            {
                PayloadItem::Filler(n) => self.pos += n as usize,
                PayloadItem::Record(n) => {
                    if self.left == 0 {
                        return Err(Error::corrupt(
                            at_block(self),
                            Defect::mismatch(
                                Structure::Block { block: self.block },
                                "records",
                                "as many records as the block header counts",
                                "more",
                            ),
                        ));
                    }
                    self.pos += n as usize;
                    self.left -= 1;
                    self.ordinal += 1;
                    let sample = crate::Sample::from_block(
                        self.ordinal - 1,
                        self.shard,
                        self.data.clone(),
                        at..at + n as usize,
                    )
                    .map_err(|d| d.at(path, Some(self.shard), self.payload_offset))?;
                    self.last_offset = at as u64;
                    if let Some(shard) = &self.table {
                        let local = (sample.ordinal() - shard.header().first_ordinal) as u32;
                        shard.check_walked(
                            local,
                            self.block,
                            at as u64,
                            sample.record_bytes(),
                            sample.key().as_bytes(),
                        )?;
                    }
                    return Ok(Some(sample));
                }
            }
        }
        if self.left > 0 {
            return Err(Error::corrupt(
                at_block(self),
                Defect::mismatch(
                    Structure::Block { block: self.block },
                    "records",
                    "as many records as the block header counts",
                    "fewer",
                ),
            ));
        }
        Ok(None)
    }
}
