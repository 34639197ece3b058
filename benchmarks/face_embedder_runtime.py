"""The face embedder (dlib's ResNet, as vsearch runs it on torch) on torch against ONNX Runtime.

Builds both embedders as the product does (``build_embedder("dlib", runtime=...)``; the ONNX one
exported into a temporary ONNX cache, with the product's check against torch), checks the
descriptors agree on real face chips, then times one-chip calls (what a verify request embeds)
alternately on each runtime with one intra-op thread each, as the service runs them. Prints
p50/p99 per call and the ratio.

usage: python benchmarks/face_embedder_runtime.py [--calls 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def face_chips(n: int) -> list[np.ndarray]:
    """150x150 chips around the astronaut's face (a real photo), shifted a little each."""
    from tests.conftest import skimage_rgb

    image = np.asarray(skimage_rgb("astronaut"))
    return [np.ascontiguousarray(image[40 + i % 7: 190 + i % 7, 170 + i % 5: 320 + i % 5]) for i in range(n)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args(argv)

    from benchmarks.common import machine
    from vsearch.faces.embedders import build_embedder

    import atexit
    import shutil

    os.environ["VSEARCH_ONNX_CACHE"] = tempfile.mkdtemp(prefix="vsearch-face-onnx-")
    atexit.register(shutil.rmtree, os.environ["VSEARCH_ONNX_CACHE"], True)
    torch_embedder = build_embedder("dlib", runtime="torch")
    t = time.perf_counter()
    onnx_embedder = build_embedder("dlib", runtime="onnx")
    export_s = time.perf_counter() - t
    if getattr(onnx_embedder, "runtime", None) != "onnx":
        print(f"ONNX refused: {getattr(onnx_embedder, 'runtime_notice', '')}")
        return 1
    chips = face_chips(8)
    ref, got = torch_embedder.raw(chips), onnx_embedder.raw(chips)
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    print(f"machine: {machine()}")
    print(f"export + check {export_s:.1f}s; descriptors torch vs onnx: min cosine {cos.min():.7f}, "
          f"max abs diff {np.abs(ref - got).max():.2e}")

    def torch_call(chip):
        torch_embedder.raw([chip])

    def onnx_call(chip):
        onnx_embedder.raw([chip])

    times = {"torch": [], "onnx": []}
    for name, fn in (("torch", torch_call), ("onnx", onnx_call)):  # warm-up
        for chip in chips[:3]:
            fn(chip)
    for i in range(args.calls):
        chip = chips[i % len(chips)]
        for name, fn in (("torch", torch_call), ("onnx", onnx_call)) if i % 2 else (("onnx", onnx_call), ("torch", torch_call)):
            t = time.perf_counter()
            fn(chip)
            times[name].append((time.perf_counter() - t) * 1000)
    p = {k: (np.percentile(v, 50), np.percentile(v, 99)) for k, v in times.items()}
    for k, (p50, p99) in p.items():
        print(f"{k:<6} one chip, 1 thread: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({args.calls} calls, alternating)")
    print(f"ratio torch/onnx: p50 {p['torch'][0] / p['onnx'][0]:.2f}x  p99 {p['torch'][1] / p['onnx'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
