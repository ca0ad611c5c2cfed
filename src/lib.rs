#![doc = include_str!("../README.md")]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod codec;
pub mod cost_model;
mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
mod limits;
pub mod manifest;
mod media;
mod output;
mod parity;
mod pipeline;
mod read;
mod salvage;
pub mod scan;
mod source;
pub mod stream;
mod verify;
mod volume;
mod write;

pub use error::{Error, ErrorKind, Location, Result};
pub use format::stream::EntryKind;
pub use limits::Limits;
pub use manifest::Manifest;
pub use media::{volume_budget, MediaProfile, Volume, MAX_STREAM_RECORD, MIN_STREAM_RECORD};
pub use parity::{
    parity_status, protect, repair, ParityStatus, ProtectReport, ProtectedFolder, RepairReport,
    RepairedRange, PARITY_FILE,
};
pub use read::{Archive, Iter, Sample, Shard};
pub use salvage::{salvage, LostRange, SalvageReport};
pub use source::trace::{IoKind, IoOp, IoTrace};
pub use verify::{verify, verify_with_progress, Finding, VerifyMode, VerifyOptions, VerifyReport};
pub use write::{Compression, Writer, WriterBuilder, PARTIAL_SUFFIX, WRITER_NAME};
