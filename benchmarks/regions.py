"""Regions: what proposals cost at indexing time and what they change in search.

    python benchmarks/regions.py [--max-regions 24] [--out benchmarks/out/regions]

On the real photos bundled with scikit-image, with the packaged model (the offline default):

1. Proposal recall: of the objects hand-labelled in benchmarks/regions_boxes.json, how many have
   a proposal with IoU >= 0.5 among the top N, ranked by colour contrast (what vsearch does)
   against two baselines on the same candidates (random order; largest first).
2. Indexing: regions per image, seconds per image without and with ``--regions proposals``, and
   where the extra time goes (finding proposals vs embedding their crops).
3. Search: for each labelled object, a text query "a {label}": the rank of its photo among all
   photos without regions and with ``--regions``, and the IoU of the returned box with the
   labelled box. The objects fill 1-36 % of their photos.
4. Open-vocabulary detection (``vsearch detect``) on the labelled photos: per-class AP and mAP@0.5.

Prints markdown tables; the machine and the figures are recorded in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# real photographs bundled with scikit-image (no download); synthetic images are left out
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse", "coins", "moon", "clock",
          "hubble_deep_field", "brick", "grass", "gravel", "immunohistochemistry", "retina", "page", "text"]
BOXES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regions_boxes.json")


def skimage_photo(name: str):
    from PIL import Image
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    if arr.dtype == bool:  # the horse silhouette
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = (255 * (arr - arr.min()) / max(np.ptp(arr), 1e-9)).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def proposal_recall(ground_truth, images, tops=(8, 16, 24, 32, 48, 64)) -> list[str]:
    from vsearch.regions.metrics import box_iou
    from vsearch.regions.proposals import ProposalConfig, ProposalSource, colour_contrast

    rng = np.random.default_rng(0)
    rankings = {
        "colour contrast (vsearch)": lambda px, b: colour_contrast(px, b),
        "random order": lambda px, b: rng.random(len(b)).astype(np.float32),
        "largest first": lambda px, b: ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).astype(np.float32),
    }
    found = {name: [] for name in rankings}
    n_candidates = []
    for top in tops:
        src = ProposalSource(ProposalConfig(max_regions=top))
        for name, rank in rankings.items():
            hits = 0
            for image_name, image in images.items():
                pixels, boxes = src.candidates(image)
                if top == tops[0] and name == "random order":
                    n_candidates.append(len(boxes))
                regions = src.select(pixels, boxes, rank(pixels, boxes), image.size)
                for g in (g for g in ground_truth if g["image"] == image_name):
                    hits += bool(box_iou([g["box"]], regions.boxes).max() >= 0.5) if len(regions) else 0
            found[name].append(hits)
    n = len(ground_truth)
    lines = [f"Objects with a proposal at IoU ≥ 0.5 (of {n} hand-labelled; {np.mean(n_candidates):.0f} "
             "candidates per photo before ranking):", "",
             "| ranking | " + " | ".join(f"top {t}" for t in tops) + " |",
             "| --- | " + " | ".join("---:" for _ in tops) + " |"]
    for name, row in found.items():
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def index_costs(encoder, photo_dir: str, work: str, max_regions: int, images) -> tuple[list[str], dict]:
    import torch

    import vsearch
    from indexer import index_paths
    from vsearch.extractors import build_extractor
    from vsearch.regions.crops import embed_regions
    from vsearch.regions.proposals import ProposalConfig, ProposalSource

    n = len(os.listdir(photo_dir))
    out = {}
    for label, regions in (("whole photos only", False), (f"--regions proposals --max-regions {max_regions}", True)):
        db = os.path.join(work, "db-regions" if regions else "db-plain")
        coll = vsearch.open(db, model=encoder.info.name)
        extractors = [build_extractor("regions", "proposals", "cpu", max_regions=max_regions)] if regions else []
        t = time.perf_counter()
        summary = index_paths(coll.catalog, encoder, [photo_dir], workers=0, extractors=extractors)
        seconds = time.perf_counter() - t
        stats = coll.catalog.stats()["vectors"]
        coll.close()
        out[label] = (seconds / n, stats.get("region", 0) / n, summary)
    # where the time of a region goes, photo by photo
    src = ProposalSource(ProposalConfig(max_regions=max_regions))
    t_prop = t_emb = t_whole = 0.0
    counts = []
    for image in images.values():
        t = time.perf_counter()
        encoder.encode_pixels(encoder.preprocess(image)[None])
        t_whole += time.perf_counter() - t
        t = time.perf_counter()
        regions = src(image)
        t_prop += time.perf_counter() - t
        t = time.perf_counter()
        embed_regions(encoder, image, regions)
        t_emb += time.perf_counter() - t
        counts.append(len(regions))
    plain, with_regions = out["whole photos only"], out[f"--regions proposals --max-regions {max_regions}"]
    lines = [
        f"| indexing {n} photos (1 process, no decode workers, torch threads {torch.get_num_threads()}) | s per photo | regions per photo |",
        "| --- | ---: | ---: |",
        f"| whole photos only | {plain[0]:.2f} | — |",
        f"| --regions proposals --max-regions {max_regions} | {with_regions[0]:.2f} | {with_regions[1]:.1f} |",
        "",
        f"Regions per photo: mean {np.mean(counts):.1f}, min {min(counts)}, max {max(counts)}. "
        f"Per photo, proposals took {t_prop / len(images):.2f} s and embedding their crops {t_emb / len(images):.2f} s "
        f"({t_emb / max(sum(counts), 1) * 1000:.0f} ms per crop, in batches of up to 32; embedding a whole photo "
        f"alone took {t_whole / len(images) * 1000:.0f} ms in the same loop).",
    ]
    return lines, {"plain_db": os.path.join(work, "db-plain"), "regions_db": os.path.join(work, "db-regions")}


def search_effect(encoder, dbs: dict, photo_dir: str, ground_truth) -> list[str]:
    import vsearch
    from vsearch.regions.metrics import box_iou

    plain = vsearch.open(dbs["plain_db"], create=False)
    regions = vsearch.open(dbs["regions_db"], create=False)
    lines = ["| query | photo | object's share of the photo | rank without regions | rank with regions | IoU of returned box |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    ranks_a, ranks_b = [], []
    for g in ground_truth:
        query = f"a {g['label']}"
        target = os.path.join(photo_dir, g["image"] + ".jpg")
        a = [h.path for h in plain.search(query, k=100)]
        hits = regions.search(query, k=100, regions=True)
        b = [h.path for h in hits]
        ra, rb = a.index(target) + 1, b.index(target) + 1
        box = hits[rb - 1].box
        media = regions.catalog.media_under([target])[target]
        m = regions.catalog.media(media.id)
        x1, y1, x2, y2 = g["box"]
        share = (x2 - x1) * (y2 - y1) / (m.width * m.height)
        iou = float(box_iou([g["box"]], [box])[0, 0])
        ranks_a.append(ra)
        ranks_b.append(rb)
        whole = " (whole photo)" if hits[rb - 1].whole_image else ""
        lines.append(f"| {query} | {g['image']} | {share:.0%} | {ra} | {rb} | {iou:.2f}{whole} |")
    plain.close()
    regions.close()
    ra, rb = np.array(ranks_a), np.array(ranks_b)
    lines += ["", f"Mean reciprocal rank {np.mean(1 / ra):.3f} without regions, {np.mean(1 / rb):.3f} with; "
              f"rank 1: {int((ra == 1).sum())} → {int((rb == 1).sum())} of {len(ra)}; "
              f"better {int((rb < ra).sum())}, same {int((rb == ra).sum())}, worse {int((rb > ra).sum())}."]
    return lines


def detection_ap(encoder, ground_truth, images) -> list[str]:
    from vsearch.regions.detect import detect, score_regions
    from vsearch.regions.metrics import DetectedBox, GroundTruthBox, evaluate_detections

    labels = sorted({g["label"] for g in ground_truth})
    gt = [GroundTruthBox(g["image"], g["label"], tuple(g["box"])) for g in ground_truth]
    dets = []
    for name in sorted({g["image"] for g in ground_truth}):
        for d in detect(encoder, images[name], labels):
            dets.append(DetectedBox(name, d.label, d.box, d.score))
    ev = evaluate_detections(gt, dets)
    ev11 = {c.label: c.ap for c in evaluate_detections(gt, dets, method="11pt").per_class}
    lines = ["| label | AP | AP (11-pt) | detections |", "| --- | ---: | ---: | ---: |"]
    for c in ev.per_class:
        lines.append(f"| {c.label} | {c.ap:.2f} | {ev11[c.label]:.2f} | {c.n_detections} |")
    lines += ["", f"mAP@0.5 = {ev.mean_ap:.3f} (all-point) over {len(labels)} labels, each image queried "
              f"with all {len(labels)} labels ({len(dets)} detections)."]
    # what scores look like: the best box for each labelled object in its photo, against the best
    # box for things certainly absent from these photos (the threshold has to sit between the two)
    absent = ["cat", "horse", "dog", "car", "bicycle", "banana"]
    present_best, absent_best = [], []
    for name in sorted({g["image"] for g in ground_truth}):
        mine = [g["label"] for g in ground_truth if g["image"] == name]
        _, sims = score_regions(encoder, images[name], mine + absent)
        best = sims.max(axis=0)
        present_best += best[: len(mine)].tolist()
        absent_best += best[len(mine):].tolist()
    lines += ["", f"Best box score of each labelled object in its photo: min {min(present_best):.2f}, median "
              f"{np.median(present_best):.2f}, max {max(present_best):.2f}; of labels absent from these photos "
              f"({', '.join(absent)}): max {max(absent_best):.2f}, median {np.median(absent_best):.2f}."]
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-regions", type=int, default=24)
    parser.add_argument("--out", default=None, help="keep the photo folder and catalogs here")
    args = parser.parse_args(argv)
    os.environ.setdefault("VSEARCH_OFFLINE", "1")
    from vsearch.encoders import load_encoder

    with open(BOXES) as fh:
        ground_truth = json.load(fh)
    work = args.out or tempfile.mkdtemp(prefix="vsearch-regions-")
    photo_dir = os.path.join(work, "photos")
    shutil.rmtree(photo_dir, ignore_errors=True)
    for d in ("db-plain", "db-regions"):
        shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    os.makedirs(photo_dir)
    images = {}
    for name in PHOTOS:
        images[name] = skimage_photo(name)
        images[name].save(os.path.join(photo_dir, name + ".jpg"), quality=92)
    encoder = load_encoder("packaged")
    encoder.encode_pixels(encoder.preprocess(images["chelsea"])[None])  # warm up before timing
    print(f"# Regions benchmark — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start; model {encoder.info.name}\n")
    labelled = {n: images[n] for n in sorted({g["image"] for g in ground_truth})}
    for line in proposal_recall(ground_truth, labelled):
        print(line)
    print()
    lines, dbs = index_costs(encoder, photo_dir, work, args.max_regions, images)
    for line in lines:
        print(line)
    print()
    for line in search_effect(encoder, dbs, photo_dir, ground_truth):
        print(line)
    print()
    for line in detection_ap(encoder, ground_truth, labelled):
        print(line)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
