"""Image↔text retrieval and zero-shot classification of the packaged model on real photos.

The retrieval set is scikit-image's bundled photos with the first line of their loader's
docstring as caption ("Chelsea the cat.", "Coffee cup.", ...). Also prints the ConSE ablation
behind the packaged model's defaults (top-T classes, centring).

usage: python benchmarks/retrieval.py
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine  # noqa: E402

# every skimage photo whose data ships inside the package (the rest need a download)
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse", "coins", "moon", "clock",
          "hubble_deep_field", "immunohistochemistry", "retina", "page", "text", "colorwheel",
          "grass", "gravel", "brick", "logo"]


def load_set():
    from skimage import data
    from PIL import Image

    images, captions, names = [], [], []
    for name in PHOTOS:
        try:
            arr = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - not shipped in this scikit-image version
            continue
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.dtype != np.uint8:
            arr = (255 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-9)).astype(np.uint8)
        images.append(Image.fromarray(arr).convert("RGB"))
        captions.append(getattr(data, name).__doc__.strip().splitlines()[0])
        names.append(name)
    return images, captions, names


def main() -> int:
    from vsearch.encoders import encode_images, l2_normalize, load_encoder
    from vsearch.metrics.retrieval import recall_at_k

    print(f"machine: {machine()}")
    t = time.perf_counter()
    enc = load_encoder("packaged")
    print(f"packaged model load: {time.perf_counter() - t:.1f}s")
    images, captions, names = load_set()
    n = len(images)
    t = time.perf_counter()
    img = encode_images(enc, images)
    txt = enc.encode_text(captions)
    print(f"{n} photos with docstring captions; embedding took {time.perf_counter() - t:.2f}s")
    sim = img @ txt.T
    i2t = recall_at_k(sim, [{i} for i in range(n)])
    t2i = recall_at_k(sim.T, [{i} for i in range(n)])
    chance = {k: min(1.0, k / n) for k in (1, 5, 10)}
    print("image→text " + "  ".join(f"R@{k} {v:.3f}" for k, v in i2t.items()))
    print("text→image " + "  ".join(f"R@{k} {v:.3f}" for k, v in t2i.items()))
    print("chance     " + "  ".join(f"R@{k} {v:.3f}" for k, v in chance.items()))

    print("\nConSE ablation (R@1 image→text / text→image):")
    pixels = torch.stack([enc.preprocess(im) for im in images])
    probs = enc.class_probabilities(pixels)
    text_raw = enc.text_model.encode(captions)
    for centre in (True, False):
        for top_t in (1, 5, 10, 20):
            p, idx = probs.topk(top_t, dim=-1)
            p = p / p.sum(-1, keepdim=True)
            e = torch.einsum("bt,btd->bd", p, enc._label_t[idx]).numpy()
            c = enc.centre if centre else 0.0
            s = l2_normalize(e - c) @ l2_normalize(text_raw - c).T
            a, b = recall_at_k(s, [{i} for i in range(n)], (1,))[1], recall_at_k(s.T, [{i} for i in range(n)], (1,))[1]
            print(f"  centred={centre!s:5}  T={top_t:<2}  {a:.3f} / {b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
