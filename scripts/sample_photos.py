"""Write scikit-image's bundled real photos as JPEGs into a folder (a collection to try vsearch on).

usage: python scripts/sample_photos.py DIR
"""
import os
import sys

import numpy as np
from PIL import Image

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse", "coins", "moon", "clock",
          "hubble_deep_field"]


def main(argv: list[str]) -> int:
    from skimage import data

    out = argv[0] if argv else "samples"
    os.makedirs(out, exist_ok=True)
    for name in PHOTOS:
        arr = np.asarray(getattr(data, name)())
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        Image.fromarray(arr).convert("RGB").save(os.path.join(out, f"{name}.jpg"), quality=92)
    print(f"wrote {len(PHOTOS)} photos to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
