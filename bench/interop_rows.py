"""The interop rows of bench/compare: WebDataset tar import and export against tar.

Import: `shardpack import shards-{000000..N}.tar -o A` against what it replaces, `tar -xf`
of the same shards into a folder followed by `shardpack pack` of that folder (and
`tar -xf` alone). Export: `shardpack export A -o out-%06d.tar` against `tar -cf` of the
extracted files. The shards are made first, untimed, by GNU tar from the dataset's sample
files in key order (the order `shardpack pack` and webdataset's TarWriter write), cut at
`SHARD_BYTES` of payload; every shardpack step uses the default writer options, the same
for import and pack. MB/s are of the dataset's payload (its files' bytes).

Driven by bench/compare (stdlib only): `rows` runs the steps through compare's runners,
`tables` prints them. `h` is the compare module, whose helpers (Outcome, attempt, q,
fresh, run, table, fmt_num, MB) these functions use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SHARD_BYTES = 64 * 1000 * 1000  # like the DataLoader section's WebDataset shards
QUICK_SHARD_BYTES = 4 * 1000 * 1000  # several shards of the small --quick datasets

IMPORT = "shardpack import"
UNTAR_PACK = "tar -xf, then shardpack pack"
UNTAR = "tar -xf alone"
EXPORT = "shardpack export"
TAR_CF = "tar -cf of the extracted files"


def make_shards(h, bench, ds, outdir: Path) -> list[Path]:
    """WebDataset shards of the dataset: its files in key order, a new tar once a shard
    holds `SHARD_BYTES` of payload (a sample is never split)."""
    limit = QUICK_SHARD_BYTES if bench.args.quick else SHARD_BYTES
    folder = h.fresh(outdir / "wds")
    folder.mkdir()
    groups: list[list[str]] = [[]]
    size = 0
    root = Path(ds.root)
    for _key, fields in h.peers.samples(str(ds.root)):
        sample = sum(Path(p).stat().st_size for _f, p in fields)
        if groups[-1] and size + sample > limit:
            groups.append([])
            size = 0
        groups[-1].extend(str(Path(p).relative_to(root)) for _f, p in fields)
        size += sample
    shards = []
    for i, members in enumerate(groups):
        listing = folder / f"shard-{i:06d}.list"
        listing.write_text("\n".join(members) + "\n")
        tar = folder / f"shard-{i:06d}.tar"
        h.run(f"tar --no-recursion --format=gnu -cf {h.q(tar)} -C {h.q(root)} -T {h.q(listing)}",
              bench.timeout)
        listing.unlink()
        shards.append(tar)
    return shards


def rows(h, bench, ds, outdir: Path) -> dict:
    res: dict = {}
    shards = h.attempt(lambda: h.Outcome({"shards": make_shards(h, bench, ds, outdir)}))
    if not shards.ok:
        return {"(all)": h.Outcome(error=f"failed: making the tar shards: {shards.error}")}
    tars = shards.values["shards"]
    pattern = tars[0].parent / f"shard-{{000000..{len(tars) - 1:06d}}}.tar"
    imported = outdir / "interop-imported"
    extracted = outdir / "interop-extracted"
    packed = outdir / "interop-packed"
    untar = " && ".join(f"tar -xf {h.q(t)} -C {h.q(extracted)}" for t in tars)

    res[IMPORT] = h.attempt(bench.shell_step,
                            f"{h.q(bench.sp)} import {h.q(pattern)} -o {h.q(imported)}", imported)
    res[UNTAR] = h.attempt(bench.shell_step, f"mkdir {h.q(extracted)} && {untar}", extracted)
    res[UNTAR_PACK] = h.attempt(
        bench.shell_step,
        f"rm -rf {h.q(packed)} && mkdir {h.q(extracted)} && {untar} && "
        f"{h.q(bench.sp)} pack {h.q(extracted)} -o {h.q(packed)}",
        extracted)
    same = samples_agree(h, bench, imported, packed)
    if res[IMPORT].ok and same:
        res[IMPORT] = h.Outcome(error=f"failed: {same}")

    exported = outdir / "interop-exported"
    tar_cf = outdir / "interop-extracted.tar"
    if res[IMPORT].ok:
        res[EXPORT] = h.attempt(
            bench.shell_step,
            f"mkdir {h.q(exported)} && {h.q(bench.sp)} export {h.q(imported)} "
            f"-o {h.q(exported / 'out-%06d.tar')} --shard-size {SHARD_BYTES}",
            exported)
    else:
        res[EXPORT] = h.Outcome(error="not run: import failed")
    if extracted.is_dir():
        res[TAR_CF] = h.attempt(bench.shell_step,
                                f"tar --sort=name -cf {h.q(tar_cf)} -C {h.q(extracted)} .", tar_cf)
    else:
        res[TAR_CF] = h.Outcome(error="not run: tar -xf failed")
    for o in res.values():
        if o.ok and o.values.get("secs"):
            o.values["mbps"] = ds.payload / h.MB / o.values["secs"]
    for path in (imported, extracted, packed, exported, tar_cf, tars[0].parent):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return res


def samples_agree(h, bench, imported: Path, packed: Path) -> str:
    """Why the imported archive does not hold the packed one's samples, or ""."""
    listings = []
    for archive in (imported, packed):
        if not archive.is_dir():
            return ""  # the step that should have written it failed, and says so
        p = h.run([bench.sp, "ls", str(archive), "--long"], bench.timeout)
        listings.append(p.stdout)
    return "" if listings[0] == listings[1] else "import and tar -xf + pack hold other samples"


def tables(h, r: dict) -> list[str]:
    def ratio(a: str, b: str) -> str:
        x, y = r[a].get("mbps"), r[b].get("mbps")
        return h.fmt_num(x / y, 2) + "x" if x and y else ""

    rows = [(IMPORT, r[IMPORT], [h.fmt_num(r[IMPORT].get("mbps")), ratio(IMPORT, UNTAR_PACK)]),
            (UNTAR_PACK, r[UNTAR_PACK], [h.fmt_num(r[UNTAR_PACK].get("mbps")), "1x"]),
            (UNTAR, r[UNTAR], [h.fmt_num(r[UNTAR].get("mbps")), ""]),
            (EXPORT, r[EXPORT], [h.fmt_num(r[EXPORT].get("mbps")), ratio(EXPORT, TAR_CF)]),
            (TAR_CF, r[TAR_CF], [h.fmt_num(r[TAR_CF].get("mbps")), "1x"])]
    if "(all)" in r:
        rows = [("(all)", r["(all)"], ["", ""])]
    return [h.table("WebDataset tars: import and export (MB/s of payload; ratio to the tar "
                    "route doing the same)", ["step", "MB/s", "× tar route", "method"], rows)]
