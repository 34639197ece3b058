"""Helpers shared by the benchmark scripts: machine description and synthetic photo folders."""
from __future__ import annotations

import os
import platform

import numpy as np
from PIL import Image, ImageDraw


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def synthetic_jpegs(folder: str, n: int, size=(640, 480), seed: int = 0) -> list[str]:
    """Photo-like JPEGs (smooth gradients with shapes and mild noise, ~60–100 KB at q=90), so that
    decode cost resembles camera pictures more than random noise (which compresses terribly)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"img_{i:06d}.jpg")
        paths.append(path)
        if os.path.exists(path):
            continue
        c0, c1 = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
        t = (xx / w * rng.uniform(0.3, 1) + yy / h * rng.uniform(0.3, 1))[..., None] / 2
        arr = (c0 * (1 - t) + c1 * t + rng.normal(0, 6, (h, w, 3))).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = rng.integers(0, w - 50), rng.integers(0, h - 50)
            box = [int(x0), int(y0), int(x0 + rng.integers(30, 250)), int(y0 + rng.integers(30, 200))]
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=color)
        img.save(path, quality=90)
    return paths
