//! The parity file's own bytes: chunk digests, the tables, and loading a parity file with
//! every check §17.5 asks for.

use super::*;

/// A chunk's digest, `digest64` (§17.3): the first 8 bytes of its BLAKE3, little-endian.
/// Not a CRC: a shard's header ends with its own CRC-32, and CRC-32 over (bytes, CRC-32 of
/// those bytes) is the same for any bytes, so a chunk CRC could not tell a valid header of
/// another shard from ours.
pub(super) fn chunk_digest(bytes: &[u8]) -> u64 {
    let h = blake3::hash(bytes);
    let mut first = [0u8; CHUNK_DIGEST_WIDTH];
    first.copy_from_slice(&h.as_bytes()[..CHUNK_DIGEST_WIDTH]);
    u64::from_le_bytes(first)
}

/// A file-table entry (§17.3): `name_len` (u16), the name, `size` (u64), `blake3`.
const NAME_LEN_WIDTH: usize = 2;
const SIZE_WIDTH: usize = 8;
const DIGEST_WIDTH: usize = 32;
/// The bytes of a file-table entry besides its name (42).
const ENTRY_FIXED_LEN: usize = NAME_LEN_WIDTH + SIZE_WIDTH + DIGEST_WIDTH;
/// A chunk's entry in the data and parity digest tables: its `digest64`.
const CHUNK_DIGEST_WIDTH: usize = 8;

pub(super) fn encode_tables(p: &Parity) -> Vec<u8> {
    let mut t = Vec::new();
    for f in &p.files {
        t.extend_from_slice(&(f.name.len() as u16).to_le_bytes());
        t.extend_from_slice(f.name.as_bytes());
        t.extend_from_slice(&f.size.to_le_bytes());
        t.extend_from_slice(
            &crate::archive::manifest::parse_hex::<DIGEST_WIDTH>(&f.blake3)
                .unwrap_or([0; DIGEST_WIDTH]),
        );
    }
    for c in p.data_digests.iter().chain(&p.parity_digests) {
        t.extend_from_slice(&c.to_le_bytes());
    }
    t
}

/// The first non-zero byte of `file` in `from..to`.
pub(super) fn first_nonzero(file: &File, path: &Path, from: u64, to: u64) -> Result<Option<u64>> {
    let mut buf = vec![0u8; (to.saturating_sub(from)).min(BATCH_BYTES) as usize];
    let mut pos = from;
    while pos < to {
        let piece = &mut buf[..(to - pos).min(BATCH_BYTES) as usize];
        file.read_exact_at(piece, pos)
            .map_err(|e| Error::io_at(path, "read", pos, e))?;
        if let Some(i) = crate::format::le::first_nonzero(piece) {
            return Ok(Some(pos + i as u64));
        }
        pos += piece.len() as u64;
    }
    Ok(None)
}

/// CRC-32 of `len` bytes of `file` at `offset`, read piece by piece.
pub(super) fn crc_of_range(file: &File, path: &Path, offset: u64, len: u64) -> Result<u32> {
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
pub(super) fn load(folder: &Path) -> Result<Parity> {
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
    // Every bound is checked before anything is sized from the header: a chunk is held in
    // memory (at most 16 MiB), a stripe holds k + m chunks (k ≤ min(200, N) and m ≤ 10 k,
    // as every writer's are, so at most 2,200), and the
    // tables are read whole (at most 1 GiB, and only as many bytes as the file holds).
    let geometry_ok = (64..=crate::format::parity::MAX_CHUNK_BYTES).contains(&chunk)
        && chunk.is_power_of_two()
        && k >= 1
        && m >= 1
        && k <= n
        && k <= DATA_LAYERS
        && m <= k.saturating_mul(MAX_PARITY_PERCENT as u64 / 100)
        && reed_solomon_simd::ReedSolomonEncoder::supports(k as usize, m as usize)
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
                .get(pos..pos + NAME_LEN_WIDTH)
                .ok_or_else(bad)?
                .try_into()
                .unwrap_or_default(),
        ));
        let name = String::from_utf8(
            tables
                .get(pos + NAME_LEN_WIDTH..pos + NAME_LEN_WIDTH + name_len)
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
        pos += NAME_LEN_WIDTH + name_len;
        let size = u64::from_le_bytes(
            tables
                .get(pos..pos + SIZE_WIDTH)
                .ok_or_else(bad)?
                .try_into()
                .unwrap_or_default(),
        );
        let digest: [u8; DIGEST_WIDTH] = tables
            .get(pos + SIZE_WIDTH..pos + SIZE_WIDTH + DIGEST_WIDTH)
            .ok_or_else(bad)?
            .try_into()
            .unwrap_or_default();
        pos += SIZE_WIDTH + DIGEST_WIDTH;
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
        .and_then(|c| c.checked_mul(CHUNK_DIGEST_WIDTH as u64));
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
        .chunks_exact(CHUNK_DIGEST_WIDTH)
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
    pub(super) fn new(part: ParityPart, offset: u64, len: u64) -> DamagedParityPart {
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

/// The geometry of a parity file (§17.2 rules 5-6, §17.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    /// Data layers.
    pub(super) k: u64,
    /// Chunks per layer.
    pub(super) layer: u64,
    /// Parity layers.
    pub(super) m: u64,
    /// Length of one copy of the tables.
    pub(super) tables_len: u64,
}

/// The geometry for files `names` of `sizes` bytes in chunks of `chunk` bytes.
///
/// # Errors
/// The code does not support (k, m), or the tables would exceed [`MAX_TABLES_LEN`], which
/// no loader accepts (§17.4 rule 3).
pub(super) fn geometry(
    names: &[String],
    sizes: &[u64],
    chunk: u64,
    parity_layers: &dyn Fn(u64) -> u64,
) -> Result<Geometry> {
    let n = sizes
        .iter()
        .fold(0u64, |n, s| n.saturating_add(s.div_ceil(chunk).max(1)));
    let file_table: u64 = names
        .iter()
        .map(|n| (ENTRY_FIXED_LEN + n.len()) as u64)
        .sum();
    geometry_of(n, file_table, parity_layers)
}

/// The geometry for `n` data chunks and a file table of `file_table` bytes.
pub(super) fn geometry_of(
    n: u64,
    file_table: u64,
    parity_layers: &dyn Fn(u64) -> u64,
) -> Result<Geometry> {
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
        .and_then(|c| c.checked_mul(CHUNK_DIGEST_WIDTH as u64))
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
