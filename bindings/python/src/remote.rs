//! Copying archives over the network (`fetch`, `push`) and removing a remote folder: what
//! `shardpack.cluster` needs for an `s3://` or `http(s)://` target, each a call of the
//! crate's function of that name with the GIL released.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use shardpack::FetchOptions;

use crate::errors::{to_py, IntoPy};

/// Downloads the archive at `url` into the folder `output`, checked and resumable; returns
/// what it did. A shard that arrives damaged twice raises its error (the first, in shard
/// order) and no manifest is written.
#[pyfunction]
#[pyo3(signature = (url, output, *, expect_root = None, parallel = 4))]
pub fn fetch<'py>(
    py: Python<'py>,
    url: &str,
    output: PathBuf,
    expect_root: Option<String>,
    parallel: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let options = FetchOptions {
        expect_root,
        parallel,
        ..FetchOptions::default()
    };
    let mut report = py
        .detach(|| shardpack::fetch(url, &output, &options, &|_, _| {}))
        .py()?;
    if !report.failed.is_empty() {
        let (_, first) = report.failed.swap_remove(0);
        return Err(to_py(first));
    }
    let out = PyDict::new(py);
    out.set_item("root", &report.root)?;
    out.set_item("shards", report.shards)?;
    out.set_item("bytes", report.bytes)?;
    out.set_item("bytes_fetched", report.bytes_fetched)?;
    out.set_item("already_there", report.already_there)?;
    out.set_item("resumed", report.resumed)?;
    out.set_item("refetched", report.refetched)?;
    out.set_item("restarted", report.restarted)?;
    Ok(out)
}

/// Uploads the archive folder `path` to `url`, the manifest last; returns the shard bytes
/// uploaded.
#[pyfunction]
pub fn push(py: Python<'_>, path: PathBuf, url: &str) -> PyResult<u64> {
    py.detach(|| shardpack::push(&path, url, &|_, _| {})).py()
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
