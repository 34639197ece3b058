"""The Python API: ``vsearch.open(db)`` returns a :class:`Collection` (a catalog + its encoder).

The CLI is a thin adapter over this module; everything it does can be done from Python.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np

from vsearch.catalog import IMAGE_SPACE, SearchHit
from vsearch.encoders import canonical_spec, load_encoder, resolve_encoder
from vsearch.errors import ModelMismatchError, QueryError
from vsearch.filters import Selection, check_supported, person_lookup, select
from vsearch.images import decode_image, limit_aspect
from vsearch.ocr import HAS_TEXT_KEY
from vsearch.query import ParsedQuery, Term, parse_query
from vsearch.search import (QUERY_LIMITS, QueryTerm, SpaceSearcher, catalog_searcher, compose_query, parse_weighted,
                             top_media)

if TYPE_CHECKING:
    from vsearch.catalog import Catalog, CatalogReader


def default_db_dir() -> str:
    """$VSEARCH_DB, else $XDG_DATA_HOME/vsearch (~/.local/share/vsearch)."""
    if os.environ.get("VSEARCH_DB"):
        return os.path.abspath(os.path.expanduser(os.environ["VSEARCH_DB"]))
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "vsearch")


class Collection:
    """A photo collection: its catalog and, loaded on first use, the model that filled it.

    Opened for searching (``vsearch.open(db, create=False)`` on a SQLite catalog), it searches
    through the catalog's read-only view (:mod:`vsearch.catalog.reader`, no SQLAlchemy) and opens
    the full :class:`~vsearch.catalog.Catalog` only when something asks for :attr:`catalog`
    (indexing, tags, regions, faces, a query image's stored vector); from then on everything goes
    through the catalog."""

    def __init__(self, catalog: Catalog | None, model: str | None = None, device: str = "cpu",
                 runtime: str | None = None, precision: str | None = None, *,
                 reader: CatalogReader | None = None, open_catalog: Callable[[], Catalog] | None = None):
        if catalog is None and (reader is None or open_catalog is None):
            raise ValueError("a Collection needs a catalog, or a reader and a way to open the catalog")
        self._catalog = catalog
        self._reader = reader if catalog is None else None
        self._open_catalog = open_catalog
        self.device = device
        self.runtime = runtime  # torch | onnx | None: $VSEARCH_RUNTIME, else onnx on a CPU (vsearch.encoders.runtime)
        self.precision = precision
        self._requested = None if model in (None, "auto") else canonical_spec(model)
        self._encoder = None
        self._space_searcher: SpaceSearcher | None = None
        self.notice: str | None = None  # which model `auto` picked, for the CLI to show once
        self._extractors: dict[tuple, list] = {}  # built once per set of options, reused by every index run
        self._text_reader = None  # the OCR engine, built on first use
        self._faces = None  # the FaceService, built on first use (person: terms)
        # set by open(discard_if_empty=True) on a catalog it created: (folder, url) removed at close
        # unless an index run kept something
        self._discard_if_empty: tuple[str, str | None] | None = None
        recorded = self._reads.space_model(IMAGE_SPACE)
        if recorded and self._requested and self._requested != recorded[0]:
            raise ModelMismatchError(
                f"this catalog was built with {recorded[0]}; it cannot be used with --model "
                f"{self._requested}. Leave --model out (or pass {recorded[0]}), or use another --db"
            )

    @property
    def catalog(self) -> Catalog:
        """The full catalog (SQLAlchemy, the writer lock, every feature's tables), opened on first use."""
        if self._catalog is None:
            self._catalog = self._open_catalog()
            self._reader.close()  # its loaded indexes go: the catalog's are the ones kept current now
            self._reader = None
        return self._catalog

    @property
    def _reads(self) -> Catalog | CatalogReader:
        """Where searches read: the catalog once it is open, else the read-only view."""
        return self._catalog if self._catalog is not None else self._reader

    @property
    def encoder(self):
        if self._encoder is None:
            recorded = self._reads.space_model(IMAGE_SPACE)
            if recorded:
                self._encoder = load_encoder(recorded[0], self.device, self.runtime, self.precision)
            else:
                self._encoder, self.notice = resolve_encoder(self._requested, self.device, self.runtime, self.precision)
            runtime_notice = getattr(self._encoder, "runtime_notice", None)
            if runtime_notice:
                self.notice = f"{self.notice}\n{runtime_notice}" if self.notice else runtime_notice
        return self._encoder

    # -- indexing --------------------------------------------------------------------------------
    def index(self, paths: Sequence[str], batch_size: int = 32, workers: int | None = None, progress=None,
              extractors: Sequence = (), prune_missing: bool = False, retry_failed: bool = False,
              include_hidden: bool = False, exclude: Sequence[str] = (), *, faces: bool = False,
              regions: str | None = None, max_regions: int | None = None, wait: bool = False,
              on_wait: Callable[[str], None] | None = None, ocr: bool = False, ocr_progress=None):
        """Index photos under ``paths`` (what ``vsearch index`` does); returns an
        :class:`indexer.IndexSummary` whose ``to_json()`` is what ``--json`` prints.

        ``faces``: also find the faces in each photo and index each one (``vsearch faces``,
        ``search(face=...)``); ``regions``: also index regions, ``"proposals"`` or
        ``"detector:WEIGHTS.pt"``, at most ``max_regions`` per photo (default 24). Their models
        are loaded once per collection. ``extractors``: more
        :class:`indexer.pipeline.RegionExtractor` objects to run.
        ``ocr``: then read the text in the photos that need it (:meth:`read_text`, with
        ``ocr_progress``), after every photo is embedded and saved: the summary's ``text``.
        ``prune_missing``/``retry_failed``: see :func:`indexer.index_paths`; ``include_hidden`` and
        ``exclude`` (glob patterns): see :class:`indexer.scan.ScanOptions`.
        ``wait``: if another process is writing to the catalog, wait for it (``on_wait`` is told
        who it is once) instead of raising :class:`vsearch.errors.CatalogBusyError`."""
        from indexer.scan import ScanOptions
        from indexer import index_paths
        from vsearch.extractors import check_index_options, index_extractors
        from vsearch.tags import tag_pending

        check_index_options(regions, max_regions)
        self.catalog.lock_for_writing(wait=wait, on_wait=on_wait)  # before any extractor's model loads
        key = (faces, regions, max_regions)
        if key not in self._extractors:
            self._extractors[key] = index_extractors(faces, regions, max_regions, self.device)
        summary = index_paths(self.catalog, self.encoder, paths, batch_size=batch_size, workers=workers,
                              progress=progress, extractors=[*self._extractors[key], *extractors],
                              prune_missing=prune_missing, retry_failed=retry_failed,
                              scan_options=ScanOptions(include_hidden=include_hidden, exclude=tuple(exclude)))
        if summary.indexed_ok > 0 or summary.removed > 0:
            self._discard_if_empty = None  # the catalog holds photos now: it stays
        tag_pending(self)  # new and changed photos get the collection's tags (if `vsearch tag` was used)
        if ocr:  # the photos are searchable by now: text reading is a pass of its own
            summary.text = self.read_text(progress=ocr_progress).to_json()
        return summary

    @property
    def text_reader(self):
        """The OCR engine (:class:`vsearch.ocr.engine.TextReader`), built on first use."""
        if self._text_reader is None:
            from vsearch.ocr.engine import TextReader

            self._text_reader = TextReader()
        return self._text_reader

    def read_text(self, progress=None, wait: bool = False, on_wait: Callable[[str], None] | None = None):
        """Read and store the text in every photo of the catalog that needs it: never read, changed
        since, or read with other settings (``vsearch ocr --db``; nothing is embedded). Resumable:
        each photo commits on its own. Returns a :class:`vsearch.ocr.reading.ReadSummary`."""
        from vsearch.ocr.reading import read_pending

        self.catalog.lock_for_writing(wait=wait, on_wait=on_wait)
        return read_pending(self.catalog, self.text_reader, progress)

    # -- queries ---------------------------------------------------------------------------------
    def embed_image_file(self, path: str) -> np.ndarray:
        """A query image's vector; for a file already in the catalog, its stored vector."""
        path = os.path.abspath(os.path.expanduser(path))
        try:
            st = os.stat(path)
        except OSError:
            st = None  # decoding says what is wrong with the file, in its words
        if st is not None and self._reads.space_model(IMAGE_SPACE) is not None:  # read-only: no full catalog opened for this
            vec = self._reads.stored_vector_of_file(path, st.st_size, st.st_mtime, IMAGE_SPACE)
            if vec is not None:
                return vec
        image = limit_aspect(decode_image(path).image)
        pixels = self.encoder.preprocess(image)[None]
        return self.encoder.encode_pixels(pixels)[0]

    def query_vector(self, terms: Sequence[QueryTerm]) -> np.ndarray:
        """One unit vector for the terms (see :func:`vsearch.search.compose_query`)."""
        # the encoder is loaded only for texts: an image already in the catalog brings its stored vector
        return compose_query(terms, lambda texts: self.encoder.encode_text(texts), self.embed_image_file)

    def search(self, text: str | None = None, image: str | None = None, plus: Sequence[str] = (),
               minus: Sequence[str] = (), k: int = 10, text_weight: float = 1.0,
               image_weight: float = 1.0, tags: Sequence[str] = (), regions: bool = False,
               face: str | None = None, text_in: Sequence[str] = ()) -> list[SearchHit]:
        """Ranked photos for a text, an example image, or a combination:
        ``text·w + image·w + Σ plus − Σ minus``, renormalised. Plus/minus terms take ``"snow=0.5"``.
        ``text`` is a query of :mod:`vsearch.query`: free text plus filters such as ``year:2019
        -tag:cat person:anna`` (see :mod:`vsearch.filters`), applied as an id selection inside
        FAISS; a query of filters alone lists the photos that pass, newest first, with score 0.
        ``tags`` keeps only photos carrying all those tags (see ``vsearch tag``): ``tag:`` terms.
        ``regions``: rank photos by their best region too and return ``RegionHit``s with its box.
        ``face``: a photo of a person; the photos showing that person (needs ``index --faces``),
        alone: it does not combine with the other terms.
        ``text_in``: only photos whose read text (``index --ocr``) contains every one of these,
        ignoring case, accents and spaces (``text:`` terms); alone, it lists them newest first. A plain ``text``
        ranks photos whose read text holds its words first (see :mod:`vsearch.ocr.search`).
        A query beyond :data:`vsearch.search.QUERY_LIMITS` (terms, text lengths, ``k``) is a
        :class:`QueryError`."""
        if face is not None:
            if text is not None or image is not None or plus or minus or tags or regions or text_in:
                raise QueryError("--face finds photos of a person; it does not combine with text, --image or --tag")
            from vsearch.faces.service import photos_with_face

            return photos_with_face(self.catalog, face, k=k, device=self.device)
        QUERY_LIMITS.check(text, plus, minus, k)  # before any text is encoded
        parsed = parse_query(text) if text is not None else ParsedQuery("")
        filters = list(parsed.terms) + [Term("tag", t) for t in tags] + [Term("text", w) for w in text_in]
        check_supported(filters)
        text = parsed.text or None
        terms: list[QueryTerm] = []
        if text is not None:
            terms.append(QueryTerm(text_weight, text=text))
        if image is not None:
            terms.append(QueryTerm(image_weight, image=image))
        for p in plus:
            t, w = parse_weighted(p)
            terms.append(QueryTerm(w, text=t))
        for m in minus:
            t, w = parse_weighted(m)
            terms.append(QueryTerm(-w, text=t))
        if k < 1:
            raise QueryError("-k must be at least 1")
        if not terms and not filters:
            raise QueryError("give a text, an image or plus terms to search for, or filters such as year:2019")
        if self._reads.space_model(IMAGE_SPACE) is None:
            return []
        selection, allowed = None, None
        if filters:
            if regions:
                raise QueryError("--regions does not combine with filters (tag:, text:, year:, ...) yet")
            selection = select(self._reads, lambda: self.catalog, filters, self._person_photos, listing=not terms)
            allowed = selection.vector_ids
            if len(allowed) == 0:
                return []
            if not terms:
                return self._with_lines(selection.listing(k), selection)
        query = self.query_vector(terms)
        if regions:
            from vsearch.regions.search import search_regions

            return search_regions(self.catalog, query, k=k)
        hits = top_media(self._searcher(), self._reads, query, k, distinct=False, allowed_ids=allowed)
        if text is not None and self._reads.get_meta(HAS_TEXT_KEY):  # a catalog without read text stays read-only
            from vsearch.ocr import search as text_search

            hits = text_search.rank_with_words(self.catalog, text, query, hits, k, allowed)
        return self._with_lines(hits, selection)

    def _with_lines(self, hits: list[SearchHit], selection: Selection | None) -> list[SearchHit]:
        """Hits found through a ``text:`` term carry the read line that matched."""
        if selection is None or not selection.lines:
            return hits
        from vsearch.ocr import search as text_search

        return text_search.with_matched_lines(hits, selection.lines)

    def _person_photos(self, name: str) -> frozenset[int]:
        """The photos showing the enrolled person ``name`` (for ``person:``)."""
        return person_lookup(self.faces())(name)

    def faces(self):
        """The collection's :class:`~vsearch.faces.service.FaceService` (its models load on first use)."""
        if self._faces is None:
            from vsearch.faces.service import FaceService

            self._faces = FaceService(self.catalog, device=self.device)
        return self._faces

    def _searcher(self) -> SpaceSearcher:
        """The image space's searcher, chosen once per loaded index (a GPU copy is made once)."""
        reads = self._reads
        vindex = reads.index(IMAGE_SPACE)
        if self._space_searcher is None or self._space_searcher.vindex is not vindex:
            self._space_searcher = catalog_searcher(reads, IMAGE_SPACE, self.device)
        return self._space_searcher

    def image_vectors(self, paths: Sequence[str]) -> np.ndarray:
        """(N, D) vectors of image files (stored ones when a file is already in the catalog)."""
        return np.stack([self.embed_image_file(p) for p in paths]) if paths else np.zeros((0, self.encoder.info.dim), np.float32)

    def embed_files(self, paths: Sequence[str], on_start=None, on_file=None) -> EmbeddedFiles:
        """The image files under ``paths`` (folders scanned as :meth:`index` scans them), embedded
        one by one (a file the catalog holds unchanged brings its stored vector); a file that
        cannot be read is reported in ``failures`` and the others go on. ``on_start(n)`` once the
        n files are found, ``on_file(1)`` after each (a progress bar)."""
        from indexer.scan import scan_paths

        scan = scan_paths(paths)
        if on_start is not None:
            on_start(len(scan.files))
        failures = list(scan.problems)
        names, vectors = [], []
        for f in scan.files:
            try:
                vectors.append(self.embed_image_file(f.path))
                names.append(f.path)
            except Exception as exc:  # noqa: BLE001 - reported per file, the rest still embedded
                failures.append((f.path, str(exc)))
            if on_file is not None:
                on_file(1)
        stacked = np.stack(vectors) if vectors else np.zeros((0, self.encoder.info.dim), np.float32)
        return EmbeddedFiles(names, stacked, failures)

    def classify(self, labels: Sequence[str], paths: Sequence[str] | None = None, templates: Sequence[str] | None = None,
                 k: int = 3, label_thresholds: dict[str, float] | None = None, closed_set: bool = False,
                 on_start=None, on_done=None):
        """Zero-shot labels (``vsearch classify``) for the image files under ``paths``, or for every
        photo of the catalog when ``paths`` is None: a :class:`vsearch.zeroshot.Classification`
        whose ``to_json()`` is what ``--json`` prints.

        Open set: a label is chosen only when it reaches its cosine threshold (the model's
        calibrated one, or ``label_thresholds[label]``), else the image is "none of these";
        ``closed_set`` always picks one of the labels. ``templates``: prompt templates with ``{}``
        (default: the CLIP prompt ensemble). ``on_start(n)`` when the n images are known,
        ``on_done(m)`` as m more are classified (a progress bar)."""
        from vsearch.zeroshot import (DEFAULT_TEMPLATES, Classification, ClassifierCache, calibration_for,
                                      classify_vectors)

        labels = list(labels)
        classifier = ClassifierCache().get(self.encoder, labels, tuple(templates or DEFAULT_TEMPLATES))
        if paths is None:
            names, vectors = self.catalog.media_vectors(IMAGE_SPACE)
            failures: list[tuple[str, str]] = []
            if on_start is not None:
                on_start(len(names))
            step = 4096  # stored vectors: classified in blocks, each reported
        else:
            names, vectors, failures = self.embed_files(paths, on_start, on_done)
            step, on_done = max(1, len(names)), None  # reported file by file while embedding
        images = []
        for i in range(0, len(names), step):
            images += classify_vectors(names[i:i + step], vectors[i:i + step], classifier, labels,
                                       calibration_for(self.encoder), k=k, overrides=label_thresholds,
                                       closed_set=closed_set)
            if on_done is not None:
                on_done(len(names[i:i + step]))
        return Classification(images, failures)

    def thresholds_from_examples(self, examples: dict[str, Sequence[str]], labels: Sequence[str],
                                 templates: Sequence[str] | None = None) -> dict[str, float]:
        """Each label's cosine threshold learned from image files that show it (``vsearch tag
        --example``): ``examples`` maps a label to its files; see
        :func:`vsearch.zeroshot.threshold_from_examples`."""
        from vsearch.zeroshot import DEFAULT_TEMPLATES, ClassifierCache, calibration_for, threshold_from_examples

        if not examples:
            return {}
        labels = list(labels)
        classifier = ClassifierCache().get(self.encoder, labels, tuple(templates or DEFAULT_TEMPLATES))
        default = calibration_for(self.encoder).threshold
        return {label: threshold_from_examples(self.image_vectors(files), classifier[:, labels.index(label)], default)
                for label, files in examples.items()}

    def close(self) -> None:
        try:
            if self._reader is not None:
                self._reader.close()
        finally:
            try:
                if self._catalog is not None:
                    self._catalog.close()
            finally:
                if self._discard_if_empty is not None:
                    from vsearch.catalog import remove_empty_catalog

                    remove_empty_catalog(*self._discard_if_empty)  # only if it holds nothing
                    self._discard_if_empty = None

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(db: str | os.PathLike | None = None, model: str | None = None, url: str | None = None,
         device: str = "cpu", create: bool = True, runtime: str | None = None,
         precision: str | None = None, discard_if_empty: bool = False) -> Collection:  # noqa: A001 - mirrors builtins.open on purpose
    """Open (or create) the collection stored in ``db`` (a folder; metadata goes to ``url`` if given).
    With ``create=False`` on a SQLite catalog, searches read through the catalog's read-only view
    and the full catalog opens when first needed (see :class:`Collection`).
    ``runtime``: torch | onnx (default: $VSEARCH_RUNTIME, else onnx on a CPU and torch on CUDA);
    ``precision``: fp32 | int8 (CLIP on onnx only).
    ``discard_if_empty``: for a first index run. A catalog this call creates is removed again when
    the collection closes (or fails to open) unless :meth:`Collection.index` put photos in it, so
    that a run that failed or found nothing leaves no empty catalog to pass for a real collection."""
    directory = os.fspath(db) if db is not None else default_db_dir()
    if create and discard_if_empty:
        from vsearch.catalog import catalog_exists

        if not catalog_exists(directory, url):
            return _open_new(directory, url, model=model, device=device, runtime=runtime, precision=precision)
    if not create and url is None:
        # an existing SQLite catalog: searches read it through sqlite3; the catalog opens on demand
        from vsearch.catalog import open_reader

        reader = open_reader(directory)
        if reader is not None:
            try:
                return Collection(None, model=model, device=device, runtime=runtime, precision=precision,
                                  reader=reader, open_catalog=lambda: _open_catalog(directory, None, False))
            except BaseException:
                reader.close()
                raise
    return Collection(_open_catalog(directory, url, create), model=model, device=device, runtime=runtime,
                      precision=precision)


def _open_new(directory: str, url: str | None, **options) -> Collection:
    """A collection on a catalog created here, removed again at close if it is left empty."""
    catalog = _open_catalog(directory, url, True)
    try:
        coll = Collection(catalog, **options)
    except BaseException:  # a model the catalog cannot use: nothing was put in it
        from vsearch.catalog import remove_empty_catalog

        catalog.close()
        remove_empty_catalog(directory, url)
        raise
    coll._discard_if_empty = (directory, url)
    return coll


def parse_examples(terms: Sequence[str], labels: Sequence[str]) -> dict[str, list[str]]:
    """``LABEL=PATH`` terms (``vsearch tag --example``) -> {label: image files}: the photos that
    show each label, a file or a folder scanned as :meth:`Collection.index` scans it, for
    :meth:`Collection.thresholds_from_examples`. Labels match case-insensitively and come back
    spelled as in ``labels``; raises :class:`vsearch.zeroshot.LabelError` for a term without a
    known label or a path without image files."""
    from indexer.scan import scan_paths
    from vsearch.zeroshot import LabelError

    by_label: dict[str, list[str]] = {}
    known = {label.casefold(): label for label in labels}
    for term in terms:
        head, sep, path = term.partition("=")
        label = known.get(head.strip().casefold())
        if not sep or label is None:
            raise LabelError(f"--example {term!r}: write LABEL=PATH with LABEL one of the labels")
        files = [f.path for f in scan_paths([path]).files]
        if not files:
            raise LabelError(f"--example {term!r}: no image files at {os.path.abspath(path)}")
        by_label.setdefault(label, []).extend(files)
    return by_label


class EmbeddedFiles(NamedTuple):
    """What :meth:`Collection.embed_files` returns: ``vectors[i]`` is the vector of ``paths[i]``."""

    paths: list[str]
    vectors: np.ndarray  # (N, D) float32, L2-normalised
    failures: list[tuple[str, str]]  # (path, reason)


def _open_catalog(directory: str, url: str | None, create: bool) -> Catalog:
    from vsearch.catalog import Catalog  # SQLAlchemy: imported only when the full catalog is needed

    return Catalog(directory, url=url, create=create)
