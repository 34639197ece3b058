"""The landmark check against false faces (:mod:`vsearch.faces.quality`): false faces on the
scikit-image photos, genuine faces kept on the LFW subset, and the drift of each box.

1. Every colour or grey photo ``skimage.data`` ships, saved as a JPEG (quality 90) at its own size
   and, for ``astronaut`` (whose round mission patch looks like a face to HOG), also at 768, 1024
   and 1280 px, analysed with the indexer's and the probe's settings, check off and on. Only
   ``astronaut`` (Eileen Collins) and ``camera`` (the cameraman) show a face; any other box, or a
   second box on those two, is a false face.
2. ``lfw_subset()``'s 100 face crops, upscaled x4 as ``face_detector_lfw.py`` does, through the
   probe pipeline with the check off and on: a face found without it and lost with it is a genuine
   face lost.

    python benchmarks/face_quality.py
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FACES_IN = {"astronaut": 1, "camera": 1}  # the photos of skimage.data that show a (real) face


def skimage_photos(folder: str) -> list[tuple[str, str]]:
    """(name, JPEG path) of every 8-bit colour or grey photo skimage.data loads offline."""
    from skimage import data

    out = []
    for name in sorted(n for n in dir(data) if not n.startswith("_")):
        fn = getattr(data, name)
        if name in ("lfw_subset", "download_all", "data_dir") or not callable(fn):
            continue
        try:
            img = fn()
        except Exception:  # noqa: BLE001 - loaders that need a download fail offline
            continue
        img = np.asarray(img[0] if isinstance(img, tuple) else img)
        if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
            continue
        photo = Image.fromarray(img).convert("RGB")
        sizes = [max(photo.size)] + ([768, 1024, 1280] if name == "astronaut" else [])
        for side in sizes:
            f = side / max(photo.size)
            scaled = photo if f == 1 else photo.resize((round(photo.width * f), round(photo.height * f)),
                                                     Image.Resampling.LANCZOS)
            path = os.path.join(folder, f"{name}-{side}.jpg")
            scaled.save(path, quality=90)
            out.append((name, path))
    return out


def main() -> int:
    from dataclasses import replace

    from skimage.data import lfw_subset

    from benchmarks.face_detector_lfw import upscaled
    from vsearch.faces.pipeline import INDEX_CONFIG, PROBE_CONFIG, load_pipeline
    from vsearch.faces.quality import MAX_DRIFT, landmark_drift

    pipe = load_pipeline()
    drift = {}  # (photo, config) -> drifts of the boxes found with the check off
    print(f"1. scikit-image photos (JPEG q90); a box is kept when its landmark drift <= {MAX_DRIFT}")
    print(f"{'photo':<28}{'settings':<8}{'faces':>6}{'off':>5}{'on':>5}  drift of each box")
    false_off = false_on = lost_photo = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in skimage_photos(tmp):
            for label, cfg in (("index", INDEX_CONFIG), ("probe", PROBE_CONFIG)):
                off = pipe.analyze(path, replace(cfg, check_landmarks=False))
                on = pipe.analyze(path, cfg)
                work, _ = pipe.load(path, cfg)
                scale = work.shape[1] / off.image_size[0]
                drifts = [landmark_drift(pipe.aligner.landmarks, work, tuple(v * scale for v in f.box))
                          for f in off.faces]
                real = FACES_IN.get(name, 0)
                false_off += max(0, len(off.faces) - real)
                false_on += max(0, len(on.faces) - real)
                lost_photo += max(0, min(real, len(off.faces)) - len(on.faces))
                if off.faces or real:
                    print(f"{os.path.basename(path):<28}{label:<8}{real:>6}{len(off.faces):>5}{len(on.faces):>5}  "
                          + " ".join(f"{d:.3f}" for d in drifts))
    print(f"false faces: {false_off} with the check off, {false_on} with it on; real faces lost: {lost_photo}")

    data = lfw_subset()
    faces = upscaled(data[:100], 4)
    off_cfg = replace(PROBE_CONFIG, check_landmarks=False)
    t = time.perf_counter()
    found_off = [pipe.analyze_array(img, None, off_cfg).faces for img in faces]
    t_off = (time.perf_counter() - t) * 1000 / len(faces)
    t = time.perf_counter()
    found_on = [pipe.analyze_array(img, None, PROBE_CONFIG).faces for img in faces]
    t_on = (time.perf_counter() - t) * 1000 / len(faces)
    drifts = [landmark_drift(pipe.aligner.landmarks, img, f.box) for img, fs in zip(faces, found_off) for f in fs]
    lost = sum(1 for a, b in zip(found_off, found_on) if a and not b)
    print(f"2. lfw_subset: {len(faces)} faces, upscaled x4")
    print(f"found with the check off {sum(map(bool, found_off))}, on {sum(map(bool, found_on))}; genuine faces "
          f"lost {lost}; drift of the found boxes: median {np.median(drifts):.3f}, max {max(drifts):.3f}; "
          f"{t_off:.1f} / {t_on:.1f} ms per image off / on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
