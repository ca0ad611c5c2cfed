"""Deterministic benchmark datasets for bench/compare (stdlib only).

Both datasets are folders of files that `shardpack pack` groups the WebDataset way:
`012/012345.bin` + `012/012345.json` is one sample with key `012/012345`. Every byte comes
from `random.Random` seeded per folder, so a folder is the same on every run and folders
can be written in parallel. The stamp written by the caller hashes this file, so editing
the generator regenerates the data.
"""

from __future__ import annotations

import array
import json
import os
import random

SAMPLES_PER_FOLDER = 1000
SEED = 20240611

# The commonest English words, in rough frequency order, so the head of the Zipf
# distribution reads like English; the tail is made of pseudo-words (below).
COMMON = """the of and to a in is that for it as was with be by on not he i this are or his
from at which but have an they you were her she there been one all we their has would when
if so no will more can out its who my said what up about into them some than other time
could only new these two may then do first any like now my such our over man me even most
made after also did many before must through back years where much your way well down
should because each just those people how too little state good very make world still own
see men work long get here between both life being under never day same another know while
last might us great old year off come since against go came right used take three states
himself few house use during without again place american around however home small found
mrs thought went say part once general high upon school every does got united left number
course war until always away something fact though water less public put think almost hand
enough far took head yet government system better set told nothing night end why called
didn't eyes find going look asked later knew point next program city business give group
toward young days let room president side social given present several order national
possible rather second face per among form important often things looked early white case
john become large big need four within felt along children saw best church ever least power
development light thing seemed family interest want members mind country area others done
turned although open god service certain kind problem began different door thus help sense
means whole matter perhaps itself york times law human line above name example action
company hands local show whether five history gave today either act feet across taken past
quite anything seen having death week experience body word half really field am car words
already themselves information tell together college shall money period held keep sure
free real probably seems behind cannot political air question office making brought whose
special heard major problems ago became federal moment study available known result street
economic boy position reason change south board individual job areas society west close
turn love community true court force full seem am policy wife future age voice center
woman control common necessary following front sometimes six girl itself clear further land
run students provide read feel value data model training sample image text archive shard""".split()

SYLLABLES = """ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo ga ge go la le li lo lu
ma me mi mo mu na ne ni no nu pa pe pi po ra re ri ro ru sa se si so su ta te ti to tu va ve vi
vo za ze zo an en in on un ar er ir or ur al el il ol st tr pl gr ch sh th""".split()
SUFFIXES = ["", "", "", "s", "ed", "ing", "er", "ly", "tion", "ment"]

VOCAB_SIZE = 4000
ZIPF_EXPONENT = 1.07
# Text repeats phrases, not just words, and that is what zstd finds: the stream is drawn
# from a Zipf-weighted set of 1-4 word phrases built from Zipf-weighted words.
PHRASES = 8000
PHRASE_EXPONENT = 0.95
TABLE_BITS = 16  # one 16-bit draw picks a phrase from a table laid out by Zipf weight


def _vocabulary() -> list[str]:
    rng = random.Random(SEED ^ 0x7E57)
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    while len(words) < VOCAB_SIZE:
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) + rng.choice(SUFFIXES)
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def _table(items: list[str], exponent: float) -> list[str]:
    """A table of 2**TABLE_BITS items in which the item of rank r fills a share ~ 1/(r+2.7)**s.

    Drawing uniform 16-bit indices into it is ten times faster than random.choices and
    still deterministic; every item gets at least one slot.
    """
    weights = [1.0 / (r + 2.7) ** exponent for r in range(len(items))]
    slots = 1 << TABLE_BITS
    spare = slots - len(items)
    total = sum(weights)
    counts = [1 + int(w / total * spare) for w in weights]
    counts[0] += slots - sum(counts)  # the rounding remainder goes to the commonest
    table: list[str] = []
    for item, n in zip(items, counts):
        table.extend([item] * n)
    return table


def _zipf_table() -> list[str]:
    words = _table(_vocabulary(), ZIPF_EXPONENT)
    rng = random.Random(SEED ^ 0xF4A5E)
    phrases = list(dict.fromkeys(
        " ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(PHRASES)))
    return _table(phrases, PHRASE_EXPONENT)


_TABLE: list[str] | None = None


def _words(rng: random.Random, k: int) -> list[str]:
    global _TABLE
    if _TABLE is None:
        _TABLE = _zipf_table()
    idx = array.array("H", rng.randbytes(2 * k))
    t = _TABLE
    return [t[i] for i in idx]


def _sentence(rng: random.Random, words: list[str]) -> str:
    # Numbers and commas appear about as often as in news text.
    out = []
    for j, w in enumerate(words):
        roll = rng.random()
        if roll < 0.035:
            w = str(rng.choice((rng.randint(1, 100), rng.randint(1900, 2024), rng.randint(100, 99999))))
        elif roll < 0.045:
            w = f"{rng.randint(0, 99)}.{rng.randint(0, 9)} percent"
        out.append(w)
        if 2 < j < len(words) - 2 and rng.random() < 0.06:
            out[-1] += ","
    s = " ".join(out)
    return s[0].upper() + s[1:] + rng.choice(".........?!")


def text_sample(rng: random.Random, ordinal: int) -> tuple[bytes, bytes]:
    target = rng.randint(1536, 2560)
    words = " ".join(_words(rng, 300)).split()
    title = " ".join(w.capitalize() for w in words[:rng.randint(3, 7)])
    tags = ", ".join(words[-3:])
    lines = [
        f"Title: {title}",
        f"id: {ordinal:06d}  date: {rng.randint(1995, 2024)}-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1, 28):02d}  score: {rng.random():.4f}  tags: [{tags}]",
        "",
    ]
    size = sum(len(x) + 1 for x in lines)
    pos, para = 8, []
    while size < target and pos < len(words) - 30:
        n = rng.randint(6, 24)
        s = _sentence(rng, words[pos:pos + n])
        pos += n
        para.append(s)
        size += len(s) + 1
        if rng.random() < 0.2:
            lines.append(" ".join(para))
            lines.append("")
            para = []
    if para:
        lines.append(" ".join(para))
    body = "\n".join(lines).encode()[:target]
    label = json.dumps({"id": ordinal, "lang": "en", "source": "synthetic",
                        "quality": round(rng.random(), 3)}).encode()
    return body, label


def image_sample(rng: random.Random, ordinal: int) -> tuple[bytes, bytes]:
    # Random bytes stand in for JPEG: already-compressed data that no codec can shrink.
    data = rng.randbytes(rng.randint(80 * 1024, 120 * 1024))
    label = json.dumps({"label": rng.randrange(1000), "width": 224, "height": 224,
                        "id": ordinal}).encode()
    return data, label


KINDS = {"images": (image_sample, "bin"), "text": (text_sample, "txt")}


def write_folder(args: tuple[str, str, int, int]) -> int:
    """Writes samples [first, last) of one 1,000-sample folder; returns the payload bytes."""
    kind, root, first, last = args
    make, ext = KINDS[kind]
    folder = first // SAMPLES_PER_FOLDER
    rng = random.Random(f"{SEED}/{kind}/{folder}")
    d = os.path.join(root, f"{folder:03d}")
    os.makedirs(d, exist_ok=True)
    total = 0
    for i in range(first, last):
        data, label = make(rng, i)
        for suffix, blob in ((ext, data), ("json", label)):
            with open(os.path.join(d, f"{i:06d}.{suffix}"), "wb") as f:
                f.write(blob)
            total += len(blob)
    return total


def generate(kind: str, root: str, samples: int, processes: int) -> int:
    """Writes `samples` samples of `kind` under `root`; returns the payload bytes."""
    jobs = [(kind, root, a, min(a + SAMPLES_PER_FOLDER, samples))
            for a in range(0, samples, SAMPLES_PER_FOLDER)]
    if processes <= 1 or len(jobs) == 1:
        return sum(map(write_folder, jobs))
    import multiprocessing

    with multiprocessing.Pool(processes) as pool:
        return sum(pool.imap_unordered(write_folder, jobs))
