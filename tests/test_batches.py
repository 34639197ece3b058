"""The indexer's torch-free loader (an install without torch) against torch's DataLoader."""
from __future__ import annotations

import numpy as np
import pytest

import vsearch
from indexer import pipeline
from indexer.batches import iterate_batches
from indexer.decode import DecodedFile, collate_decoded
from indexer.scan import FileEntry


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_come_back_whole_and_in_order(workers):
    data = list(range(23))
    got = list(iterate_batches(data, 5, workers, lambda items: [x * 10 for x in items]))
    assert got == [[x * 10 for x in data[i:i + 5]] for i in range(0, 23, 5)]


def test_numpy_pixels_are_stacked_with_numpy():
    entry = FileEntry("/p.jpg", 1, 0.0)
    items = [DecodedFile(entry, None, np.full((3, 2, 2), i, np.float32), None) for i in range(2)]
    items.insert(1, DecodedFile(entry, None, None, "bad"))
    out, pixels = collate_decoded(items)
    assert isinstance(pixels, np.ndarray) and pixels.shape == (2, 3, 2, 2)
    assert [i.row for i in out] == [0, None, 1] and pixels[1, 0, 0, 0] == 1


def test_indexing_without_torch_gives_the_dataloader_results(photo_dir, tmp_path, tiny_clip_spec, monkeypatch):
    from vsearch.encoders.onnx_encoder import OnnxEncoder

    results = {}
    for torch_here in (True, False):
        monkeypatch.setattr(pipeline, "_torch_installed", lambda: torch_here)
        if not torch_here:  # as without torch: numpy pixels, and no torch call in the forked workers
            monkeypatch.setattr(OnnxEncoder, "preprocess", lambda self, image: self._transform(image))
        coll = vsearch.open(tmp_path / f"db-{torch_here}", model=tiny_clip_spec, runtime="onnx")
        try:
            summary = coll.index([str(photo_dir)], batch_size=4, workers=2)
            assert summary.added == len(list(photo_dir.iterdir())) and not summary.failed
            results[torch_here] = [(h.path, h.score) for h in coll.search("a cat", k=20)]
        finally:
            coll.close()
    assert [p for p, _ in results[False]] == [p for p, _ in results[True]]
    assert np.allclose([s for _, s in results[False]], [s for _, s in results[True]], atol=1e-6)
