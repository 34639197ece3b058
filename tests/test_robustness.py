"""A folder of hostile and awkward inputs, indexed as a user's collection would be: no crash, every
bad file reported exactly once with its reason, every good file indexed.

The decode memory bound and the file size limit are lowered for the run so that "too big" inputs
stay small on disk; everything else is the real pipeline with a real (tiny) CLIP model.
"""
import io
import os
import struct
import zlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from indexer import index_paths
from vsearch.catalog import Catalog
from vsearch.encoders import load_encoder


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width``×``height`` RGB with a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(w=96, h=64, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w * h * 3).reshape(h, w, 3)
    return Image.fromarray((base + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8))


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    return _save(_photo(120, 80, 3), "JPEG", exif=exif)


def _animated_gif() -> bytes:
    frames = [_photo(40, 40, s).convert("P") for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _multipage_tiff() -> bytes:
    buf = io.BytesIO()
    _photo(50, 40, 5).save(buf, format="TIFF", save_all=True, append_images=[_photo(50, 40, 6)])
    return buf.getvalue()


def _palette_alpha() -> bytes:
    img = _photo(48, 48, 7).convert("P")
    return _save(img, "PNG", transparency=0)


def _good_inputs(big_jpeg_side: int) -> dict[bytes, bytes]:
    """relative path (bytes: some names are not UTF-8) -> content; every one must be indexed."""
    jpeg = _save(_photo(), "JPEG", quality=90)
    png = _save(_photo(seed=1), "PNG")
    return {
        b"plain.jpg": jpeg,
        b"plain.png": png,
        b"cmyk.jpg": _save(_photo(seed=2).convert("CMYK"), "JPEG"),
        b"grey.jpg": _save(_photo(seed=3).convert("L"), "JPEG"),
        b"progressive.jpg": _save(_photo(seed=4), "JPEG", progressive=True),
        b"icc.jpg": _save(_photo(seed=5), "JPEG", icc_profile=b"\x00" * 128),
        b"sixteen-bit.png": _save(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)), "PNG"),
        b"sixteen-bit.tif": _save(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)), "TIFF"),
        b"float.tif": _save(Image.fromarray(np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)), "TIFF"),
        b"int32.tif": _save(Image.fromarray(np.arange(64 * 48, dtype=np.int32).reshape(48, 64)), "TIFF"),
        b"palette-alpha.png": _palette_alpha(),
        b"rgba.png": _save(_photo(seed=8).convert("RGBA"), "PNG"),
        b"grey-alpha.png": _save(_photo(seed=9).convert("LA"), "PNG"),
        b"one-bit.bmp": _save(_photo(seed=10).convert("1"), "BMP"),
        b"animated.gif": _animated_gif(),
        b"exif-rotated.jpg": _exif_rotated(),
        b"lzw.tiff": _save(_photo(seed=11), "TIFF", compression="tiff_lzw"),
        b"multipage.tif": _multipage_tiff(),
        b"lossy.webp": _save(_photo(seed=12), "WEBP"),
        b"lossless-alpha.webp": _save(_photo(seed=13).convert("RGBA"), "WEBP", lossless=True),
        b"picture.ppm": _save(_photo(seed=14), "PPM"),
        b"picture.pgm": _save(_photo(seed=15).convert("L"), "PPM"),
        b"one-pixel.png": _save(Image.new("RGB", (1, 1), "red"), "PNG"),
        b"strip-1x8000.png": _save(Image.new("RGB", (1, 8000), "white"), "PNG"),
        b"strip-8000x1.png": _save(Image.new("RGB", (8000, 1), "white"), "PNG"),
        b"strip-3x20000.png": _save(Image.new("L", (3, 20000), 128), "PNG"),
        b"big-phone-photo.jpg": _save(_photo(big_jpeg_side, big_jpeg_side * 3 // 4, 16), "JPEG", quality=80),
        b"UPPER.JPG": _save(_photo(seed=17), "JPEG"),
        b"jpeg-named.png": _save(_photo(seed=18), "JPEG"),
        b"png-named.jpg": _save(_photo(seed=19), "PNG"),
        b"trailing-garbage.jpg": _save(_photo(seed=20), "JPEG") + b"\x00garbage after the end marker" * 10,
        b"copy-of-plain.jpg": jpeg,
        "ünïcødé 猫 ✓.jpg".encode(): _save(_photo(seed=21), "JPEG"),
        b"latin1-caf\xe9.jpg": _save(_photo(seed=22), "JPEG"),
        b"\xff\xfe-undecodable.png": _save(_photo(seed=23), "PNG"),
        b"with\nnewline.jpg": _save(_photo(seed=24), "JPEG"),
        b"  spaces  .jpg": _save(_photo(seed=25), "JPEG"),
        (b"L" * 240) + b".jpg": _save(_photo(seed=26), "JPEG"),
        b"deep/" * 30 + b"nested.jpg": _save(_photo(seed=27), "JPEG"),
        b"gif-transparent.gif": _save(_photo(40, 40, 28).convert("P"), "GIF", transparency=3),
        b"bmp-rgba.bmp": _save(_photo(seed=29).convert("RGBA"), "BMP"),
        b"rewritten-during-run.jpg": _save(_photo(seed=30), "JPEG"),
    }


def _bad_inputs(file_limit: int) -> dict[bytes, tuple[bytes, str]]:
    """relative path -> (content, a word the reported reason must contain)."""
    jpeg = _save(_photo(seed=40), "JPEG")
    png = _save(_photo(seed=41), "PNG")
    broken_crc = bytearray(png)
    broken_crc[29] ^= 0xFF  # inside IHDR: its CRC no longer matches
    return {
        b"zero-byte.jpg": (b"", "empty"),
        b"text.jpg": (b"this is a shopping list, not a photo\n" * 5, "not a recognised image"),
        b"html.webp": (b"<!doctype html><html><body>404</body></html>", "not a recognised image"),
        b"random.png": (os.urandom(3000), "not a recognised image"),
        b"truncated.jpg": (jpeg[: len(jpeg) // 3], "truncated"),
        b"truncated.png": (png[: len(png) // 2], "truncated"),
        b"only-soi.jpg": (b"\xff\xd8", "image"),
        b"bad-crc.png": (bytes(broken_crc), "image"),
        b"truncated.gif": (_animated_gif()[:40], "image"),
        b"png-bomb-100000x100000.png": (_png_bomb(100_000, 100_000), "decompression bomb"),
        b"png-bomb-30000x30000.png": (_png_bomb(30_000, 30_000), "decompression bomb"),
        b"latin1-bad-\xe9.jpg": (b"not a picture either", "not a recognised image"),
        b"too-big.jpg": (b"\xff\xd8" + b"\x00" * (file_limit + 10), "too large to index"),
        b"deleted-during-run.jpg": (jpeg, "vanished"),
    }


@pytest.fixture
def tiny(tiny_clip_spec):
    return load_encoder(tiny_clip_spec)


def test_hostile_folder_is_indexed_without_a_crash(tmp_path, tiny, monkeypatch):
    import indexer.decode as decode
    import vsearch.images as images

    # a 1200×900 JPEG stands in for a 108 MP photo: full decode does not fit, a reduced one does
    monkeypatch.setattr(images, "MAX_DECODE_BYTES", 6 << 20)
    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 2 << 20)
    root = os.fsencode(tmp_path / "collection")
    good, bad = _good_inputs(1200), _bad_inputs(2 << 20)
    for rel, data in list(good.items()) + [(k, v[0]) for k, v in bad.items()]:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    # more awkward entries: a symlink loop, a broken link, a link to a folder, a folder named .jpg,
    # a FIFO named .jpg, a non-image file
    os.symlink(root, os.path.join(root, b"loop"))
    os.symlink(os.path.join(root, b"nowhere.jpg"), os.path.join(root, b"broken-link.jpg"))
    bad[b"broken-link.jpg"] = (b"", "broken symbolic link")
    os.makedirs(os.path.join(root, b"folder.jpg"))
    os.mkfifo(os.path.join(root, b"fifo.jpg"))
    with open(os.path.join(root, b"notes.txt"), "wb") as fh:
        fh.write(b"not scanned")
    if os.geteuid() != 0:  # root reads mode-000 files
        unreadable = os.path.join(root, b"unreadable.jpg")
        with open(unreadable, "wb") as fh:
            fh.write(good[b"plain.jpg"])
        os.chmod(unreadable, 0)
        bad[b"unreadable.jpg"] = (b"", "cannot read")

    class DuringTheRun:
        """Called after the scan, before any file is read: the collection changes under the run."""

        def start(self, total):
            os.unlink(os.path.join(root, b"deleted-during-run.jpg"))
            with open(os.path.join(root, b"rewritten-during-run.jpg"), "wb") as fh:
                fh.write(_save(_photo(seed=99), "PNG"))

        def advance(self, n):
            pass

    kinds = len(good) + len(bad) + 5  # + loop, link to folder (the loop), folder.jpg, fifo, txt
    assert kinds >= 60
    cat = Catalog(tmp_path / "db")
    summary = index_paths(cat, tiny, [os.fsdecode(root)], workers=0, batch_size=8, progress=DuringTheRun())
    cat.save()

    reported = Counter(os.path.relpath(os.fsencode(p), root) for p, _ in summary.failed)
    assert set(reported) == set(bad), (set(reported) ^ set(bad), summary.failed)
    assert all(n == 1 for n in reported.values()), reported  # each bad file once
    reasons = {os.path.relpath(os.fsencode(p), root): r for p, r in summary.failed}
    for rel, (_, word) in bad.items():
        assert word in reasons[rel], (rel, reasons[rel])

    known = cat.media_under([os.fsdecode(root)])
    for rel in good:
        state = known.get(os.fsdecode(os.path.join(root, rel)))
        assert state is not None and state.status == "indexed", (rel, state)
    assert summary.indexed_ok == len(good) and summary.copied == 1
    assert not summary.unavailable and not summary.kept
    assert cat.verify()[0].ok and cat.verify()[0].sql_count == len(good)
    rotated = cat.media(known[os.fsdecode(os.path.join(root, b"exif-rotated.jpg"))].id)
    assert (rotated.width, rotated.height) == (80, 120)  # reported upright
    big = cat.media(known[os.fsdecode(os.path.join(root, b"big-phone-photo.jpg"))].id)
    assert (big.width, big.height) == (1200, 900)  # decoded reduced, original size kept

    # a second run: nothing new, permanent failures not reported again, the vanished file gone
    again = index_paths(cat, tiny, [os.fsdecode(root)], workers=0)
    assert again.added == 0 and again.removed == 0
    assert {os.path.relpath(os.fsencode(p), root) for p, _ in again.failed} <= {b"broken-link.jpg", b"unreadable.jpg"}
    assert again.unchanged == len(good)  # the rewritten file: new mtime, same bytes as indexed
    cat.close()
