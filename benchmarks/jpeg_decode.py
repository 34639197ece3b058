"""JPEG decode + preprocess, one process: Pillow, Pillow with ``draft``, and torchvision's
``decode_jpeg`` (libjpeg-turbo on the CPU, nvJPEG with ``--device cuda``) with the encoder's
resize/crop/normalise done on tensors (``indexer.gpu_decode``).

Every variant ends with the same (N, 3, 224, 224) normalised tensor that CLIP's preprocessing
makes, so the rates compare whole jobs. Bytes are read into memory first: disk is not timed.

usage: python benchmarks/jpeg_decode.py [--n 500] [--device cpu|cuda] [--batch-size 64] [--folder DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine, synthetic_jpegs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the cost of one core)")
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "vsearch-bench-jpegs"))
    ap.add_argument("--folder", help="take the first --n JPEGs of this folder instead of making them")
    ap.add_argument("--json", help="also write the rates to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import open_clip
    from torchvision.io import ImageReadMode, decode_jpeg

    from indexer.gpu_decode import TensorPreprocess
    from vsearch.images import decode_image

    if args.folder:
        paths = sorted(os.path.join(args.folder, f) for f in os.listdir(args.folder) if f.endswith(".jpg"))[: args.n]
    else:
        paths = synthetic_jpegs(os.path.join(args.data, f"set-{args.n}"), args.n)
    blobs = [open(p, "rb").read() for p in paths]
    transform = open_clip.image_transform(224, is_train=False)
    tensor_preprocess = TensorPreprocess.from_transform(transform)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def pillow(draft, preprocess=True):
        def run(chunk):
            images = [decode_image(b, draft_size=224 if draft else None).image for b in chunk]
            return torch.stack([transform(im) for im in images]) if preprocess else images
        return run

    def torchvision_batch(preprocess=True):
        def run(chunk):
            images = decode_jpeg([torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in chunk],
                                 mode=ImageReadMode.RGB, device=device)
            return tensor_preprocess(images) if preprocess else images
        return run

    tv = f"decode_jpeg-{device.type}"
    variants = {"pillow": pillow(False), "pillow-draft": pillow(True), tv: torchvision_batch(),
                "pillow (decode only)": pillow(False, False), "pillow-draft (decode only)": pillow(True, False),
                f"{tv} (decode only)": torchvision_batch(False)}
    print(f"machine: {machine()}")
    print(f"{len(blobs)} JPEGs (mean {sum(map(len, blobs)) / len(blobs) / 1024:.0f} KiB), "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}, to (N, 3, 224, 224) normalised")
    rates = {}
    for name, run in variants.items():
        run(blobs[:4])  # warm-up: imports, kernels, nvJPEG handles
        sync()
        t = time.perf_counter()
        for start in range(0, len(blobs), args.batch_size):
            out = run(blobs[start : start + args.batch_size])
        sync()
        rates[name] = len(blobs) / (time.perf_counter() - t)
        assert "decode only" in name or out.shape[1:] == (3, 224, 224)
        print(f"{name:>30}: {rates[name]:8.1f} img/s  ({rates[name] / rates['pillow']:.2f}× Pillow)", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "n": len(blobs), "batch_size": args.batch_size,
                       "threads": torch.get_num_threads(), "img_per_s": rates}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
