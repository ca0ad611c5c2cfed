//! Writing, packing, verifying and protecting: builder options from keyword arguments, the
//! work done by the crate with the GIL released, reports handed back as JSON text that the
//! Python layer turns into objects.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use shardpack::pack::{pack_folder, PackOptions};
use shardpack::webdataset::{export, ExportOptions, TarPattern, TarSource};
use shardpack::{Compression, MediaProfile, VerifyMode, VerifyOptions, WriterBuilder};

use crate::errors::{usage, IntoPy};

/// The writer options that `Writer` and `pack` share.
#[derive(Default)]
pub struct Options {
    profile: Option<String>,
    shard_size: Option<u64>,
    block_size: Option<u64>,
    align: Option<u32>,
    compression: Option<String>,
    level: Option<i32>,
    dictionary: Option<u32>,
    archive_id: Option<String>,
    threads: Option<usize>,
}

impl Options {
    fn profile(&self) -> PyResult<MediaProfile> {
        let name = self.profile.as_deref().unwrap_or("generic");
        MediaProfile::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = MediaProfile::ALL.iter().map(|p| p.name).collect();
            PyValueError::new_err(format!(
                "no profile {name:?}; possible values: {}",
                names.join(", ")
            ))
        })
    }

    fn builder(&self) -> PyResult<WriterBuilder> {
        let compression = match (self.compression.as_deref(), self.level) {
            (None | Some("zstd"), level) => Compression::Zstd {
                level: level.unwrap_or(3),
            },
            (Some("none"), None) => Compression::None,
            (Some("none"), Some(_)) => {
                return Err(PyValueError::new_err(
                    "level applies to zstd compression only, not compression='none'",
                ))
            }
            (Some(other), _) => {
                return Err(PyValueError::new_err(format!(
                    "compression must be 'zstd' or 'none', not {other:?}"
                )))
            }
        };
        let mut builder = WriterBuilder::for_profile(self.profile()?).compression(compression);
        if let Some(n) = self.shard_size {
            builder = builder.shard_size(n);
        }
        if let Some(n) = self.block_size {
            builder = builder.block_size(n);
        }
        if let Some(n) = self.align {
            builder = builder.align(n);
        }
        if let Some(n) = self.dictionary {
            builder = builder.dictionary(Some(n).filter(|&n| n > 0));
        }
        if let Some(hex) = &self.archive_id {
            let id = shardpack::manifest::parse_hex::<16>(&hex.to_ascii_lowercase())
                .ok_or_else(|| PyValueError::new_err("archive_id must be 32 hex digits"))?;
            builder = builder.archive_id(id);
        }
        if let Some(n) = self.threads {
            builder = builder.threads(n);
        }
        Ok(builder)
    }
}

fn parity_percent(parity: Option<f64>) -> PyResult<Option<f64>> {
    match parity {
        Some(p) if !p.is_finite() || p < 0.0 => Err(PyValueError::new_err(format!(
            "parity must be a percentage from 0 to {}, not {p}",
            shardpack::MAX_PARITY_PERCENT
        ))),
        other => Ok(other),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// A field's bytes: a Python `bytes` borrowed in place, or a copy of another buffer.
enum FieldValue<'py> {
    Bytes(Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

/// Writes an archive folder sample by sample. Nothing in the folder looks finished until
/// `finish` writes the manifest.
#[pyclass(frozen, module = "shardpack._shardpack")]
pub struct Writer {
    path: PathBuf,
    inner: Mutex<Option<shardpack::Writer>>,
    parity: Option<f64>,
    profile: MediaProfile,
    appending: bool,
}

#[pymethods]
impl Writer {
    #[new]
    #[pyo3(signature = (path, *, profile = None, shard_size = None, block_size = None,
        align = None, compression = None, level = None, dictionary = None, archive_id = None,
        parity = None, threads = None, append = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        profile: Option<String>,
        shard_size: Option<u64>,
        block_size: Option<u64>,
        align: Option<u32>,
        compression: Option<String>,
        level: Option<i32>,
        dictionary: Option<u32>,
        archive_id: Option<String>,
        parity: Option<f64>,
        threads: Option<usize>,
        append: bool,
    ) -> PyResult<Self> {
        let options = Options {
            profile,
            shard_size,
            block_size,
            align,
            compression,
            level,
            dictionary,
            archive_id,
            threads,
        };
        let builder = options.builder()?;
        let parity = parity_percent(parity)?;
        let writer = if append {
            py.detach(|| builder.append(&path)).py()?
        } else {
            py.detach(|| builder.create(&path)).py()?
        };
        Ok(Writer {
            path,
            inner: Mutex::new(Some(writer)),
            parity,
            profile: options.profile()?,
            appending: append,
        })
    }

    /// Appends one sample; `fields` maps names to `bytes`, `str` (UTF-8) or any object
    /// with a contiguous byte buffer. Returns the sample's ordinal.
    fn write(&self, key: &str, fields: &Bound<'_, PyDict>) -> PyResult<u64> {
        let py = fields.py();
        // Bytes objects are borrowed as they are; anything else is copied once.
        let mut values: Vec<(String, FieldValue<'_>)> = Vec::with_capacity(fields.len());
        for (name, value) in fields.iter() {
            let name: String = name.extract()?;
            let value = if let Ok(bytes) = value.cast::<PyBytes>() {
                FieldValue::Bytes(bytes.clone())
            } else if let Ok(text) = value.cast::<PyString>() {
                FieldValue::Owned(text.to_str()?.as_bytes().to_vec())
            } else {
                let buffer =
                    PyBuffer::<u8>::get(&value).map_err(|_| {
                        PyValueError::new_err(format!(
                        "field {name:?}: expected bytes, str or a contiguous byte buffer, got {}",
                        value.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                    ))
                    })?;
                FieldValue::Owned(buffer.to_vec(py)?)
            };
            values.push((name, value));
        }
        let list: Vec<(&str, &[u8])> = values
            .iter()
            .map(|(n, v)| {
                let data = match v {
                    FieldValue::Bytes(b) => b.as_bytes(),
                    FieldValue::Owned(d) => d.as_slice(),
                };
                (n.as_str(), data)
            })
            .collect();
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| usage("the writer failed earlier"))?;
        let writer = guard
            .as_mut()
            .ok_or_else(|| usage(format!("{}: the writer is finished", self.path.display())))?;
        writer.append(key, &list).py()
    }

    /// Number of samples written so far.
    fn __len__(&self) -> usize {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|w| w.len() as usize))
            .unwrap_or(0)
    }

    /// Writes the last shard, the manifest and (with parity) the parity file; returns the
    /// manifest as JSON text.
    fn finish(&self, py: Python<'_>) -> PyResult<String> {
        let writer = self
            .inner
            .lock()
            .map_err(|_| usage("the writer failed earlier"))?
            .take()
            .ok_or_else(|| usage(format!("{}: the writer is finished", self.path.display())))?;
        let manifest = py.detach(|| writer.finish()).py()?;
        let percent = self.parity.unwrap_or(if self.appending {
            0.0
        } else {
            f64::from(self.profile.default_parity_percent)
        });
        if percent > 0.0 {
            let path = self.path.clone();
            let _report = py.detach(|| shardpack::protect(&path, percent)).py()?;
        }
        to_json(&manifest)
    }

    /// Drops the writer without a manifest: what it wrote never looks finished.
    fn abort(&self) {
        if let Ok(mut guard) = self.inner.lock() {
            guard.take();
        }
    }

    /// The archive folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

/// Packs folder `input` into a new archive `output`, grouping files into samples the
/// WebDataset way; returns the report as JSON text.
#[pyfunction]
#[pyo3(signature = (input, output, *, profile = None, shard_size = None, block_size = None,
    align = None, compression = None, level = None, dictionary = None, archive_id = None,
    parity = None, threads = None, skip_special = false))]
#[allow(clippy::too_many_arguments)]
pub fn pack(
    py: Python<'_>,
    input: PathBuf,
    output: PathBuf,
    profile: Option<String>,
    shard_size: Option<u64>,
    block_size: Option<u64>,
    align: Option<u32>,
    compression: Option<String>,
    level: Option<i32>,
    dictionary: Option<u32>,
    archive_id: Option<String>,
    parity: Option<f64>,
    threads: Option<usize>,
    skip_special: bool,
) -> PyResult<String> {
    let options = Options {
        profile,
        shard_size,
        block_size,
        align,
        compression,
        level,
        dictionary,
        archive_id,
        threads,
    };
    let builder = options.builder()?;
    let pack_options = PackOptions::new()
        .skip_special(skip_special)
        .parity_percent(parity_percent(parity)?);
    let report = py
        .detach(|| pack_folder(&input, &output, builder, &pack_options, &mut |_, _| {}))
        .py()?;
    to_json(&report)
}

/// Imports WebDataset tars (paths or brace patterns, `shards-{000000..000009}.tar`) into a
/// new archive `output`, grouping members into samples as webdataset does; returns the
/// report as JSON text.
#[pyfunction]
#[pyo3(signature = (inputs, output, *, profile = None, shard_size = None, block_size = None,
    align = None, compression = None, level = None, dictionary = None, archive_id = None,
    parity = None, threads = None, skip_special = false))]
#[allow(clippy::too_many_arguments)]
pub fn import_tar(
    py: Python<'_>,
    inputs: Vec<String>,
    output: PathBuf,
    profile: Option<String>,
    shard_size: Option<u64>,
    block_size: Option<u64>,
    align: Option<u32>,
    compression: Option<String>,
    level: Option<i32>,
    dictionary: Option<u32>,
    archive_id: Option<String>,
    parity: Option<f64>,
    threads: Option<usize>,
    skip_special: bool,
) -> PyResult<String> {
    let options = Options {
        profile,
        shard_size,
        block_size,
        align,
        compression,
        level,
        dictionary,
        archive_id,
        threads,
    };
    let builder = options.builder()?;
    let pack_options = PackOptions::new()
        .skip_special(skip_special)
        .parity_percent(parity_percent(parity)?);
    let mut sources = Vec::new();
    for input in &inputs {
        if input == "-" {
            return Err(PyValueError::new_err(
                "standard input is not read from Python; give a file name",
            ));
        }
        sources.extend(TarSource::from_arg(input).py()?);
    }
    let report = py
        .detach(|| {
            shardpack::webdataset::import(sources, &output, builder, &pack_options, &mut |_, _| {})
        })
        .py()?;
    to_json(&report)
}

/// Exports the archive in `archive` as WebDataset tars named by `pattern` (one printf-style
/// number, `out-%06d.tar`), a new tar when one would pass `shard_size` bytes; returns the
/// report as JSON text.
#[pyfunction]
#[pyo3(signature = (archive, pattern, *, shard_size = None))]
pub fn export_tar(
    py: Python<'_>,
    archive: PathBuf,
    pattern: &str,
    shard_size: Option<u64>,
) -> PyResult<String> {
    let pattern = TarPattern::parse(pattern).py()?;
    let options = ExportOptions::new().shard_size(shard_size);
    let report = py
        .detach(|| {
            let archive = shardpack::Archive::open(&archive)?;
            export(&archive, &pattern, &options, &mut |_, _| {})
        })
        .py()?;
    to_json(&report)
}

/// Verifies the archive in `path`; returns the report (every finding) as JSON text. A
/// remote archive is read through the cache folder `cache_dir` when one is given.
#[pyfunction]
#[pyo3(signature = (path, *, mode = "full", expect_root = None, cache_dir = None, cache_bytes = None))]
pub fn verify(
    py: Python<'_>,
    path: PathBuf,
    mode: &str,
    expect_root: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_bytes: Option<u64>,
) -> PyResult<String> {
    let mode = match mode {
        "quick" => VerifyMode::Quick,
        "full" => VerifyMode::Full,
        "deep" => VerifyMode::Deep,
        other => {
            return Err(PyValueError::new_err(format!(
                "mode must be 'quick', 'full' or 'deep', not {other:?}"
            )))
        }
    };
    let remote_cache = crate::read::remote_cache(cache_dir, cache_bytes)?;
    let options = VerifyOptions {
        mode,
        expect_root,
        remote_cache,
        ..VerifyOptions::default()
    };
    let report = py.detach(|| shardpack::verify(&path, &options)).py()?;
    to_json(&report)
}

/// Adds Reed-Solomon parity of `parity` per cent to the archive in `path`.
#[pyfunction]
#[pyo3(signature = (path, *, parity = 15.0))]
pub fn protect(py: Python<'_>, path: PathBuf, parity: f64) -> PyResult<String> {
    let report = py.detach(|| shardpack::protect(&path, parity)).py()?;
    to_json(&report)
}

/// Lists, and with `delete` removes, the leftovers of interrupted commands; returns the
/// report as JSON text.
#[pyfunction]
#[pyo3(signature = (path, *, delete = false))]
pub fn gc(py: Python<'_>, path: PathBuf, delete: bool) -> PyResult<String> {
    let report = py.detach(|| shardpack::gc(&path, delete)).py()?;
    to_json(&report)
}

/// Merges the archives `inputs`, in order, into a new archive at `output` without
/// re-encoding a block; returns the report as JSON text.
#[pyfunction]
#[pyo3(signature = (inputs, output, *, archive_id = None))]
pub fn merge(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    output: PathBuf,
    archive_id: Option<String>,
) -> PyResult<String> {
    let mut options = shardpack::MergeOptions::new();
    if let Some(hex) = &archive_id {
        let id = shardpack::manifest::parse_hex::<16>(&hex.to_ascii_lowercase())
            .ok_or_else(|| PyValueError::new_err("archive_id must be 32 hex digits"))?;
        options = options.archive_id(id);
    }
    let report = py
        .detach(|| shardpack::merge(&inputs, &output, &options))
        .py()?;
    to_json(&report)
}
