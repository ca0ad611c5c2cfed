//! `repair`: rebuilding damaged files from parity, replacing a file only with bytes that
//! match the digest binding it (§17.6).

use super::*;

/// A byte range that repair rebuilt or could not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RepairedRange {
    /// The file.
    pub file: PathBuf,
    /// First byte.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// For a lost range of a shard whose index still reads: the first and last ordinal of
    /// the samples whose stored bytes it touches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordinals: Option<[u64; 2]>,
}

impl RepairedRange {
    /// The range as a [`Location`] (the same type errors and findings use).
    pub fn location(&self) -> Location {
        Location::file(&self.file, self.offset).len(self.len)
    }
}

/// The samples whose stored bytes (block header and payload) overlap `offset..offset+len`
/// of the shard at `path`, if its header, trailer and index still read.
pub(super) fn samples_in(path: &Path, offset: u64, len: u64) -> Option<[u64; 2]> {
    let shard = crate::Shard::open(path, Limits::default()).ok()?;
    let first_ordinal = shard.header().first_ordinal;
    let end = offset.saturating_add(len);
    let mut hit: Option<[u64; 2]> = None;
    for b in 0..shard.layout().block_count {
        let e = shard.block_entry(b).ok()?;
        let block_end = e.offset + crate::format::block::BLOCK_HEADER_LEN as u64 + e.stored_len;
        if e.offset < end && offset < block_end {
            let first = first_ordinal + u64::from(e.first_record);
            let last = first + u64::from(e.record_count) - 1;
            hit = Some(hit.map_or([first, last], |[a, b]| [a.min(first), b.max(last)]));
        }
    }
    hit
}

/// A damaged file that repair did not write (§17.6 step 4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RefusedFile {
    /// The file, left as it was.
    pub file: PathBuf,
    /// Why it was not written.
    pub reason: String,
}

/// What `repair` did.
#[derive(Clone, Debug, Default, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct RepairReport {
    /// Byte ranges rebuilt byte-identically.
    pub repaired: Vec<RepairedRange>,
    /// Byte ranges that could not be rebuilt.
    pub lost: Vec<RepairedRange>,
    /// Files rewritten (their BLAKE3 checked against the parity file's record).
    pub files_rewritten: Vec<PathBuf>,
    /// Damaged files that were rebuilt but not written, and why: their bytes did not match
    /// the digest that binds them, or no manifest whose root checks binds them. Their
    /// damaged ranges are in `lost`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedFile>,
    /// Per folder: damage seen and what more parity would have been needed.
    pub status: Vec<ParityStatus>,
}

impl RepairReport {
    /// True when nothing is lost and every parity file loaded.
    pub fn complete(&self) -> bool {
        self.lost.is_empty()
            && self.refused.is_empty()
            && self
                .status
                .iter()
                .all(|s| !matches!(s.parity_file, ParityFileState::Unusable { .. }))
    }
}

/// Rebuilds every damaged or missing chunk of the archive at `dir` that its parity allows,
/// byte-identically, replacing damaged files atomically (new file, then rename); reports
/// what it fixed and precisely what is lost.
///
/// A folder whose parity file does not load is no error: its status says
/// [`ParityFileState::Unusable`], it is left as it is, and the other folders are repaired.
/// A volume folder without a parity file, beside others that have one, gets the status
/// [`ParityFileState::NoParity`].
///
/// # Errors
/// The archive has no parity file, or a file cannot be written.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    let _lock = crate::io::ArchiveLock::take(dir)?;
    let folders = parity_folders(dir);
    if folders.is_empty() {
        return Err(ErrorKind::Incomplete {
            path: dir.to_path_buf(),
            reason: format!("no {PARITY_FILE}: protect the archive first (shardpack protect)"),
        }
        .into());
    }
    let mut all = folders;
    if !dir.join(PARITY_FILE).exists() {
        all.extend(volume_folders(dir).filter(|f| !f.join(PARITY_FILE).exists()));
        all.sort();
    }
    let mut report = RepairReport::default();
    // A folder whose parity file does not load is reported and left as it is; the other
    // folders are still repaired (§17.6).
    for folder in all {
        if !folder.join(PARITY_FILE).exists() {
            report.status.push(ParityStatus::without_parity(
                &folder,
                ParityFileState::NoParity,
            ));
            continue;
        }
        match inspect(&folder) {
            Ok(d) => repair_folder(&folder, d, &mut report)?,
            Err(e) => report.status.push(ParityStatus::without_parity(
                &folder,
                ParityFileState::Unusable {
                    error: e.to_string(),
                },
            )),
        }
    }
    Ok(report)
}

pub(super) fn ranges(parity: &Parity, folder: &Path, chunks: &BTreeSet<u64>) -> Vec<RepairedRange> {
    let chunk = parity.chunk();
    let mut out: Vec<RepairedRange> = Vec::new();
    for &i in chunks {
        let Some((f, off)) = parity.locate(i) else {
            continue;
        };
        let file = folder.join(&parity.files[f].name);
        let len = chunk.min(parity.files[f].size.saturating_sub(off)).max(1);
        match out.last_mut() {
            Some(r) if r.file == file && r.offset + r.len == off => r.len += len,
            _ => out.push(RepairedRange {
                file,
                offset: off,
                len,
                ordinals: None,
            }),
        }
    }
    out
}

pub(super) fn repair_folder(folder: &Path, d: Damage, report: &mut RepairReport) -> Result<()> {
    let status = status_of(folder, &d);
    let p = &d.parity;
    let (k, m, layer, n, chunk) = (
        u64::from(p.header.data_layers),
        u64::from(p.header.parity_layers),
        p.header.layer_chunks,
        p.header.data_chunks,
        p.chunk(),
    );
    let (pfile, _) = crate::io::open_regular(&folder.join(PARITY_FILE))?;
    let mut restored: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut lost = BTreeSet::new();
    let columns: BTreeSet<u64> = d.data.iter().map(|i| i % layer).collect();
    for j in columns {
        let erased_data: Vec<u64> = (0..k)
            .map(|r| r * layer + j)
            .filter(|i| d.data.contains(i))
            .collect();
        let good_parity: Vec<u64> = (0..m)
            .filter(|q| !d.parity_chunks.contains(&(q * layer + j)))
            .collect();
        if erased_data.len() as u64 > good_parity.len() as u64 {
            lost.extend(erased_data);
            continue;
        }
        let mut originals = Vec::new();
        for r in 0..k {
            let i = r * layer + j;
            if d.data.contains(&i) {
                continue;
            }
            let mut buf = vec![0u8; chunk as usize];
            if i < n {
                if let Some((f, off)) = p.locate(i) {
                    let len = chunk.min(p.files[f].size.saturating_sub(off)) as usize;
                    if let Some(h) = &d.handles[f] {
                        h.read_exact_at(&mut buf[..len], off).map_err(|e| {
                            Error::io_at(&folder.join(&p.files[f].name), "read", off, e)
                        })?;
                    }
                }
            }
            originals.push((r as usize, buf));
        }
        let mut recovery = Vec::new();
        for q in good_parity {
            let mut buf = vec![0u8; chunk as usize];
            let at = p.parity_chunk_offset(q, j);
            pfile
                .read_exact_at(&mut buf, at)
                .map_err(|e| Error::io_at(&folder.join(PARITY_FILE), "read", at, e))?;
            recovery.push((q as usize, buf));
        }
        let decoded = reed_solomon_simd::decode(k as usize, m as usize, originals, recovery)
            .map_err(|e| {
                Error::corrupt(
                    Location::file(&folder.join(PARITY_FILE), 0),
                    Defect::undecodable(Structure::ParityStripe, "a decodable stripe", e),
                )
            })?;
        for (r, bytes) in decoded {
            let i = r as u64 * layer + j;
            if d.data.contains(&i) {
                if chunk_digest(&bytes) == p.data_digests[i as usize] {
                    restored.insert(i, bytes);
                } else {
                    lost.insert(i);
                }
            }
        }
    }
    // Which files to rewrite: every one that is damaged, truncated, grown or missing, once
    // all its damaged chunks came back.
    let mut todo = Vec::new();
    for (f, file) in p.files.iter().enumerate() {
        let chunks = file.size.div_ceil(chunk).max(1);
        let mine: Vec<u64> = (file.first_chunk..file.first_chunk + chunks)
            .filter(|i| d.data.contains(i))
            .collect();
        if (mine.is_empty() && !d.sizes_differ[f]) || mine.iter().any(|i| lost.contains(i)) {
            continue;
        }
        todo.push((f, mine));
    }
    // What binds each rebuilt file (§17.6 step 4): a shard's BLAKE3 must come from a manifest
    // whose root checks, the folder's own (inspect bound the parity file to it) or the one
    // rebuilt here, which must first hash to the parity header's root and list exactly the
    // file table's files. Until one does, nothing is written.
    let mut bound = d.manifest_checks;
    let mut manifest_bytes = None;
    let mut refuse = |f: usize, mine: &[u64], reason: String, lost: &mut BTreeSet<u64>| {
        lost.extend(mine.iter().copied());
        report.refused.push(RefusedFile {
            file: folder.join(&p.files[f].name),
            reason,
        });
    };
    if let Some(at) = todo
        .iter()
        .position(|(f, _)| p.files[*f].name == MANIFEST_FILE)
    {
        let (f, mine) = todo.remove(at);
        match rebuilt_manifest(folder, &d, f, &mine, &restored) {
            Ok(bytes) => {
                bound = true;
                manifest_bytes = Some((mine, bytes));
            }
            Err(reason) => refuse(f, &mine, reason, &mut lost),
        }
    }
    for (f, mine) in todo {
        if !bound {
            let reason = "not written: no manifest whose root checks binds its BLAKE3 \
                          (manifest.json is damaged and was not rebuilt)"
                .to_string();
            refuse(f, &mine, reason, &mut lost);
            continue;
        }
        let file = &p.files[f];
        let path = folder.join(&file.name);
        let tmp = folder.join(format!("{}{REPAIR_SUFFIX}", file.name));
        let out = crate::io::create_new(&tmp)?;
        let mut sink = std::io::BufWriter::new(out);
        let mut hasher = blake3::Hasher::new();
        let written = rebuilt_pieces(folder, &d, f, &mine, &restored, &mut |piece| {
            hasher.update(piece);
            sink.write_all(piece)
                .map_err(|e| Error::io(&tmp, "write the repaired file", e))
        })
        .and_then(|()| {
            let out = sink
                .into_inner()
                .map_err(|e| Error::io(&tmp, "write the repaired file", e.into_error()))?;
            out.sync_all()
                .map_err(|e| Error::io(&tmp, "sync the repaired file", e))
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if hasher.finalize().to_hex().as_str() != file.blake3 {
            let _ = fs::remove_file(&tmp);
            let reason = format!(
                "not written: the rebuilt bytes do not have the BLAKE3 that binds the file \
                 ({})",
                file.blake3
            );
            refuse(f, &mine, reason, &mut lost);
            continue;
        }
        replace(folder, &tmp, &path)?;
        report.files_rewritten.push(path);
        let fixed: BTreeSet<u64> = mine.into_iter().collect();
        report.repaired.extend(ranges(p, folder, &fixed));
    }
    // The manifest last, as a writer writes it.
    if let Some((mine, bytes)) = manifest_bytes {
        let path = folder.join(MANIFEST_FILE);
        let tmp = folder.join(format!("{MANIFEST_FILE}{REPAIR_SUFFIX}"));
        let written = crate::io::create_new(&tmp).and_then(|mut out| {
            out.write_all(&bytes)
                .and_then(|()| out.sync_all())
                .map_err(|e| Error::io(&tmp, "write the repaired file", e))
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        replace(folder, &tmp, &path)?;
        report.files_rewritten.push(path);
        let fixed: BTreeSet<u64> = mine.into_iter().collect();
        report.repaired.extend(ranges(p, folder, &fixed));
    }
    // With the data whole again, damaged parity is rewritten so that protection is full.
    if lost.is_empty() && (!d.parity_chunks.is_empty() || !p.damaged.is_empty()) {
        let names: Vec<String> = p.files.iter().map(|f| f.name.clone()).collect();
        let id = FolderId {
            archive_id: p.header.archive_id,
            root: p.header.root,
        };
        drop(pfile);
        protect_folder(folder, &names, id, p.chunk(), &|_| m)?;
        report.files_rewritten.push(folder.join(PARITY_FILE));
    }
    let mut lost_ranges = ranges(p, folder, &lost);
    for r in &mut lost_ranges {
        r.ordinals = samples_in(&r.file, r.offset, r.len);
    }
    report.lost.extend(lost_ranges);
    report.status.push(status);
    Ok(())
}

/// Renames the fsynced `tmp` over `path` and makes the rename durable: a file is replaced
/// whole or not at all (§17.6 step 4).
fn replace(folder: &Path, tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = fs::rename(tmp, path) {
        let _ = fs::remove_file(tmp);
        return Err(Error::io(path, "rename the repaired file into place", e));
    }
    sync_dir(folder)
}

/// Feeds the `size` bytes of protected file `f` as repair rebuilds them to `sink`, chunk by
/// chunk: the bytes present (zeros past the file's end, or for a missing file), with every
/// rebuilt chunk of `mine` over its range. Never more than one chunk is held.
fn rebuilt_pieces(
    folder: &Path,
    d: &Damage,
    f: usize,
    mine: &[u64],
    restored: &BTreeMap<u64, Vec<u8>>,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let p = &d.parity;
    let chunk = p.chunk();
    let file = &p.files[f];
    let have = d.handles[f]
        .as_ref()
        .and_then(|h| h.metadata().ok())
        .map_or(0, |m| m.len());
    let mut buf = vec![0u8; chunk as usize];
    let mut off = 0u64;
    while off < file.size {
        let len = chunk.min(file.size - off) as usize;
        let i = file.first_chunk + off / chunk;
        match restored.get(&i).filter(|_| mine.contains(&i)) {
            Some(bytes) => sink(bytes.get(..len).unwrap_or_default())?,
            None => {
                let piece = &mut buf[..len];
                piece.fill(0);
                let present = have.saturating_sub(off).min(len as u64) as usize;
                if let Some(h) = &d.handles[f] {
                    h.read_exact_at(&mut piece[..present], off)
                        .map_err(|e| Error::io_at(&folder.join(&file.name), "read", off, e))?;
                }
                sink(piece)?;
            }
        }
        off += len as u64;
    }
    Ok(())
}

/// The rebuilt `manifest.json` (protected file `f`), if it binds the folder: its BLAKE3 is
/// the file table's, it parses and checks (§11.1), its root is the parity header's, its
/// archive id the header's, and it lists exactly the file table's files (§17.5 rules 4-5).
/// Otherwise why not, for the report.
fn rebuilt_manifest(
    folder: &Path,
    d: &Damage,
    f: usize,
    mine: &[u64],
    restored: &BTreeMap<u64, Vec<u8>>,
) -> std::result::Result<Vec<u8>, String> {
    let p = &d.parity;
    let file = &p.files[f];
    let cap = Limits::DEFAULT.max_manifest_bytes;
    if file.size > cap {
        return Err(format!(
            "not written: the parity file records a manifest of {} bytes, more than the {cap} a \
             manifest may have",
            file.size
        ));
    }
    let mut bytes = Vec::new();
    rebuilt_pieces(folder, d, f, mine, restored, &mut |piece| {
        bytes.extend_from_slice(piece);
        Ok(())
    })
    .map_err(|e| format!("not written: {e}"))?;
    if blake3::hash(&bytes).to_hex().as_str() != file.blake3 {
        return Err(format!(
            "not written: the rebuilt bytes do not have the BLAKE3 that binds the file ({})",
            file.blake3
        ));
    }
    let path = folder.join(MANIFEST_FILE);
    let checked = CheckedManifest::from_bytes(&bytes, &path)
        .map_err(|e| format!("not written: the rebuilt manifest does not check: {e}"))?;
    check_root(p, folder, &checked.manifest)
        .and_then(|()| {
            if checked.manifest.archive_id_bytes() == p.header.archive_id {
                Ok(())
            } else {
                Err(Error::corrupt(
                    Location::file(
                        &folder.join(PARITY_FILE),
                        crate::format::parity::ARCHIVE_ID_OFFSET as u64,
                    ),
                    Defect::mismatch(
                        Structure::ParityHeader,
                        "archive id",
                        checked.manifest.archive_id.clone(),
                        crate::format::hex(&p.header.archive_id),
                    ),
                ))
            }
        })
        .and_then(|()| check_file_table(p, folder, &checked))
        .map_err(|e| {
            format!("not written: the rebuilt manifest does not bind the parity file: {e}")
        })?;
    Ok(bytes)
}
