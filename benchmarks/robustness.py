"""Memory of awkward inputs, with and without the guards of :mod:`vsearch.images`.

Each case runs in a fresh subprocess and reports its peak RSS above the process's baseline:

* a 1×N white PNG (about 100 bytes) through the packaged encoder's preprocess + encode, as the
  indexer and the server did before (`raw`) and do now (`limit_aspect`);
* sha256 of a sparse 600 MiB file read whole (`read`) and in 1 MiB chunks (`chunks`).

    python -m benchmarks.robustness
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

STRIP = r"""
import io, json, resource, sys, time
from PIL import Image
from vsearch.encoders import load_encoder
from vsearch.images import decode_image, limit_aspect
enc = load_encoder("packaged")
enc.encode_pixels(enc.preprocess(Image.new("RGB", (64, 64))).unsqueeze(0))  # warm up
buf = io.BytesIO(); Image.new("RGB", (1, int(sys.argv[2])), "white").save(buf, "PNG")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
img = decode_image(buf.getvalue(), draft_size=enc.info.image_size).image
if sys.argv[1] == "limit_aspect":
    img = limit_aspect(img)
enc.encode_pixels(enc.preprocess(img).unsqueeze(0))
print(json.dumps({"bytes": len(buf.getvalue()), "mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024,
                  "s": time.perf_counter() - t}))
"""

HASH = r"""
import hashlib, json, resource, sys
from vsearch.images import sha256_file
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(sys.argv[2], "rb") as fh:
    hashlib.sha256(fh.read()).hexdigest() if sys.argv[1] == "read" else sha256_file(fh)
print(json.dumps({"mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""


def _run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("| input | path | extra peak RSS | time |")
    print("| --- | --- | ---: | ---: |")
    for n in (8000, 20000):
        for mode in ("raw", "limit_aspect"):
            r = _run(STRIP, mode, str(n))
            print(f"| 1×{n} PNG ({r['bytes']} B) | {mode} | {r['mib']:.0f} MiB | {r['s']:.2f} s |")
    with tempfile.NamedTemporaryFile(suffix=".jpg") as fh:
        fh.truncate(600 << 20)
        for mode in ("read", "chunks"):
            r = _run(HASH, mode, fh.name)
            print(f"| 600 MiB file | sha256 {mode} | {r['mib']:.0f} MiB | |")


if __name__ == "__main__":
    main()
