"""Self-contained HTML galleries of results (thumbnails inlined as base64 JPEG)."""
from __future__ import annotations

import base64
import html
import io
from typing import Sequence

from vsearch.catalog import SearchHit
from vsearch.errors import ImageDecodeError
from vsearch.images import decode_image


def thumbnail_jpeg(path: str, size: int = 256) -> bytes | None:
    try:
        image = decode_image(path, draft_size=size).image
    except ImageDecodeError:
        return None
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def gallery_html(title: str, hits: Sequence[SearchHit], thumb_size: int = 256) -> str:
    cards = []
    for hit in hits:
        data = thumbnail_jpeg(hit.path, thumb_size)
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
