//! Copying archives between a local folder and an object store (`fetch`, `push`) and
//! removing a remote folder: what `shardpack.cluster` needs for an `s3://` or `http(s)://`
//! target, each a call of the crate's function of that name with the GIL released.

use std::path::PathBuf;

use pyo3::prelude::*;
use shardpack::FetchOptions;

use crate::errors::{usage, IntoPy};

/// Downloads the remote archive at `url` into the folder `dir`; with `expect_root`, an
/// archive with another root is refused before a shard is fetched. Returns the root.
#[pyfunction]
#[pyo3(signature = (url, dir, *, expect_root = None))]
pub fn fetch(
    py: Python<'_>,
    url: String,
    dir: PathBuf,
    expect_root: Option<String>,
) -> PyResult<String> {
    let options = FetchOptions {
        expect_root,
        ..FetchOptions::default()
    };
    let report = py
        .detach(|| shardpack::fetch(&url, &dir, &options, &|_, _| {}))
        .py()?;
    if let Some((_, first)) = report.failed.into_iter().next() {
        return Err(first).py();
    }
    Ok(report.root)
}

/// Uploads the local archive folder `dir` to the remote folder `url`, the manifest last;
/// returns the shard bytes uploaded.
#[pyfunction]
pub fn push(py: Python<'_>, dir: PathBuf, url: String) -> PyResult<u64> {
    if !shardpack::is_remote(&url) {
        return Err(usage(format!(
            "{url}: not an http://, https:// or s3:// URL"
        )));
    }
    py.detach(|| shardpack::push(&dir, &url, &|_, _| {})).py()
}

/// Removes the remote folder `url` and every object under it; returns how many.
#[pyfunction]
pub fn remove_remote(py: Python<'_>, url: String) -> PyResult<u64> {
    py.detach(|| shardpack::remove_remote(&url)).py()
}

/// True when `location` names a remote folder (`http://`, `https://` or `s3://`).
#[pyfunction]
pub fn is_remote(location: &str) -> bool {
    shardpack::is_remote(location)
}
