"""dlib's face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) run by PyTorch.

dlib-bin is built without BLAS, so its own CPU convolutions take about 75 ms per face chip here;
the same network through PyTorch's CPU kernels is several times faster. The weights are read
straight from dlib's file and the outputs are checked against dlib's own (tests compare both), so
this is the same embedder under the same name, not a re-trained model.

The network (dlib's ``dnn_face_recognition_ex.cpp``)::

    input 150x150 RGB, (pixel - mean) / 256
    con 32 7x7/2 -> affine -> relu -> max_pool 3x3/2
    3 x res(32) | res_down(64) 3 x res(64) | res_down(128) 2 x res(128) | res_down(256) 2 x res(256) | res_down(256)
    global average -> fc 128 (no bias)

    res(N)      = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
    res_down(N) = relu(avg_pool2x2/2(x) (+) affine(con3x3(relu(affine(con3x3/2(x))))))

dlib pads stride-1 3x3 convolutions by 1 and stride-2 ones (and the pools) by 0, and its
``add_prev`` adds tensors of different shapes by zero-padding the smaller one, written (+) above.

File format (dlib ``serialize``): each layer writes its name string, then its parameter tensor
(``fc_2`` first writes its output and input counts):
an int version (2), four ints (n, k, rows, cols) and n*k*rows*cols little-endian float32. dlib's
ints are one control byte (low nibble: byte count, 0x80: negative) and that many little-endian
bytes. Layers appear from the input to the output.
"""
from __future__ import annotations

import contextlib
import re
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# (channels, blocks, first block downsamples) per stage, input to output
STAGES = [(32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True)]
MEAN_RGB = (122.782, 117.001, 104.298)  # dlib input_rgb_image_sized defaults


def _read_int(buf: bytes, pos: int) -> tuple[int, int]:
    ctrl = buf[pos]
    size, negative = ctrl & 0x0F, bool(ctrl & 0x80)
    value = int.from_bytes(buf[pos + 1: pos + 1 + size], "little")
    return (-value if negative else value), pos + 1 + size


def _read_tensor(buf: bytes, pos: int) -> np.ndarray:
    version, pos = _read_int(buf, pos)
    if version != 2:
        raise ValueError(f"unexpected dlib tensor version {version}")
    dims = []
    for _ in range(4):
        d, pos = _read_int(buf, pos)
        dims.append(d)
    count = int(np.prod(dims))
    return np.frombuffer(buf, dtype="<f4", count=count, offset=pos).astype(np.float32)


def read_dlib_params(path: str) -> dict[str, list[np.ndarray]]:
    """Parameter tensors of the con, affine and fc layers, in file (input-to-output) order."""
    with open(path, "rb") as fh:
        buf = fh.read()
    out: dict[str, list[np.ndarray]] = {"con": [], "affine": [], "fc": []}
    # a layer name is a dlib string: int length (control byte 0x01, one byte) then the characters
    for m in re.finditer(rb"\x01[\x04-\x07](con_\d|affine_|fc_\d)", buf):
        name = m.group(1).decode()
        if len(name) != m.group(0)[1]:
            continue
        kind, pos = name.rstrip("_0123456789"), m.end()
        if kind == "fc":  # fc_2 writes num_outputs and num_inputs before its parameters
            for _ in range(2):
                _, pos = _read_int(buf, pos)
        out[kind].append(_read_tensor(buf, pos))
    return out


def _pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib add_prev: the sum of two (N, C, H, W) tensors of possibly different C, H, W, the
    smaller zero-padded at the end of each dimension."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class _Block(nn.Module):
    """A residual block; each convolution carries its affine layer folded in (scale the filters
    and bias by gamma, add beta), which is exact for dlib's per-channel affine."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_pad_add(y, skip))


class DlibFaceResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 32, 7, stride=2)
        blocks, cin = [], 32
        for cout, n, down in STAGES:
            for i in range(n):
                blocks.append(_Block(cin, cout, down and i == 0))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """(B, 150, 150, 3) uint8 RGB -> (B, 128) raw descriptors (not normalised)."""
        x = (chips.permute(0, 3, 1, 2).float() - self.mean) / 256.0  # (B, 3, 150, 150)
        x = x.contiguous(memory_format=torch.channels_last)  # faster CPU convolutions
        x = F.max_pool2d(F.relu(self.conv0(x)), 3, 2)  # (B, 32, 35, 35)
        x = self.blocks(x)  # (B, 256, 2, 2)
        return self.fc(x.mean(dim=(2, 3)))  # (B, 128)

    @classmethod
    def from_dlib(cls, path: str) -> "DlibFaceResNet":
        params = read_dlib_params(path)
        if (len(params["con"]), len(params["affine"]), len(params["fc"])) != (29, 29, 1):
            raise ValueError(f"{path} does not look like dlib_face_recognition_resnet_model_v1")
        model = cls()
        convs = [model.conv0] + [c for b in model.blocks for c in (b.conv1, b.conv2)]
        with torch.no_grad():
            for conv, flat, affine in zip(convs, params["con"], params["affine"]):
                w = conv.weight
                n_w, k = w.numel(), w.shape[0]
                if flat.size != n_w + k or affine.size != 2 * k:
                    raise ValueError(f"parameter sizes {flat.size}, {affine.size} do not fit {tuple(w.shape)}")
                gamma, beta = torch.from_numpy(affine[:k]), torch.from_numpy(affine[k:])
                w.copy_(torch.from_numpy(flat[:n_w].reshape(w.shape)) * gamma[:, None, None, None])
                conv.bias.copy_(torch.from_numpy(flat[n_w:]) * gamma + beta)
            fc = params["fc"][0]
            # dlib fc: out = x @ W with W of shape (inputs, outputs), row-major
            model.fc.weight.copy_(torch.from_numpy(fc[: 256 * 128].reshape(256, 128).T.copy()))
        return model.eval().to(memory_format=torch.channels_last)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` intra-op threads, then restore. On this shared 2-core machine two threads
    per call took 1.9-2.3 s instead of 45 ms with one (OpenMP threads spin-waiting for cores the
    other processes hold), so the embedder defaults to one; concurrent calls use the other core."""
    old = torch.get_num_threads()
    change = bool(n) and n != old
    if change:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)


class TorchDlibResNetEmbedder:
    """The dlib ResNet embedder on PyTorch: same weights, same chips, same name as
    :class:`~vsearch.faces.embedders.DlibResNetEmbedder`, several times faster on a CPU."""

    runtime = "torch"
    dim = 128
    chip_size = 150
    chip_padding = 0.25

    def __init__(self, device: str = "cpu", threads: int | None = 1):
        from vsearch.faces.models import DLIB_DEFAULT_THRESHOLD, DLIB_RESNET, RESNET, dlib_model_path

        self.name = DLIB_RESNET
        self.default_threshold = DLIB_DEFAULT_THRESHOLD
        self.device = device
        self.threads = threads if device == "cpu" else None
        self.model = DlibFaceResNet.from_dlib(dlib_model_path(RESNET)).to(device)

    @torch.inference_mode()
    def raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        batch = torch.from_numpy(np.stack([np.asarray(c, dtype=np.uint8) for c in chips])).to(self.device)
        with torch_threads(self.threads):
            return self.model(batch).float().cpu().numpy()

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        from vsearch.encoders.base import l2_normalize

        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self.raw(chips))
