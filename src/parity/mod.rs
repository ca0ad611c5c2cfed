//! Reed-Solomon parity and repair (§17): protect an archive folder (or each volume) with
//! recovery layers, find damaged chunks by their BLAKE3-64 digests (§17.3; not CRCs), and
//! rebuild them byte-identically.
//!
//! The protected files (shards, then the manifest), each padded to whole chunks, are cut
//! into `k` data layers of `L` chunks; stripe `j` is chunk `j` of every layer plus chunk `j`
//! of `m` parity layers (dvdisaster's RS03 layout). A run of up to `L` damaged chunks (a
//! burst of bad sectors, a lost 64 KiB block) costs each stripe at most one member, and a
//! whole lost shard, a run of consecutive chunks, costs each stripe at most
//! `⌈size / layer⌉` members (`layer` = `L·C` bytes), so it is rebuilt when that many parity
//! layers are left over by the stripe's other damage.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::manifest::{Manifest, ShardInfo, MANIFEST_FILE};
use crate::format::parity::{ParityHeader, MAX_TABLES_LEN, PARITY_HEADER_LEN};
use crate::format::{align_up, checksum};
use crate::{Defect, Error, ErrorKind, Limits, Location, Result, Structure};

/// File name of the parity file in an archive (or volume) folder.
pub const PARITY_FILE: &str = "parity.spp";

/// Suffix of the file a repair writes beside the file it replaces, then renames (§17.6).
pub(crate) const REPAIR_SUFFIX: &str = ".repair";

/// Data layers when the data has at least this many chunks (dvdisaster uses 255 layers in
/// all, docs/design.md §5).
const DATA_LAYERS: u64 = 200;

/// Bytes of each layer read at once while encoding.
const BATCH_BYTES: u64 = 256 << 10;

/// One protected file, as the parity file records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProtectedFile {
    /// File name in the folder.
    pub name: String,
    /// Size in bytes when protected.
    pub size: u64,
    /// BLAKE3 of its bytes when protected (hex).
    pub blake3: String,
    /// Global index of its first chunk.
    #[serde(skip)]
    first_chunk: u64,
    /// Offset of its entry in the tables.
    #[serde(skip)]
    table_offset: u64,
}

/// The geometry and tables of a parity file.
#[derive(Clone, Debug)]
struct Parity {
    header: ParityHeader,
    files: Vec<ProtectedFile>,
    data_digests: Vec<u64>,
    parity_digests: Vec<u64>,
    layers_offset: u64,
    /// Redundant parts found damaged although the file is usable (§17.5 rule 6).
    damaged: Vec<DamagedParityPart>,
}

impl Parity {
    fn chunk(&self) -> u64 {
        u64::from(self.header.chunk_bytes)
    }

    /// The file holding global chunk `i`, and the chunk's offset in it.
    fn locate(&self, i: u64) -> Option<(usize, u64)> {
        let f = self
            .files
            .partition_point(|f| f.first_chunk <= i)
            .checked_sub(1)?;
        let file = &self.files[f];
        let off = (i - file.first_chunk) * self.chunk();
        (off < file.size.max(1)).then_some((f, off))
    }

    fn parity_chunk_offset(&self, layer: u64, column: u64) -> u64 {
        self.layers_offset + (layer * self.header.layer_chunks + column) * self.chunk()
    }
}

/// What `protect` wrote.
#[derive(Clone, Debug, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct ProtectReport {
    /// Folders protected (the archive, or each volume).
    pub folders: Vec<ProtectedFolder>,
    /// Why nothing was protected, when `folders` is empty: a split archive without shards
    /// has no volume that gets a parity file (§17.2 rule 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One protected folder.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ProtectedFolder {
    /// The folder.
    pub folder: PathBuf,
    /// Bytes protected.
    pub data_bytes: u64,
    /// Size of its parity file.
    pub parity_bytes: u64,
    /// Bytes per chunk.
    pub chunk_bytes: u64,
    /// Data layers (k) and parity layers (m).
    pub layers: (u32, u32),
    /// The longest run of damaged bytes each stripe survives: one layer.
    pub burst_bytes: u64,
}

/// The folders of an archive that get a parity file each: the archive, or every volume.
fn folders(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    let archive = crate::Archive::open(dir)?;
    let manifest = archive.manifest().clone();
    if manifest.layout.volume_size.is_none() {
        return Ok(vec![(dir.to_path_buf(), manifest)]);
    }
    let mut out = Vec::new();
    for v in 1..=crate::archive::manifest::volume_count(&manifest) {
        let index = manifest
            .shards
            .iter()
            .position(|s| s.volume == Some(v))
            .unwrap_or(0);
        let path = archive.shard_path(index)?;
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        out.push((folder, manifest.clone()));
    }
    Ok(out)
}

/// The manifest entries of the shards `folder` holds (§17.2 rule 2): every entry of an
/// archive that is not split; for a split archive those of the folder's volume, the number
/// its name gives, else the `volume` of the first listed shard it holds.
fn folder_shards<'a>(folder: &Path, manifest: &'a Manifest) -> Vec<&'a ShardInfo> {
    if manifest.layout.volume_size.is_none() {
        return manifest.shards.iter().collect();
    }
    let volume = folder
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(crate::archive::volume::volume_number_of)
        .or_else(|| {
            manifest
                .shards
                .iter()
                .find(|s| folder.join(&s.file).exists())
                .and_then(|s| s.volume)
        });
    manifest
        .shards
        .iter()
        .filter(|s| volume.is_some() && s.volume == volume)
        .collect()
}

/// The files of `folder` that its parity protects: its shards, then the manifest.
fn protected_names(folder: &Path, manifest: &Manifest) -> Vec<String> {
    folder_shards(folder, manifest)
        .into_iter()
        .map(|s| s.file.clone())
        .chain(std::iter::once(MANIFEST_FILE.to_string()))
        .collect()
}

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

/// Adds (or replaces) Reed-Solomon parity of `percent` % of the data to the archive at
/// `dir` (to each volume of a split archive). Shards and manifest are not changed, so the
/// root digest stays the same.
///
/// `protect` and [`repair`] hold an advisory lock on `dir` while they run: a second one
/// started meanwhile fails at once, naming the lock, and changes nothing. Readers take no
/// lock.
///
/// # Errors
/// The archive cannot be opened or read, is locked by another `protect` or `repair`, or
/// the parity file cannot be written.
pub fn protect(dir: &Path, percent: f64) -> Result<ProtectReport> {
    check_percent(percent, false)?;
    // Two protects at once would each rename a parity file over the other's.
    let _lock = crate::io::ArchiveLock::take(dir)?;
    let layers = |k: u64| ((k as f64 * percent / 100.0).ceil() as u64).max(1);
    let mut plans = Vec::new();
    // Every folder's geometry is checked before any parity file is written (§17.4 rule 3).
    for (folder, manifest) in folders(dir)? {
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
        plans.push((folder, names, manifest.archive_id_bytes(), chunk));
    }
    let mut report = ProtectReport {
        folders: Vec::new(),
        note: plans.is_empty().then(|| {
            "a split archive without shards has no volume to protect: no parity file written"
                .to_string()
        }),
    };
    for (folder, names, archive_id, chunk) in plans {
        report
            .folders
            .push(protect_folder(&folder, &names, archive_id, chunk, &layers)?);
    }
    Ok(report)
}

/// The geometry of a parity file (§17.2 rules 5-6, §17.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    /// Data layers.
    k: u64,
    /// Chunks per layer.
    layer: u64,
    /// Parity layers.
    m: u64,
    /// Length of one copy of the tables.
    tables_len: u64,
}

/// The geometry for files `names` of `sizes` bytes in chunks of `chunk` bytes.
///
/// # Errors
/// The code does not support (k, m), or the tables would exceed [`MAX_TABLES_LEN`], which
/// no loader accepts (§17.4 rule 3).
fn geometry(
    names: &[String],
    sizes: &[u64],
    chunk: u64,
    parity_layers: &dyn Fn(u64) -> u64,
) -> Result<Geometry> {
    let n = sizes
        .iter()
        .fold(0u64, |n, s| n.saturating_add(s.div_ceil(chunk).max(1)));
    let file_table: u64 = names.iter().map(|n| 42 + n.len() as u64).sum();
    geometry_of(n, file_table, parity_layers)
}

/// The geometry for `n` data chunks and a file table of `file_table` bytes.
fn geometry_of(n: u64, file_table: u64, parity_layers: &dyn Fn(u64) -> u64) -> Result<Geometry> {
    let k = DATA_LAYERS.min(n).max(1);
    let layer = n.div_ceil(k);
    let m = parity_layers(k);
    if !reed_solomon_simd::ReedSolomonEncoder::supports(k as usize, m as usize) {
        return Err(Error::invalid_input(
            "parity",
            format!(
                "{m} parity layers for {k} data layers is more than Reed-Solomon supports here"
            ),
        ));
    }
    let tables_len = m
        .checked_mul(layer)
        .and_then(|p| p.checked_add(n))
        .and_then(|c| c.checked_mul(8))
        .and_then(|d| d.checked_add(file_table));
    match tables_len {
        Some(tables_len) if tables_len <= MAX_TABLES_LEN => Ok(Geometry {
            k,
            layer,
            m,
            tables_len,
        }),
        _ => Err(Error::invalid_input(
            "parity",
            format!(
                "{n} chunks need tables of more than {MAX_TABLES_LEN} bytes, the most a \
                 repairer loads: protect fewer or larger-chunked files per folder"
            ),
        )),
    }
}

/// Writes the parity file of `folder` for the files `names`, with `parity_layers(k)`
/// parity layers for `k` data layers.
fn protect_folder(
    folder: &Path,
    names: &[String],
    archive_id: [u8; 16],
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
            archive_id,
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
    let out_path = folder.join(format!(
        "{PARITY_FILE}{}",
        crate::archive::manifest::PARTIAL_SUFFIX
    ));
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
fn write_parity(
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
fn read_chunks(
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

/// A chunk's digest, `digest64` (§17.3): the first 8 bytes of its BLAKE3, little-endian.
/// Not a CRC: a shard's header ends with its own CRC-32, and CRC-32 over (bytes, CRC-32 of
/// those bytes) is the same for any bytes, so a chunk CRC could not tell a valid header of
/// another shard from ours.
fn chunk_digest(bytes: &[u8]) -> u64 {
    let h = blake3::hash(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

fn encode_tables(p: &Parity) -> Vec<u8> {
    let mut t = Vec::new();
    for f in &p.files {
        t.extend_from_slice(&(f.name.len() as u16).to_le_bytes());
        t.extend_from_slice(f.name.as_bytes());
        t.extend_from_slice(&f.size.to_le_bytes());
        t.extend_from_slice(
            &crate::archive::manifest::parse_hex::<32>(&f.blake3).unwrap_or([0; 32]),
        );
    }
    for c in p.data_digests.iter().chain(&p.parity_digests) {
        t.extend_from_slice(&c.to_le_bytes());
    }
    t
}

/// The first non-zero byte of `file` in `from..to`.
fn first_nonzero(file: &File, path: &Path, from: u64, to: u64) -> Result<Option<u64>> {
    let mut buf = vec![0u8; (to.saturating_sub(from)).min(BATCH_BYTES) as usize];
    let mut pos = from;
    while pos < to {
        let piece = &mut buf[..(to - pos).min(BATCH_BYTES) as usize];
        file.read_exact_at(piece, pos)
            .map_err(|e| Error::io_at(path, "read", pos, e))?;
        if let Some(i) = piece.iter().position(|&b| b != 0) {
            return Ok(Some(pos + i as u64));
        }
        pos += piece.len() as u64;
    }
    Ok(None)
}

/// CRC-32 of `len` bytes of `file` at `offset`, read piece by piece.
fn crc_of_range(file: &File, path: &Path, offset: u64, len: u64) -> Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; len.min(BATCH_BYTES) as usize];
    let mut done = 0u64;
    while done < len {
        let piece = &mut buf[..(len - done).min(BATCH_BYTES) as usize];
        file.read_exact_at(piece, offset + done)
            .map_err(|e| Error::io_at(path, "read", offset + done, e))?;
        hasher.update(piece);
        done += piece.len() as u64;
    }
    Ok(hasher.finalize())
}

/// Reads a parity file: its header (or the copy at its end), then its tables, noting which
/// redundant copies are damaged (§17.5).
fn load(folder: &Path) -> Result<Parity> {
    let path = folder.join(PARITY_FILE);
    let (file, _) = crate::io::open_regular(&path)?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(&path, "stat", e))?
        .len();
    let at = |o| Location::file(&path, o);
    let read_raw = |offset: u64| -> Result<[u8; PARITY_HEADER_LEN]> {
        let mut b = [0u8; PARITY_HEADER_LEN];
        file.read_exact_at(&mut b, offset)
            .map_err(|e| Error::io_at(&path, "read", offset, e))?;
        Ok(b)
    };
    let decode = |b: &[u8; PARITY_HEADER_LEN], offset: u64| {
        ParityHeader::decode(b).map_err(|d| d.at(&path, None, offset))
    };
    let copy_offset = len.saturating_sub(PARITY_HEADER_LEN as u64);
    let first_raw = read_raw(0)?;
    let last_raw = read_raw(copy_offset).ok();
    let mut damaged = Vec::new();
    let header_len = PARITY_HEADER_LEN as u64;
    let header = match decode(&first_raw, 0) {
        Ok(h) => {
            // Rule 6: a second copy that decodes must be the same bytes; one that does not
            // decode is damaged too.
            if last_raw != Some(first_raw) {
                damaged.push(DamagedParityPart::new(
                    ParityPart::HeaderCopy,
                    copy_offset,
                    header_len,
                ));
            }
            h
        }
        Err(first) => {
            let last = last_raw
                .ok_or(())
                .and_then(|b| decode(&b, copy_offset).map_err(|_| ()))
                .map_err(|()| first)?;
            damaged.push(DamagedParityPart::new(ParityPart::Header, 0, header_len));
            last
        }
    };
    let chunk = u64::from(header.chunk_bytes);
    let (k, m, layer, n) = (
        u64::from(header.data_layers),
        u64::from(header.parity_layers),
        header.layer_chunks,
        header.data_chunks,
    );
    let layers_offset = align_up(PARITY_HEADER_LEN as u64, chunk.max(1)).unwrap_or(0);
    let geometry_ok = chunk >= 64
        && chunk.is_power_of_two()
        && k >= 1
        && m >= 1
        && n <= k.saturating_mul(layer)
        && n > k.saturating_mul(layer.saturating_sub(1))
        && m.checked_mul(layer)
            .and_then(|x| x.checked_mul(chunk))
            .and_then(|x| x.checked_add(layers_offset))
            == Some(header.tables_offset)
        && header
            .tables_offset
            .checked_add(header.tables_len.saturating_mul(2))
            .and_then(|x| x.checked_add(PARITY_HEADER_LEN as u64))
            == Some(len)
        && header.tables_len <= MAX_TABLES_LEN;
    if !geometry_ok {
        return Err(Error::corrupt(
            at(0),
            Defect::invalid(
                Structure::ParityHeader,
                "geometry",
                format!("a parity file of {len} bytes with consistent layers"),
                format!("{header:?}"),
            ),
        ));
    }
    // Rule 6: the bytes between the header and the first parity layer are zero.
    if let Some(nonzero) = first_nonzero(&file, &path, header_len, layers_offset)? {
        damaged.push(DamagedParityPart::new(
            ParityPart::ZeroGap,
            nonzero,
            layers_offset - nonzero,
        ));
    }
    // Two copies of the tables, one after the other: the first that checks out is used,
    // and both must (rule 6).
    let second = header.tables_offset + header.tables_len;
    let mut tables = vec![0u8; header.tables_len as usize];
    file.read_exact_at(&mut tables, header.tables_offset)
        .map_err(|e| Error::io_at(&path, "read", header.tables_offset, e))?;
    let first_crc = checksum::crc32(&tables);
    let first_ok = first_crc == header.tables_crc;
    let second_ok = crc_of_range(&file, &path, second, header.tables_len)? == header.tables_crc;
    if !first_ok && !second_ok {
        // Both copies are damaged: the first copy's CRC is reported.
        return Err(Error::corrupt(
            at(header.tables_offset).len(header.tables_len.saturating_mul(2)),
            Defect::crc(Structure::ParityTables, header.tables_crc, first_crc),
        ));
    }
    if !first_ok {
        damaged.push(DamagedParityPart::new(
            ParityPart::Tables,
            header.tables_offset,
            header.tables_len,
        ));
        file.read_exact_at(&mut tables, second)
            .map_err(|e| Error::io_at(&path, "read", second, e))?;
    }
    if !second_ok {
        damaged.push(DamagedParityPart::new(
            ParityPart::TablesCopy,
            second,
            header.tables_len,
        ));
    }
    let mut files = Vec::new();
    let mut pos = 0usize;
    let mut first_chunk = 0u64;
    for _ in 0..header.file_count {
        let here = pos;
        let bad = || {
            Error::corrupt(
                at(header.tables_offset + here as u64),
                Defect::invalid(
                    Structure::ParityFileTable,
                    "entry",
                    "name, size and digest",
                    "a short table",
                ),
            )
        };
        let name_len = usize::from(u16::from_le_bytes(
            tables
                .get(pos..pos + 2)
                .ok_or_else(bad)?
                .try_into()
                .unwrap_or_default(),
        ));
        let name = String::from_utf8(
            tables
                .get(pos + 2..pos + 2 + name_len)
                .ok_or_else(bad)?
                .to_vec(),
        )
        .map_err(|_| bad())?;
        if name.contains('/') || name.starts_with('.') || name.is_empty() {
            return Err(Error::corrupt(
                at(header.tables_offset + pos as u64),
                Defect::invalid(
                    Structure::ParityFileTable,
                    "file name",
                    "a plain file name",
                    name,
                ),
            ));
        }
        pos += 2 + name_len;
        let size = u64::from_le_bytes(
            tables
                .get(pos..pos + 8)
                .ok_or_else(bad)?
                .try_into()
                .unwrap_or_default(),
        );
        let digest: [u8; 32] = tables
            .get(pos + 8..pos + 40)
            .ok_or_else(bad)?
            .try_into()
            .unwrap_or_default();
        pos += 40;
        files.push(ProtectedFile {
            name,
            size,
            blake3: crate::format::hex(&digest),
            first_chunk,
            table_offset: here as u64,
        });
        first_chunk = first_chunk.saturating_add(size.div_ceil(chunk).max(1));
    }
    // Checked: a hostile header could make these wrap to the real table length.
    let digest_bytes = m
        .checked_mul(layer)
        .and_then(|p| p.checked_add(n))
        .and_then(|c| c.checked_mul(8));
    if first_chunk != n || digest_bytes != Some((tables.len() - pos) as u64) {
        return Err(Error::corrupt(
            at(header.tables_offset),
            Defect::invalid(
                Structure::ParityTables,
                "data chunks",
                format!("{n} data chunks"),
                format!("{first_chunk} in the file table"),
            ),
        ));
    }
    let digests: Vec<u64> = tables[pos..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let (data_digests, parity_digests) = digests.split_at((n as usize).min(digests.len()));
    Ok(Parity {
        header,
        files,
        data_digests: data_digests.to_vec(),
        parity_digests: parity_digests.to_vec(),
        layers_offset,
        damaged,
    })
}

/// The damage one folder's parity sees.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ParityStatus {
    /// The folder.
    pub folder: PathBuf,
    /// Data chunks whose BLAKE3-64 digest (§17.3) does not match, or that cannot be read.
    pub damaged_chunks: u64,
    /// Parity chunks whose BLAKE3-64 digest (§17.3) does not match, or that cannot be read.
    pub damaged_parity_chunks: u64,
    /// Parity layers (m): the erasures each stripe survives.
    pub parity_layers: u32,
    /// Stripes with more erasures than parity can repair.
    pub unrecoverable_stripes: u64,
    /// Parity layers more that repairing everything would have needed.
    pub more_layers_needed: u32,
    /// True when every damaged chunk can be rebuilt.
    pub recoverable: bool,
    /// Redundant parts of the parity file that are damaged although the file is usable
    /// (§17.5 rule 6); repair rewrites the parity file once the data is whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_parts: Vec<DamagedParityPart>,
    /// Whether the folder has a parity file that loads; the counts above are zero and
    /// `recoverable` is false otherwise.
    pub parity_file: ParityFileState,
}

/// Whether a folder's parity file could be used (§17.5, §17.6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParityFileState {
    /// Loaded and belonging to the archive.
    #[default]
    Loaded,
    /// The folder has no parity file (another folder of the archive has one).
    NoParity,
    /// The parity file does not load or does not belong to the archive; it is left as it is.
    Unusable {
        /// Why.
        error: String,
    },
}

impl ParityStatus {
    fn without_parity(folder: &Path, state: ParityFileState) -> ParityStatus {
        ParityStatus {
            folder: folder.to_path_buf(),
            parity_file: state,
            ..ParityStatus::default()
        }
    }
}

/// A redundant part of a parity file, damaged while the copy in use is intact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DamagedParityPart {
    /// Which part.
    pub part: ParityPart,
    /// First damaged byte in the parity file.
    pub offset: u64,
    /// Bytes from `offset` to the end of the part.
    pub len: u64,
}

impl DamagedParityPart {
    fn new(part: ParityPart, offset: u64, len: u64) -> DamagedParityPart {
        DamagedParityPart { part, offset, len }
    }
}

/// The redundant parts of a parity file (§17.1, §17.5 rule 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParityPart {
    /// The header at offset 0 does not decode: the copy at the end is used.
    Header,
    /// The header copy at the end does not decode or differs from the header.
    HeaderCopy,
    /// A byte between the header and the first parity layer is not zero.
    ZeroGap,
    /// The first copy of the tables fails `tables_crc`: the second is used.
    Tables,
    /// The second copy of the tables fails `tables_crc`.
    TablesCopy,
}

impl ParityPart {
    /// What the part is, as a verifier finding names it.
    pub fn name(self) -> &'static str {
        match self {
            ParityPart::Header => "parity header",
            ParityPart::HeaderCopy => "parity header copy",
            ParityPart::ZeroGap => "parity zero gap",
            ParityPart::Tables => "parity tables",
            ParityPart::TablesCopy => "parity tables copy",
        }
    }

    /// The structure it is.
    pub fn structure(self) -> crate::Structure {
        match self {
            ParityPart::Header => Structure::ParityHeader,
            ParityPart::HeaderCopy => Structure::ParityHeaderCopy,
            ParityPart::ZeroGap => Structure::ParityZeroGap,
            ParityPart::Tables => Structure::ParityTables,
            ParityPart::TablesCopy => Structure::ParityTablesCopy,
        }
    }

    /// What the format requires of it.
    pub fn expected(self) -> &'static str {
        match self {
            ParityPart::Header => "a header that decodes",
            ParityPart::HeaderCopy => "the same 128 bytes as the header at offset 0",
            ParityPart::ZeroGap => "zero bytes up to the first parity layer",
            ParityPart::Tables | ParityPart::TablesCopy => "bytes matching tables_crc",
        }
    }
}

struct Damage {
    parity: Parity,
    data: BTreeSet<u64>,
    parity_chunks: BTreeSet<u64>,
    handles: Vec<Option<File>>,
    sizes_differ: Vec<bool>,
}

/// Makes renames in `folder` durable.
fn sync_dir(folder: &Path) -> Result<()> {
    File::open(folder)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(folder, "sync folder", e))
}

/// The folder's manifest when it parses and validates (§11.1), with its file's length.
fn folder_manifest(folder: &Path) -> Option<(Manifest, u64)> {
    let path = folder.join(MANIFEST_FILE);
    let bytes =
        crate::archive::manifest::read_capped(&path, Limits::DEFAULT.max_manifest_bytes).ok()?;
    let manifest = Manifest::parse(&bytes, &path).ok()?;
    Some((manifest, bytes.len() as u64))
}

/// The archive id the first shard header of the file table that decodes claims.
fn shard_archive_id(folder: &Path, files: &[ProtectedFile]) -> Option<[u8; 16]> {
    files.iter().find_map(|f| {
        let (file, _) = crate::io::open_regular(&folder.join(&f.name)).ok()?;
        let mut b = [0u8; crate::format::header::HEADER_LEN];
        file.read_exact_at(&mut b, 0).ok()?;
        crate::format::header::ShardHeader::decode(&b)
            .ok()
            .map(|h| h.archive_id)
    })
}

/// Rule 5 of §17.5: with a valid manifest, the file table lists exactly the files §17.2
/// rule 2 protects, so that repair never rewrites a file into one the manifest does not
/// describe.
fn check_file_table(
    parity: &Parity,
    folder: &Path,
    manifest: &Manifest,
    manifest_len: u64,
) -> Result<()> {
    let expected: Vec<(&str, u64, Option<&str>)> = folder_shards(folder, manifest)
        .into_iter()
        .map(|s| (s.file.as_str(), s.size, Some(s.blake3.as_str())))
        .chain(std::iter::once((MANIFEST_FILE, manifest_len, None)))
        .collect();
    let path = folder.join(PARITY_FILE);
    let describe = |name: &str, size: u64, blake3: Option<&str>| match blake3 {
        Some(b) => format!("{name}, {size} bytes, blake3 {b}"),
        None => format!("{name}, {size} bytes"),
    };
    for (i, want) in expected.iter().enumerate() {
        let Some(f) = parity.files.get(i) else {
            return Err(Error::corrupt(
                Location::file(&path, parity.header.tables_offset),
                Defect::mismatch(
                    Structure::ParityFileTable,
                    "entries",
                    format!("{} entries (the manifest's files)", expected.len()),
                    format!("{} entries", parity.files.len()),
                ),
            ));
        };
        let (name, size, blake3) = *want;
        if f.name != name || f.size != size || blake3.is_some_and(|b| b != f.blake3) {
            return Err(Error::corrupt(
                Location::file(&path, parity.header.tables_offset + f.table_offset),
                Defect::mismatch(
                    Structure::ParityFileTable,
                    "entry (a parity file of other files?)",
                    format!(
                        "entry {i}: {} (the manifest's)",
                        describe(name, size, blake3)
                    ),
                    describe(&f.name, f.size, blake3.map(|_| f.blake3.as_str())),
                ),
            ));
        }
    }
    if parity.files.len() != expected.len() {
        return Err(Error::corrupt(
            Location::file(&path, parity.header.tables_offset),
            Defect::mismatch(
                Structure::ParityFileTable,
                "entries",
                format!("{} entries (the manifest's files)", expected.len()),
                format!("{} entries", parity.files.len()),
            ),
        ));
    }
    Ok(())
}

fn inspect(folder: &Path) -> Result<Damage> {
    let parity = load(folder)?;
    let manifest = folder_manifest(folder);
    // A parity file of another archive would "repair" this one into that one.
    let claimed = manifest
        .as_ref()
        .map(|(m, _)| m.archive_id_bytes())
        .or_else(|| shard_archive_id(folder, &parity.files));
    if let Some(id) = claimed {
        if id != parity.header.archive_id {
            return Err(Error::corrupt(
                Location::file(
                    &folder.join(PARITY_FILE),
                    crate::format::parity::ARCHIVE_ID_OFFSET as u64,
                ),
                Defect::mismatch(
                    Structure::ParityHeader,
                    "archive id (a parity file of another archive?)",
                    crate::format::hex(&id),
                    crate::format::hex(&parity.header.archive_id),
                ),
            ));
        }
    }
    if let Some((m, len)) = &manifest {
        check_file_table(&parity, folder, m, *len)?;
    }
    let chunk = parity.chunk();
    let mut data = BTreeSet::new();
    let mut handles = Vec::new();
    let mut sizes_differ = Vec::new();
    let mut buf = vec![0u8; (chunk as usize).max(1)];
    for (fi, f) in parity.files.iter().enumerate() {
        let path = folder.join(&f.name);
        let file = crate::io::open_regular(&path).ok().map(|(file, _)| file);
        let actual = file
            .as_ref()
            .and_then(|h| h.metadata().ok())
            .map(|m| m.len());
        sizes_differ.push(actual != Some(f.size));
        let chunks = f.size.div_ceil(chunk).max(1);
        for c in 0..chunks {
            let i = f.first_chunk + c;
            let off = c * chunk;
            let len = chunk.min(f.size.saturating_sub(off)) as usize;
            buf.fill(0);
            let ok = match &file {
                Some(h) => {
                    h.read_exact_at(&mut buf[..len], off).is_ok()
                        && chunk_digest(&buf) == parity.data_digests[i as usize]
                }
                None => false,
            };
            if !ok {
                data.insert(i);
            }
        }
        let _ = fi;
        handles.push(file);
    }
    let mut parity_chunks = BTreeSet::new();
    let (pfile, _) = crate::io::open_regular(&folder.join(PARITY_FILE))?;
    for (idx, want) in parity.parity_digests.iter().enumerate() {
        let at = parity.layers_offset + idx as u64 * chunk;
        if pfile.read_exact_at(&mut buf, at).is_err() || chunk_digest(&buf) != *want {
            parity_chunks.insert(idx as u64);
        }
    }
    Ok(Damage {
        parity,
        data,
        parity_chunks,
        handles,
        sizes_differ,
    })
}

fn status_of(folder: &Path, d: &Damage) -> ParityStatus {
    let layer = d.parity.header.layer_chunks;
    let m = u64::from(d.parity.header.parity_layers);
    let mut per_column: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for &i in &d.data {
        per_column.entry(i % layer).or_default().0 += 1;
    }
    for &p in &d.parity_chunks {
        per_column.entry(p % layer).or_default().1 += 1;
    }
    let mut unrecoverable = 0;
    let mut worst = 0u64;
    for (data, par) in per_column.values() {
        if *data > 0 && data + par > m {
            unrecoverable += 1;
            worst = worst.max(data + par - m);
        }
    }
    ParityStatus {
        folder: folder.to_path_buf(),
        damaged_chunks: d.data.len() as u64,
        damaged_parity_chunks: d.parity_chunks.len() as u64,
        parity_layers: d.parity.header.parity_layers,
        unrecoverable_stripes: unrecoverable,
        more_layers_needed: worst as u32,
        recoverable: unrecoverable == 0,
        damaged_parts: d.parity.damaged.clone(),
        parity_file: ParityFileState::Loaded,
    }
}

/// How far the parity of the archive at `dir` can repair its damage; `None` when the
/// archive has no parity.
///
/// # Errors
/// A parity file exists but cannot be read.
pub fn parity_status(dir: &Path) -> Result<Option<Vec<ParityStatus>>> {
    let mut out = Vec::new();
    for folder in parity_folders(dir) {
        let d = inspect(&folder)?;
        out.push(status_of(&folder, &d));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The parity status of each of `folders` (§13.1 Parity): loaded, without a parity file,
/// or with one that does not load, whose error is returned beside it.
pub(crate) fn folder_statuses(folders: &[PathBuf]) -> Vec<(ParityStatus, Option<Error>)> {
    folders
        .iter()
        .map(|folder| {
            if !folder.join(PARITY_FILE).exists() {
                return (
                    ParityStatus::without_parity(folder, ParityFileState::NoParity),
                    None,
                );
            }
            match inspect(folder) {
                Ok(d) => (status_of(folder, &d), None),
                Err(e) => (
                    ParityStatus::without_parity(
                        folder,
                        ParityFileState::Unusable {
                            error: e.to_string(),
                        },
                    ),
                    Some(e),
                ),
            }
        })
        .collect()
}

/// The folders of `dir` that have volume names (§2.1).
fn volume_folders(dir: &Path) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(crate::archive::volume::volume_number_of)
                .is_some()
        })
        .map(|e| e.path())
        .filter(|p| p.is_dir())
}

/// Folders under `dir` (itself or its `vol-*` folders) that hold a parity file.
pub(crate) fn parity_folders(dir: &Path) -> Vec<PathBuf> {
    if dir.join(PARITY_FILE).exists() {
        return vec![dir.to_path_buf()];
    }
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.join(PARITY_FILE).exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

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
fn samples_in(path: &Path, offset: u64, len: u64) -> Option<[u64; 2]> {
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
    /// Per folder: damage seen and what more parity would have been needed.
    pub status: Vec<ParityStatus>,
}

impl RepairReport {
    /// True when nothing is lost and every parity file loaded.
    pub fn complete(&self) -> bool {
        self.lost.is_empty()
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

fn ranges(parity: &Parity, folder: &Path, chunks: &BTreeSet<u64>) -> Vec<RepairedRange> {
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

fn repair_folder(folder: &Path, d: Damage, report: &mut RepairReport) -> Result<()> {
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
    // Rewrite every file that is damaged, truncated, grown or missing, if all its damaged
    // chunks came back; otherwise leave it as it is and report what is lost.
    for (f, file) in p.files.iter().enumerate() {
        let chunks = file.size.div_ceil(chunk).max(1);
        let mine: Vec<u64> = (file.first_chunk..file.first_chunk + chunks)
            .filter(|i| d.data.contains(i))
            .collect();
        if mine.is_empty() && !d.sizes_differ[f] {
            continue;
        }
        if mine.iter().any(|i| lost.contains(i)) {
            continue;
        }
        let path = folder.join(&file.name);
        let tmp = folder.join(format!("{}{REPAIR_SUFFIX}", file.name));
        let mut bytes = vec![0u8; file.size as usize];
        if let Some(h) = &d.handles[f] {
            let have = h.metadata().map(|m| m.len()).unwrap_or(0).min(file.size) as usize;
            let _ = h.read_exact_at(&mut bytes[..have], 0);
        }
        for i in &mine {
            let off = ((i - file.first_chunk) * chunk) as usize;
            let len = (chunk as usize).min(bytes.len() - off);
            bytes[off..off + len].copy_from_slice(&restored[i][..len]);
        }
        if blake3::hash(&bytes).to_hex().as_str() != file.blake3 {
            lost.extend(mine);
            continue;
        }
        let written = crate::io::create_new(&tmp)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|mut out| {
                out.write_all(&bytes)?;
                out.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&path, "write the repaired file", e));
        }
        sync_dir(folder)?;
        report.files_rewritten.push(path);
        let fixed: BTreeSet<u64> = mine.into_iter().collect();
        report.repaired.extend(ranges(p, folder, &fixed));
    }
    // With the data whole again, damaged parity is rewritten so that protection is full.
    if lost.is_empty() && (!d.parity_chunks.is_empty() || !p.damaged.is_empty()) {
        let names: Vec<String> = p.files.iter().map(|f| f.name.clone()).collect();
        let (archive_id, chunk, m) = (p.header.archive_id, p.chunk(), m);
        drop(pfile);
        protect_folder(folder, &names, archive_id, chunk, &|_| m)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_beyond_what_a_loader_accepts_are_refused() {
        let fifteen = |k: u64| ((k as f64 * 15.0 / 100.0).ceil() as u64).max(1);
        // 100 million chunks at 15%: 8·(N + 30·L) + the file table, under 1 GiB.
        let g = geometry_of(100_000_000, 100, &fifteen).unwrap();
        assert_eq!((g.k, g.layer, g.m), (200, 500_000, 30));
        assert_eq!(g.tables_len, 8 * (100_000_000 + 30 * 500_000) + 100);
        // 120 million chunks need 1.104 GB of tables.
        let err = geometry_of(120_000_000, 100, &fifteen).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidInput { .. })
                && err.to_string().contains("tables"),
            "{err}"
        );
        // The bound itself is accepted, one byte more is not.
        let n = 100_000_000;
        let digests = 8 * (n + 30 * 500_000);
        assert!(geometry_of(n, MAX_TABLES_LEN - digests, &fifteen).is_ok());
        assert!(geometry_of(n, MAX_TABLES_LEN - digests + 1, &fifteen).is_err());
        // Overflowing counts are refused, not wrapped.
        assert!(geometry_of(u64::MAX, 0, &fifteen).is_err());
    }
}
