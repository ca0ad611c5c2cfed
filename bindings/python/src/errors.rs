//! Rust errors as the Python exceptions of `shardpack.errors`: one class per error kind,
//! carrying the location as attributes, and picklable, so an error raised in a data-loader
//! worker reaches the main process.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use shardpack::{Error, ErrorKind};

/// Converts a library error into the matching `shardpack.errors` exception.
pub fn to_py(error: Error) -> PyErr {
    Python::attach(|py| build(py, &error).unwrap_or_else(|e| e))
}

/// `Result` conversion for `?` in the bindings.
pub trait IntoPy<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for shardpack::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

fn build(py: Python<'_>, error: &Error) -> PyResult<PyErr> {
    let attrs = PyDict::new(py);
    if let Some(location) = error.location() {
        attrs.set_item("file", location.file.to_string_lossy().into_owned())?;
        attrs.set_item("shard", location.shard)?;
        attrs.set_item("offset", location.offset)?;
        attrs.set_item("length", location.len)?;
    }
    let class = match error.kind() {
        ErrorKind::Io {
            path,
            op,
            offset,
            source,
        } => {
            attrs.set_item("file", path.to_string_lossy().into_owned())?;
            attrs.set_item("operation", *op)?;
            attrs.set_item("offset", *offset)?;
            attrs.set_item("errno", source.raw_os_error())?;
            "ArchiveIOError"
        }
        ErrorKind::Corrupt { defect, .. } => {
            attrs.set_item("defect", defect.name())?;
            attrs.set_item("structure", defect.structure().name())?;
            "CorruptError"
        }
        ErrorKind::UnsupportedVersion { expected, got, .. } => {
            attrs.set_item("expected", *expected)?;
            attrs.set_item("found", *got)?;
            "UnsupportedVersionError"
        }
        ErrorKind::Incomplete { path, reason } => {
            attrs.set_item("file", path.to_string_lossy().into_owned())?;
            attrs.set_item("reason", reason)?;
            "IncompleteError"
        }
        ErrorKind::OrdinalOutOfRange { ordinal, len } => {
            attrs.set_item("ordinal", *ordinal)?;
            attrs.set_item("len", *len)?;
            "OrdinalError"
        }
        ErrorKind::KeyNotFound { key } => {
            attrs.set_item("key", key)?;
            "KeyNotFoundError"
        }
        ErrorKind::InvalidInput { subject, reason } => {
            attrs.set_item("subject", subject)?;
            attrs.set_item("reason", reason)?;
            "InvalidInputError"
        }
        ErrorKind::LimitExceeded {
            limit, max, got, ..
        } => {
            attrs.set_item("limit", *limit)?;
            attrs.set_item("max", *max)?;
            attrs.set_item("found", *got)?;
            "LimitExceededError"
        }
        ErrorKind::Tar { location, problem } => {
            attrs.set_item("file", location.file.to_string_lossy().into_owned())?;
            attrs.set_item("member", location.member.clone())?;
            attrs.set_item("after", location.after.clone())?;
            attrs.set_item("offset", location.offset)?;
            attrs.set_item("problem", problem.name())?;
            "TarError"
        }
        ErrorKind::Remote {
            url,
            offset,
            status,
            expected,
            reason,
        } => {
            attrs.set_item("url", url)?;
            attrs.set_item("offset", *offset)?;
            attrs.set_item("status", *status)?;
            attrs.set_item("expected", expected)?;
            attrs.set_item("reason", reason)?;
            "RemoteError"
        }
        _ => "ShardpackError",
    };
    let module = py.import("shardpack.errors")?;
    let exception = module
        .getattr(class)?
        .call((error.to_string(),), Some(&attrs))?;
    Ok(PyErr::from_value(exception))
}

/// An error of the bindings themselves (a closed writer, say) as `ShardpackError`.
pub fn usage(message: impl Into<String>) -> PyErr {
    Python::attach(|py| {
        let message = message.into();
        match py
            .import("shardpack.errors")
            .and_then(|m| m.getattr("InvalidInputError"))
            .and_then(|c| c.call1((message.clone(),)))
        {
            Ok(e) => PyErr::from_value(e),
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}
