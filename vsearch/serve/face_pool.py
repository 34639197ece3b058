"""Face analysis in worker processes.

dlib holds Python's GIL while it detects and embeds (measured: a pure-Python thread gets 7 % of
its speed while dlib embeds), so face calls in threads neither run in parallel nor let the event
loop answer meanwhile. Each worker process instead loads its own :class:`FaceService` on its own
connection to the catalog and takes whole calls: verify reads the person's templates from SQL,
identify first brings its copy of the enrolled index level with SQL, enroll writes through SQL
and saves the index file atomically, as `vsearch faces enroll` would from another process.

The workers start with the first call that needs them, not with the server: a server that
nobody asks about faces never loads torch or dlib in them (about 1.8 GB of memory for two
workers). That first call waits for the start (seconds); calls arriving meanwhile wait for the
same start rather than starting workers of their own.

A worker that dies (a crash in native code) breaks the pool: the call that saw it gets a 503 and
the next call starts new workers.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from vsearch.serve.errors import ApiError

log = logging.getLogger("vsearch.serve")

_service = None  # this worker process's FaceService


def _init(directory: str, url: str, device: str) -> None:
    global _service
    # Ctrl-C in a terminal reaches every process of the group: the server stops its workers itself.
    # The worker was born with SIGINT blocked (see FacePool._start); ignored now, it can be unblocked.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    import importlib.util

    import cv2

    import vsearch
    from vsearch.faces.service import FaceService

    # One thread per worker for everything: the workers are the parallelism. Pools of their own
    # (torch's OpenMP, OpenCV's) would only make the workers compete for the same cores.
    if importlib.util.find_spec("torch") is not None:  # the core install has none
        import torch

        torch.set_num_threads(1)
    cv2.setNumThreads(1)

    # the catalog opened as the server opens it (`vsearch.open`, never created here); the model
    # of the collection is not loaded, the worker needs only its face models
    collection = vsearch.open(directory, url=url, device=device, create=False)
    _service = FaceService(collection.catalog, device=device)


def _ping() -> int:
    return os.getpid()


def _verify(name: str, data: bytes):
    return _service.verify(name, data)


def _identify(data: bytes, k: int):
    from vsearch.faces.schema import ENROLLED_SPACE

    catalog = _service.catalog
    if catalog.space_model(ENROLLED_SPACE) is not None:
        catalog.sync(ENROLLED_SPACE)  # people enrolled or removed by others since the last call
    return _service.identify(data, k=k), _service.threshold


def _enroll(name: str, sources: list[bytes], labels: list[str]):
    from vsearch.faces.schema import ENROLLED_SPACE

    catalog = _service.catalog
    if catalog.space_model(ENROLLED_SPACE) is not None:
        catalog.sync(ENROLLED_SPACE)  # the file this worker saves must not drop others' templates
    return _service.enroll(name, sources, labels=labels)


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread (where the platform has signal masks; other threads still take it)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class FacePool:
    """``processes`` workers, each with the face models loaded, started (and warmed) by the first call."""

    def __init__(self, directory: str, url: str, device: str, processes: int):
        self._initargs = (directory, url, device)
        self.processes = processes
        self._lock = threading.Lock()  # starts, restarts and the shutdown, one at a time
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the server process already runs threads (and torch), which fork copies badly
        executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init, initargs=self._initargs)
        # as many pings as workers: every worker is started and has loaded its models before the
        # first real call (a worker loading its models would add seconds to a later call).
        # The workers start while the server runs, so a Ctrl-C may come while they import: they are
        # spawned from this thread with SIGINT blocked, a mask they keep through exec until _init
        # ignores the signal (else each would die with a KeyboardInterrupt and its traceback).
        with _sigint_blocked():
            futures = [executor.submit(_ping) for _ in range(self.processes)]  # submit spawns the workers
        try:
            pids = {f.result(timeout=300) for f in futures}
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        log.info("face workers ready: %s", sorted(pids))
        return executor

    def _running(self) -> ProcessPoolExecutor:
        """The workers, started now if no call has started them yet."""
        with self._lock:  # concurrent first calls: one starts the workers, the others wait for them
            if self._closed:
                raise ApiError(503, "shutting_down", "the server is shutting down", headers={"Retry-After": "1"})
            if self._executor is None:
                log.info("starting %d face worker process(es)", self.processes)
                self._executor = self._start()
            return self._executor

    @property
    def state(self) -> str:
        """"not started", "running" or "stopped", for /healthz."""
        if self._closed:
            return "stopped"
        return "running" if self._executor is not None else "not started"

    def pids(self) -> list[int]:
        executor = self._executor
        if executor is None:
            return []
        return sorted(p.pid for p in (executor._processes or {}).values())  # noqa: SLF001 - for tests and logs

    def call(self, fn, *args):
        executor = self._running()
        try:
            return executor.submit(fn, *args).result()
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor:  # the first caller to notice retires the pool
                    log.error("a face worker process died; the next face call starts new ones")
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = None
            raise ApiError(503, "face_worker_crashed", "the face worker handling this request stopped "
                           "unexpectedly; retry the request (new workers start with it)",
                           headers={"Retry-After": "1"}) from None

    def verify(self, name: str, data: bytes):
        return self.call(_verify, name, data)

    def identify(self, data: bytes, k: int):
        return self.call(_identify, data, k)

    def enroll(self, name: str, sources: list[bytes], labels: list[str]):
        return self.call(_enroll, name, sources, labels)

    def close(self) -> None:
        """End the workers, if any started; later calls answer 503."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
