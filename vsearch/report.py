"""Self-contained HTML galleries of results (thumbnails inlined as base64 JPEG)."""
from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class GalleryQuery:
    """The query a gallery answers, shown above its results."""

    text: str | None = None
    image: str | None = None
    plus: Sequence[str] = ()
    minus: Sequence[str] = ()
    tags: Sequence[str] = ()

    def terms(self) -> list[tuple[str, str]]:
        """(kind, label) for each part: text, image, plus, minus, tag."""
        out = [("text", f"“{self.text}”")] if self.text else []
        if self.image:
            out.append(("image", f"image {os.path.basename(self.image)}"))
        out += [("plus", f"+ {p}") for p in self.plus] + [("minus", f"− {m}") for m in self.minus]
        return out + [("tag", f"tag {t}") for t in self.tags]

    def describe(self) -> str:
        return " ".join(label for _, label in self.terms()) or "search"


def gallery_html(title: str, hits: Sequence[SearchHit], thumb_size: int = 256,
                 query: GalleryQuery | None = None, thumbnails: Sequence[bytes | None] | None = None) -> str:
    """A page of the hits; each card links to its original file (a file:// link, as the page is a
    file on the same machine). ``query``: shown above the results, term by term. ``thumbnails``:
    ready JPEGs, one per hit (e.g. with the --explain overlay drawn)."""
    from vsearch.regions.report import hit_box

    cards = []
    for i, hit in enumerate(hits):
        data = thumbnails[i] if thumbnails is not None else thumbnail_jpeg(hit.path, thumb_size, box=hit_box(hit))
        img = (f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" alt="">'
               if data else '<div class="missing">unreadable</div>')
        path, original = html.escape(hit.path), html.escape(Path(os.path.abspath(hit.path)).as_uri())
        cards.append(
            f'<figure><a href="{original}" title="{path}">{img}</a>'
            f'<figcaption><b>#{hit.rank}</b> {hit.score:.3f}<br>'
            f'<a href="{original}">{html.escape(os.path.basename(hit.path))}</a>'
            f'<br><span class="folder">{html.escape(os.path.dirname(hit.path))}</span>'
            "</figcaption></figure>"
        )
    terms = ""
    if query is not None and query.terms():
        terms = '<p class="query">' + " ".join(
            f'<span class="term {kind}">{html.escape(label)}</span>' for kind, label in query.terms()) + "</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({thumb_size}px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; background: #fff; padding: .5rem; border-radius: 6px; box-shadow: 0 1px 3px #0002; }}
img {{ max-width: 100%; display: block; margin: auto; }}
figcaption {{ font-size: .85rem; margin-top: .4rem; word-break: break-all; }}
figcaption a {{ color: inherit; }}
.folder {{ color: #666; font-size: .8rem; }}
.query {{ display: flex; flex-wrap: wrap; gap: .4rem; }}
.term {{ padding: .15rem .6rem; border-radius: 999px; background: #e8f0fb; }}
.term.minus {{ background: #fbe8e8; }}
.term.tag {{ background: #eee; }}
.missing {{ height: 120px; display: flex; align-items: center; justify-content: center; color: #a00; }}
</style></head><body>
<h1>{html.escape(title)}</h1>{terms}<p>{len(hits)} results</p>
<div class="grid">{''.join(cards)}</div>
</body></html>
"""
