//! A sample read from an archive, and the shared bytes it holds on to.

use std::ops::Range;
use std::sync::Arc;

use crate::format::record::RecordView;
use crate::format::DecodeError;
use crate::io::ReadAt;

/// The bytes of a block a sample may share: decoded into memory, or a range of a map.
pub(crate) type BlockBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A range of a shard's map, shared by the samples of a stored block read by a scan.
pub(crate) struct MappedRange(pub(crate) Arc<dyn ReadAt>, pub(crate) Range<usize>);

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        in_memory(&self.0, &self.1)
    }
}

/// Bytes `range` of a source that holds its bytes in memory (checked when the range was
/// handed out).
fn in_memory<'a>(source: &'a Arc<dyn ReadAt>, range: &Range<usize>) -> &'a [u8] {
    source
        .in_memory()
        .and_then(|all| all.get(range.clone()))
        .unwrap_or_default()
}

/// Where a sample's bytes are: in a shard's map, in a decoded block it shares, or its own.
pub(crate) enum SampleBytes {
    Mapped(Arc<dyn ReadAt>, Range<usize>),
    Decoded(BlockBytes, Range<usize>),
    Owned(Vec<u8>),
}

impl SampleBytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            SampleBytes::Mapped(source, range) => in_memory(source, range),
            SampleBytes::Decoded(data, range) => {
                (**data).as_ref().get(range.clone()).unwrap_or_default()
            }
            SampleBytes::Owned(bytes) => bytes,
        }
    }
}

/// One sample read from an archive. Fields of stored blocks borrow straight from the map
/// (zero-copy); fields of compressed blocks borrow from the shared decoded block. A sample
/// holds a reference-counted handle to those bytes, so it outlives the [`crate::Archive`]
/// and the read that returned it; the map stays while any sample of it does.
pub struct Sample {
    pub(crate) ordinal: u64,
    pub(crate) shard: u32,
    pub(crate) bytes: SampleBytes,
    pub(crate) field_count: usize,
    pub(crate) key_len: usize,
}

impl Sample {
    /// A sample in a decoded block read sequentially; its layout is checked here.
    pub(crate) fn from_block(
        ordinal: u64,
        shard: u32,
        data: BlockBytes,
        range: Range<usize>,
    ) -> std::result::Result<Self, DecodeError> {
        let view = RecordView::parse((*data).as_ref().get(range.clone()).unwrap_or_default())?;
        let (field_count, key_len) = (view.field_count(), view.key_len());
        Ok(Sample {
            ordinal,
            shard,
            bytes: SampleBytes::Decoded(data, range),
            field_count,
            key_len,
        })
    }
}

impl Sample {
    fn view(&self) -> RecordView<'_> {
        RecordView::from_checked(self.bytes.as_slice(), self.field_count, self.key_len)
    }

    /// Global ordinal.
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    /// Number of the shard holding the sample.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The key.
    pub fn key(&self) -> &str {
        self.view().key()
    }

    /// Number of fields.
    pub fn field_count(&self) -> usize {
        self.field_count
    }

    /// The (name, data) pairs in stored order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.view().fields()
    }

    /// The data of field `name`.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.view()
            .fields()
            .find(|(n, _)| *n == name)
            .map(|(_, data)| data)
    }

    /// The whole record's bytes as stored (§6.3).
    pub fn record_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// True when the fields borrow from the memory map with no copy or decode.
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.bytes, SampleBytes::Mapped(..))
    }
}

impl std::fmt::Debug for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sample")
            .field("ordinal", &self.ordinal)
            .field("key", &self.key())
            .field(
                "fields",
                &self
                    .fields()
                    .map(|(n, d)| (n.to_string(), d.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
