//! The memory-mapped reader (§12): `Archive` opens the manifest only; shards are mapped on
//! first use; every read checks the CRCs on its path and returns an error, never other bytes.
//!
//! The read handles own what they read from: an [`Archive`] is a cheap clone of one shared
//! state, and a [`Sample`] holds a reference-counted handle to its bytes (the map itself for
//! stored records), so neither borrows the other and both can cross threads or live in a
//! Python object.

mod archive;
pub(crate) mod block;
pub mod order;
mod sample;
mod samples;
pub mod scan;
pub(crate) mod sequential;
mod shard;
pub mod stream;
pub(crate) mod window;

pub use archive::{Archive, ArchiveOptions, Iter};
pub use sample::Sample;
pub(crate) use sample::{BlockBytes, MappedRange};
pub use samples::Samples;
pub use shard::Shard;

/// The read types are documented as shareable between threads; this keeps them so.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Archive>();
    send_sync::<Shard>();
    send_sync::<Sample>();
    const fn send<T: Send>() {}
    send::<Iter>();
};
