"""Indexing throughput: decode-only, encode-only and end-to-end rates in one run.

The pipeline's overhead is end-to-end time over pure encoder forward time for the same images
(goal: ≤ 20 %). Random-weight CLIP is fine for throughput; the packaged model is the real default.

With ``--decoders pillow,torchvision`` it also compares JPEG decoders (``indexer.gpu_decode``;
torchvision is nvJPEG on ``--device cuda``, libjpeg-turbo on the CPU): decode-only through the
loader workers, and end to end through the shard embedder (read, hash, decode, encode).

usage: python benchmarks/index_throughput.py [--n 256] [--model clip-b32|packaged] [--device cpu|cuda]
       [--batch-size 32] [--workers 1] [--decoders pillow,torchvision] [--json out.json]
       [--runtime torch|onnx] [--precision fp32|int8]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine, synthetic_jpegs  # noqa: E402


def random_clip(device: str, runtime: str = "torch", precision: str = "fp32"):
    """ViT-B-32 with random weights, loaded through the real local-file path."""
    import open_clip

    from vsearch.encoders import load_encoder

    path = os.path.join(tempfile.gettempdir(), "vsearch-bench-vitb32-random.pt")
    if not os.path.exists(path):
        torch.manual_seed(0)
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), path)
    return load_encoder(f"clip:ViT-B-32@{path}", device, runtime, precision)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--model", default="clip-b32", choices=["clip-b32", "packaged"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--runtime", default="torch", choices=["torch", "onnx"],
                    help="onnx: the model exported to ONNX Runtime (exported into the cache on first use)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="int8: CLIP on onnx only")
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "vsearch-bench-jpegs"))
    ap.add_argument("--decoders", default="", help="also compare these JPEG decoders: pillow,torchvision")
    ap.add_argument("--json", help="also write the rates to this JSON file")
    ap.add_argument("--ort-threads", type=int, default=None,
                    help="intra-op threads of the ONNX Runtime sessions (default: one per core)")
    args = ap.parse_args(argv)

    import vsearch
    from indexer import index_paths
    from indexer.decode import DecodeDataset, collate_decoded
    from indexer.pipeline import init_decode_worker
    from indexer.scan import scan_paths
    from torch.utils.data import DataLoader
    from vsearch.encoders import load_encoder

    encoder = (random_clip(args.device, args.runtime, args.precision) if args.model == "clip-b32"
               else load_encoder("packaged", args.device, args.runtime))
    if args.ort_threads is not None and hasattr(encoder, "set_threads"):
        encoder.set_threads(args.ort_threads)
    folder = os.path.join(args.data, f"set-{args.n}")  # exactly n files: index_paths takes the whole folder
    synthetic_jpegs(folder, args.n)
    entries = scan_paths([folder]).files[: args.n]
    print(f"machine: {machine()}")
    print(f"model: {encoder.info.name}  images: {len(entries)}  batch {args.batch_size}  workers {args.workers}  runtime {args.runtime} {args.precision}  torch threads {torch.get_num_threads()}  "
          f"ort threads {getattr(encoder, 'threads', None) or 'default'}")

    def loader():
        return DataLoader(DecodeDataset(entries, encoder.preprocess, encoder.info.image_size),
                          batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate_decoded,
                          worker_init_fn=init_decode_worker if args.workers else None)

    # 1. decode + preprocess only (what the workers deliver)
    t = time.perf_counter()
    batches = [pixels for _, pixels in loader()]
    decode_s = time.perf_counter() - t

    # 2. encoder forward only, on the same tensors (warm-up batch first)
    encoder.encode_pixels(batches[0][:2])
    t = time.perf_counter()
    for b in batches:
        encoder.encode_pixels(b)
    encode_s = time.perf_counter() - t

    # 3. end to end: scan, hash, decode, encode, SQL commit per batch, index save
    db = tempfile.mkdtemp(prefix="vsearch-bench-db-")
    try:
        coll = vsearch.open(db)
        t = time.perf_counter()
        summary = index_paths(coll.catalog, encoder, [folder], batch_size=args.batch_size, workers=args.workers)
        e2e_s = time.perf_counter() - t
        assert summary.added == len(entries), summary
    finally:
        shutil.rmtree(db, ignore_errors=True)

    n = len(entries)
    print(f"decode+preprocess only: {n / decode_s:8.1f} img/s")
    print(f"encode only:            {n / encode_s:8.1f} img/s")
    print(f"end-to-end index:       {n / e2e_s:8.1f} img/s   (stage times: " +
          ", ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items()) + ")")
    print(f"pipeline overhead vs encoder forward: {e2e_s / encode_s - 1:+.1%}")
    results = {"machine": machine(), "model": encoder.info.name, "device": args.device, "images": n,
               "batch_size": args.batch_size, "workers": args.workers,
               "img_per_s": {"decode_preprocess": n / decode_s, "encode": n / encode_s, "index_paths": n / e2e_s}}
    if args.decoders:
        results["decoders"] = compare_decoders(encoder, entries, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


def compare_decoders(encoder, entries, args) -> dict:
    """Per decoder: decode-only (pixels on the encoder's device) and shard embedding end to end."""
    from torch.utils.data import DataLoader

    from indexer.embed import ShardEmbedder
    from indexer.gpu_decode import DECODER_ENV, select_decoder
    from indexer.decode import DecodeDataset, collate_decoded
    from indexer.pipeline import init_decode_worker

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n, out = len(entries), {}
    print(f"\nJPEG decoders, {n} images, batch {args.batch_size}, {args.workers} loader workers / decode threads")
    print(f"{'decoder':>12} {'decode-only img/s':>18} {'end-to-end img/s':>17}  (end to end: shard embedder)")
    for choice in args.decoders.split(","):
        decoder = select_decoder(encoder, choice=choice)
        base = DecodeDataset(entries, encoder.preprocess, encoder.info.image_size)
        loader = DataLoader(decoder.wrap(base) if decoder else base, batch_size=args.batch_size,
                            num_workers=args.workers, collate_fn=decoder.collate if decoder else collate_decoded,
                            worker_init_fn=init_decode_worker if args.workers else None,
                            pin_memory=device.type == "cuda")
        t, done = time.perf_counter(), 0
        for batch, payload in loader:
            items, pixels = decoder.finish(batch, payload) if decoder else (batch, payload.to(device, non_blocking=True))
            done += pixels.shape[0]
        sync()
        decode_rate = done / (time.perf_counter() - t)

        previous = os.environ.get(DECODER_ENV)
        os.environ[DECODER_ENV] = choice
        try:
            embedder = ShardEmbedder(encoder.info.name, args.device, args.batch_size, decode_threads=args.workers)
            t = time.perf_counter()
            records, _, failures, timings = embedder.embed(entries)
            e2e_rate = len(records) / (time.perf_counter() - t)
        finally:
            if previous is None:
                os.environ.pop(DECODER_ENV, None)
            else:
                os.environ[DECODER_ENV] = previous
        assert len(records) == n and not failures, failures[:3]
        counts = embedder.jpeg_decoder.counts if embedder.jpeg_decoder else {"pillow": n}
        print(f"{choice:>12} {decode_rate:>18.1f} {e2e_rate:>17.1f}  (decode wait {timings['decode_wait']:.1f}s, "
              f"encode {timings['encode']:.1f}s; files per path {counts})", flush=True)
        out[choice] = {"decode_only": decode_rate, "end_to_end": e2e_rate, "decode_wait_s": timings["decode_wait"],
                       "encode_s": timings["encode"], "files_per_path": counts}
    return out


if __name__ == "__main__":
    sys.exit(main())
