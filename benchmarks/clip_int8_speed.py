"""ViT-B-32 image tower on ONNX Runtime: fp32 against int8 encode throughput, in one run.

Speed does not depend on the weights' values, so this uses open_clip's ViT-B-32 with seeded random
weights (no download). The product's int8 export check refuses int8 on *random* ViT-B-32 weights
(near-tied similarities make "same best text for every photo" flip), so vsearch never ran int8
here and its speed was never measured. **This benchmark bypasses only that accept/refuse
decision**: it exports fp32 through the product's exporter (checked against torch as usual), then
quantizes the image tower with the product's :func:`quantize_int8` (dynamic QUInt8 weights)
without the int8 check, reports what the check would have said, and times both sessions on the
same pixel batches, rounds alternating. The product keeps refusing int8 where the check fails.

Each round also reports the process CPU time per image: on a machine shared with other jobs the
wall-clock rates swing with the load, the CPU time spent on a batch much less so. ``--variants``
adds other dynamic-quantization recipes of the same export (weight type, reduce_range, per-channel,
operator types, pre-processing or not), timed in the same rounds.

usage: python benchmarks/clip_int8_speed.py [--n 64] [--batch-size 32] [--threads 2] [--rounds 3] [--variants]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

# recipe name -> (pre-process first, weight type, reduce_range, per_channel, op_types_to_quantize)
VARIANTS = {
    "u8 raw export": (False, "QUInt8", False, False, None),
    "s8 reduce_range": (True, "QInt8", True, False, None),
    "u8 per-channel": (True, "QUInt8", False, True, None),
    "u8 MatMul only": (True, "QUInt8", False, False, ["MatMul"]),
}

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="images per round")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", action="store_true", help="also time other quantization recipes")
    args = ap.parse_args(argv)

    from PIL import Image

    from benchmarks.common import machine, synthetic_jpegs
    from benchmarks.index_throughput import random_clip
    from vsearch.encoders.onnx_encoder import OnnxEncoder
    from vsearch.encoders.onnx_export import ExportRefused, check_fidelity, export_model, quantize_int8

    torch_encoder = random_clip("cpu", "torch")
    spec = f"clip:ViT-B-32@{os.path.join(tempfile.gettempdir(), 'vsearch-bench-vitb32-random.pt')}"
    work = tempfile.mkdtemp(prefix="vsearch-bench-int8-")
    try:
        t = time.perf_counter()
        fp32_dir = os.path.join(work, "fp32")
        meta = export_model(spec, torch_encoder, fp32_dir, "fp32")
        print(f"machine: {machine()}")
        print(f"fp32 export {time.perf_counter() - t:.0f}s, fidelity vs torch {meta['fidelity']}")

        int8_dir = os.path.join(work, "int8")
        # not the fp32 session copies: a session would load them in place of the quantized tower
        shutil.copytree(fp32_dir, int8_dir, ignore=shutil.ignore_patterns("optimized-*"))
        t = time.perf_counter()
        quantize_int8(os.path.join(int8_dir, "image.onnx"))  # image tower only: what indexing runs
        int8_meta = {**meta, "precision": "int8", "int8_towers": ["image"]}
        print(f"int8 image tower quantized in {time.perf_counter() - t:.0f}s "
              f"({os.path.getsize(os.path.join(fp32_dir, 'image.onnx')) / 2**20:.0f} MB -> "
              f"{os.path.getsize(os.path.join(int8_dir, 'image.onnx')) / 2**20:.0f} MB)")
        try:
            check_fidelity(torch_encoder, OnnxEncoder(int8_dir, int8_meta), int8=True)
            verdict = "accepted"
        except ExportRefused as exc:
            verdict = f"refused: {exc}"
        print(f"product's int8 check on these random weights: {verdict}  [BYPASSED for this timing only]")

        encoders = {"fp32": OnnxEncoder(fp32_dir, meta, threads=args.threads),
                    "int8": OnnxEncoder(int8_dir, int8_meta, threads=args.threads)}
        if args.variants:
            for name, recipe in VARIANTS.items():
                variant_dir = os.path.join(work, name.replace(" ", "-"))
                shutil.copytree(fp32_dir, variant_dir, ignore=shutil.ignore_patterns("optimized-*"))
                _quantize_variant(os.path.join(fp32_dir, "image.onnx"), os.path.join(variant_dir, "image.onnx"), *recipe)
                encoders[name] = OnnxEncoder(variant_dir, int8_meta, threads=args.threads)
        folder = os.path.join(tempfile.gettempdir(), "vsearch-bench-jpegs", f"set-{args.n}")
        paths = synthetic_jpegs(folder, args.n)
        pixels = np.stack([encoders["fp32"]._transform(Image.open(p).convert("RGB")) for p in sorted(paths)[: args.n]])
        batches = [pixels[i: i + args.batch_size] for i in range(0, len(pixels), args.batch_size)]
        out = {}
        for name, enc in encoders.items():  # warm-up, and the embeddings to compare
            out[name] = enc.encode_pixels(batches[0])
        for name in encoders:
            if name != "fp32":
                cos = np.sum(out["fp32"] * out[name], axis=1)
                print(f"{name} vs fp32 image embeddings on {len(cos)} synthetic photos: min cosine {cos.min():.5f}")
        rates: dict[str, list[float]] = {name: [] for name in encoders}
        cpu_ms: dict[str, list[float]] = {name: [] for name in encoders}
        for r in range(args.rounds):
            for name in (list(encoders) if r % 2 == 0 else list(encoders)[::-1]):
                t, c = time.perf_counter(), time.process_time()
                for b in batches:
                    encoders[name].encode_pixels(b)
                rates[name].append(len(pixels) / (time.perf_counter() - t))
                cpu_ms[name].append((time.process_time() - c) * 1000 / len(pixels))
        print(f"image tower encode, batch {args.batch_size}, {args.threads} threads, {len(pixels)} images x "
              f"{args.rounds} rounds alternating (load average {os.getloadavg()[0]:.1f}):")
        for name, rs in rates.items():
            print(f"  onnx {name}: " + ", ".join(f"{x:.1f}" for x in rs) + f" img/s (median {np.median(rs):.1f}); "
                  f"CPU {np.median(cpu_ms[name]):.0f} ms/img")
        for name in encoders:
            if name == "fp32":
                continue
            ratios = [b / a for a, b in zip(rates["fp32"], rates[name])]
            cpu_ratios = [a / b for a, b in zip(cpu_ms["fp32"], cpu_ms[name])]
            print(f"  {name}/fp32: median {np.median(rates[name]) / np.median(rates['fp32']):.2f}x "
                  f"(per round {', '.join(f'{x:.2f}' for x in ratios)}); CPU time "
                  f"{np.median(cpu_ms['fp32']) / np.median(cpu_ms[name]):.2f}x less "
                  f"(per round {', '.join(f'{x:.2f}' for x in cpu_ratios)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _quantize_variant(source: str, target: str, pre_process: bool, weight_type: str, reduce_range: bool,
                      per_channel: bool, op_types) -> None:
    """Dynamic quantization of ``source`` into ``target`` with a recipe other than the product's."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target + ".pre.onnx" if pre_process else source
    if pre_process:
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
    quantize_dynamic(prepared, target, weight_type=getattr(QuantType, weight_type), reduce_range=reduce_range,
                     per_channel=per_channel, op_types_to_quantize=op_types)
    if pre_process:
        os.remove(prepared)


if __name__ == "__main__":
    sys.exit(main())
