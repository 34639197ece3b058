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


def test_decompression_bomb_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = _jpeg_bytes(Image.new("RGB", (40, 40)))  # 1,600 px > limit, < 2x limit: only a warning in Pillow
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(data)


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
