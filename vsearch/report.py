"""Self-contained HTML galleries of results (thumbnails inlined as base64 JPEG)."""
from __future__ import annotations

import base64
import html
import io
from typing import Sequence

from vsearch.catalog import SearchHit
from vsearch.errors import ImageDecodeError
from vsearch.images import decode_image


def thumbnail_jpeg(path: str, size: int = 256, box: Sequence[float] | None = None) -> bytes | None:
    """A JPEG thumbnail; ``box`` ([x1, y1, x2, y2] in the photo's pixels) is drawn on it."""
    try:
        decoded = decode_image(path, draft_size=size)
    except ImageDecodeError:
        return None
    image = decoded.image
    image.thumbnail((size, size))
    if box is not None:
        from vsearch.regions.report import draw_on_thumbnail

        image = draw_on_thumbnail(image, decoded.width, box)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def gallery_html(title: str, hits: Sequence[SearchHit], thumb_size: int = 256,
                 thumbnails: Sequence[bytes | None] | None = None) -> str:
    """``thumbnails``: ready JPEGs, one per hit (e.g. with the --explain overlay drawn)."""
    from vsearch.regions.report import hit_box

    cards = []
    for i, hit in enumerate(hits):
        data = thumbnails[i] if thumbnails is not None else thumbnail_jpeg(hit.path, thumb_size, box=hit_box(hit))
        img = (f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" alt="">'
               if data else '<div class="missing">unreadable</div>')
        cards.append(
            f'<figure>{img}<figcaption><b>#{hit.rank}</b> {hit.score:.3f}<br>'
            f'<span title="{html.escape(hit.path)}">{html.escape(hit.path.rsplit("/", 1)[-1])}</span>'
            "</figcaption></figure>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({thumb_size}px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; background: #fff; padding: .5rem; border-radius: 6px; box-shadow: 0 1px 3px #0002; }}
img {{ max-width: 100%; display: block; margin: auto; }}
figcaption {{ font-size: .85rem; margin-top: .4rem; word-break: break-all; }}
.missing {{ height: 120px; display: flex; align-items: center; justify-content: center; color: #a00; }}
</style></head><body>
<h1>{html.escape(title)}</h1><p>{len(hits)} results</p>
<div class="grid">{''.join(cards)}</div>
</body></html>
"""
