import io

import numpy as np
import pytest
from PIL import Image

from vsearch.errors import ImageDecodeError
from vsearch.images import decode_image, to_rgb


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(str(p))


def test_non_image_with_image_extension(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture")
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        decode_image(str(p))


def test_truncated_jpeg_is_refused_not_padded():
    data = _jpeg_bytes(Image.new("RGB", (200, 200), "red"))
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2])


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_decompression_bomb_refused_by_memory_with_its_size(monkeypatch):
    import vsearch.images as images

    monkeypatch.setattr(images, "MAX_DECODE_BYTES", 40 * 40 * 8 - 1)  # just below what 40x40 RGB takes
    with pytest.raises(ImageDecodeError, match=r"decompression bomb: 40×40 RGB would take"):
        decode_image(_png_bytes(Image.new("RGB", (40, 40))))
    decode_image(_png_bytes(Image.new("RGB", (39, 40))))  # under the bound: decoded


def test_big_jpeg_decodes_reduced_instead_of_refused(monkeypatch):
    """A JPEG over the memory bound decodes at 1/2, 1/4 or 1/8 scale (a 108 MP phone photo was
    refused as a bomb by Pillow's nominal-pixel check); the original size is still reported."""
    import vsearch.images as images

    monkeypatch.setattr(images, "MAX_DECODE_BYTES", 400 * 300 * 8 // 3)  # full scale does not fit, 1/2 does
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 300 // 2)  # Pillow alone would call it a bomb
    decoded = decode_image(_jpeg_bytes(Image.new("RGB", (400, 300), "blue")))
    assert (decoded.width, decoded.height) == (400, 300)
    assert decoded.image.size == (200, 150)
    monkeypatch.setattr(images, "MAX_DECODE_BYTES", 40)  # not even 1/8 fits
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(_jpeg_bytes(Image.new("RGB", (400, 300), "blue")))


def test_missing_or_folder_query_image_names_the_path(tmp_path):
    with pytest.raises(ImageDecodeError, match=f"not found: {tmp_path / 'nope.jpg'}"):
        decode_image(str(tmp_path / "nope.jpg"))
    with pytest.raises(ImageDecodeError, match=f"is a folder: {tmp_path}"):
        decode_image(str(tmp_path))


@pytest.mark.parametrize("size", [(1, 8000), (8000, 1), (3, 20000), (224, 224), (300, 1200)])
def test_limit_aspect_bounds_what_the_encoder_resizes(size):
    from vsearch.images import MAX_ASPECT, limit_aspect

    out = limit_aspect(Image.new("RGB", size))
    w, h = out.size
    assert max(w, h) <= MAX_ASPECT * min(w, h)
    assert min(w, h) == min(size)  # the short side is never cut
    if max(size) <= MAX_ASPECT * min(size):
        assert out.size == size


def test_extreme_strip_preprocess_stays_small(packaged_encoder):
    """A 95-byte 1×8000 PNG took gigabytes: the encoder resized its short side to 256 pixels,
    i.e. 256×2,048,000. After limit_aspect the tensor is the encoder's usual size."""
    from vsearch.images import limit_aspect

    image = decode_image(_png_bytes(Image.new("RGB", (1, 8000), "white"))).image
    pixels = packaged_encoder.preprocess(limit_aspect(image))
    assert tuple(pixels.shape[-2:]) == (224, 224)


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "LA", "L", "I;16", "1"])
def test_every_mode_becomes_rgb(mode):
    base = Image.new("RGB", (16, 16), (200, 100, 50))
    if mode == "I;16":
        img = Image.fromarray((np.arange(256).reshape(16, 16) * 200).astype(np.uint16))
        assert img.mode.startswith("I;16")
    else:
        img = base.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    out = decode_image(buf.getvalue()).image
    assert out.mode == "RGB" and out.size == (16, 16)


def test_sixteen_bit_is_rescaled_not_clipped():
    arr = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(16, 16)
    out = np.asarray(to_rgb(Image.fromarray(arr)))
    assert out.min() == 0 and out.max() == 255  # a plain convert() would saturate to 255 almost everywhere


def test_alpha_composited_on_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x0132] = "2021:07:04 12:30:00"
    data = _jpeg_bytes(img, exif=exif)
    dec = decode_image(data)
    assert dec.image.size == (20, 40)
    assert (dec.width, dec.height) == (20, 40)
    assert dec.orientation == 6
    assert dec.taken_at == "2021-07-04T12:30:00"


def test_draft_keeps_original_size_in_metadata():
    data = _jpeg_bytes(Image.new("RGB", (1600, 1200), "green"))
    dec = decode_image(data, draft_size=224)
    assert (dec.width, dec.height) == (1600, 1200)
    assert min(dec.image.size) >= 224 and dec.image.size[0] < 1600
