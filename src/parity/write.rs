//! `protect`: the geometry of a folder's parity (§17.2), and writing its parity file from
//! the finished files (§17.4).

use super::*;

/// The most parity [`protect`] adds, as a percentage of the data: ten parity chunks per
/// data chunk.
pub const MAX_PARITY_PERCENT: f64 = 1000.0;

/// Refuses a parity percentage that is not a number from 0 (only when `zero_allowed`,
/// meaning none) to [`MAX_PARITY_PERCENT`].
pub(crate) fn check_percent(percent: f64, zero_allowed: bool) -> Result<()> {
    let low_ok = percent > 0.0 || (zero_allowed && percent == 0.0);
    if low_ok && percent <= MAX_PARITY_PERCENT {
        return Ok(());
    }
    let range = if zero_allowed {
        format!("must be from 0 (none) to {MAX_PARITY_PERCENT}")
    } else {
        format!("must be more than 0 and at most {MAX_PARITY_PERCENT}")
    };
    Err(Error::invalid_input(format!("parity {percent}%"), range))
}

/// How [`protect_with`] protects an archive.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProtectOptions {
    /// Parity as a percentage of the data, more than 0 and at most [`MAX_PARITY_PERCENT`].
    pub percent: f64,
    /// Protect the archive as it is, without verifying it first. Parity then preserves
    /// whatever damage is there: repair can only restore the bytes as they were protected,
    /// and a file that no longer matches its manifest entry makes the parity file unusable
    /// (§17.5 rule 5).
    pub as_is: bool,
}

impl ProtectOptions {
    /// `percent` % of parity, after a full verification.
    pub fn new(percent: f64) -> ProtectOptions {
        ProtectOptions {
            percent,
            as_is: false,
        }
    }

    /// Whether to skip the verification and protect the archive as it is.
    pub fn as_is(mut self, as_is: bool) -> ProtectOptions {
        self.as_is = as_is;
        self
    }
}

/// Adds (or replaces) Reed-Solomon parity of `percent` % of the data to the archive at
/// `dir`, after verifying it: [`protect_with`] with [`ProtectOptions::new`].
///
/// # Errors
/// As [`protect_with`].
pub fn protect(dir: &Path, percent: f64) -> Result<ProtectReport> {
    protect_with(dir, &ProtectOptions::new(percent))
}

/// Adds (or replaces) Reed-Solomon parity to the archive at `dir` (to each volume of a
/// split archive). Shards and manifest are not changed, so the root digest stays the same;
/// the parity header records it (§17.1).
///
/// Unless [`ProtectOptions::as_is`] is set, the archive is first verified in full (every
/// byte read, [`crate::verify`] in [`crate::VerifyMode::Full`]), and a damaged archive is
/// refused: parity written over damage would only let repair restore the damage. Findings
/// about the parity file being replaced, and the temporary files an interrupted `protect`
/// or `repair` leaves, do not count.
///
/// `protect` and [`repair`] hold an advisory lock on `dir` while they run: a second one
/// started meanwhile fails at once, naming the lock, and changes nothing. Readers take no
/// lock.
///
/// # Errors
/// The archive is damaged ([`ErrorKind::Corrupt`] at its first defect), cannot be opened or
/// read, is locked by another `protect` or `repair`, or the parity file cannot be written.
pub fn protect_with(dir: &Path, options: &ProtectOptions) -> Result<ProtectReport> {
    protect_folders(dir, options, 1)
}

/// Protects the volumes numbered `first` and up of the split archive `dir` (those an append
/// just wrote, §2.1): the finished volumes before them, and their parity files, are not
/// written.
pub(crate) fn protect_new_volumes(dir: &Path, first: u32, percent: f64) -> Result<ProtectReport> {
    protect_folders(dir, &ProtectOptions::new(percent).as_is(true), first)
}

/// [`protect_with`] for the folders of volume `first` and up (every folder: 1).
fn protect_folders(dir: &Path, options: &ProtectOptions, first: u32) -> Result<ProtectReport> {
    let percent = options.percent;
    check_percent(percent, false)?;
    // Two protects at once would each rename a parity file over the other's.
    let _lock = crate::io::ArchiveLock::take(dir)?;
    if !options.as_is {
        refuse_damage(dir)?;
    }
    let layers = |k: u64| ((k as f64 * percent / 100.0).ceil() as u64).max(1);
    let mut plans = Vec::new();
    // Every folder's geometry is checked before any parity file is written (§17.4 rule 3).
    for (volume, folder, manifest) in folders(dir)? {
        if volume < first {
            continue;
        }
        let chunk = u64::from(manifest.layout.align).max(4096);
        let names = protected_names(&folder, &manifest);
        let sizes = names
            .iter()
            .map(|n| {
                let path = folder.join(n);
                fs::metadata(&path)
                    .map(|m| m.len())
                    .map_err(|e| Error::io(&path, "stat", e))
            })
            .collect::<Result<Vec<u64>>>()?;
        geometry(&names, &sizes, chunk, &layers)?;
        let root = crate::archive::manifest::parse_hex::<32>(&manifest.root).ok_or_else(|| {
            Error::invalid_input(
                "manifest root",
                "not 64 hex digits (the manifest checks it)",
            )
        })?;
        plans.push((folder, names, manifest.archive_id_bytes(), root, chunk));
    }
    let mut report = ProtectReport {
        folders: Vec::new(),
        note: plans.is_empty().then(|| {
            "a split archive without shards has no volume to protect: no parity file written"
                .to_string()
        }),
    };
    for (folder, names, archive_id, root, chunk) in plans {
        let id = FolderId { archive_id, root };
        report
            .folders
            .push(protect_folder(&folder, &names, id, chunk, &layers)?);
    }
    Ok(report)
}

/// Refuses the archive at `dir` if a full verification finds anything but what `protect`
/// is about to replace (the parity file) or clean up (temporary files of `protect` and
/// `repair`).
fn refuse_damage(dir: &Path) -> Result<()> {
    let report = crate::verify(dir, &crate::VerifyOptions::default())?;
    let ours = |f: &crate::Finding| {
        let name = f.file.file_name().map(|n| n.to_string_lossy());
        let name = name.as_deref().unwrap_or_default();
        let leftover = f.defect.as_ref().map(Defect::structure) == Some(Structure::LeftoverFile);
        name == PARITY_FILE
            || (leftover && (name.ends_with(REPAIR_SUFFIX) || name == PARTIAL_PARITY))
    };
    let mut damage = report.findings.iter().filter(|f| !ours(f));
    let Some(first) = damage.next() else {
        return Ok(());
    };
    let location = Location::file(&first.file, first.offset)
        .len(first.len)
        .in_shard(first.shard);
    Err(match &first.defect {
        Some(defect) => Error::corrupt(location, defect.clone()),
        None => Error::invalid_input(
            format!("{location}"),
            format!(
                "{}: expected {}, found {}",
                first.what, first.expected, first.found
            ),
        ),
    })
}

/// The temporary name of a parity file being written (§17.4 step 4).
pub(super) const PARTIAL_PARITY: &str = "parity.spp.partial";

/// What a parity header binds the parity file to: the archive's id and root digest.
#[derive(Clone, Copy, Debug)]
pub(super) struct FolderId {
    pub(super) archive_id: [u8; 16],
    pub(super) root: [u8; 32],
}

/// Writes the parity file of `folder` for the files `names`, with `parity_layers(k)`
/// parity layers for `k` data layers.
pub(super) fn protect_folder(
    folder: &Path,
    names: &[String],
    id: FolderId,
    chunk: u64,
    parity_layers: &dyn Fn(u64) -> u64,
) -> Result<ProtectedFolder> {
    let mut handles = Vec::new();
    let mut sizes = Vec::new();
    for name in names {
        let path = folder.join(name);
        let (file, _) = crate::io::open_regular(&path)?;
        sizes.push(
            file.metadata()
                .map_err(|e| Error::io(&path, "stat", e))?
                .len(),
        );
        handles.push(file);
    }
    // The geometry is checked before any file is hashed or anything written.
    let Geometry {
        k,
        layer,
        m,
        tables_len: planned_tables_len,
    } = geometry(names, &sizes, chunk, parity_layers)?;
    let mut files = Vec::new();
    let mut first_chunk = 0u64;
    for (name, &size) in names.iter().zip(&sizes) {
        files.push(ProtectedFile {
            name: name.clone(),
            size,
            blake3: crate::read::window::hash_file(
                &folder.join(name),
                0,
                crate::MediaProfile::generic().read_chunk,
                None,
            )?,
            first_chunk,
            table_offset: 0,
        });
        first_chunk += size.div_ceil(chunk).max(1);
    }
    let n = first_chunk;
    let layers_offset = align_up(PARITY_HEADER_LEN as u64, chunk).unwrap_or(chunk);
    let mut parity = Parity {
        header: ParityHeader {
            archive_id: id.archive_id,
            root: id.root,
            chunk_bytes: chunk as u32,
            data_layers: k as u32,
            parity_layers: m as u32,
            file_count: files.len() as u32,
            layer_chunks: layer,
            data_chunks: n,
            tables_offset: layers_offset + m * layer * chunk,
            tables_len: 0,
            tables_crc: 0,
        },
        files,
        data_digests: vec![0; n as usize],
        parity_digests: vec![0; (m * layer) as usize],
        layers_offset,
        damaged: Vec::new(),
    };
    let out_path = folder.join(PARTIAL_PARITY);
    let out = crate::io::create_new(&out_path)?;
    // A parity file left half-written would be taken for damage: it goes on any error.
    let result = write_parity(&mut parity, &handles, folder, &out, &out_path);
    if result.is_err() {
        let _ = fs::remove_file(&out_path);
    }
    let (tables_len, t) = result?;
    debug_assert_eq!(tables_len, planned_tables_len);
    let final_path = folder.join(PARITY_FILE);
    fs::rename(&out_path, &final_path)
        .map_err(|e| Error::io(&final_path, "rename into place", e))?;
    sync_dir(folder)?;
    let data_bytes = parity.files.iter().map(|f| f.size).sum();
    Ok(ProtectedFolder {
        folder: folder.to_path_buf(),
        data_bytes,
        parity_bytes: t + 2 * tables_len + PARITY_HEADER_LEN as u64,
        chunk_bytes: chunk,
        layers: (k as u32, m as u32),
        burst_bytes: layer * chunk,
    })
}

/// Computes and writes the parity layers, the tables twice and the header twice; returns
/// the tables' length and offset.
pub(super) fn write_parity(
    parity: &mut Parity,
    handles: &[File],
    folder: &Path,
    out: &File,
    out_path: &Path,
) -> Result<(u64, u64)> {
    let (k, m, layer, n, chunk) = (
        u64::from(parity.header.data_layers),
        u64::from(parity.header.parity_layers),
        parity.header.layer_chunks,
        parity.header.data_chunks,
        parity.chunk(),
    );
    let batch = (BATCH_BYTES / chunk).max(1);
    let mut column = 0u64;
    while column < layer {
        let count = batch.min(layer - column);
        let mut buffers: Vec<Vec<u8>> = Vec::with_capacity(k as usize);
        for r in 0..k {
            let mut buf = vec![0u8; (count * chunk) as usize];
            read_chunks(parity, handles, folder, r * layer + column, count, &mut buf)?;
            for c in 0..count {
                let i = r * layer + column + c;
                if i < n {
                    parity.data_digests[i as usize] =
                        chunk_digest(&buf[(c * chunk) as usize..((c + 1) * chunk) as usize]);
                }
            }
            buffers.push(buf);
        }
        let recovery =
            reed_solomon_simd::encode(k as usize, m as usize, &buffers).map_err(|e| {
                Error::invalid_input("parity", format!("Reed-Solomon encoding failed: {e}"))
            })?;
        for (p, buf) in recovery.iter().enumerate() {
            let at = parity.parity_chunk_offset(p as u64, column);
            out.write_all_at(buf, at)
                .map_err(|e| Error::io_at(out_path, "write", at, e))?;
            for c in 0..count {
                parity.parity_digests[(p as u64 * layer + column + c) as usize] =
                    chunk_digest(&buf[(c * chunk) as usize..((c + 1) * chunk) as usize]);
            }
        }
        column += count;
    }
    let tables = encode_tables(parity);
    parity.header.tables_len = tables.len() as u64;
    parity.header.tables_crc = checksum::crc32(&tables);
    let header = parity.header.encode();
    let t = parity.header.tables_offset;
    out.write_all_at(&tables, t)
        .map_err(|e| Error::io_at(out_path, "write", t, e))?;
    out.write_all_at(&tables, t + tables.len() as u64)
        .map_err(|e| Error::io_at(out_path, "write", t, e))?;
    out.write_all_at(&header, t + 2 * tables.len() as u64)
        .map_err(|e| Error::io_at(out_path, "write", t, e))?;
    out.write_all_at(&header, 0)
        .map_err(|e| Error::io_at(out_path, "write", 0, e))?;
    out.sync_all().map_err(|e| Error::io(out_path, "sync", e))?;
    Ok((tables.len() as u64, t))
}

/// Fills `buf` with `count` chunks from global chunk `start` (zeros past each file's end
/// and past the data).
pub(super) fn read_chunks(
    parity: &Parity,
    handles: &[File],
    folder: &Path,
    start: u64,
    count: u64,
    buf: &mut [u8],
) -> Result<()> {
    let chunk = parity.chunk();
    for c in 0..count {
        let Some((f, off)) = parity.locate(start + c) else {
            continue;
        };
        let file = &parity.files[f];
        let len = chunk.min(file.size.saturating_sub(off)) as usize;
        let dst = &mut buf[(c * chunk) as usize..(c * chunk) as usize + len];
        handles[f]
            .read_exact_at(dst, off)
            .map_err(|e| Error::io_at(&folder.join(&file.name), "read", off, e))?;
    }
    Ok(())
}
