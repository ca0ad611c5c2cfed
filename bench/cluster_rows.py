"""The cluster rows of bench/compare: one DataFrame packed through Spark ``local[2]`` by
``shardpack.spark.write`` and by MDS's ``streaming.base.converters.dataframe_to_mds``.
Run as ``python cluster_rows.py spark-pack {shardpack|mds} SRC OUT``; prints one JSON line.

Both writers get the same DataFrame: every sample of SRC as a row (its key and one binary
column per field), in 8 partitions, cached and counted before the clock starts, so the
time is the write alone (the tasks, and the commit or the index merge on the driver).

Peak memory is the largest sum of the resident sets of this process and every process
below it (the Spark JVM, its Python daemon and workers), sampled every 50 ms: no single
process holds a Spark job's memory, so the largest process alone would understate both.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (the sample listing every row shares)

PARTITIONS = 8


def tree_rss_kb(root: int) -> int:
    """The resident set of ``root`` and every process below it, in KiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/status") as f:
                kb = next((int(x.split()[1]) for x in f if x.startswith("VmRSS:")), 0)
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(name))
        rss[int(name)] = kb
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class PeakSampler:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_kb(os.getpid()))
            self._stop.wait(0.05)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_kb(os.getpid()))


def dir_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files
    )


def spark_pack(kind: str, src: str, out: str) -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with PeakSampler() as sampler:
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        listing = peers.samples(src)
        fields = [field for field, _ in listing[0][1]]
        rows = []
        payload = 0
        for key, files in listing:
            sample = peers.read_sample(files)
            payload += sum(map(len, sample.values()))
            rows.append((key, *(sample.get(f) for f in fields)))
        schema = "key string, " + ", ".join(f"`{f}` binary" for f in fields)
        df = spark.createDataFrame(rows, schema).repartition(PARTITIONS).cache()
        del rows
        count = df.count()
        t0 = time.perf_counter()
        if kind == "shardpack":
            import shardpack.spark

            shardpack.spark.write(df, out, key="key", profile="ssd")
        elif kind == "mds":
            from streaming.base.converters import dataframe_to_mds

            columns = {"key": "str", **{f: "bytes" for f in fields}}
            dataframe_to_mds(
                df, merge_index=True, mds_kwargs={"out": out, "columns": columns,
                                                  "compression": "zstd"}
            )
        else:
            raise SystemExit(f"unknown writer {kind!r}")
        secs = time.perf_counter() - t0
        spark.stop()
    print(json.dumps({"secs": secs, "samples": count, "bytes": payload,
                      "size": dir_bytes(out), "tree_rss_kb": sampler.peak}), flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command != "spark-pack" or len(args) != 3:
        raise SystemExit(__doc__)
    spark_pack(*args)
