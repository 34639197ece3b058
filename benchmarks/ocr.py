"""Text in photos: what reading costs, what the gate skips, how right the text is, and how fast
the words are found.

    python benchmarks/ocr.py [--rows 100000] [--quick]

1. The gate (the detector alone on a copy at most N pixels long) on photos without text —
   scikit-image's photos, each also mirrored and cropped — at several sizes: photos per second
   (decoded photos in memory), the share it stops, and the share of the photos with text it lets
   through (those it stops would never be read).
2. Reading photos with text (gate + detector + direction classifier + recognizer): photos per
   second, and the character error rate (CER) of the stored text against the known text of drawn
   signs, a card, a rotated receipt, a street sign, a matplotlib poster, words printed on a real
   photo, and scikit-image's scanned ``page``. CER = edit distance / length of the known text,
   lines joined in reading order (a line read as two is no error); "raw" compares the text as read with spaces removed on both
   sides (the recognizer drops many), "folded" what searches compare (no case, accents or
   punctuation).
3. From 1 and 2: the reading rate of a library where a fifth of the photos hold text; and the
   same kind of mix indexed with the packaged model without and with ``ocr=True`` in one run:
   the embedding pass (photos searchable) and the text pass, each with its rate.
4. ``--text-in`` at ``--rows`` photos: synthetic lines written through the real store (SQLite
   FTS5 trigram), then the time of the filter alone and of ``Collection.search(text_in=...)``.

Prints markdown tables; the figures are recorded in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GATE = 256  # vsearch.ocr.engine.GATE_SIDE
NO_TEXT = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse", "coins", "moon", "hubble_deep_field"]


def _fonts() -> str:
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")


def _skimage(name: str) -> Image.Image:
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return Image.fromarray(arr).convert("RGB")


def photos_without_text() -> list[Image.Image]:
    out = []
    for name in NO_TEXT:
        im = _skimage(name)
        w, h = im.size
        out += [im, im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), im.crop((w // 8, h // 8, w - w // 8, h - h // 8))]
    return out


def _sign(lines, size, font, px, fg, bg, angle=0.0, start=(30, 30)) -> Image.Image:
    im = Image.new("RGB", size, bg)
    pen = ImageDraw.Draw(im)
    face = ImageFont.truetype(os.path.join(_fonts(), font), px)
    for i, line in enumerate(lines):
        pen.text((start[0], start[1] + i * int(px * 1.45)), line, fill=fg, font=face)
    if angle:
        im = im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(90, 90, 95))
    return im


def _poster(lines) -> Image.Image:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6.4, 4.0), dpi=100)
    fig.patch.set_facecolor("#f4efe1")
    for i, line in enumerate(lines):
        fig.text(0.06, 0.8 - i * 0.22, line, fontsize=26, family="DejaVu Sans", weight="bold", color="#202020")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=fig.get_facecolor())
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def photos_with_text() -> list[tuple[str, Image.Image, list[str]]]:
    """(name, photo, its known lines in reading order)."""
    out = []
    lines = ["BAKERY LUMIÈRE", "2 croissants 3.50"]
    out.append(("bakery sign", _sign(lines, (640, 300), "DejaVuSans-Bold.ttf", 48, (30, 30, 30), (235, 225, 200)), lines))
    lines = ["WiFi password:", "sunflower42"]
    out.append(("wifi card", _sign(lines, (480, 260), "DejaVuSerif.ttf", 40, (20, 20, 60), (250, 250, 245)), lines))
    lines = ["CAFE DU PORT", "2 espresso 4.80", "1 croissant 1.90", "TOTAL 6.70", "MERCI"]
    out.append(("receipt, rotated 4°", _sign(lines, (420, 420), "DejaVuSansMono.ttf", 28, (40, 40, 40), (252, 252, 250),
                                             angle=4.0), lines))
    lines = ["Rue Émile Zola"]
    out.append(("street sign", _sign(lines, (560, 140), "DejaVuSans-Bold.ttf", 50, (255, 255, 255), (20, 60, 140),
                                     start=(30, 35)), lines))
    lines = ["SUMMER SALE", "ALL SHOES -30%"]
    out.append(("matplotlib poster", _poster(lines), lines))
    coffee = _skimage("coffee")
    pen = ImageDraw.Draw(coffee)
    pen.text((30, 20), "GOOD MORNING", fill=(255, 255, 255), font=ImageFont.truetype(
        os.path.join(_fonts(), "DejaVuSans-Bold.ttf"), 44))
    out.append(("words on a photo (coffee)", coffee, ["GOOD MORNING"]))
    page = ["Region-based segmentation", "Let us first determine markers of the coins and the",
            "background. These markers are pixels that we can label",
            "unambiguously as either object or background. Here,",
            "the markers are found at the two extreme parts of the", "histogram of grey values:",
            ">>> markers = np.zeros_like(coins)"]
    out.append(("scanned page (skimage)", _skimage("page"), page))
    big = _skimage("rocket").resize((2000, 1334), Image.Resampling.BICUBIC)
    lines = ["PLATFORM 9", "EXIT CITY CENTRE"]
    big.paste(_sign(lines, (560, 180), "DejaVuSans-Bold.ttf", 48, (255, 255, 255), (20, 90, 60)), (1200, 300))
    out.append(("a sign in a 2000-px photo", big, lines))
    return out


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(known: list[str], read: list[str], folded: bool) -> float:
    from vsearch.ocr.fold import fold

    squash = fold if folded else (lambda s: "".join(s.split()))
    truth, got = "".join(squash(x) for x in known), "".join(squash(x) for x in read)
    return edit_distance(truth, got) / max(1, len(truth))


def bench_gate(sides, no_text, with_text) -> dict[int, float]:
    from vsearch.ocr.engine import TextReader

    print("\n| gate size | photos without text: img/s (wall) | img/s per CPU-second | stopped by the gate | "
          "photos with text let through |")
    print("| --- | --- | --- | --- | --- |")
    seconds_per_photo = {}
    for side in sides:
        reader = TextReader(gate_side=side)
        reader.has_text(no_text[0])  # load the models
        start, cpu = time.perf_counter(), time.process_time()
        passed = [reader.has_text(im) for im in no_text]
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        through = [reader.has_text(im) for _, im, _ in with_text]
        seconds_per_photo[side] = took / len(no_text)
        print(f"| {side} px | {len(no_text) / took:.1f} | {len(no_text) / cpu:.1f} | {1 - sum(passed) / len(passed):.0%} "
              f"({len(passed) - sum(passed)}/{len(passed)}) | {sum(through)}/{len(through)} |")
    return seconds_per_photo


def bench_read(with_text, no_text):
    from vsearch.ocr.engine import TextReader

    reader = TextReader()
    reader.read(with_text[0][1])
    print("\n| photo | size | seconds | lines kept | CER raw | CER folded |")
    print("| --- | --- | --- | --- | --- | --- |")
    times, cers, cpu_times = [], [], []
    for name, im, known in with_text:
        start, cpu = time.perf_counter(), time.process_time()
        got = reader.read(im)
        took = time.perf_counter() - start
        times.append(took)
        cpu_times.append(time.process_time() - cpu)
        read = [line.text for line in got.lines]
        c_raw, c_fold = cer(known, read, False), cer(known, read, True)
        cers.append((c_raw, c_fold))
        print(f"| {name} | {im.width}×{im.height} | {took:.2f} | {len(read)} | {c_raw:.3f} | {c_fold:.3f} |")
    total_chars = [len("".join("".join(x.split()) for x in known)) for _, _, known in with_text]
    pooled = sum(c[1] * n for c, n in zip(cers, total_chars)) / sum(total_chars)
    print(f"\nreading photos with text: {len(times) / sum(times):.2f} img/s (median {statistics.median(times):.2f} s; "
          f"{len(times) / sum(cpu_times):.2f} img/s per CPU-second); "
          f"CER folded pooled over all characters {pooled:.3f}")
    start = time.perf_counter()
    kept = [reader.read(im) for im in no_text]
    took = time.perf_counter() - start
    noise = [line.text for r in kept for line in r.lines]
    print(f"photos without text through gate + reader: {len(no_text) / took:.1f} img/s, "
          f"{sum(r.gated for r in kept)}/{len(kept)} stopped by the gate, lines kept: {noise or 'none'}")
    full_scores = []
    for im in no_text[::3]:
        result, _ = reader._models()[0](np.ascontiguousarray(np.asarray(im)[:, :, ::-1]))
        full_scores += [(text, round(float(s), 3)) for _, text, s in (result or [])]
    print(f"recognizer output on the {len(no_text[::3])} originals without the gate (kept if >= {reader.min_score} "
          f"and >= {reader.min_chars} letters/digits): {full_scores or 'none'}")
    return statistics.mean(times), took / len(no_text)


def bench_index(no_text, with_text, model: str = "packaged") -> None:
    """Indexing the same mix (about a fifth with text) into two new catalogs, without and with
    ``ocr=True``, in this run: the embedding pass (after which the photos are searchable) and the
    text pass, each with its rate."""
    import vsearch

    folder = tempfile.mkdtemp(prefix="ocr-mix-")
    for i, im in enumerate(no_text):
        im.save(os.path.join(folder, f"plain_{i:02d}.jpg"), quality=90)
    for i, (_, im, _) in enumerate(with_text[:7]):
        im.save(os.path.join(folder, f"text_{i:02d}.jpg"), quality=90)
    n = len(no_text) + min(7, len(with_text))
    print(f"\n| {n} photos, {min(7, len(with_text))} with text, model {model} | embedding pass (searchable after) "
          "| text pass | photos with text found |")
    print("| --- | --- | --- | --- |")
    for ocr in (False, True):
        with vsearch.open(tempfile.mkdtemp(prefix="ocr-db-"), model=model) as coll:
            coll.encoder  # noqa: B018 - loaded outside the timing
            summary = coll.index([folder], workers=0, ocr=ocr)
        text = summary.text
        print(f"| {'with' if ocr else 'without'} --ocr | {summary.seconds:.1f} s, {summary.images_per_second:.2f} img/s | "
              + (f"{text['seconds']:.1f} s, {text['images_per_second']:.2f} img/s, {text['gated']} stopped by the gate | "
                 f"{text['with_text']} |" if text else "— | — |"))


def bench_text_in(rows: int, repeats: int = 5, reuse: str | None = None) -> None:
    from vsearch.catalog import Catalog, MediaRecord
    from vsearch.ocr import store
    from vsearch.ocr.fold import fold

    if reuse:  # a catalog an earlier run built
        return _time_text_in(reuse, repeats)
    rng = np.random.default_rng(0)
    vocab = ["total", "merci", "espresso", "croissant", "parking", "ticket", "exit", "platform", "gate", "menu",
             "soup", "salad", "invoice", "receipt", "station", "avenue", "street", "museum", "entrance", "open",
             "closed", "sale", "price", "coffee", "tea", "water", "bus", "train", "hotel", "room", "lumière"]
    d = tempfile.mkdtemp(prefix="ocr-bench-")
    cat = Catalog(d, create=True)
    cat.bind_space("image", "synthetic", 8)
    start = time.perf_counter()
    chunk = 5000
    for begin in range(0, rows, chunk):
        n = min(chunk, rows - begin)
        recs = [MediaRecord(f"/photos/{i:07d}.jpg", 1000 + i, 1.0 + i, sha256=f"{i:064x}") for i in range(begin, begin + n)]
        vecs = rng.normal(size=(n, 8)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        with cat.transaction() as tx:
            ids = tx.add_media(recs, vecs)
            for mid, rec in zip(ids, recs):
                if rng.random() < 0.8:  # four photos in five hold no text
                    store.store_text(tx, mid, rec.sha256, "bench", [])
                    continue
                lines = []
                for _ in range(int(rng.integers(1, 4))):
                    words = [vocab[j] for j in rng.integers(0, len(vocab), 3)] + [str(int(rng.integers(0, 10000)))]
                    raw = " ".join(words).upper()
                    lines.append((raw, fold(raw), (1.0, 2.0, 100.0, 20.0), 0.95))
                store.store_text(tx, mid, rec.sha256, "bench", lines)
        cat.save()
    with cat.transaction() as tx:  # a few needles
        for j, word in enumerate(["sunflower42", "password:sunflower42", "wifi sunflower"]):
            store.store_text(tx, j + 1, f"{j:064x}", "bench", [(word, fold(word), (0.0, 0.0, 1.0, 1.0), 0.9)])
    build = time.perf_counter() - start
    cat.close()
    size = os.path.getsize(os.path.join(d, "catalog.sqlite")) / 2**20
    print(f"\n{rows:,} photos, a fifth with 1–3 lines of text, written through the store in {build:.0f} s; "
          f"catalog file {size:.0f} MiB, in {d} (--reuse it)")
    _time_text_in(d, repeats)


def _time_text_in(d: str, repeats: int) -> None:
    import vsearch
    from vsearch.ocr.fold import fold
    from vsearch.ocr.search import photos_with_text

    print("\n| term | photos found | filter (SQL) p50 | search(text_in=..., k=10) p50 |")
    print("| --- | --- | --- | --- |")
    with vsearch.open(d, create=False) as coll:
        coll.catalog  # noqa: B018 - open the full catalog once, outside the timings
        for term in ["sunflower", "lumiere", "croissant", "espresso 12", "zzzzzz", "ti"]:
            folded = [fold(term)]
            filt, full = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                found = photos_with_text(coll.catalog, folded)
                filt.append(time.perf_counter() - t)
                t = time.perf_counter()
                coll.search(text_in=[term], k=10)
                full.append(time.perf_counter() - t)
            print(f"| `{term}` | {len(found):,} | {statistics.median(filt) * 1000:.1f} ms | "
                  f"{statistics.median(full) * 1000:.1f} ms |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="one gate size, 10,000 rows")
    parser.add_argument("--no-text-in", action="store_true", help="leave out the --text-in timing")
    parser.add_argument("--no-index", action="store_true", help="leave out indexing with and without OCR")
    parser.add_argument("--reuse", help="time --text-in on the catalog in this folder (built by an earlier run)")
    args = parser.parse_args(argv)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.1f} at the start; one ONNX Runtime thread, so "
          "'per CPU-second' is the rate of one idle core")
    if args.reuse:
        return bench_text_in(args.rows, reuse=args.reuse)
    no_text, with_text = photos_without_text(), photos_with_text()
    gate_cost = bench_gate([GATE] if args.quick else [192, GATE, 320, 480], no_text, with_text)
    text_cost, no_text_cost = bench_read(with_text, no_text)
    mix = 0.8 * no_text_cost + 0.2 * text_cost
    print(f"\na library with a fifth of its photos holding text: {1 / mix:.2f} img/s read "
          f"(gate at {GATE} px alone: {1 / gate_cost[GATE]:.1f} img/s on photos without text)")
    if not args.no_index:
        bench_index(no_text, with_text)
    if not args.no_text_in:
        bench_text_in(10_000 if args.quick else args.rows, reuse=args.reuse)
    try:
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    except OSError:
        pass


if __name__ == "__main__":
    main()
