#![doc = include_str!("../README.md")]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod archive;
mod codec;
mod error;
pub mod extract;
mod fetch;
pub mod format;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gc;
mod io;
mod limits;
mod merge;
pub mod pack;
mod parallel;
mod parity;
mod read;
mod salvage;
mod verify;
pub mod webdataset;
mod write;

pub use archive::leftover::{Leftover, LeftoverKind};
pub use archive::manifest;
pub use gc::{gc, GcReport};
pub use read::order;
pub use read::scan;

/// Tape streams (format-spec.md §16): reading one front to back in a single pass, and
/// turning one into an archive folder.
pub mod stream {
    pub use crate::read::stream::{Committed, StreamItem, StreamReader};
    pub use crate::write::unstream::{unstream, UnstreamReport};
}

pub use archive::manifest::Manifest;
pub use archive::media::{
    volume_budget, volume_data_budget, MediaProfile, Volume, MAX_STREAM_RECORD, MIN_STREAM_RECORD,
};
pub use error::{
    Defect, Error, ErrorKind, InputChange, Location, Result, Structure, TarLocation, TarProblem,
};
pub use fetch::{fetch, push, remove_remote, FetchOptions, FetchReport};
pub use format::stream::EntryKind;
pub use io::range_cache::RemoteCache;
pub use io::remote::{is_remote, without_credentials};
pub use io::trace::{IoKind, IoOp, IoTrace};
pub use io::{AccessPattern, ReadAt, SourceKind};
pub use limits::Limits;
pub use merge::{merge, merge_with_progress, MergeOptions, MergeReport, MergedInput};
pub use parity::{
    parity_status, protect, protect_with, repair, DamagedParityPart, ParityFileState, ParityPart,
    ParityStatus, ProtectOptions, ProtectReport, ProtectedFolder, RefusedFile, RepairReport,
    RepairedRange, MAX_PARITY_PERCENT, PARITY_FILE,
};
pub use read::{Archive, ArchiveOptions, Iter, Sample, Samples, Shard};
pub use salvage::{salvage, LostKind, LostRange, SalvageReport};
pub use verify::stream::{verify_stream, StreamVerifyReport};
pub use verify::{verify, verify_with_progress, Finding, VerifyMode, VerifyOptions, VerifyReport};
pub use write::{
    Compression, FieldData, Writer, WriterBuilder, LARGE_RECORD_BYTES, PARTIAL_SUFFIX, WRITER_NAME,
};
