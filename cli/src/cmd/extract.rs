//! `shardpack extract`: recreate the packed files, never writing outside the target folder.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use shardpack::Archive;

use crate::output::progress_bar;

/// Recreate every file byte for byte under DIR: sample key + "." + field name (the key
/// alone for an empty field name).
///
/// DIR must not exist or be empty. Paths are checked before anything is written: absolute
/// paths, "..", "." and empty components are refused; no symbolic link is created or
/// followed, and no existing file is overwritten. A refused or damaged sample is reported,
/// the rest is extracted, and the exit status is 1.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder, or - for a stream on standard input.
    archive: PathBuf,
    /// The folder to create.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: Args) -> Result<u8> {
    if super::is_stdin(&args.archive) {
        return run_stream(&args);
    }
    let archive = Archive::open(&args.archive)
        .with_context(|| format!("cannot open archive {}", args.archive.display()))?;
    prepare_target(&args.output)?;
    let bar = progress_bar(archive.manifest().totals.raw_bytes, "extract");
    let mut failures = 0u64;
    for item in archive.iter() {
        let sample = match item {
            Ok(s) => s,
            Err(e) if e.is_corruption() => {
                eprintln!("shardpack: error: {e}");
                failures += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        failures += extract_sample(&args.output, &sample);
        bar.inc(sample.fields().map(|(_, d)| d.len() as u64).sum());
    }
    bar.finish_and_clear();
    if failures > 0 {
        eprintln!("shardpack: {failures} file(s) not extracted");
        return Ok(crate::EXIT_DEFECTS);
    }
    Ok(crate::EXIT_OK)
}

/// Writes every field of `sample` under `dir`; returns how many could not be written.
fn extract_sample(dir: &Path, sample: &shardpack::Sample) -> u64 {
    let mut failures = 0;
    for (name, data) in sample.fields() {
        let rel = if name.is_empty() {
            sample.key().to_string()
        } else {
            format!("{}.{name}", sample.key())
        };
        if let Err(e) = write_inside(dir, &rel, data) {
            eprintln!(
                "shardpack: error: sample {} ({:?}): {e:#}",
                sample.ordinal(),
                sample.key()
            );
            failures += 1;
        }
    }
    failures
}

/// Extracts a stream from standard input as it passes; stops at the first damage (a
/// stream cannot be resynchronised in one pass) with everything before it written.
fn run_stream(args: &Args) -> Result<u8> {
    let (input, name) = super::open_stream_input(&args.archive)?;
    let reader = shardpack::stream::StreamReader::new(input, name, shardpack::Limits::default())?;
    prepare_target(&args.output)?;
    let mut failures = 0u64;
    for item in reader {
        match item {
            Ok(shardpack::stream::StreamItem::Sample(sample)) => {
                failures += extract_sample(&args.output, &sample)
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("shardpack: error: {e}");
                return Ok(crate::EXIT_DEFECTS);
            }
        }
    }
    if failures > 0 {
        eprintln!("shardpack: {failures} file(s) not extracted");
        return Ok(crate::EXIT_DEFECTS);
    }
    Ok(crate::EXIT_OK)
}

fn prepare_target(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if fs::read_dir(dir)?.next().is_some() {
                bail!(
                    "output folder {} is not empty; extract into a new folder",
                    dir.display()
                );
            }
            Ok(())
        }
        Ok(_) => bail!("output {} exists and is not a folder", dir.display()),
        Err(_) => {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        }
    }
}

/// The relative path's components, refusing anything that could leave the target folder.
pub fn safe_components(rel: &str) -> Result<Vec<&str>> {
    if rel.starts_with('/') {
        bail!("refusing absolute path {rel:?}");
    }
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts {
        if part.is_empty() || *part == "." || *part == ".." || part.contains('\0') {
            bail!("refusing unsafe path {rel:?} (empty, '.' or '..' component)");
        }
    }
    Ok(parts)
}

/// Writes `data` at `root/rel`, creating folders one component at a time and refusing to
/// pass through anything that is not a real folder we can see (such as a symbolic link).
fn write_inside(root: &Path, rel: &str, data: &[u8]) -> Result<()> {
    let parts = safe_components(rel)?;
    let Some((file_name, folders)) = parts.split_last() else {
        bail!("empty path")
    };
    let mut dir = root.to_path_buf();
    for part in folders {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => bail!("refusing to write through {} (not a folder)", dir.display()),
            Err(_) => {
                fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?
            }
        }
    }
    let path = dir.join(file_name);
    // create_new is O_CREAT|O_EXCL: it never follows a symbolic link and never overwrites.
    let mut file = fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::safe_components;

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "",
            "a/",
        ] {
            assert!(safe_components(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            safe_components("a/b c/..d").unwrap(),
            vec!["a", "b c", "..d"]
        );
    }
}
