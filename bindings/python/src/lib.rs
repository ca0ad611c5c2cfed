//! The native part of the `shardpack` Python package (`shardpack._shardpack`). Every rule
//! lives in the `shardpack` crate; this layer only converts arguments, results and errors,
//! and releases the GIL around the work.

mod buffer;
mod errors;
mod order;
mod read;
mod remote;
mod write;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _shardpack(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<read::Archive>()?;
    m.add_class::<read::Sample>()?;
    m.add_class::<read::SampleIter>()?;
    m.add_class::<buffer::FieldBytes>()?;
    m.add_class::<write::Writer>()?;
    m.add_class::<order::ReadPlan>()?;
    m.add_function(wrap_pyfunction!(read::open, m)?)?;
    m.add_function(wrap_pyfunction!(write::pack, m)?)?;
    m.add_function(wrap_pyfunction!(write::import_tar, m)?)?;
    m.add_function(wrap_pyfunction!(write::export_tar, m)?)?;
    m.add_function(wrap_pyfunction!(write::verify, m)?)?;
    m.add_function(wrap_pyfunction!(write::protect, m)?)?;
    m.add_function(wrap_pyfunction!(write::gc, m)?)?;
    m.add_function(wrap_pyfunction!(write::merge, m)?)?;
    m.add_function(wrap_pyfunction!(remote::fetch, m)?)?;
    m.add_function(wrap_pyfunction!(remote::push, m)?)?;
    m.add_function(wrap_pyfunction!(remote::remove_remote, m)?)?;
    m.add_function(wrap_pyfunction!(remote::is_remote, m)?)?;
    m.add_function(wrap_pyfunction!(order::epoch_order, m)?)?;
    m.add_function(wrap_pyfunction!(order::position_after, m)?)?;
    Ok(())
}
