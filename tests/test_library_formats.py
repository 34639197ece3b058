"""What a real photo library holds: hidden and system folders, files to leave out, HEIC/AVIF from
phones and camera RAW. Real files written by the test: pillow-heif encodes HEIC, Pillow AVIF,
pidng a DNG from a real photo's pixels laid out as a Bayer mosaic."""
import os

import numpy as np
import pytest
from PIL import Image

import vsearch
from indexer import index_paths
from indexer.scan import ScanOptions, scan_paths
from tests.conftest import skimage_rgb
from vsearch.encoders import load_encoder


def _library(root):
    for rel in ["2023/a.jpg", "2023/.thumbnails/a.jpg", "@eaDir/a.jpg/SYNOFILE_THUMB_XL.jpg",
                ".Trash-1000/files/old.jpg", "$RECYCLE.BIN/x.jpg", ".git/logo.png", "2023/.hidden.jpg",
                "2023/tmp/draft.jpg", "2024/b.png"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (len(rel) * 7 % 255, 50, 90)).save(p)
    (root / "2023" / "notes.txt").write_text("not a photo")
    (root / "2024" / "clip.mov").write_bytes(b"\0" * 10)


def test_scan_skips_hidden_and_system_folders_and_excluded(tmp_path):
    _library(tmp_path)
    names = lambda r: sorted(os.path.relpath(f.path, tmp_path) for f in r.files)  # noqa: E731
    default = scan_paths([str(tmp_path)])
    assert names(default) == ["2023/a.jpg", "2023/tmp/draft.jpg", "2024/b.png"]
    assert default.skipped_by_extension == 2
    assert {os.path.relpath(p, tmp_path) for p in default.skipped} >= {"2023/.thumbnails", "@eaDir", ".Trash-1000",
                                                                       "$RECYCLE.BIN", ".git", "2023/.hidden.jpg"}
    excluded = scan_paths([str(tmp_path)], ScanOptions(exclude=("tmp", "*.png")))
    assert names(excluded) == ["2023/a.jpg"]
    everything = scan_paths([str(tmp_path)], ScanOptions(include_hidden=True))
    assert len(everything.files) == 9
    # a hidden folder given explicitly is scanned
    assert names(scan_paths([str(tmp_path / "2023" / ".thumbnails")])) == ["2023/.thumbnails/a.jpg"]


def test_index_keeps_photos_now_left_out_and_summary_counts(tmp_path, tiny_clip_spec):
    _library(tmp_path / "lib")
    encoder = load_encoder(tiny_clip_spec)
    coll = vsearch.open(str(tmp_path / "db"))
    try:
        first = index_paths(coll.catalog, encoder, [str(tmp_path / "lib")], workers=0,
                            scan_options=ScanOptions(include_hidden=True))
        assert first.added == 9
        again = index_paths(coll.catalog, encoder, [str(tmp_path / "lib")], workers=0)
        assert again.removed == 0 and again.skipped >= 6 and again.skipped_by_extension == 2
        assert sum(n for _, n, _ in again.kept) == 6  # left out of this scan is not gone
        pruned = index_paths(coll.catalog, encoder, [str(tmp_path / "lib")], workers=0, prune_missing=True)
        assert pruned.removed == 6
    finally:
        coll.catalog.close()


def _dng_from(rgb: np.ndarray, path: str) -> str:
    pytest.importorskip("rawpy")
    core = pytest.importorskip("pidng.core")
    from pidng.defs import (CalibrationIlluminant, CFAPattern, DNGVersion, Orientation, PhotometricInterpretation,
                            PreviewColorSpace)

    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    rgb = rgb.astype(np.uint16) * 16
    bayer = np.empty((h, w), np.uint16)
    bayer[0::2, 0::2], bayer[0::2, 1::2] = rgb[0:h:2, 0:w:2, 0], rgb[0:h:2, 1:w:2, 1]
    bayer[1::2, 0::2], bayer[1::2, 1::2] = rgb[1:h:2, 0:w:2, 1], rgb[1:h:2, 1:w:2, 2]
    t, Tag = core.DNGTags(), core.Tag
    for tag, value in [(Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
                       (Tag.Orientation, Orientation.Horizontal),
                       (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
                       (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, CFAPattern.RGGB), (Tag.BlackLevel, 0), (Tag.WhiteLevel, 4095),
                       (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
                       (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
                       (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.BaselineExposure, [[0, 1]]),
                       (Tag.Make, "vsearch"), (Tag.Model, "test"), (Tag.DNGVersion, DNGVersion.V1_4),
                       (Tag.DNGBackwardVersion, DNGVersion.V1_2), (Tag.PreviewColorSpace, PreviewColorSpace.sRGB)]:
        t.set(tag, value)
    writer = core.RAW2DNG()
    writer.options(t, path="", compress=False)
    writer.convert(bayer, filename=path[: -len(".dng")])
    return path


def test_heic_avif_and_raw_are_indexed_with_size_and_capture_time(tmp_path, tiny_clip_spec):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    lib = tmp_path / "phone"
    lib.mkdir()
    cat = skimage_rgb("chelsea")  # 451 × 300
    exif = cat.getexif()
    exif[0x0132] = "2021:05:06 07:08:09"
    exif[0x0112] = 6  # shot with the phone turned: stored sideways
    cat.save(lib / "cat.heic", exif=exif.tobytes())
    skimage_rgb("coffee").save(lib / "coffee.avif", exif=exif.tobytes())
    _dng_from(np.asarray(skimage_rgb("rocket")), str(lib / "rocket.dng"))
    (lib / "broken.cr2").write_bytes(b"not raw at all" * 50)

    coll = vsearch.open(str(tmp_path / "db"))
    try:
        summary = index_paths(coll.catalog, load_encoder(tiny_clip_spec), [str(lib)], workers=0)
        records = {os.path.basename(p): r for p, r in coll.catalog.media_under([str(lib)]).items()}
    finally:
        coll.catalog.close()
    assert summary.added == 3, summary.failed
    assert [(os.path.basename(p), r) for p, r in summary.failed] == [("broken.cr2", summary.failed[0][1])]
    assert "RAW" in summary.failed[0][1]
    for name in ("cat.heic", "coffee.avif", "rocket.dng"):
        assert records[name].status == "indexed"
    from vsearch.images import decode_image

    heic, avif, dng = (decode_image(str(lib / n)) for n in ("cat.heic", "coffee.avif", "rocket.dng"))
    assert (heic.width, heic.height) == (300, 451) and heic.image.size == (300, 451)  # upright
    assert heic.taken_at == avif.taken_at == "2021-05-06T07:08:09"
    assert (avif.width, avif.height) == (400, 600)
    assert (dng.width, dng.height) == (640, 426) and dng.image.size == (320, 213)  # demosaiced at half size
