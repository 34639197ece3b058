"""Checking and repairing the promise that every space's index file holds exactly its SQL ids."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from vsearch.catalog.records import VerifyReport, _duplicates
from vsearch.vector_index import VectorIndex


class Consistency:
    """``verify`` and ``repair`` of :class:`~vsearch.catalog.Catalog` (mixed into it)."""

    # -- consistency -----------------------------------------------------------------------------
    def verify(self) -> list[VerifyReport]:
        """Compare each space's SQL ids with its index *file* (not the in-memory copy)."""
        reports = []
        for space in self.spaces():
            sql_ids = self._sql_ids(space)
            path = self.index_path(space)
            exists = os.path.exists(path)
            try:
                file_ids = VectorIndex.load(path, self._dim(space)).ids() if exists else np.zeros(0, np.int64)
            except Exception:
                file_ids, exists = np.zeros(0, np.int64), False
            reports.append(VerifyReport(
                space=space,
                sql_count=len(sql_ids),
                index_count=len(file_ids),
                missing_from_index=tuple(int(i) for i in np.setdiff1d(sql_ids, file_ids)),
                extra_in_index=tuple(int(i) for i in np.setdiff1d(file_ids, sql_ids)),
                index_file_missing=not exists and len(sql_ids) > 0,
                duplicated_in_index=_duplicates(file_ids),
            ))
        return reports

    def repair(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> None:
        """Bring every index file level with SQL and write it (as the catalog's only writer: an
        index run in progress would overwrite the repaired file with its own at its next save)."""
        with self.writing(wait, on_wait):
            for space in self.spaces():
                self._indexes.pop(space, None)
                self.index(space)  # load + sync
                self._dirty.add(space)
            self.save()
