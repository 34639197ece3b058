"""The self-contained HTML gallery of `vsearch search --html`."""
from __future__ import annotations

import html
import re
from pathlib import Path

from vsearch.catalog import SearchHit
from vsearch.report import GalleryQuery, gallery_html


def test_gallery_cards_link_to_their_originals_and_show_the_query(photo_dir, tmp_path):
    odd = tmp_path / "a folder & more" / "été #1.jpg"  # spaces, &, # and accents survive as a link
    odd.parent.mkdir()
    odd.write_bytes((photo_dir / "coffee.jpg").read_bytes())
    hits = [SearchHit(1, str(photo_dir / "horse.jpg"), 0.31, 1, 1), SearchHit(2, str(odd), 0.29, 2, 2)]
    query = GalleryQuery(text="a horse", plus=["grass=0.5"], minus=["night"], tags=["animal"])
    page = gallery_html("vsearch: a horse", hits, query=query)

    links = [html.unescape(h) for h in re.findall(r'<a href="([^"]+)"', page)]
    assert links == [Path(h.path).as_uri() for h in hits for _ in range(2)]  # the picture and the name
    assert Path(odd).as_uri().endswith("/a%20folder%20%26%20more/%C3%A9t%C3%A9%20%231.jpg")
    assert page.count("data:image/jpeg;base64,") == 2
    terms = re.findall(r'<span class="term (\w+)">([^<]*)</span>', page)
    assert [(k, html.unescape(t)) for k, t in terms] == [
        ("text", "“a horse”"), ("plus", "+ grass=0.5"), ("minus", "− night"), ("tag", "tag animal")]
    assert html.escape(str(odd.parent)) in page  # the folder under the name
    assert query.describe() == "“a horse” + grass=0.5 − night tag animal"


def test_gallery_without_a_query_or_with_an_unreadable_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    page = gallery_html("vsearch: x", [SearchHit(1, str(bad), 0.5, 1, 1)])
    assert 'class="query"' not in page and "unreadable" in page and bad.as_uri() in page
    assert GalleryQuery(image="/x/beach.jpg").describe() == "image beach.jpg"
