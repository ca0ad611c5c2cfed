//! What an archive is beyond its shard files: the manifest and its root digest, the media
//! profiles that choose a layout, and the volumes a split archive is spread over.

pub mod leftover;
pub mod manifest;
pub(crate) mod media;
pub(crate) mod volume;
