//! Reading: `Archive`, `Sample` and the iterators, over the crate's owned read handles.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyIndexError, PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList, PyMemoryView, PyTuple};
use shardpack::SourceKind;

use crate::buffer::FieldBytes;
use crate::errors::{to_py, IntoPy};

/// The on-disk cache of remote reads a Python call asked for: `cache_bytes` bounds the
/// folder `cache_dir`, so the bound alone is a mistake, not a request.
pub(crate) fn remote_cache(
    cache_dir: Option<PathBuf>,
    cache_bytes: Option<u64>,
) -> PyResult<Option<shardpack::RemoteCache>> {
    match (cache_dir, cache_bytes) {
        (Some(dir), bytes) => Ok(Some(shardpack::RemoteCache::new(
            dir,
            bytes.unwrap_or(shardpack::RemoteCache::DEFAULT_MAX_BYTES),
        ))),
        (None, Some(_)) => Err(PyValueError::new_err(
            "cache_bytes bounds the folder given as cache_dir; give cache_dir too",
        )),
        (None, None) => Ok(None),
    }
}

/// Opens the archive in folder `path`; only the manifest is read until a sample is.
#[pyfunction]
#[pyo3(signature = (
    path, *, source = "mmap", expect_root = None, generation = None, cache_dir = None,
    cache_bytes = None
))]
pub fn open(
    py: Python<'_>,
    path: PathBuf,
    source: &str,
    expect_root: Option<&str>,
    generation: Option<u64>,
    cache_dir: Option<PathBuf>,
    cache_bytes: Option<u64>,
) -> PyResult<Archive> {
    let kind = match source {
        "mmap" => SourceKind::Map,
        "pread" => SourceKind::Pread,
        other => {
            return Err(PyValueError::new_err(format!(
                "source must be 'mmap' or 'pread', not {other:?}"
            )))
        }
    };
    let options = shardpack::Archive::options().source(kind);
    let options = match generation {
        Some(number) => options.generation(number),
        None => options,
    };
    let options = match remote_cache(cache_dir, cache_bytes)? {
        Some(cache) => options.remote_cache(cache.dir(), cache.max_bytes()),
        None => options,
    };
    let archive = py.detach(|| options.open(&path)).py()?;
    if let Some(root) = expect_root {
        if !root.eq_ignore_ascii_case(archive.root_digest()) {
            return Err(crate::errors::usage(format!(
                "{}: root digest is {}, not the expected {root}: the archive changed since it \
                 was opened",
                path.display(),
                archive.root_digest()
            )));
        }
    }
    Ok(Archive {
        inner: archive,
        source: source.to_string(),
    })
}

/// An open archive. Cheap to share between threads; pickles by path and root digest.
#[pyclass(frozen, module = "shardpack._shardpack")]
pub struct Archive {
    pub(crate) inner: shardpack::Archive,
    source: String,
}

impl Archive {
    fn ordinal(&self, index: i64) -> PyResult<u64> {
        let len = self.inner.len();
        let ordinal = if index < 0 {
            len.checked_sub(index.unsigned_abs())
        } else {
            Some(index as u64).filter(|&i| i < len)
        };
        ordinal.ok_or_else(|| {
            PyIndexError::new_err(format!(
                "index {index} is out of range for an archive of {len} samples"
            ))
        })
    }

    /// [`Archive::ordinal`] of each of `indices`.
    fn ordinals(&self, indices: &[i64]) -> PyResult<Vec<u64>> {
        indices.iter().map(|&i| self.ordinal(i)).collect()
    }
}

#[pymethods]
impl Archive {
    fn __len__(&self) -> usize {
        self.inner.len() as usize
    }

    fn __getitem__(&self, py: Python<'_>, index: i64) -> PyResult<Sample> {
        let ordinal = self.ordinal(index)?;
        let sample = py.detach(|| self.inner.get(ordinal)).py()?;
        Ok(Sample::new(sample))
    }

    /// The sample with `key`, or `default`.
    #[pyo3(signature = (key, default = None))]
    fn get(&self, py: Python<'_>, key: &str, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        match py.detach(|| self.inner.get_by_key(key)).py()? {
            Some(sample) => Ok(Py::new(py, Sample::new(sample))?.into_any()),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    /// The samples at `indices` (negative ones count from the end), in the order asked; the
    /// reads are made in file order with the GIL released.
    fn get_many(&self, py: Python<'_>, indices: Vec<i64>) -> PyResult<Vec<Sample>> {
        let ordinals = self.ordinals(&indices)?;
        // The samples are boxed with the GIL released too: only the Python objects are
        // made while it is held.
        let read: Vec<_> = py.detach(|| {
            self.inner
                .get_many(&ordinals)
                .into_iter()
                .map(|sample| sample.map(Arc::new))
                .collect()
        });
        read.into_iter()
            .map(|sample| sample.map(|inner| Sample { inner }).map_err(to_py))
            .collect()
    }

    /// The samples at `indices` gathered field by field into one buffer, for handing a
    /// batch on as two large objects (to another process, to a device) instead of an
    /// object per sample and field: `(keys, ordinals, names, bytes, starts, lengths)`.
    /// `bytes` holds field `names[0]` of every sample, in order, then `names[1]`, ...;
    /// `starts[f * n + i]` and `lengths[f * n + i]` place field `f` of sample `i` in it,
    /// with length -1 for a sample without that field. Fields are in the order they are
    /// first met. The reads are made as `get_many`'s; the first sample that fails to read
    /// is the error.
    #[allow(clippy::type_complexity)]
    fn get_batch<'py>(
        &self,
        py: Python<'py>,
        indices: Vec<i64>,
    ) -> PyResult<(
        Vec<String>,
        Vec<u64>,
        Vec<String>,
        Bound<'py, PyByteArray>,
        Vec<i64>,
        Vec<i64>,
    )> {
        let ordinals = self.ordinals(&indices)?;
        let read = py.detach(|| {
            self.inner
                .get_many(&ordinals)
                .into_iter()
                .collect::<shardpack::Result<Vec<_>>>()
        });
        let samples = read.map_err(to_py)?;
        let mut names: Vec<&str> = Vec::new();
        for sample in &samples {
            for (name, _) in sample.fields() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let cells = names.len() * samples.len();
        let (mut starts, mut lengths) = (Vec::with_capacity(cells), Vec::with_capacity(cells));
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(cells);
        let mut total = 0usize;
        for &name in &names {
            for sample in &samples {
                let field = sample.field(name);
                starts.push(total as i64);
                lengths.push(field.map_or(-1, |bytes| bytes.len() as i64));
                pieces.extend(field);
                total += field.map_or(0, <[u8]>::len);
            }
        }
        let gathered = PyByteArray::new_with(py, total, |out| {
            let mut at = 0;
            for bytes in &pieces {
                if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                    dst.copy_from_slice(bytes);
                }
                at += bytes.len();
            }
            Ok(())
        })?;
        let keys = samples.iter().map(|s| s.key().to_string()).collect();
        let names = names.into_iter().map(str::to_string).collect();
        Ok((keys, ordinals, names, gathered, starts, lengths))
    }

    /// What PyTorch's fetcher calls for a whole batch.
    fn __getitems__(&self, py: Python<'_>, indices: Vec<i64>) -> PyResult<Vec<Sample>> {
        self.get_many(py, indices)
    }

    /// The key of the sample at `index`, from the index alone. The index may have to be
    /// read first, over the network for a remote archive: without the GIL, as every read.
    fn key(&self, py: Python<'_>, index: i64) -> PyResult<String> {
        let ordinal = self.ordinal(index)?;
        py.detach(|| self.inner.key(ordinal).map(|k| k.into_owned()))
            .py()
    }

    /// Every sample in file order, one `get` at a time through the map.
    fn __iter__(&self) -> SampleIter {
        SampleIter::new(Box::new(self.inner.iter()))
    }

    /// Every sample in file order, read ahead in large sequential reads on a thread of its
    /// own: the fastest way through a whole archive.
    fn scan(&self) -> SampleIter {
        SampleIter::new(Box::new(self.inner.scan()))
    }

    /// The archive folder (for a remote archive, its URL as a path: use `url`).
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    /// The URL of a remote archive (without credentials); `None` for a local folder.
    #[getter]
    fn url(&self) -> Option<String> {
        self.inner.url().map(str::to_string)
    }

    /// The root digest (64 hex digits) that binds the manifest and every shard.
    #[getter]
    fn root(&self) -> String {
        self.inner.root_digest().to_string()
    }

    /// The generation this archive was opened at (1 for one never appended to).
    #[getter]
    fn generation(&self) -> u64 {
        self.inner.generation()
    }

    /// Number of shards.
    #[getter]
    fn shard_count(&self) -> usize {
        self.inner.shard_count()
    }

    /// Samples in each shard, in shard order.
    #[getter]
    fn shard_samples(&self) -> Vec<u64> {
        self.inner
            .manifest()
            .shards
            .iter()
            .map(|s| s.samples)
            .collect()
    }

    /// The folder remote reads are cached in (`cache_dir` of `open`), or None.
    #[getter]
    fn cache_dir(&self) -> Option<PathBuf> {
        self.inner.remote_cache().map(|c| c.dir().to_path_buf())
    }

    /// The most bytes the cache folder holds, or None without one.
    #[getter]
    fn cache_bytes(&self) -> Option<u64> {
        self.inner.remote_cache().map(|c| c.max_bytes())
    }

    /// The manifest as JSON text.
    fn manifest_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.manifest())
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Pickles by reference: the worker reopens the folder and checks the root digest.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let reopen = py.import("shardpack")?.getattr("_reopen")?;
        // A path would fold a URL's `//`: a remote archive reopens by its URL.
        let location = match self.inner.url() {
            Some(url) => url.into_pyobject(py)?.into_any(),
            None => self
                .inner
                .path()
                .to_path_buf()
                .into_pyobject(py)?
                .into_any(),
        };
        let args = (
            location,
            self.source.clone(),
            self.inner.root_digest().to_string(),
            self.inner.generation(),
            self.cache_dir(),
            self.cache_bytes(),
        );
        PyTuple::new(py, [reopen.into_any(), args.into_pyobject(py)?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "<shardpack.Archive {} samples={} shards={} root={}>",
            self.inner.path().display(),
            self.inner.len(),
            self.inner.shard_count(),
            &self.inner.root_digest()[..16.min(self.inner.root_digest().len())]
        )
    }
}

/// A sample: a read-only mapping from field names to `memoryview`s of its bytes, which
/// borrow the map for stored fields (zero-copy) and keep it alive while any view does.
#[pyclass(frozen, module = "shardpack._shardpack", mapping)]
pub struct Sample {
    inner: Arc<shardpack::Sample>,
}

impl Sample {
    pub(crate) fn new(sample: shardpack::Sample) -> Self {
        Sample {
            inner: Arc::new(sample),
        }
    }

    fn view<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyMemoryView>> {
        let record = self.inner.record_bytes();
        let start = data.as_ptr() as usize - record.as_ptr() as usize;
        let bytes = Bound::new(py, FieldBytes::new(self.inner.clone(), start, data.len()))?;
        PyMemoryView::from(bytes.as_any())
    }
}

#[pymethods]
impl Sample {
    /// The sample's key.
    #[getter]
    fn key(&self) -> &str {
        self.inner.key()
    }

    /// The sample's global ordinal.
    #[getter]
    fn ordinal(&self) -> u64 {
        self.inner.ordinal()
    }

    /// The number of the shard holding it.
    #[getter]
    fn shard(&self) -> u32 {
        self.inner.shard()
    }

    /// True when the fields borrow the memory map with no copy or decode.
    #[getter]
    fn zero_copy(&self) -> bool {
        self.inner.is_zero_copy()
    }

    fn __len__(&self) -> usize {
        self.inner.field_count()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyMemoryView>> {
        match self.inner.field(name) {
            Some(data) => self.view(py, data),
            None => Err(PyKeyError::new_err(name.to_string())),
        }
    }

    fn __contains__(&self, name: &str) -> bool {
        self.inner.field(name).is_some()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyList::new(py, self.keys())?
            .as_any()
            .try_iter()
            .map(Bound::into_any)
    }

    /// The field names in stored order.
    fn keys(&self) -> Vec<String> {
        self.inner.fields().map(|(n, _)| n.to_string()).collect()
    }

    /// The field `name`, or `default`.
    #[pyo3(signature = (name, default = None))]
    fn get(&self, py: Python<'_>, name: &str, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        match self.inner.field(name) {
            Some(data) => Ok(self.view(py, data)?.into_any().unbind()),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    /// (name, view) pairs in stored order.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyMemoryView>)>> {
        self.inner
            .fields()
            .map(|(n, d)| Ok((n.to_string(), self.view(py, d)?)))
            .collect()
    }

    /// The views in stored order.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyMemoryView>>> {
        self.inner.fields().map(|(_, d)| self.view(py, d)).collect()
    }

    /// The whole record as stored (format-spec.md §6.3).
    fn record<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyMemoryView>> {
        self.view(py, self.inner.record_bytes())
    }

    fn __repr__(&self) -> String {
        let fields: Vec<String> = self
            .inner
            .fields()
            .map(|(n, d)| format!("{n}: {} bytes", d.len()))
            .collect();
        format!(
            "<shardpack.Sample {} #{} {{{}}}>",
            self.inner.key(),
            self.inner.ordinal(),
            fields.join(", ")
        )
    }
}

type SampleSource = Box<dyn Iterator<Item = shardpack::Result<shardpack::Sample>> + Send>;

/// An iterator over samples; a damaged sample raises its error, and the next call goes on.
#[pyclass(frozen, module = "shardpack._shardpack")]
pub struct SampleIter {
    inner: Mutex<SampleSource>,
}

impl SampleIter {
    fn new(inner: SampleSource) -> Self {
        SampleIter {
            inner: Mutex::new(inner),
        }
    }
}

impl Drop for SampleIter {
    /// A scan's drop waits for its reader thread, which may be in a request to a server:
    /// never with the GIL held, so that Python threads (a server in this process, say)
    /// run meanwhile.
    fn drop(&mut self) {
        let inner = std::mem::replace(
            self.inner
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Box::new(std::iter::empty()),
        );
        Python::attach(|py| py.detach(move || drop(inner)));
    }
}

#[pymethods]
impl SampleIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Sample>> {
        let next = py.detach(|| match self.inner.lock() {
            Ok(mut inner) => inner.next(),
            Err(poisoned) => poisoned.into_inner().next(),
        });
        next.map(|s| s.map(Sample::new).map_err(to_py)).transpose()
    }
}
