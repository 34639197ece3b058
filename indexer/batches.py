"""Batches of decoded photos without torch: what the indexer uses on an install without torch
(torch's ``DataLoader`` does the same job where torch is installed).

Items are read in ``workers`` forked processes, a batch per task, and come back in order; each
worker gets the dataset once, when it starts, instead of with every batch.
"""
from __future__ import annotations

import multiprocessing
from typing import Callable, Iterator, Sequence

_dataset = None
_collate: Callable | None = None


def _start_worker(dataset, collate) -> None:
    global _dataset, _collate
    _dataset, _collate = dataset, collate


def _load(bounds: tuple[int, int]):
    return _collate([_dataset[i] for i in range(*bounds)])


def iterate_batches(dataset: Sequence, batch_size: int, workers: int, collate: Callable) -> Iterator:
    """``collate(items)`` for consecutive slices of ``dataset`` of ``batch_size`` items, in order.
    ``workers`` 0 reads them in this process."""
    spans = [(start, min(start + batch_size, len(dataset))) for start in range(0, len(dataset), batch_size)]
    if not workers or len(spans) < 2:
        for start, stop in spans:
            yield collate([dataset[i] for i in range(start, stop)])
        return
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with context.Pool(min(workers, len(spans)), initializer=_start_worker, initargs=(dataset, collate)) as pool:
        yield from pool.imap(_load, spans)
