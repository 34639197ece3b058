"""How fast a catalog answers "which photos show each enrolled person" (:mod:`vsearch.faces.people`).

A catalog of N synthetic face embeddings (128-d, ``labelled_clusters``: identities of 20 faces,
one face per photo) and P enrolled people of T templates each, enrolled from the first T faces of
P of those identities; threshold 0.8.
Timed: the first look-up (a FAISS range search of every template over the face index), a repeated
look-up while nothing changed (two SQL fingerprints), and the look-up after one more face is
indexed (searched again). The faces tab and a ``person:`` filter pay these costs.

    python benchmarks/face_people.py [--faces 100000] [--people 20] [--templates 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--templates", type=int, default=10)
    args = ap.parse_args(argv)

    from benchmarks.common import labelled_clusters
    from vsearch.catalog import Catalog, MediaRecord
    from vsearch.faces.people import FaceLinks
    from vsearch.faces.schema import ENROLLED_SPACE, FACE_SPACE
    from vsearch.faces.service import FaceService  # noqa: F401 - the face tables' models
    from vsearch.faces import store

    dim, per = 128, 20
    faces, who = labelled_clusters(args.faces, dim, args.faces // per, seed=0, noise=0.35, balanced=True)
    # person p's templates: the first faces of identity p, as if enrolled from those photos
    templates = np.concatenate([faces[p * per:p * per + args.templates] for p in range(args.people)])
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(os.path.join(tmp, "db"))
        catalog.bind_space("image", "synthetic", 4)
        catalog.bind_space(FACE_SPACE, "synthetic-face", dim)
        catalog.bind_space(ENROLLED_SPACE, "synthetic-face", dim)
        t = time.perf_counter()
        with catalog.transaction() as tx:
            media = tx.add_media([MediaRecord(f"/p/{i}.jpg", i, 1.0, sha256=f"{i:064x}") for i in range(args.faces)],
                                 np.eye(4, dtype=np.float32)[np.arange(args.faces) % 4])
            tx.add_vectors(FACE_SPACE, faces, media)
            for p in range(args.people):
                rows = slice(p * args.templates, (p + 1) * args.templates)
                store.add_templates(tx, f"person{p}", templates[rows], "enroll")
        catalog.save()
        print(f"{args.faces} faces, {args.people} people x {args.templates} templates; built in "
              f"{time.perf_counter() - t:.1f}s")
        threshold = 0.8
        links = FaceLinks(catalog)
        catalog.index(FACE_SPACE)  # loaded, as in a running server
        t = time.perf_counter()
        people = links.people(threshold)
        first = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(20):
            links.people(threshold)
        again = (time.perf_counter() - t) / 20
        with catalog.transaction() as tx:
            media = tx.add_media([MediaRecord("/p/new.jpg", 1, 1.0, sha256="f" * 64)], np.eye(4, dtype=np.float32)[:1])
            tx.add_vectors(FACE_SPACE, faces[:1], media)
        t = time.perf_counter()
        links.people(threshold)
        after = time.perf_counter() - t
        expected = {f"person{p}": int(np.sum(who == p)) for p in range(args.people)}
        found = {name: len(person.faces) for name, person in people.items()}
        recall = sum(min(found.get(n, 0), e) for n, e in expected.items()) / max(1, sum(expected.values()))
        print(f"first look-up {first * 1000:.0f} ms; repeated {again * 1000:.1f} ms; after one new face "
              f"{after * 1000:.0f} ms; faces linked {sum(found.values())} (of about {sum(expected.values())} "
              f"of the people's identities: {recall:.0%})")
        catalog.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
