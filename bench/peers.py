"""The Python side of bench/compare: one measurement per process, one JSON line out.

Run as `python peers.py COMMAND ARGS...`. The peer libraries (webdataset, MDS, ArrayRecord,
blake3) are imported only by the commands that use them, so `memcpy` also runs on the
plain interpreter when the benchmark venv could not be installed.

Each command times only its own work (after imports and interpreter start), reads every
input file itself, and prints {"secs", "samples", "bytes", ...} as its last stdout line.
Bytes read are counted with len(): every peer has already copied them into a bytes object,
so they have been touched once.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time

M64 = (1 << 64) - 1
SHARDPACK_BENCH_SEED = 0x5348_4152_4450_4143  # cli/src/cmd/bench.rs SEED ("SHARDPAC")


def emit(**fields) -> None:
    # Peak RSS comes from the driver's wrapper: ours would include the memory of the
    # process we were forked from (Linux keeps the pre-exec high-water mark).
    print(json.dumps(fields), flush=True)


def rss_now_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def samples(root: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(key, [(field, path)]) in sorted key order, grouped as `shardpack pack` does."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            stem, _, field = name.partition(".")
            key = stem if rel == "." else f"{rel}/{stem}"
            path = os.path.join(dirpath, name)
            if out and out[-1][0] == key:
                out[-1][1].append((field, path))
            else:
                out.append((key, [(field, path)]))
    return out


def read_sample(fields: list[tuple[str, str]]) -> dict[str, bytes]:
    d = {}
    for field, path in fields:
        with open(path, "rb") as f:
            d[field] = f.read()
    return d


class XorShift:
    """xorshift64*, as shardpack bench uses, so every reader gets the same ordinals."""

    def __init__(self, seed: int) -> None:
        self.s = seed

    def next(self) -> int:
        x = self.s
        x ^= x >> 12
        x ^= (x << 25) & M64
        x ^= x >> 27
        self.s = x
        return (x * 0x2545_F491_4F6C_DD1D) & M64

    def below(self, n: int) -> int:
        return (self.next() * n) >> 64


def ordinals(count: int, length: int) -> list[int]:
    """The ordinals `shardpack bench --pattern random --samples count` reads, in order."""
    rng = XorShift(SHARDPACK_BENCH_SEED)
    if count > length:
        return [rng.below(length) for _ in range(count)]
    moved: dict[int, int] = {}
    out = []
    for i in range(count):
        j = i + rng.below(length - i)
        at_i = moved.get(i, i)
        at_j = moved.get(j, j)
        moved[j] = at_i
        out.append(at_j)
    return out


def latencies(lat: list[float]) -> dict[str, float]:
    s = sorted(lat)

    def q(p: float) -> float:
        rank = max(1, min(len(s), -(-int(p * len(s) * 1000) // 1000)))
        return s[rank - 1]

    return {"p50": q(0.5), "p99": q(0.99)} if s else {}


# ---------------------------------------------------------------- webdataset


def pack_wds(src: str, out: str) -> None:
    import webdataset as wds

    base = rss_now_kb()
    t0 = time.perf_counter()
    n = nbytes = 0
    os.makedirs(out)
    with wds.TarWriter(os.path.join(out, "data.tar")) as w:
        for key, fields in samples(src):
            d = read_sample(fields)
            nbytes += sum(map(len, d.values()))
            d["__key__"] = key
            w.write(d)
            n += 1
    emit(secs=time.perf_counter() - t0, samples=n, bytes=nbytes, import_rss_kb=base)


def read_wds(archive: str) -> None:
    import webdataset as wds

    url = os.path.join(archive, "data.tar")
    t0 = time.perf_counter()
    n = nbytes = 0
    for s in wds.WebDataset(url, shardshuffle=False):
        nbytes += sum(len(v) for k, v in s.items() if not k.startswith("__"))
        n += 1
    emit(secs=time.perf_counter() - t0, samples=n, bytes=nbytes)


# ---------------------------------------------------------------- MDS (mosaicml-streaming)


def _mds_columns(src_samples) -> dict[str, str]:
    cols = {"key": "str"}
    cols.update({field: "bytes" for field, _ in src_samples[0][1]})
    return cols


def pack_mds(src: str, out: str, compression: str) -> None:
    from streaming import MDSWriter

    base = rss_now_kb()
    t0 = time.perf_counter()
    listing = samples(src)
    n = nbytes = 0
    with MDSWriter(out=out, columns=_mds_columns(listing),
                   compression=None if compression == "none" else compression) as w:
        for key, fields in listing:
            d = read_sample(fields)
            nbytes += sum(map(len, d.values()))
            d["key"] = key
            w.write(d)
            n += 1
    emit(secs=time.perf_counter() - t0, samples=n, bytes=nbytes, import_rss_kb=base)


def _mds_drop_raw(archive: str) -> int:
    """Deletes the raw shards MDS decompressed on an earlier run, so this run pays for it.

    With no remote, MDS keeps the compressed shards and writes each raw shard beside it on
    first touch; a run that finds them there reads uncompressed files.
    """
    with open(os.path.join(archive, "index.json")) as f:
        index = json.load(f)
    dropped = 0
    for shard in index["shards"]:
        if shard.get("zip_data"):
            raw = os.path.join(archive, shard["raw_data"]["basename"])
            if os.path.exists(raw):
                os.remove(raw)
                dropped += 1
    return dropped


def _mds_open(archive: str):
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    return StreamingDataset(local=archive, shuffle=False, batch_size=256)  # predownload = 8 x batch; 1 would stall the loop


def _mds_bytes(s: dict) -> int:
    return sum(len(v) for k, v in s.items() if k != "key")


def read_mds(archive: str, raw: str) -> None:
    if raw == "fresh":
        _mds_drop_raw(archive)
    ds = _mds_open(archive)
    t0 = time.perf_counter()
    n = nbytes = 0
    for s in ds:
        nbytes += _mds_bytes(s)
        n += 1
    emit(secs=time.perf_counter() - t0, samples=n, bytes=nbytes)


def random_mds(archive: str, count: str) -> None:
    ds = _mds_open(archive)
    # Random access is MDS's steady state after every shard is local and raw; getting
    # there (decompressing whole shards) is the sequential read's cost, not this one's.
    for shard_id in range(ds.num_shards):
        ds.prepare_shard(shard_id)
    order = ordinals(int(count), len(ds))
    lat = []
    nbytes = 0
    clock = time.perf_counter
    t0 = clock()
    for o in order:
        t = clock()
        nbytes += _mds_bytes(ds[o])
        lat.append(clock() - t)
    secs = clock() - t0
    emit(secs=secs, samples=len(order), bytes=nbytes, latency=latencies(lat))


# ---------------------------------------------------------------- ArrayRecord

# One record per sample: key length, then per field name length and data length, then
# the bytes, so the record can be split without a schema.
def _ar_encode(key: str, d: dict[str, bytes]) -> bytes:
    k = key.encode()
    head = [struct.pack("<HH", len(k), len(d)), k]
    for field, data in d.items():
        f = field.encode()
        head.append(struct.pack("<HI", len(f), len(data)))
        head.append(f)
    return b"".join(head + list(d.values()))


def _ar_payload_len(rec: bytes) -> int:
    klen, nfields = struct.unpack_from("<HH", rec, 0)
    pos = 4 + klen
    total = 0
    for _ in range(nfields):
        flen, dlen = struct.unpack_from("<HI", rec, pos)
        pos += 6 + flen
        total += dlen
    return total


def pack_ar(src: str, out: str, options: str) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter

    base = rss_now_kb()
    t0 = time.perf_counter()
    os.makedirs(out)
    w = ArrayRecordWriter(os.path.join(out, "data.array_record"), options)
    n = nbytes = 0
    for key, fields in samples(src):
        d = read_sample(fields)
        nbytes += sum(map(len, d.values()))
        w.write(_ar_encode(key, d))
        n += 1
    w.close()
    emit(secs=time.perf_counter() - t0, samples=n, bytes=nbytes, import_rss_kb=base)


def read_ar(archive: str) -> None:
    from array_record.python.array_record_module import ArrayRecordReader

    r = ArrayRecordReader(os.path.join(archive, "data.array_record"))
    t0 = time.perf_counter()
    n = nbytes = 0
    # read_all is ArrayRecord's fastest sequential path (parallel read-ahead); batches of
    # 1,024 records keep its memory bounded without giving that up.
    total = r.num_records()
    for start in range(0, total, 1024):
        for rec in r.read(start, min(start + 1024, total)):
            nbytes += _ar_payload_len(rec)
            n += 1
    emit(secs=time.perf_counter() - t0, samples=n, bytes=nbytes,
         options=r.writer_options_string())


def random_ar(archive: str, count: str) -> None:
    from array_record.python.array_record_module import ArrayRecordReader

    # The reader options ArrayRecord documents for random access.
    r = ArrayRecordReader(os.path.join(archive, "data.array_record"),
                          "readahead_buffer_size:0,max_parallelism:0")
    order = ordinals(int(count), r.num_records())
    lat = []
    nbytes = 0
    clock = time.perf_counter
    t0 = clock()
    for o in order:
        t = clock()
        nbytes += _ar_payload_len(r.read([o])[0])
        lat.append(clock() - t)
    secs = clock() - t0
    # The batch call sorts and reads in parallel: ArrayRecord's best case for the same set.
    t1 = clock()
    batch_bytes = sum(map(_ar_payload_len, r.read(order)))
    batch_secs = clock() - t1
    emit(secs=secs, samples=len(order), bytes=nbytes, latency=latencies(lat),
         batch_secs=batch_secs, batch_bytes=batch_bytes)


# ---------------------------------------------------------------- references


def blake3_files(*paths: str) -> None:
    import blake3

    t0 = time.perf_counter()
    nbytes = 0
    for p in paths:
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        h.update_mmap(p)
        h.digest()
        nbytes += os.path.getsize(p)
    emit(secs=time.perf_counter() - t0, samples=len(paths), bytes=nbytes)


def memcpy(min_size: str, max_size: str, count: str) -> None:
    """Copies `count` buffers of the image sizes from random offsets of a 512 MiB buffer.

    A memoryview slice assignment is one memcpy; the source is far larger than the caches,
    as the samples of a 1 GiB archive are.
    """
    import random

    lo, hi, n = int(min_size), int(max_size), int(count)
    rng = random.Random(7)
    src = memoryview(b"".join(rng.randbytes(64 << 20) for _ in range(8)))
    dst = memoryview(bytearray(hi))
    jobs = [(rng.randrange(len(src) - hi), rng.randint(lo, hi)) for _ in range(n)]
    clock = time.perf_counter
    best = None
    for _ in range(3):
        t0 = clock()
        nbytes = 0
        for off, size in jobs:
            dst[:size] = src[off:off + size]
            nbytes += size
        secs = clock() - t0
        best = secs if best is None else min(best, secs)
    emit(secs=best, samples=n, bytes=nbytes)


COMMANDS = {
    "pack-wds": pack_wds, "read-wds": read_wds,
    "pack-mds": pack_mds, "read-mds": read_mds, "random-mds": random_mds,
    "pack-ar": pack_ar, "read-ar": read_ar, "random-ar": random_ar,
    "blake3": blake3_files, "memcpy": memcpy,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
