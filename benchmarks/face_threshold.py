"""The default face threshold against dlib's own rule, on the real photos that ship offline.

For every photo: dlib's raw descriptor (through dlib itself, same chip) and its length, and
vsearch's unit embedding. For every pair: dlib's decision (raw distance < 0.6), the cosine that rule
amounts to for these two lengths, and vsearch's decision at the old (0.907) and new default
thresholds; FAR and FRR at each, with 95% Clopper-Pearson upper bounds (the photo set is small).

    python benchmarks/face_threshold.py --images DIR

``DIR``: the face_recognition sdist's ``tests/test_images`` (Obama x3 + 2 crops, Biden), joined by
matplotlib's Grace Hopper and scikit-image's astronaut (Eileen Collins).
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OBAMA = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]


def real_photos(images: str) -> list[tuple[str, str]]:
    """(path, person) of the eight offline photos of four people."""
    import matplotlib.cbook as cbook
    from PIL import Image
    from skimage import data

    tmp = tempfile.mkdtemp()
    Image.fromarray(data.astronaut()).save(os.path.join(tmp, "collins.jpg"), quality=92)
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), os.path.join(tmp, "hopper.jpg"))
    return ([(os.path.join(images, f), "obama") for f in OBAMA] + [(os.path.join(images, "biden.jpg"), "biden"),
            (os.path.join(tmp, "hopper.jpg"), "hopper"), (os.path.join(tmp, "collins.jpg"), "collins")])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", required=True)
    args = ap.parse_args(argv)
    from vsearch.faces.embedders import DLIB_DEFAULT_THRESHOLD, DlibResNetEmbedder, dlib_rule_as_cosine
    from vsearch.faces.pipeline import ENROLL_CONFIG, load_pipeline
    from vsearch.metrics.verification import clopper_pearson_upper

    pipe, native = load_pipeline(), DlibResNetEmbedder()
    raw, unit, who = [], [], []
    for path, person in real_photos(args.images):
        work, original = pipe.load(path, ENROLL_CONFIG)
        face = pipe.analyze_array(work, original, ENROLL_CONFIG).faces[0]
        to_work = work.shape[1] / original[0]
        chip = pipe.aligner.align(work, [v * to_work for v in face.box], 150, 0.25).chip
        raw.append(np.asarray(native._model.compute_face_descriptor([chip]))[0])
        unit.append(face.embedding)
        who.append(person)
    lengths = np.linalg.norm(raw, axis=1)
    print(f"raw descriptor length: median {np.median(lengths):.3f}, {lengths.min():.3f}-{lengths.max():.3f}")
    rows = []
    for i, j in itertools.combinations(range(len(who)), 2):
        rows.append((who[i] == who[j], float(np.linalg.norm(raw[i] - raw[j])), float(unit[i] @ unit[j]),
                     dlib_rule_as_cosine(lengths[i], lengths[j])))
    same = np.array([r[0] for r in rows])
    dist, cos, equiv = (np.array([r[k] for r in rows]) for k in (1, 2, 3))
    print(f"{same.sum()} genuine, {(~same).sum()} impostor pairs; dlib's rule as a cosine per pair: "
          f"median {np.median(equiv):.4f} ({equiv.min():.4f}-{equiv.max():.4f})")
    print(f"genuine cosines {cos[same].min():.4f}-{cos[same].max():.4f}, "
          f"impostor cosines {cos[~same].min():.4f}-{cos[~same].max():.4f}")
    decisions = {"dlib distance < 0.6": dist < 0.6, "cosine >= 0.907 (old default)": cos >= 0.907,
                 f"cosine >= {DLIB_DEFAULT_THRESHOLD} (default)": cos >= DLIB_DEFAULT_THRESHOLD}
    print("| rule | FAR | FAR 95% upper | FRR | FRR 95% upper |")
    print("| --- | --- | --- | --- | --- |")
    for name, accept in decisions.items():
        fa, fr = int((accept & ~same).sum()), int((~accept & same).sum())
        print(f"| {name} | {fa}/{(~same).sum()} | {clopper_pearson_upper(fa, int((~same).sum())):.3f} | "
              f"{fr}/{same.sum()} | {clopper_pearson_upper(fr, int(same.sum())):.3f} |")


if __name__ == "__main__":
    main()
