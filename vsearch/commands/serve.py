"""`vsearch serve`: the HTTP service and web page (see :mod:`vsearch.serve`)."""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
from typing import Annotated, List, Optional

import typer

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, DeviceOpt, err_console, escape, handle_errors, loading,
                                     plural, print_warning, resolve_device)
from vsearch.errors import VSearchError


class PortError(VSearchError):
    """The address to serve on cannot be bound (port taken, no permission, unknown host)."""


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` once and let go, before minutes of model loading: a taken port is then
    an error at once. (uvicorn binds again later; SO_REUSEADDR as uvicorn sets it.)"""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortError(f"cannot serve on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortError(f"port {port} on {host} is already in use: stop what uses it or pass --port") from None
            raise PortError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@handle_errors
def serve(
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. The default answers this machine "
                                      "only; 0.0.0.0 exposes the service (plain HTTP) to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port.")] = 8000,
    token_file: Annotated[Optional[str], typer.Option("--token-file", help="Bearer token for the face endpoints; "
                          "created (mode 0600) if missing. Default: serve.token in the catalog folder.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Requests computed at once (threads). "
                       "Default: the number of CPU cores.", show_default=False)] = None,
    queue: Annotated[int, typer.Option("--queue", min=0, help="Requests that may wait for a worker; "
                     "beyond that the server answers 503 at once.")] = 64,
    face_processes: Annotated[Optional[int], typer.Option("--face-processes", min=0, help="Worker processes for "
                              "face calls (dlib holds the GIL, so threads cannot share it). Default: one per core "
                              "on 2+ cores, else 0 (in the server process).", show_default=False)] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.01, help="Largest request body.")] = 10.0,
    max_megapixels: Annotated[float, typer.Option("--max-megapixels", min=0.01,
                              help="Largest uploaded image, in millions of pixels.")] = 40.0,
    device: DeviceOpt = "cpu",
    watch: Annotated[Optional[List[str]], typer.Option("--watch", help="Also keep these folders indexed while serving "
                     "(as `vsearch index PATH --watch`); repeatable.")] = None,
    ocr: Annotated[bool, typer.Option("--ocr", help="With --watch: also read the text in photos that arrive "
                   "(as `vsearch index --ocr`).")] = False,
) -> None:
    """Serve search, classification and face verification over HTTP, with a web page at /.

    Models and indexes are loaded once. Photos that `vsearch index` adds meanwhile appear once
    it saves its index (every 30 s and at the end). OpenAPI docs at /docs.
    """
    if ocr and not watch:
        raise typer.BadParameter("reads the text of photos that arrive while watching: give --watch PATH too",
                                 param_hint="--ocr")
    check_port(host, port)
    where = CatalogRef(db, db_url)
    with loading("starting the server"):
        import uvicorn

        from vsearch.serve import LOOPBACK_HOSTS, ServeSettings, create_app
    cores = max(1, os.cpu_count() or 1)
    workers = workers or cores
    _share_cores(workers)
    loopback = is_loopback(host)
    settings = ServeSettings(
        max_upload_bytes=int(max_upload_mb * (1 << 20)), max_pixels=int(max_megapixels * 1e6),
        workers=workers, queue_depth=queue,
        face_processes=face_processes if face_processes is not None else (cores if cores >= 2 else 0),
        # on loopback only loopback names are answered (DNS rebinding); elsewhere any name
        allowed_hosts=LOOPBACK_HOSTS if loopback else None,
    )
    with loading("loading the catalog and the models"):
        app = create_app(where.directory, db_url=db_url, device=resolve_device(device),
                         token_file=token_file, settings=settings)
    service = app.state.service
    err_console.print(f"model {service.encoder.info.name}, {plural(len(service.reader.current()), 'photo')} in the index",
                      highlight=False)
    if app.state.token_file:
        verb = "created a new token in" if app.state.token_created else "token in"
        err_console.print(f"face endpoints need 'Authorization: Bearer <token>': {verb} {escape(str(app.state.token_file))}")
    if not loopback:
        print_warning(f"listening on {host}: other machines can reach this service, "
                      "and HTTP is not encrypted (put it behind a TLS proxy)")
    shown = f"[{host}]" if ":" in host else host
    err_console.print(escape(f"serving on http://{shown}:{port}/ (API docs at /docs); Ctrl-C stops"))
    if watch:
        from vsearch.commands.library import start_background_watch

        stop_watching = start_background_watch(db, db_url, resolve_device(device), watch, ocr=ocr)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    except KeyboardInterrupt:  # uvicorn shuts down first, then hands Ctrl-C on: the normal way to stop
        pass
    finally:
        if watch:
            stop_watching()
    err_console.print("stopped serving", highlight=False)


def _share_cores(workers: int) -> None:
    """Give each worker thread an equal share of the cores for PyTorch's own threads: N workers
    each spreading one inference over all cores would fight over them."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # the core install: ONNX sessions take their own threads
        return
    import torch

    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // workers))
