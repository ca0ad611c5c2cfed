//! Media profiles (§9): writer parameters tuned to a storage medium, as plain data.
//!
//! One physical format serves every medium; a profile only chooses parameters, and records
//! its name in every shard header and in the manifest, so any reader reads any profile.
//! Each default rests on a published fact about its medium; `docs/design.md` §3 gives each with its source.

/// A storage medium's writer and reader parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MediaProfile {
    /// The profile's name, as written in the manifest.
    pub name: &'static str,
    /// The profile's byte in shard headers (§3).
    pub code: u8,
    /// Alignment of blocks, index and file length.
    pub align: u32,
    /// Target decoded size of a block.
    pub block_size: u64,
    /// Target size of a shard file.
    pub shard_size: u64,
    /// When set, the writer places every record of at most this many bytes inside one
    /// page of this size (§5.4), so that a random read of it touches one page; a larger
    /// record is not padded and touches at most one page more than its length needs.
    pub record_page: Option<u32>,
    /// When set and blocks are compressed, each shard whose first records are small (text,
    /// JSON, tokens) gets a zstd dictionary of at most this many bytes trained on them, and
    /// its records are compressed one by one with it, so that a random read decodes one
    /// record (§5.5).
    pub dictionary: Option<u32>,
    /// Size of each read when scanning sequentially.
    pub read_chunk: u64,
    /// Tape record size for streams (`pack -o -`); every write is one whole record.
    pub stream_record: u32,
    /// Reed-Solomon parity, as a percentage of the data, that a packed archive folder gets
    /// unless the caller chooses otherwise; 0 for none. Media that fail in places (discs
    /// scratch, tape wears) get parity; disks, which fail whole, get none. A whole number, so
    /// that profiles stay comparable with `==`.
    pub default_parity_percent: u16,
    /// True when the medium must be read in physical order, one shard at a time, because
    /// a seek costs far more than a read (spinning disks, tape; §13.1).
    pub sequential: bool,
}

const KIB: u32 = 1 << 10;

/// Smallest tape record a stream may use: LTFS's minimum block size (docs/design.md §3).
pub const MIN_STREAM_RECORD: u32 = 4 * KIB;
/// Largest tape record a stream may use: the largest power of two under the 16 MiB − 1
/// maximum block that IBM Ultrium drives report (docs/design.md §3); many HBAs fail far sooner,
/// which is why the default is 512 KiB.
pub const MAX_STREAM_RECORD: u32 = 8 << 20;
const MIB: u64 = 1 << 20;

impl MediaProfile {
    /// Balanced defaults for an unknown medium: 4 KiB alignment, 1 MiB blocks, 256 MiB
    /// shards.
    pub const fn generic() -> Self {
        MediaProfile {
            name: "generic",
            code: 0,
            align: 4 * KIB,
            block_size: MIB,
            shard_size: 256 * MIB,
            record_page: None,
            dictionary: None,
            read_chunk: MIB,
            stream_record: 512 * KIB,
            default_parity_percent: 0,
            sequential: false,
        }
    }

    /// Spinning disks: 4 KiB alignment (512e read-modify-write, §A1), 8 MiB blocks (write
    /// I/O 8–16 MiB, §E), 1 GiB shards read whole (99% seek efficiency at ~270 MiB, §A1),
    /// 16 MiB sequential reads (§D.6: ≥16–64 MiB per request).
    pub const fn hdd() -> Self {
        MediaProfile {
            name: "hdd",
            code: 1,
            align: 4 * KIB,
            block_size: 8 * MIB,
            shard_size: 1024 * MIB,
            record_page: None,
            dictionary: None,
            read_chunk: 16 * MIB,
            stream_record: 512 * KIB,
            default_parity_percent: 0,
            sequential: true,
        }
    }

    /// SSD/NVMe random access through a map: 4 KiB alignment and page-placed records (NAND
    /// page and indirection unit ≥ 4 KiB, straddling doubles the lookups, §A3), small 64 KiB
    /// blocks so a compressed read decodes little, 256 MiB shards (§E, MDS uses 64 MiB),
    /// and a 256 KiB dictionary per shard of small records, so a compressed read decodes
    /// one record.
    pub const fn ssd() -> Self {
        MediaProfile {
            name: "ssd",
            code: 2,
            align: 4 * KIB,
            block_size: 64 * KIB as u64,
            shard_size: 256 * MIB,
            record_page: Some(4 * KIB),
            dictionary: Some(256 * KIB),
            read_chunk: MIB,
            stream_record: 512 * KIB,
            default_parity_percent: 0,
            sequential: false,
        }
    }

    /// LTO tape: 512 KiB records (LTFS default, HBA limits above it, §A4), everything
    /// aligned to a record, 32 MiB blocks (padding to a record costs < 1%), 4 GiB shards
    /// (≈10 s at 400 MB/s, §E), reads of one record or more.
    pub const fn tape() -> Self {
        MediaProfile {
            name: "tape",
            code: 3,
            align: 512 * KIB,
            block_size: 32 * MIB,
            shard_size: 4096 * MIB,
            record_page: None,
            dictionary: None,
            read_chunk: 16 * MIB,
            stream_record: 512 * KIB,
            default_parity_percent: 5,
            sequential: true,
        }
    }

    /// Optical discs: 64 KiB alignment (the BD ECC block; DVD's 32 KiB divides it, §A5),
    /// 8 MiB blocks, shards ≤ 1 GiB (files < 2 GiB need no ISO level 3, §A5).
    pub const fn optical() -> Self {
        MediaProfile {
            name: "optical",
            code: 4,
            align: 64 * KIB,
            block_size: 8 * MIB,
            shard_size: 1024 * MIB,
            record_page: None,
            dictionary: None,
            read_chunk: 16 * MIB,
            stream_record: 512 * KIB,
            default_parity_percent: 15,
            sequential: false,
        }
    }

    /// Every profile, in code order.
    pub const ALL: [MediaProfile; 5] = [
        MediaProfile::generic(),
        MediaProfile::hdd(),
        MediaProfile::ssd(),
        MediaProfile::tape(),
        MediaProfile::optical(),
    ];

    /// The profile called `name`.
    pub fn from_name(name: &str) -> Option<MediaProfile> {
        MediaProfile::ALL.into_iter().find(|p| p.name == name)
    }

    /// The profile with header byte `code`.
    pub fn from_code(code: u8) -> Option<MediaProfile> {
        MediaProfile::ALL.into_iter().find(|p| p.code == code)
    }
}

impl Default for MediaProfile {
    fn default() -> Self {
        MediaProfile::generic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_are_unique_and_valid() {
        for (i, p) in MediaProfile::ALL.iter().enumerate() {
            assert_eq!(p.code as usize, i);
            assert_eq!(MediaProfile::from_name(p.name), Some(*p));
            assert!(crate::format::is_valid_align(p.align));
            assert!(p.read_chunk >= 1 << 20);
            assert!(p.default_parity_percent <= 1000);
        }
        assert_eq!(MediaProfile::optical().default_parity_percent, 15);
        assert_eq!(MediaProfile::tape().default_parity_percent, 5);
        assert!(MediaProfile::hdd().sequential && MediaProfile::tape().sequential);
        assert!(!MediaProfile::ssd().sequential && !MediaProfile::optical().sequential);
    }

    #[test]
    fn volume_data_budget_leaves_room_for_parity() {
        let capacity = Volume::Dvd.capacity();
        let budget = volume_budget(capacity);
        assert_eq!(volume_data_budget(capacity, 0.0), budget);
        assert_eq!(volume_data_budget(capacity, f64::NAN), budget);
        let data = volume_data_budget(capacity, 15.0);
        assert_eq!(data, ((budget - (1 << 20)) as f64 * 100.0 / 117.0) as u64);
        // Data plus its parity and overhead fit the budget.
        assert!(data as f64 * 1.17 + f64::from(1u32 << 20) <= budget as f64);
        assert_eq!(volume_data_budget(0, 10.0), 0);
    }
}

/// Optical media by name, with their capacities in 2048-byte sectors (dvdisaster's sizes,
/// docs/design.md §3; BD sizes with defect management, the safe choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Volume {
    /// CD-R, 80 minutes.
    Cd,
    /// DVD±R single layer.
    Dvd,
    /// DVD±R dual layer.
    DvdDl,
    /// BD-R single layer (25 GB).
    Bd25,
    /// BD-R dual layer (50 GB).
    Bd50,
    /// BDXL triple layer (100 GB).
    Bd100,
    /// BDXL quadruple layer (128 GB).
    Bdxl128,
}

/// Bytes in an optical sector.
pub const SECTOR_BYTES: u64 = 2048;

impl Volume {
    /// Every medium, smallest first.
    pub const ALL: [Volume; 7] = [
        Volume::Cd,
        Volume::Dvd,
        Volume::DvdDl,
        Volume::Bd25,
        Volume::Bd50,
        Volume::Bd100,
        Volume::Bdxl128,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Volume::Cd => "cd",
            Volume::Dvd => "dvd",
            Volume::DvdDl => "dvd-dl",
            Volume::Bd25 => "bd25",
            Volume::Bd50 => "bd50",
            Volume::Bd100 => "bd100",
            Volume::Bdxl128 => "bdxl128",
        }
    }

    /// The medium called `name`.
    pub fn from_name(name: &str) -> Option<Volume> {
        Volume::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Capacity in sectors.
    pub fn sectors(self) -> u64 {
        match self {
            Volume::Cd => 359_424,
            Volume::Dvd => 2_295_104,
            Volume::DvdDl => 4_171_712,
            Volume::Bd25 => 11_826_176,
            Volume::Bd50 => 23_652_352,
            Volume::Bd100 => 47_305_728,
            Volume::Bdxl128 => 60_403_712,
        }
    }

    /// Capacity in bytes.
    pub fn capacity(self) -> u64 {
        self.sectors() * SECTOR_BYTES
    }
}

/// The bytes of a volume of `capacity` bytes left for shards and manifest when Reed-Solomon
/// parity of `parity_percent` % of the data is written beside them (the budget given to
/// [`crate::WriterBuilder::volume_size`]). The parity file takes `parity_percent` % of the
/// data, plus 2% and 1 MiB for its chunk tables, header and the rounding of its chunks;
/// without parity (0, negative or not a number) this is [`volume_budget`].
#[must_use]
pub fn volume_data_budget(capacity: u64, parity_percent: f64) -> u64 {
    let budget = volume_budget(capacity);
    if parity_percent > 0.0 {
        // Float to integer truncates toward zero and saturates: never over the budget.
        ((budget.saturating_sub(PARITY_OVERHEAD_BYTES)) as f64 * 100.0
            / (100.0 + parity_percent + PARITY_OVERHEAD_PERCENT)) as u64
    } else {
        budget
    }
}

/// Room a parity file needs beyond its parity chunks, as a share of the data (chunk
/// tables, rounding of the last chunk of each shard).
const PARITY_OVERHEAD_PERCENT: f64 = 2.0;
/// Room a parity file needs beyond its parity chunks, in bytes (header and tables).
const PARITY_OVERHEAD_BYTES: u64 = 1 << 20;

/// The bytes of a medium of `capacity` bytes left for archive files once its file system
/// (ISO 9660 / UDF volume descriptors, directories, anchors) has its room: 0.5% or 8 MiB,
/// whichever is more. Parity written beside the archive takes its share from what is left.
/// A budget too small for one shard beside the manifest's 1 MiB (such as the 0 given for
/// 8 MiB or less) is refused by [`crate::WriterBuilder::create`] (§2.1 rule 1).
#[must_use]
pub fn volume_budget(capacity: u64) -> u64 {
    capacity.saturating_sub((capacity / 200).max(8 << 20))
}
