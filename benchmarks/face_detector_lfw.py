"""Face detector recall and false positives on scikit-image's ``lfw_subset()``.

The set has 100 face crops and 100 non-face crops from LFW backgrounds, 25x25 grey pixels each.
No detector finds a 25 px face, so every crop is upscaled (bicubic, default x4 to 100x100) before
detection. A face crop counts as found when a detector returns at least one box; a non-face crop
with any box is a false positive.

    python benchmarks/face_detector_lfw.py [--scale 4] [--cnn]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def upscaled(crops: np.ndarray, scale: int) -> list[np.ndarray]:
    out = []
    for c in crops:
        img = Image.fromarray((np.clip(c, 0, 1) * 255).astype(np.uint8), "L")
        img = img.resize((c.shape[1] * scale, c.shape[0] * scale), Image.Resampling.BICUBIC).convert("RGB")
        out.append(np.asarray(img))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--cnn", action="store_true", help="also the dlib CNN (MMOD) detector")
    args = ap.parse_args(argv)

    from skimage.data import lfw_subset

    from vsearch.faces.detectors import build_detector
    from vsearch.faces.pipeline import PROBE_CONFIG, FacePipeline

    data = lfw_subset()
    faces, others = upscaled(data[:100], args.scale), upscaled(data[100:], args.scale)
    side = 25 * args.scale
    names = ["hog", "haar"] + (["cnn"] if args.cnn else [])
    print(f"lfw_subset: {len(faces)} faces, {len(others)} non-faces, 25x25 upscaled x{args.scale} to {side}x{side}")
    print(f"{'detector':<26}{'recall':>8}{'false pos.':>12}{'ms/image':>10}")
    for name in names:
        det = build_detector(name)
        for up in (0, 1):
            t = time.perf_counter()
            found = [len(det.detect(img, up)) > 0 for img in faces]
            false = [len(det.detect(img, up)) > 0 for img in others]
            ms = (time.perf_counter() - t) * 1000 / (len(faces) + len(others))
            print(f"{name + f' (upsample {up})':<26}{np.mean(found):>8.0%}{int(np.sum(false)):>8d}/{len(others)}{ms:>10.1f}")
    # the verify pipeline as configured (upsampled second pass only when the first finds nothing)
    pipe = FacePipeline(detector=build_detector("hog"), config=PROBE_CONFIG)
    t = time.perf_counter()
    found = [len(pipe.analyze_array(img).faces) > 0 for img in faces]
    false = [len(pipe.analyze_array(img).faces) > 0 for img in others]
    ms = (time.perf_counter() - t) * 1000 / (len(faces) + len(others))
    print(f"{'verify pipeline (hog)':<26}{np.mean(found):>8.0%}{int(np.sum(false)):>8d}/{len(others)}{ms:>10.1f}"
          "   (usable faces: detected and >= 40 px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
