//! The index's checks: block and record tables against the blocks, fillers, and the key
//! order (§6, §13.1); and the view of the index that names the samples a finding affects.

use super::*;

/// What the index tells about a shard, for naming the samples a finding affects.
pub(super) struct IndexView<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) layout: IndexLayout,
    pub(super) first_ordinal: u64,
    pub(super) trusted: bool,
    /// The trailer's sum of record lengths.
    pub(super) raw_bytes: u64,
}

impl IndexView<'_> {
    pub(super) fn keys(&self, first: u32, count: u32) -> Vec<String> {
        if !self.trusted {
            return Vec::new();
        }
        let mut keys = Vec::new();
        let end = first.saturating_add(count).min(self.layout.record_count);
        for local in first..end {
            if keys.len() == 3 {
                keys.push(format!("... {} more", end - local));
                break;
            }
            if let Some(k) = self.key(local) {
                keys.push(String::from_utf8_lossy(k).into_owned());
            }
        }
        keys
    }

    pub(super) fn record(&self, local: u32) -> Option<RecordEntry> {
        let at = usize::try_from(self.layout.record_entry_offset(local)).ok()?;
        Some(RecordEntry::decode(
            self.bytes.get(at..at + 32)?.try_into().ok()?,
        ))
    }

    pub(super) fn key(&self, local: u32) -> Option<&[u8]> {
        let start = self.record(local)?.key_offset;
        let end = if local + 1 < self.layout.record_count {
            self.record(local + 1)?.key_offset
        } else {
            self.layout.key_heap_len
        };
        if start >= end || end > self.layout.key_heap_len {
            return None;
        }
        let base = self.layout.key_heap_offset;
        self.bytes
            .get(usize::try_from(base + start).ok()?..usize::try_from(base + end).ok()?)
    }
}

impl Verifier {
    /// Checks the block table against the blocks found by walking, and every record entry,
    /// record and key-order entry.
    pub(super) fn check_tables(
        &mut self,
        path: &Path,
        number: u32,
        view: &IndexView<'_>,
        walked: &[(u64, BlockHeader)],
        along: Option<&mut HashAlong<'_>>,
    ) {
        let shard = Some(number);
        let l = view.layout;
        if walked.len() != l.block_count as usize {
            self.push(
                path.to_path_buf(),
                shard,
                l.index_offset,
                0,
                Defect::mismatch(
                    Structure::Trailer,
                    "block count",
                    format!("{} (trailer)", l.block_count),
                    format!("{} blocks found by walking the data", walked.len()),
                ),
            );
        }
        match along {
            None => {
                for b in 0..l.block_count {
                    self.check_block(path, number, view, walked, b);
                }
            }
            Some(along) => self.check_blocks_along(path, number, view, walked, along),
        }
        let raw: u64 = (0..l.record_count)
            .filter_map(|r| view.record(r))
            .map(|r| r.len)
            .fold(0, u64::saturating_add);
        if raw != view.raw_bytes {
            self.push(
                path.to_path_buf(),
                shard,
                l.trailer_offset + Trailer::RAW_BYTES_FIELD as u64,
                8,
                Defect::mismatch(
                    Structure::Trailer,
                    "raw byte count",
                    format!("{raw} (sum of record lengths)"),
                    view.raw_bytes,
                ),
            );
        }
    }

    /// Checks every block from the caches a piece of the hash just filled, while `along`
    /// hashes the next piece, rather than from memory a second time.
    fn check_blocks_along(
        &mut self,
        path: &Path,
        number: u32,
        view: &IndexView<'_>,
        walked: &[(u64, BlockHeader)],
        along: &mut HashAlong<'_>,
    ) {
        let mut hashed: Vec<u32> = Vec::new();
        for b in 0..view.layout.block_count {
            // A damaged entry may point past the end; the hash stops there.
            let block_end = block_entry(view, b).map_or(0, |e| {
                e.offset
                    .saturating_add(BLOCK_HEADER_LEN as u64)
                    .saturating_add(e.stored_len)
                    .min(along.len())
            });
            if block_end > along.hashed() {
                // Hashes at least up to `block_end`, so the blocks waiting are hashed.
                let ready = std::mem::take(&mut hashed);
                along.hash_to_beside(block_end, || {
                    for b in ready {
                        self.check_block(path, number, view, walked, b);
                    }
                });
            }
            hashed.push(b);
        }
        along.hash_to_beside(u64::MAX, || {
            for b in hashed {
                self.check_block(path, number, view, walked, b);
            }
        });
    }

    /// Checks block `b`'s entry against the block found by walking and, when they agree,
    /// its records.
    fn check_block(
        &mut self,
        path: &Path,
        number: u32,
        view: &IndexView<'_>,
        walked: &[(u64, BlockHeader)],
        b: u32,
    ) {
        let shard = Some(number);
        let l = view.layout;
        let at = l.block_entry_offset(b);
        let Some(entry) = block_entry(view, b) else {
            return;
        };
        if let Err(d) = l.check_block(b, &entry) {
            self.push_defect(d, path, number, at, BLOCK_ENTRY_LEN as u64);
            return;
        }
        // The walk found blocks in ascending offset order.
        let walked_block = walked
            .binary_search_by_key(&entry.offset, |(o, _)| *o)
            .ok()
            .and_then(|i| walked.get(i));
        match walked_block {
            Some((_, h)) => {
                let agrees = h.block_number == b
                    && h.stored_len == entry.stored_len
                    && h.raw_len == entry.raw_len
                    && h.record_count == entry.record_count
                    && h.first_ordinal == view.first_ordinal + u64::from(entry.first_record);
                if !agrees {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        at,
                        32,
                        Defect::mismatch(
                            Structure::BlockEntry { block: b },
                            "",
                            "the values in the block's header",
                            "different values",
                        ),
                    );
                } else {
                    self.check_block_records(path, number, view, b, &entry, h);
                }
            }
            None => self.push(
                path.to_path_buf(),
                shard,
                at,
                32,
                Defect::invalid(
                    Structure::BlockEntry { block: b },
                    "offset",
                    "the offset of a block header",
                    entry.offset,
                ),
            ),
        }
    }

    pub(super) fn check_block_records(
        &mut self,
        path: &Path,
        number: u32,
        view: &IndexView<'_>,
        b: u32,
        entry: &BlockEntry,
        h: &BlockHeader,
    ) {
        let shard = Some(number);
        let l = view.layout;
        let payload_offset = entry.offset + BLOCK_HEADER_LEN as u64;
        let stored = view
            .bytes
            .get(payload_offset as usize..(payload_offset + h.stored_len) as usize)
            .unwrap_or_default();
        let payload_ok = self.proven || checksum::crc32(stored) == h.payload_crc;
        let decoded;
        let raw: Option<&[u8]> = match h.codec {
            Codec::Stored => Some(stored),
            Codec::Zstd | Codec::ZstdDictionary if self.mode == VerifyMode::Deep && payload_ok => {
                if h.raw_len > self.limits.max_block_bytes {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        entry.offset,
                        0,
                        Defect::invalid(
                            Structure::Block { block: b },
                            "decoded size",
                            format!("at most {} (the limit)", self.limits.max_block_bytes),
                            h.raw_len,
                        ),
                    );
                    None
                } else {
                    let decoded_block = codec::decode_block(
                        h.codec,
                        stored,
                        h.record_count,
                        h.raw_len,
                        self.dictionary.as_ref(),
                    );
                    match decoded_block {
                        Ok(d) => {
                            decoded = d;
                            Some(decoded.as_slice())
                        }
                        Err(e) => {
                            self.push(
                                path.to_path_buf(),
                                shard,
                                payload_offset,
                                h.stored_len,
                                Defect::undecodable(
                                    Structure::BlockFrame { block: b },
                                    format!("{} decoded bytes", h.raw_len),
                                    e,
                                ),
                            );
                            None
                        }
                    }
                }
            }
            Codec::Zstd | Codec::ZstdDictionary => None,
        };
        let mut prev_end = 0u64;
        for local in entry.first_record..entry.first_record + entry.record_count {
            let entry_at = l.record_entry_offset(local);
            let Some(r) = view.record(local) else {
                continue;
            };
            let next_key = if local + 1 < l.record_count {
                view.record(local + 1).map(|n| n.key_offset)
            } else {
                None
            };
            let ordinal = view.first_ordinal + u64::from(local);
            // The key is spelled out only for a finding: most records have none.
            let affects = |v: &mut Verifier| {
                let key = view
                    .key(local)
                    .filter(|_| view.trusted)
                    .map(|k| String::from_utf8_lossy(k).into_owned());
                v.affects(Some([ordinal, ordinal]), key.into_iter().collect())
            };
            if let Err(d) = l.check_record(local, &r, entry, next_key) {
                self.push_defect(d, path, number, entry_at, RECORD_ENTRY_LEN as u64);
                affects(self);
                continue;
            }
            if r.offset < prev_end {
                self.push(
                    path.to_path_buf(),
                    shard,
                    entry_at,
                    8,
                    Defect::invalid(
                        Structure::Record {
                            record: Some(u64::from(local)),
                        },
                        "offset",
                        format!("at least {prev_end} (after the previous record)"),
                        r.offset,
                    ),
                );
                affects(self);
            }
            let Some(raw) = raw else {
                prev_end = r.offset + r.len;
                continue;
            };
            // Where a defect in this record shows in the file: the record itself when stored,
            // the block payload when compressed.
            let place = if h.codec == Codec::Stored {
                payload_offset + r.offset
            } else {
                payload_offset
            };
            let place_len = if h.codec == Codec::Stored {
                r.len
            } else {
                h.stored_len
            };
            if r.offset > prev_end {
                self.check_filler(
                    path,
                    number,
                    raw,
                    prev_end,
                    r.offset,
                    (payload_offset, h),
                    || format!("before record {local}"),
                );
            }
            let record = raw
                .get(r.offset as usize..(r.offset + r.len) as usize)
                .unwrap_or_default();
            let crc = if self.proven {
                r.crc
            } else {
                checksum::crc32(record)
            };
            if crc != r.crc {
                self.push(
                    path.to_path_buf(),
                    shard,
                    place,
                    place_len,
                    Defect::crc(
                        Structure::Record {
                            record: Some(u64::from(local)),
                        },
                        r.crc,
                        crc,
                    ),
                );
                affects(self);
            } else {
                match RecordView::parse(record) {
                    Ok(v) if view.key(local) != Some(v.key_bytes()) => {
                        self.push(
                            path.to_path_buf(),
                            shard,
                            place,
                            place_len,
                            Defect::mismatch(
                                Structure::Record {
                                    record: Some(u64::from(local)),
                                },
                                "key",
                                "the key in the index",
                                format!("{:?}", v.key()),
                            ),
                        );
                        affects(self);
                    }
                    Ok(_) => {}
                    Err(d) => {
                        let d = d.of(Structure::Record {
                            record: Some(u64::from(local)),
                        });
                        self.push_defect(d, path, number, place, place_len);
                        affects(self);
                    }
                }
            }
            prev_end = r.offset + r.len;
        }
        if let Some(raw) = raw {
            if prev_end < raw.len() as u64 {
                self.check_filler(
                    path,
                    number,
                    raw,
                    prev_end,
                    raw.len() as u64,
                    (payload_offset, h),
                    || format!("after the last record of block {b}"),
                );
            }
        }
    }

    /// Bytes of a decoded payload between records (or after the last) must be one filler
    /// (§6.4). Located in the file for stored blocks, at the payload for compressed ones.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_filler(
        &mut self,
        path: &Path,
        number: u32,
        raw: &[u8],
        from: u64,
        to: u64,
        block: (u64, &BlockHeader),
        place: impl FnOnce() -> String,
    ) {
        let (payload_offset, h) = block;
        let ok = matches!(format::record::item_at(raw, from as usize), Ok(PayloadItem::Filler(n)) if n == to - from);
        if !ok {
            let place = place();
            let (offset, len, place) = if h.codec == Codec::Stored {
                (payload_offset + from, to - from, place)
            } else {
                (
                    payload_offset,
                    h.stored_len,
                    format!("{place}, at decoded offset {from}"),
                )
            };
            self.push(
                path.to_path_buf(),
                Some(number),
                offset,
                len,
                Defect::invalid(
                    Structure::Filler,
                    "",
                    format!("a filler of {} bytes {place}", to - from),
                    "other bytes",
                ),
            );
        }
    }

    pub(super) fn check_key_order(
        &mut self,
        path: &Path,
        number: u32,
        view: &IndexView<'_>,
        info: Option<&ShardInfo>,
    ) {
        let l = view.layout;
        let n = l.record_count as usize;
        let mut seen = vec![false; n];
        let mut prev: Option<&[u8]> = None;
        for rank in 0..l.record_count {
            let at = l.key_order_entry_offset(rank);
            let local = copy_array::<4>(view.bytes, at);
            let local = u32::from_le_bytes(local);
            let Some(slot) = seen.get_mut(local as usize).filter(|s| !**s) else {
                self.push(
                    path.to_path_buf(),
                    Some(number),
                    at,
                    4,
                    Defect::invalid(
                        Structure::KeyOrderEntry { rank },
                        "",
                        format!("a record below {n} listed once"),
                        local,
                    ),
                );
                continue;
            };
            *slot = true;
            let key = view.key(local);
            if let (Some(p), Some(k)) = (prev, key) {
                if p >= k {
                    self.push(
                        path.to_path_buf(),
                        Some(number),
                        at,
                        4,
                        Defect::invalid(
                            Structure::KeyOrderEntry { rank },
                            "",
                            "keys in strictly ascending order",
                            format!(
                                "{:?} after {:?}",
                                String::from_utf8_lossy(k),
                                String::from_utf8_lossy(p)
                            ),
                        ),
                    );
                }
            }
            prev = key.or(prev);
        }
        let Some(info) = info.filter(|_| view.trusted) else {
            return;
        };
        let key_at_rank = |rank: u32| {
            let at = usize::try_from(l.key_order_entry_offset(rank)).ok()?;
            let local = u32::from_le_bytes(
                view.bytes
                    .get(at..at + KEY_ORDER_ENTRY_LEN)?
                    .try_into()
                    .ok()?,
            );
            view.key(local)
                .map(|k| String::from_utf8_lossy(k).into_owned())
        };
        for (what, want, rank) in [
            ("min_key", &info.min_key, 0),
            ("max_key", &info.max_key, l.record_count - 1),
        ] {
            if let Some(got) = key_at_rank(rank) {
                if &got != want {
                    self.push(
                        path.to_path_buf(),
                        Some(number),
                        l.key_order_entry_offset(rank),
                        4,
                        Defect::mismatch(
                            Structure::ManifestShard { shard: number },
                            what,
                            format!("{got:?} (shard key index)"),
                            format!("{want:?}"),
                        ),
                    );
                }
            }
        }
    }
}

pub(super) fn block_entry(view: &IndexView<'_>, b: u32) -> Option<BlockEntry> {
    if b >= view.layout.block_count {
        return None;
    }
    let at = usize::try_from(view.layout.block_entry_offset(b)).ok()?;
    Some(BlockEntry::decode(
        view.bytes.get(at..at + BLOCK_ENTRY_LEN)?.try_into().ok()?,
    ))
}

/// The `N` bytes at `offset`, or zeros (which no structure decodes from) past the end.
pub(super) fn copy_array<const N: usize>(bytes: &[u8], offset: u64) -> [u8; N] {
    crate::format::le::array_at_offset(bytes, offset).unwrap_or([0; N])
}
