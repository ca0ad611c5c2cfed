pub mod append;
pub mod bench;
pub mod cat;
pub mod export;
pub mod extract;
pub mod fetch;
pub mod gc;
pub mod import;
pub mod info;
pub mod ls;
pub mod merge;
pub mod pack;
pub mod protect;
pub mod push;
pub mod repair;
pub mod salvage;
pub mod unstream;
pub mod verify;

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The on-disk cache of remote bytes given by `--cache-dir`, set once before any command.
static REMOTE_CACHE: std::sync::OnceLock<shardpack::RemoteCache> = std::sync::OnceLock::new();

/// Reads of remote archives go through `cache` (`--cache-dir`, `--cache-size`).
pub fn use_remote_cache(cache: shardpack::RemoteCache) {
    let _ = REMOTE_CACHE.set(cache);
}

/// The cache `--cache-dir` asked for, if any.
pub fn remote_cache() -> Option<shardpack::RemoteCache> {
    REMOTE_CACHE.get().cloned()
}

/// Archive options with the command line's global choices (`--cache-dir`).
pub fn archive_options() -> shardpack::ArchiveOptions {
    let options = shardpack::Archive::options();
    match remote_cache() {
        Some(cache) => options.remote_cache(cache.dir(), cache.max_bytes()),
        None => options,
    }
}

/// Opens the archive folder at `path`: its current generation, or generation `number`.
pub fn open_archive(path: &Path, generation: Option<u64>) -> shardpack::Result<shardpack::Archive> {
    let options = archive_options();
    match generation {
        Some(number) => options.generation(number).open(path),
        None => options.open(path),
    }
}

/// An archive argument as messages show it: a URL without credentials, or the path.
pub fn shown(path: &Path) -> String {
    shardpack::without_credentials(&path.to_string_lossy())
}

/// Refuses a listing's symbolic links and special files, or with `skip` warns that each is
/// skipped.
pub fn refuse_or_skip_special(listing: &shardpack::pack::FolderListing, skip: bool) -> Result<()> {
    for special in listing.special_files() {
        if !skip {
            anyhow::bail!(
                "{} is {}; shardpack packs regular files only (use --skip-special to skip it)",
                special.path.display(),
                special.kind
            );
        }
        eprintln!(
            "shardpack: warning: skipping {} ({})",
            special.path.display(),
            special.kind
        );
    }
    Ok(())
}

/// True when the archive argument names a stream on standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Refuses `-` (a stream) for a command that reads archive folders only, saying what to do.
pub fn refuse_stream(path: &Path, command: &str) -> Result<()> {
    if is_stdin(path) {
        anyhow::bail!(
            "{command} reads an archive folder, not a stream (-): `shardpack unstream - -o DIR` first"
        );
    }
    Ok(())
}

/// Opens a stream input: `-` is standard input, read straight from file descriptor 0 so
/// that every read asks the device for whole records; anything else is a file or device.
pub fn open_stream_input(path: &Path) -> Result<(File, PathBuf)> {
    if is_stdin(path) {
        use std::os::fd::AsFd;
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot use standard input")?;
        Ok((File::from(fd), PathBuf::from("<stdin>")))
    } else {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok((file, path.to_path_buf()))
    }
}
