//! An I/O trace: every read and write a reader or writer issues, with offset and length, so
//! tests and `shardpack bench` can check and model access patterns.

use std::sync::{Arc, Mutex};

/// What an I/O operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// A read of `len` bytes at `offset`.
    Read,
    /// A write of `len` bytes at `offset`.
    Write,
    /// A memory-map access of `len` bytes at `offset` (page faults, not syscalls).
    MapAccess,
    /// A hint to the kernel to read `len` bytes at `offset` ahead of use.
    Prefetch,
}

/// One traced operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoOp {
    /// What it did.
    pub kind: IoKind,
    /// Which file (the shard number), or 0 for a stream.
    pub file: u32,
    /// Offset in the file or stream.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A shared, append-only list of operations. Cloning shares the list.
#[derive(Clone, Debug, Default)]
pub struct IoTrace(Arc<Mutex<Vec<IoOp>>>);

impl IoTrace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one operation.
    pub fn record(&self, kind: IoKind, file: u32, offset: u64, len: u64) {
        if let Ok(mut ops) = self.0.lock() {
            ops.push(IoOp {
                kind,
                file,
                offset,
                len,
            });
        }
    }

    /// Every operation so far, in order.
    pub fn ops(&self) -> Vec<IoOp> {
        self.0.lock().map(|ops| ops.clone()).unwrap_or_default()
    }

    /// Forgets every operation so far.
    pub fn clear(&self) {
        if let Ok(mut ops) = self.0.lock() {
            ops.clear();
        }
    }
}
