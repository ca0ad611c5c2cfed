"""The Python rows of bench/compare: shardpack's Python package against the Python peers.

Run as `python python_rows.py COMMAND ARGS...` inside the benchmark venv; like peers.py,
one measurement per process and one JSON line out ({"secs", "samples", "bytes", ...}),
timed after imports and interpreter start.

* `sp-random`: `archive[i]` for the ordinals of `shardpack bench --pattern random`, the
  loop peers.py times for MDS `dataset[i]` and ArrayRecord `read([i])`.
* `sp-threads`: `archive.get_many(batch)` from one thread, then the same batches split
  over two `threading.Thread`s.
* `loader`: one epoch of a `torch.utils.data.DataLoader` (2 workers, batches of 256, raw
  bytes per field, no decoding) over shardpack, MDS, WebDataset or LitData; for shardpack
  also its `StreamingDataLoader`, whose workers hand on batches gathered into shared memory.
* `pack-wds-shards`, `pack-litdata`: the inputs of the WebDataset and LitData loaders.
"""

from __future__ import annotations

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import emit, latencies, ordinals, read_sample, samples  # noqa: E402

BATCH = 256
WORKERS = 2


def _view_bytes(sample) -> int:
    return sum(v.nbytes for v in sample.values())


# ---------------------------------------------------------------- archive[i]


def sp_random(archive: str, count: str) -> None:
    """archive[i], then the same loop again with every field copied out with bytes()."""
    import shardpack

    a = shardpack.open(archive)
    order = ordinals(int(count), len(a))
    clock = time.perf_counter
    lat = []
    nbytes = 0
    t0 = clock()
    for o in order:
        t = clock()
        nbytes += _view_bytes(a[o])
        lat.append(clock() - t)
    secs = clock() - t0
    # A copy per field: what a caller that needs `bytes` (as MDS and ArrayRecord return)
    # pays on top of the zero-copy views; the same loop, clock reads included.
    lat_copy = []
    t1 = clock()
    copy_bytes = 0
    for o in order:
        t = clock()
        for v in a[o].values():
            copy_bytes += len(bytes(v))
        lat_copy.append(clock() - t)
    copy_secs = clock() - t1
    emit(secs=secs, samples=len(order), bytes=nbytes, latency=latencies(lat),
         copy_secs=copy_secs, copy_bytes=copy_bytes)


# ---------------------------------------------------------------- get_many from threads


def sp_threads(archive: str, count: str, batch: str) -> None:
    """The same batches through get_many from 1 thread and from 2 (each half of them).

    The batches are the random ordinals in runs of `batch`, repeated until one thread
    takes at least half a second; each setting runs three times and the fastest is kept.
    What is timed is the get_many calls (the samples they return are counted, then
    dropped): the claim is that get_many itself runs in parallel. Work the caller does
    with the samples under the GIL, such as making a memoryview per field, serializes
    whatever get_many does. Every field's bytes are summed in an untimed pass first.
    """
    import shardpack

    a = shardpack.open(archive)
    order = ordinals(int(count), len(a))
    b = int(batch)
    base = [order[i:i + b] for i in range(0, len(order), b)]
    once_bytes = sum(_view_bytes(s) for job in base for s in a.get_many(job))

    def work(jobs: list[list[int]], out: list[int]) -> None:
        n = 0
        for job in jobs:
            n += len(a.get_many(job))
        out.append(n)

    def timed(jobs: list[list[int]], threads: int) -> tuple[float, int]:
        out: list[int] = []
        ts = [threading.Thread(target=work, args=(jobs[i::threads], out))
              for i in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return time.perf_counter() - t0, sum(out)

    one, _ = timed(base, 1)
    repeat = max(1, min(200, int(0.5 / max(one, 1e-6)) + 1))
    jobs = base * repeat
    best = {1: None, 2: None}
    got = {}
    for _ in range(3):
        for threads in (1, 2):
            secs, n = timed(jobs, threads)
            got[threads] = n
            if best[threads] is None or secs < best[threads]:
                best[threads] = secs
    if got[1] != got[2] or got[1] != len(order) * repeat:
        raise SystemExit(f"1 thread read {got[1]} samples, 2 threads {got[2]}, "
                         f"of {len(order) * repeat}")
    emit(secs=best[1], secs2=best[2], samples=len(order) * repeat,
         bytes=once_bytes * repeat, repeat=repeat, once_bytes=once_bytes)


# ---------------------------------------------------------------- memory of a process tree


class TreeMemory:
    """Samples the summed PSS (and RSS) of this process and its descendants every 50 ms.

    PSS splits each shared page between the processes that map it, so the libraries that
    forked DataLoader workers share with their parent count once; RSS counts them in each.
    """

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.pss_kb = 0
        self.rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                for tid in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{tid}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        return out

    def sample(self) -> None:
        pss = rss = 0
        for p in self._tree(os.getpid()):
            try:
                with open(f"/proc/{p}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1])
                        elif line.startswith("Rss:"):
                            rss += int(line.split()[1])
            except OSError:
                pass
        self.pss_kb = max(self.pss_kb, pss)
        self.rss_kb = max(self.rss_kb, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> TreeMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# ---------------------------------------------------------------- DataLoaders


def _batch_bytes(batch: dict, skip: tuple[str, ...]) -> tuple[int, int]:
    """(samples, payload bytes) of a collated batch: a dict of per-field lists of bytes."""
    n = nbytes = 0
    for k, v in batch.items():
        if k.startswith("__") or k in skip:
            continue
        nbytes += sum(map(len, v))
        n = len(v)
    return n, nbytes


def _sp_stream(path: str):
    import torch.utils.data
    from shardpack.torch import StreamingDataset

    ds = StreamingDataset(path, batch_size=BATCH, decode=False)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=WORKERS), ()


def _sp_loader(path: str):
    from shardpack.torch import StreamingDataLoader, StreamingDataset

    # Raw fields: the workers gather each batch into shared-memory buffers.
    ds = StreamingDataset(path, batch_size=BATCH, decode=False)
    return StreamingDataLoader(ds, num_workers=WORKERS), ()


def _sp_map(path: str):
    import torch
    import torch.utils.data
    from shardpack.torch import MapDataset

    ds = MapDataset(path, decode=False)
    g = torch.Generator()
    g.manual_seed(0)
    # shuffle=True: a RandomSampler; batches go to MapDataset.__getitems__ (one get_many).
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, generator=g,
                                       num_workers=WORKERS), ()


def _mds(path: str):
    import torch.utils.data
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    ds = StreamingDataset(local=path, shuffle=False, batch_size=BATCH)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=WORKERS), ("key",)


def _wds(path: str):
    import webdataset as wds

    urls = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".tar"))
    # The usual way: shards split over the workers (WebDataset's default workersplitter),
    # batched inside each worker, the DataLoader only moving whole batches.
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.single_node_only,
                        workersplitter=wds.split_by_worker).batched(BATCH, partial=True)
    return wds.WebLoader(ds, batch_size=None, num_workers=WORKERS), ("key",)


def _lit_collate(items: list[dict]) -> dict:
    # LitData hands bytes fields out as memoryviews of its chunk, which torch's
    # default_collate takes for sequences and which cannot be pickled back to the main
    # process: copy them into bytes, as shardpack's decode=False does with its views.
    return {k: [bytes(x[k]) if isinstance(x[k], memoryview) else x[k] for x in items]
            for k in items[0]}


def _litdata(path: str):
    import litdata

    ds = litdata.StreamingDataset(path)
    return litdata.StreamingDataLoader(ds, batch_size=BATCH, num_workers=WORKERS,
                                       collate_fn=_lit_collate), ("key",)


LOADERS = {"sp-stream": _sp_stream, "sp-loader": _sp_loader, "sp-map": _sp_map, "mds": _mds, "wds": _wds,
           "litdata": _litdata}


def loader(kind: str, path: str) -> None:
    """One epoch; timed from the iterator's creation (workers start inside) to the last batch."""
    import torch

    torch.set_num_threads(1)  # collation only; the workers are the parallelism asked for
    dl, skip = LOADERS[kind](path)
    clock = time.perf_counter
    n = nbytes = batches = 0
    first = None
    first_n = 0
    with TreeMemory() as mem:
        t0 = clock()
        for batch in dl:
            k, b = _batch_bytes(batch, skip)
            n += k
            nbytes += b
            batches += 1
            if first is None:
                first = clock() - t0
                first_n = n
        secs = clock() - t0
    # After the first batch: the rate once the workers are up and their imports done.
    steady = (n - first_n) / (secs - first) if first is not None and secs > first else None
    emit(secs=secs, samples=n, bytes=nbytes, batches=batches, first_batch_secs=first,
         steady_sps=steady, tree_pss_kb=mem.pss_kb, tree_rss_kb=mem.rss_kb)


# ---------------------------------------------------------------- loader inputs


def pack_wds_shards(src: str, out: str, maxsize: str) -> None:
    import webdataset as wds

    t0 = time.perf_counter()
    n = nbytes = 0
    os.makedirs(out)
    with wds.ShardWriter(os.path.join(out, "shard-%06d.tar"), maxsize=int(maxsize),
                         maxcount=10**9, verbose=0) as w:
        for key, fields in samples(src):
            d = read_sample(fields)
            nbytes += sum(map(len, d.values()))
            d["__key__"] = key
            w.write(d)
            n += 1
    shards = sum(1 for f in os.listdir(out) if f.endswith(".tar"))
    emit(secs=time.perf_counter() - t0, samples=n, bytes=nbytes, shards=shards)


def _lit_sample(item: tuple[str, list[tuple[str, str]]]) -> dict:
    key, fields = item
    d = read_sample(fields)
    d["key"] = key
    return d


def pack_litdata(src: str, out: str, chunk_bytes: str, compression: str) -> None:
    import litdata

    t0 = time.perf_counter()
    listing = samples(src)
    nbytes = sum(os.path.getsize(p) for _, fields in listing for _, p in fields)
    litdata.optimize(fn=_lit_sample, inputs=listing, output_dir=out,
                     chunk_bytes=int(chunk_bytes), num_workers=os.cpu_count() or 1,
                     compression=None if compression == "none" else compression,
                     mode="overwrite", verbose=False)
    chunks = sum(1 for f in os.listdir(out) if f.endswith(".bin"))
    emit(secs=time.perf_counter() - t0, samples=len(listing), bytes=nbytes, chunks=chunks)


COMMANDS = {"sp-random": sp_random, "sp-threads": sp_threads, "loader": loader,
            "pack-wds-shards": pack_wds_shards, "pack-litdata": pack_litdata}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
