//! The one module with `unsafe`: exporting a sample's bytes through the buffer protocol, so
//! that `memoryview`, `numpy.frombuffer` and `torch.frombuffer` see them without a copy.
//!
//! Safety argument. A `FieldBytes` holds an `Arc` of the `shardpack::Sample` whose bytes it
//! exports, and never changes after creation (`frozen`). The sample's bytes are a range of
//! a read-only memory map, of a decoded block, or a vector the sample owns; none of them
//! moves or is freed while the sample lives, and nothing writes to them. The exported
//! buffer is read-only (`readonly = 1`, and a request for a writable buffer is refused
//! before anything is filled in). `PyBuffer_FillInfo` stores a new reference to the
//! `FieldBytes` in `view.obj`, and Python releases it only after the last consumer of the
//! view is done, so the pointer stays valid for the whole life of every view.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_void};
use std::sync::Arc;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// A read-only, zero-copy view of one field of a sample (or of its whole record).
#[pyclass(frozen, module = "shardpack._shardpack")]
pub struct FieldBytes {
    sample: Arc<shardpack::Sample>,
    start: usize,
    len: usize,
}

impl FieldBytes {
    /// Bytes `start..start + len` of `sample`'s record; the range is clamped to the record.
    pub fn new(sample: Arc<shardpack::Sample>, start: usize, len: usize) -> Self {
        let total = sample.record_bytes().len();
        let start = start.min(total);
        let len = len.min(total - start);
        FieldBytes { sample, start, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.sample.record_bytes()[self.start..self.start + self.len]
    }
}

#[pymethods]
impl FieldBytes {
    fn __len__(&self) -> usize {
        self.len
    }

    /// # Safety
    /// Called by CPython with a valid `view` to fill in (see the module comment).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no buffer to fill in"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err(
                "shardpack sample bytes are read-only (they may be a read-only memory map); \
                 copy them with bytes() or numpy.array() to modify",
            ));
        }
        let bytes = slf.get().bytes();
        let (ptr, len) = (
            bytes.as_ptr() as *mut c_void,
            bytes.len() as ffi::Py_ssize_t,
        );
        // SAFETY: `view` is non-null and CPython's to fill; `ptr..ptr + len` stays valid and
        // unchanged while `slf`, referenced from `view.obj` by this call, lives.
        let status = unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr, len, 1, flags) };
        if status == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(slf.py()))
        }
    }

    /// Nothing to release: `view.obj` holds the bytes alive, and CPython drops it.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
