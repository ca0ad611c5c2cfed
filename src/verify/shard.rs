//! One shard's checks: its digest, header, dictionary, padding and index CRC, against the
//! manifest (§13.1).

use super::*;

impl Verifier {
    pub(super) fn check_shard(
        &mut self,
        path: &Path,
        number: u32,
        info: Option<&ShardInfo>,
        manifest: Option<&Manifest>,
    ) {
        // Stays None unless this shard's trailer is read.
        let running_raw_total = self.raw_total.take();
        let shard = Some(number);
        let ordinals = info.map(|i| {
            [
                i.first_ordinal,
                i.first_ordinal.saturating_add(i.samples).saturating_sub(1),
            ]
        });
        // Follows symbolic links, as the reader does: a shard may live on another volume.
        let len = match fs::metadata(path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                self.complete = false;
                self.push(
                    path.to_path_buf(),
                    shard,
                    0,
                    0,
                    Defect::invalid(
                        Structure::ShardFile,
                        "",
                        "a regular file",
                        "not a regular file",
                    ),
                );
                return;
            }
            Err(e) => {
                self.complete = false;
                self.push(
                    path.to_path_buf(),
                    shard,
                    0,
                    info.map_or(0, |i| i.size),
                    Defect::missing_because(Structure::ShardFile, "present", e),
                );
                self.affects(ordinals, Vec::new());
                return;
            }
        };
        if let Some(info) = info {
            if len != info.size {
                self.complete = false;
                self.push(
                    path.to_path_buf(),
                    shard,
                    len.min(info.size),
                    info.size.abs_diff(len),
                    crate::error::shard_length(info.size, len),
                );
            }
        }
        let bytes = match ShardBytes::map(path) {
            Ok(b) => b,
            Err(e) => return self.push_error(&e, shard, 0),
        };
        bytes.advise(AccessPattern::Sequential);
        self.proven = false;
        if self.mode != VerifyMode::Quick {
            self.bytes_checked += len;
            // The pass that reads every byte goes front to back in the profile's large
            // reads (physical order, §13.1); the structural checks after it find the
            // bytes in the page cache.
            let chunk = manifest
                .and_then(|m| crate::MediaProfile::from_name(&m.layout.profile))
                .unwrap_or_default()
                .read_chunk;
            let spinning = reads_in_physical_order(manifest);
            let expected = info.map(|i| i.blake3.as_str());
            let speculate = expected.is_some()
                && self.mode == VerifyMode::Full
                && !spinning
                && self.trace.is_none();
            let (digest, guess) = if speculate {
                // On a random-access medium the structural checks run as if the shard were
                // proven while it is hashed, on the same cores; they run again from scratch
                // (every CRC recomputed) only if the digest turns out not to match.
                let mut guess = self.fresh();
                guess.proven = true;
                // As taken from this verifier: set again only once the trailer is read.
                guess.raw_total = None;
                let check = |guess: &mut Verifier, along: Option<&mut HashAlong<'_>>| {
                    let contents = (info, manifest);
                    guess.check_contents(path, number, &bytes, contents, running_raw_total, along);
                };
                let mut along = HashAlong::new(&bytes);
                if manifest.is_some_and(|m| m.layout.compression == "none") {
                    // Uncompressed records are read by the checks (their fillers, mostly):
                    // they follow the hash piece by piece and find the bytes in the caches.
                    check(&mut guess, Some(&mut along));
                } else {
                    // Compressed blocks are only their index entries to the checks.
                    along.hash_to_beside(u64::MAX, || check(&mut guess, None));
                }
                (along.finish(), Some(guess))
            } else if self.trace.is_some() {
                match crate::read::window::hash_file(path, number, chunk, self.trace.clone()) {
                    Ok(d) => (d, None),
                    Err(e) => return self.push_error(&e, shard, 0),
                }
            } else {
                // Hash the map in place, on every core, without copying it through read().
                // A disk that must be read in physical order gets it one read chunk at a
                // time, each asked for whole before it is hashed.
                let mut hasher = blake3::Hasher::new();
                if spinning {
                    let mut at = 0usize;
                    while at < bytes.len() {
                        let end = bytes.len().min(at + chunk as usize);
                        bytes.will_need(at as u64, (end - at) as u64);
                        checksum::blake3_update(
                            &mut hasher,
                            bytes.get(at..end).unwrap_or_default(),
                        );
                        at = end;
                    }
                } else {
                    checksum::blake3_update(&mut hasher, &bytes);
                }
                (hasher.finalize().to_hex().to_string(), None)
            };
            if let Some(expected) = expected {
                if digest != expected {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        0,
                        len,
                        Defect::digest(Structure::ShardFile, expected, digest),
                    );
                } else if let Some(guess) = guess {
                    self.adopt(guess);
                    return;
                } else {
                    // Deep recomputes everything anyway; Full trusts a proven shard's CRCs.
                    self.proven = self.mode == VerifyMode::Full;
                }
            }
        }
        self.check_contents(
            path,
            number,
            &bytes,
            (info, manifest),
            running_raw_total,
            None,
        );
    }

    /// The checks of §13.1 after the digest: header, dictionary, padding, trailer, index,
    /// block walk and tables, with `self.proven` saying whether the CRCs are known good, and
    /// `along` hashing the shard as the block checks go through it.
    fn check_contents(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        (info, manifest): (Option<&ShardInfo>, Option<&Manifest>),
        running_raw_total: Option<u64>,
        along: Option<&mut HashAlong<'_>>,
    ) {
        let shard = Some(number);
        let len = bytes.len() as u64;
        let ordinals = info.map(|i| {
            [
                i.first_ordinal,
                i.first_ordinal.saturating_add(i.samples).saturating_sub(1),
            ]
        });
        let header = self.check_header(path, number, bytes, info, manifest);
        let default_align = manifest.map_or(4096, |m| m.layout.align);
        let align = u64::from(header.as_ref().map_or(default_align, |h| h.align));
        let data_offset = header.as_ref().map_or_else(
            || align_up(HEADER_LEN as u64, align).unwrap_or(HEADER_LEN as u64),
            |h| h.data_offset(),
        );
        let dictionary_end =
            HEADER_LEN as u64 + header.as_ref().map_or(0, |h| u64::from(h.dictionary_len));
        self.dictionary = None;
        if self.mode != VerifyMode::Quick {
            if let Some(h) = header.as_ref().filter(|h| h.dictionary_len > 0) {
                self.check_dictionary(path, number, bytes, h);
            }
            self.check_zero(
                path,
                number,
                bytes,
                dictionary_end,
                data_offset,
                Structure::HeaderPadding,
            );
        }
        let Some(trailer_offset) = len
            .checked_sub(TRAILER_LEN as u64)
            .filter(|&t| t >= HEADER_LEN as u64)
        else {
            self.push(
                path.to_path_buf(),
                shard,
                len,
                0,
                Defect::truncated(
                    Structure::ShardFile,
                    (HEADER_LEN + TRAILER_LEN) as u64,
                    Some(len),
                ),
            );
            self.affects(ordinals, Vec::new());
            return;
        };
        let trailer = match Trailer::decode(&copy_array(bytes, trailer_offset)) {
            Ok(t) => Some(t),
            Err(d) => {
                self.push_defect(d, path, number, trailer_offset, TRAILER_LEN as u64);
                None
            }
        };
        self.raw_total = match (&trailer, running_raw_total) {
            (Some(t), Some(total)) => Some(total.saturating_add(t.raw_bytes)),
            _ => None,
        };
        let layout = match (&header, &trailer) {
            (Some(h), Some(t)) => match IndexLayout::new(h, t, len) {
                Ok(l) => Some(l),
                Err(d) => {
                    self.push_defect(d, path, number, trailer_offset, 0);
                    None
                }
            },
            _ => None,
        };
        if let (Some(t), Some(i)) = (&trailer, info) {
            if t.raw_bytes != i.raw_bytes {
                self.push(
                    path.to_path_buf(),
                    shard,
                    trailer_offset + Trailer::RAW_BYTES_FIELD as u64,
                    8,
                    Defect::mismatch(
                        Structure::Trailer,
                        "raw byte count",
                        format!("{} (manifest)", i.raw_bytes),
                        t.raw_bytes,
                    ),
                );
            }
            if t.record_count != i.samples {
                self.push(
                    path.to_path_buf(),
                    shard,
                    trailer_offset + Trailer::RECORD_COUNT_FIELD as u64,
                    8,
                    Defect::mismatch(
                        Structure::Trailer,
                        "record count",
                        format!("{} (manifest)", i.samples),
                        t.record_count,
                    ),
                );
            }
        }
        if self.mode == VerifyMode::Quick {
            return;
        }
        let index_ok = match (&layout, &trailer) {
            (Some(l), Some(t)) => self.check_index_crc(path, number, bytes, l, t),
            _ => false,
        };
        let view = layout.map(|layout| IndexView {
            bytes,
            layout,
            first_ordinal: header.as_ref().map_or(0, |h| h.first_ordinal),
            trusted: index_ok,
            raw_bytes: trailer.as_ref().map_or(0, |t| t.raw_bytes),
        });
        let walk_end = layout.map_or(trailer_offset, |l| l.index_offset);
        let blocks = self.walk_blocks(
            path,
            number,
            bytes,
            data_offset,
            walk_end,
            align,
            header.as_ref(),
            view.as_ref(),
        );
        if let Some(view) = &view {
            self.check_tables(path, number, view, &blocks, along);
            self.check_key_order(path, number, view, info);
        }
    }

    /// Checks the shard's dictionary against its CRC, and prepares it for Deep mode.
    pub(super) fn check_dictionary(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        h: &ShardHeader,
    ) {
        let start = h.dictionary_offset();
        let len = u64::from(h.dictionary_len);
        let dictionary = bytes
            .get(start as usize..(start + len) as usize)
            .unwrap_or_default();
        let crc = checksum::crc32(dictionary);
        if crc != h.dictionary_crc {
            self.push(
                path.to_path_buf(),
                Some(number),
                start,
                len,
                Defect::crc(Structure::Dictionary, h.dictionary_crc, crc),
            );
            return;
        }
        if self.mode == VerifyMode::Deep {
            self.dictionary = DecodingDictionary::new(dictionary);
            if self.dictionary.is_none() {
                self.push(
                    path.to_path_buf(),
                    Some(number),
                    start,
                    len,
                    Defect::undecodable(
                        Structure::Dictionary,
                        "a zstd dictionary",
                        "bytes zstd cannot load",
                    ),
                );
            }
        }
    }

    pub(super) fn check_header(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        info: Option<&ShardInfo>,
        manifest: Option<&Manifest>,
    ) -> Option<ShardHeader> {
        let shard = Some(number);
        let header = match ShardHeader::decode(&copy_array(bytes, 0)) {
            Ok(h) => h,
            Err(d) => {
                self.push_defect(d, path, number, 0, HEADER_LEN as u64);
                return None;
            }
        };
        self.headers.0 += 1;
        self.headers.1 += u64::from(header.dictionary_len > 0);
        let mut mismatch = |offset: usize, field: &'static str, want: String, got: String| {
            if want != got {
                self.push(
                    path.to_path_buf(),
                    shard,
                    offset as u64,
                    0,
                    Defect::mismatch(Structure::ShardHeader, field, want, got),
                );
            }
        };
        mismatch(
            header::SHARD_NUMBER_OFFSET,
            "shard number",
            number.to_string(),
            header.shard_number.to_string(),
        );
        if let (Some(info), Some(m)) = (info, manifest) {
            if header.version() > m.version() {
                // A 1.1 shard (one with a dictionary) needs a 1.1 manifest (§10).
                mismatch(
                    crate::format::sealed::VERSION_MAJOR_OFFSET,
                    "version",
                    format!("at most {}, the manifest's", m.format_version),
                    format!("{}.{}", header.version().0, header.version().1),
                );
            }
            mismatch(
                header::ARCHIVE_ID_OFFSET,
                "archive id (a shard from another archive?)",
                m.archive_id.clone(),
                hex(&header.archive_id),
            );
            mismatch(
                header::FIRST_ORDINAL_OFFSET,
                "first ordinal",
                info.first_ordinal.to_string(),
                header.first_ordinal.to_string(),
            );
            mismatch(
                header::ALIGN_OFFSET,
                "alignment",
                m.layout.align.to_string(),
                header.align.to_string(),
            );
            mismatch(
                header::BLOCK_BYTES_OFFSET,
                "block size",
                m.layout.block_size.to_string(),
                header.block_bytes.to_string(),
            );
            mismatch(
                header::SHARD_BYTES_OFFSET,
                "shard size",
                m.layout.shard_size.to_string(),
                header.shard_bytes.to_string(),
            );
            mismatch(
                header::CODEC_OFFSET,
                "codec",
                m.layout.compression.clone(),
                header.codec.name().to_string(),
            );
            mismatch(
                header::LEVEL_OFFSET,
                "zstd level",
                m.layout.level.to_string(),
                header.level.to_string(),
            );
            mismatch(
                header::PROFILE_OFFSET,
                "profile",
                m.layout.profile.clone(),
                manifest::profile_name(header.profile).to_string(),
            );
        }
        Some(header)
    }

    pub(super) fn check_index_crc(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        l: &IndexLayout,
        t: &Trailer,
    ) -> bool {
        let index_end = l.index_offset + l.index_len;
        let region = bytes
            .get(l.index_offset as usize..index_end as usize)
            .unwrap_or_default();
        let crc = checksum::crc32(region);
        let ok = crc == t.index_crc;
        if !ok {
            self.push(
                path.to_path_buf(),
                Some(number),
                l.index_offset,
                l.index_len,
                Defect::crc(Structure::Index, t.index_crc, crc),
            );
        }
        self.check_zero(
            path,
            number,
            bytes,
            index_end,
            l.trailer_offset,
            Structure::IndexPadding,
        );
        ok
    }
}
