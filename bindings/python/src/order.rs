//! Sample order (docs/sample-order.md): the crate's epoch order and partition, for the
//! PyTorch datasets.

use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shardpack::order::{EpochOrder, Partition, Shuffle, Tail};

use crate::errors::IntoPy;

fn parse_tail(tail: &str) -> PyResult<Tail> {
    match tail {
        "keep" => Ok(Tail::Keep),
        "drop" => Ok(Tail::Drop),
        "pad" => Ok(Tail::Pad),
        other => Err(PyValueError::new_err(format!(
            "tail must be 'keep', 'drop' or 'pad', not {other:?}"
        ))),
    }
}

fn shuffle(seed: Option<u64>, span: u32, window: u32) -> Option<Shuffle> {
    seed.map(|seed| Shuffle { seed, span, window })
}

/// The whole order of `epoch` over shards of `shard_samples` samples: ordinal by position.
#[pyfunction]
#[pyo3(signature = (shard_samples, *, seed = None, span = 1024, window = 4096, epoch = 0))]
pub fn epoch_order(
    shard_samples: Vec<u64>,
    seed: Option<u64>,
    span: u32,
    window: u32,
    epoch: u64,
) -> PyResult<Vec<u64>> {
    let order = EpochOrder::new(&shard_samples, shuffle(seed, span, window), epoch).py()?;
    let len = order.len();
    let mut cursor = order.cursor();
    Ok((0..len).filter_map(|p| cursor.ordinal(p)).collect())
}

/// One reader's chunks of ordinals for an epoch: an iterator of lists, one per batch.
#[pyclass(frozen, module = "shardpack._shardpack")]
pub struct ReadPlan {
    inner: Mutex<shardpack::order::ReadPlan>,
}

#[pymethods]
impl ReadPlan {
    #[new]
    #[pyo3(signature = (shard_samples, *, seed = None, span = 1024, window = 4096, epoch = 0,
        rank = 0, world = 1, worker = 0, workers = 1, batch = 1, tail = "keep", start = 0,
        done = 0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        shard_samples: Vec<u64>,
        seed: Option<u64>,
        span: u32,
        window: u32,
        epoch: u64,
        rank: u32,
        world: u32,
        worker: u32,
        workers: u32,
        batch: u32,
        tail: &str,
        start: u64,
        done: u64,
    ) -> PyResult<Self> {
        let tail = parse_tail(tail)?;
        let order = EpochOrder::new(&shard_samples, shuffle(seed, span, window), epoch).py()?;
        let partition = Partition {
            rank,
            world,
            worker,
            workers,
            batch,
            tail,
        };
        let plan = shardpack::order::ReadPlan::new(order, partition, start, done).py()?;
        Ok(ReadPlan {
            inner: Mutex::new(plan),
        })
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<Vec<u64>> {
        self.inner.lock().ok()?.next()
    }

    /// How many of its own chunks this reader has taken.
    #[getter]
    fn taken(&self) -> u64 {
        self.inner.lock().map(|p| p.taken()).unwrap_or(0)
    }
}

/// The global position after every rank consumed `steps` batches of `batch` from `start`.
#[pyfunction]
#[pyo3(signature = (len, *, start, steps, world, batch, tail = "keep"))]
pub fn position_after(
    len: u64,
    start: u64,
    steps: u64,
    world: u32,
    batch: u32,
    tail: &str,
) -> PyResult<u64> {
    let tail = parse_tail(tail)?;
    let partition = Partition {
        rank: 0,
        world: world.max(1),
        worker: 0,
        workers: 1,
        batch: batch.max(1),
        tail,
    };
    Ok(partition.position_after(len, start, steps))
}
