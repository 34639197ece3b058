"""``vsearch faces ...``: enroll, list, remove, verify, identify, cluster, name, calibrate.

Exit codes: 0 success (for ``verify``: a match), 1 ``verify`` found no match, 2 an error (no face
in the probe, unknown name, bad file, ...). Scores are cosine similarities, higher = more alike.
Output is styled on a terminal and plain, one unwrapped line per item, when piped.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Annotated, List, Optional

import typer
from rich.markup import escape
from rich.text import Text

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, DeviceOpt, check_output_file, console, err_console,
                                     handle_errors, json_flag, print_json, resolve_device)
from vsearch.errors import VSearchError

faces_app = typer.Typer(help="Faces: enroll people, verify (face unlock), identify, cluster, calibrate.",
                        no_args_is_help=True)

DetectorOpt = Annotated[str, typer.Option("--detector", help="hog (dlib, default) | cnn (dlib MMOD, slow) | haar (OpenCV).")]
EmbedderOpt = Annotated[Optional[str], typer.Option(
    "--embedder", help="dlib (default) | trained:MODEL.pt. A catalog keeps the embedder it was filled with.")]


@contextlib.contextmanager
def _faces(db, db_url, detector="hog", embedder=None, device="cpu", create=False, save=True):
    """A :class:`FaceService` on the catalog, opened and closed the one way commands do it
    (:meth:`CatalogRef.catalog`); ``save=False`` for commands that only look."""
    from vsearch.faces.service import FaceService

    with CatalogRef(db, db_url).catalog(create=create, save=save) as catalog:
        yield FaceService(catalog, detector=detector, embedder=embedder, device=resolve_device(device))


def _fmt_far(far) -> str:
    return "n/a (not calibrated)" if far is None else f"at most {far:.3g}"


def say(markup: str, style: str | None = None) -> None:
    """One line to stdout: styled on a terminal; plain and never wrapped when piped, so that paths
    and words survive ``| grep`` and ``> file``. Paths inside ``markup`` must be escaped."""
    if sys.stdout.isatty():
        console.print(markup, style=style, highlight=False, soft_wrap=True)
    else:
        print(Text.from_markup(markup).plain, flush=True)


def _json_error(exc: Exception) -> None:
    """For --json commands: the error as a JSON object on stdout too, then exit 2."""
    message = str(exc) if isinstance(exc, VSearchError) else f"{type(exc).__name__}: {exc}"
    body: dict = {"error": message}
    looks_like = getattr(exc, "person", None)
    if looks_like is not None:  # naming a group that matches an enrolled person: the offered merge
        body["looks_like"] = {"name": looks_like, "score": round(exc.score, 6)}
    print_json(body)
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2) from None


@contextlib.contextmanager
def _json_errors(as_json: bool):
    """With --json, a library error is also printed as {"error": ...} on stdout (exit 2)."""
    try:
        yield
    except VSearchError as exc:
        if as_json:
            _json_error(exc)
        raise


@contextlib.contextmanager
def _progress(what: str):
    """A ``progress(done, total)`` callable for a long step: a rich bar on a terminal's stderr;
    when stderr is not a terminal, a plain line at every tenth of the way."""
    if err_console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("ETA"), TimeRemainingColumn(), console=err_console, transient=True)
        task = bar.add_task(what, total=None)
        with bar:
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    shown = [-1]

    def plain(done: int, total: int) -> None:
        tenth = 10 * done // total if total else 10
        if tenth > shown[0] and total:
            shown[0] = tenth
            print(f"{what}: {done}/{total}", file=sys.stderr, flush=True)

    yield plain


@faces_app.command()
@handle_errors
def enroll(
    name: Annotated[str, typer.Argument(help="The person's name.")],
    images: Annotated[List[str], typer.Argument(help="Photos showing exactly one face each.")],
    db: DbOpt = None, db_url: DbUrlOpt = None, detector: DetectorOpt = "hog", embedder: EmbedderOpt = None,
    device: DeviceOpt = "cpu",
    as_json: Annotated[bool, json_flag("Print {name, added, templates, created, already_enrolled}.")] = False,
) -> None:
    """Enroll NAME from photos (one template per photo; only embeddings are stored, never photos).
    A photo already enrolled as NAME is skipped; one enrolled as someone else stores nothing."""
    with _json_errors(as_json), _faces(db, db_url, detector, embedder, device, create=True) as svc:
        res = svc.enroll(name, images)
    if as_json:
        print_json(res.to_json())
        return
    for label in res.skipped:
        say(f"{escape(label)}: already enrolled as {escape(res.name)}, skipped")
    if res.added:
        say(f"{'enrolled' if res.created else 'added to'} {escape(res.name)}: {res.added} template(s), "
            f"{res.templates} in all")
    else:
        say(f"nothing added to {escape(res.name)}: {res.templates} template(s) in all")


@faces_app.command("list")
@handle_errors
def list_people(db: DbOpt = None, db_url: DbUrlOpt = None,
                as_json: Annotated[bool, json_flag("Print JSON.")] = False) -> None:
    """Enrolled people and how many templates each has."""
    with _faces(db, db_url, save=False) as svc:
        people = svc.people()
        threshold, calibrated = svc.threshold, bool(svc.calibration())
    if as_json:
        print_json([p.to_json() for p in people])
        return
    if not people:
        say("nobody enrolled yet (vsearch faces enroll NAME PHOTO...)")
    for p in people:
        say(f"{escape(p.name)}\t{p.templates} template(s)\tin {p.photos} photo(s) of the collection")
    say(f"threshold {threshold:.3f} ({'calibrated' if calibrated else 'default'})", style="dim")


@faces_app.command()
@handle_errors
def remove(name: Annotated[str, typer.Argument(help="An enrolled name.")], db: DbOpt = None,
           db_url: DbUrlOpt = None,
           as_json: Annotated[bool, json_flag("Print {name, removed_templates}.")] = False) -> None:
    """Delete NAME and their templates (database and index)."""
    with _json_errors(as_json), _faces(db, db_url) as svc:
        n = svc.remove(name)
    if as_json:
        print_json({"name": name, "removed_templates": n})
        return
    say(f"removed {escape(name)} ({n} template(s))")


@faces_app.command()
def verify(
    name: Annotated[str, typer.Argument(help="An enrolled name.")],
    probe: Annotated[str, typer.Argument(help="Photo to check (the largest face is used).")],
    as_json: Annotated[bool, json_flag("Print {match, score, threshold, far_estimate, face_box, latency_ms}.")] = False,
    db: DbOpt = None, db_url: DbUrlOpt = None, detector: DetectorOpt = "hog", device: DeviceOpt = "cpu",
) -> None:
    """Is the face in PROBE the enrolled NAME? Exit 0: match, 1: no match, 2: error (no face, unknown name)."""
    try:
        with _faces(db, db_url, detector, device=device, save=False) as svc:
            res = svc.verify(name, probe)
    except Exception as exc:  # noqa: BLE001 - exit 1 must only ever mean "not this person"
        if as_json:  # scripts reading stdout get the reason too
            _json_error(exc)
        message = str(exc) if isinstance(exc, VSearchError) else f"{type(exc).__name__}: {exc}"
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        print_json(res.to_json())
    else:
        verdict = "[green]MATCH[/]" if res.match else "[red]NO MATCH[/]"
        say(f"{verdict} {escape(name)}: score {res.score:.3f} (threshold {res.threshold:.3f}), "
            f"FAR {_fmt_far(res.far_estimate)}, {res.latency_ms:.0f} ms"
            + (f" — largest of {res.faces_in_probe} faces used" if res.faces_in_probe > 1 else ""))
    raise typer.Exit(0 if res.match else 1)


@faces_app.command()
@handle_errors
def identify(
    probe: Annotated[str, typer.Argument(help="Photo with one or more faces.")],
    k: Annotated[int, typer.Option("-k", min=1, help="Candidates per face.")] = 3,
    as_json: Annotated[bool, json_flag("Print JSON (an {\"error\": ...} object on failure).")] = False,
    db: DbOpt = None, db_url: DbUrlOpt = None, detector: DetectorOpt = "hog", device: DeviceOpt = "cpu",
) -> None:
    """Who is in PROBE? The best enrolled people for every face; "unknown" below the threshold."""
    try:
        with _faces(db, db_url, detector, device=device, save=False) as svc:
            found = svc.identify(probe, k=k)
            threshold = svc.threshold
    except VSearchError as exc:
        if as_json:
            _json_error(exc)
        raise
    if as_json:
        print_json([f.to_json() for f in found])
        return
    for i, f in enumerate(found, 1):
        cands = ", ".join(f"{escape(c.name)} {c.score:.3f}" for c in f.candidates) or "nobody enrolled"
        say(f"face {i} {f.face_box}: [bold]{escape(f.name)}[/]  ({cands}; threshold {threshold:.3f})")


@faces_app.command()
@handle_errors
def cluster(
    min_size: Annotated[int, typer.Option("--min-size", min=1, help="Smallest group reported as a person.")] = 2,
    as_json: Annotated[bool, json_flag("Print the groups as JSON.")] = False,
    db: DbOpt = None, db_url: DbUrlOpt = None,
) -> None:
    """Group the collection's unnamed faces into people (needs `vsearch index --faces`). A group
    whose faces verify against an enrolled person is shown as that person."""
    with _faces(db, db_url) as svc, _progress("grouping faces") as progress:
        groups = svc.cluster(min_size=min_size, progress=progress)
    if as_json:
        print_json([g.to_json() for g in groups])
        return
    if not groups:
        say("no groups found (index photos with --faces first, or lower --min-size)")
    for g in groups:
        who = f" of {escape(g.person)} (enrolled, {g.score:.2f})" if g.person else ""
        say(f"cluster {g.cluster}: {g.size} face(s){who}, e.g. {escape(', '.join(g.photos))}")
    if groups:
        say("name one with: vsearch faces name CLUSTER NAME", style="dim")


@faces_app.command("name")
@handle_errors
def name_cluster(
    cluster_id: Annotated[int, typer.Argument(metavar="CLUSTER", help="A number from `vsearch faces cluster`.")],
    name: Annotated[str, typer.Argument(help="Who they are.")],
    new: Annotated[bool, typer.Option("--new", help="NAME is someone else even if the group looks like an "
                                      "enrolled person.")] = False,
    db: DbOpt = None, db_url: DbUrlOpt = None,
    as_json: Annotated[bool, json_flag("Print {name, added, templates, created} (an error with looks_like "
                                       "when the group matches an enrolled person).")] = False,
) -> None:
    """Enroll the faces of a cluster as NAME. A group that looks like an enrolled person is not made
    a second person: name it as them, or pass --new."""
    from vsearch.faces.errors import LooksLikeError

    with _json_errors(as_json), _faces(db, db_url) as svc:
        try:
            res = svc.name_cluster(cluster_id, name, new_person=new)
        except LooksLikeError as exc:
            raise LooksLikeError(f"{exc} (--new)", exc.cluster, exc.person, exc.score) from None
    if as_json:
        print_json(res.to_json())
        return
    say(f"{'enrolled' if res.created else 'added to'} {escape(res.name)}: {res.added} template(s) from "
        f"cluster {cluster_id}, {res.templates} in all")


@faces_app.command()
@handle_errors
def calibrate(
    folder: Annotated[str, typer.Argument(help="One sub-folder of photos per identity.")],
    target_far: Annotated[float, typer.Option("--target-far", help="False accept rate the stored threshold aims at.")] = 1e-3,
    plot: Annotated[Optional[str], typer.Option("--plot", help="ROC plot PNG path.")] = "faces_roc.png",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; keep the stored threshold.")] = False,
    as_json: Annotated[bool, json_flag("Print the report as JSON.")] = False,
    db: DbOpt = None, db_url: DbUrlOpt = None, detector: DetectorOpt = "hog", embedder: EmbedderOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Measure verification on FOLDER (all genuine and impostor pairs) and store the threshold for --target-far."""
    plot = check_output_file(plot, "--plot")
    with _faces(db, db_url, detector, embedder, device, create=True) as svc, _progress("embedding faces") as progress:
        rep = svc.calibrate(folder, target_far=target_far, plot=plot, store=not dry_run, progress=progress)
    if as_json:
        print_json(rep.to_json())
    else:
        _print_calibration(rep, dry_run)
    for warning in rep.warnings:
        loud = "[bold red]WARNING:[/]" if "LOOSER" in warning else "[yellow]warning:[/]"
        err_console.print(f"{loud} {escape(warning)}", highlight=False)
    for path, reason in rep.skipped:
        err_console.print(f"  skipped {escape(path)}: {escape(reason)}", highlight=False)
    if rep.several:
        err_console.print(f"  {len(rep.several)} photo(s) had several faces; the largest was used", highlight=False)
    if plot and not as_json:
        say(f"wrote {escape(plot)}")


def _print_calibration(rep, dry_run: bool) -> None:
    b = rep.bootstrap
    say(f"{rep.images} photos of {rep.identities} identities: {rep.n_genuine} genuine and "
        f"{rep.n_impostor} impostor pairs")
    say(f"ROC AUC {rep.auc:.4f}   EER {rep.eer:.2%} (at score {rep.eer_threshold:.3f})")
    extrapolated = {e.target_far: e for e in rep.extrapolated}
    for t in rep.tar_at:
        if t.resolved:
            say(f"TAR at FAR {t.target_far:g}: {t.tar:.2%} (threshold {t.threshold:.3f})")
        else:
            e = extrapolated[t.target_far]
            say(f"TAR at FAR {t.target_far:g}: n/a (needs {int(round(1 / t.target_far))}+ impostor pairs); "
                f"extrapolated threshold {e.threshold:.3f} would keep {e.tar:.1%} of genuine pairs")
    say(f"threshold for FAR {rep.target_far:g}: [bold]{rep.threshold:.3f}[/] ({rep.method})"
        + (" — not stored (--dry-run)" if dry_run else " — stored in the catalog"))
    say(f"  at it: TAR {rep.tar_at_threshold:.2%}, {rep.false_accepts} of {rep.n_impostor} impostor pairs accepted, "
        f"FAR at most {rep.far_upper:.3g} ({b.confidence:.0%} Clopper-Pearson upper bound)")
    say(f"  resampling the {b.identities} people ({b.replicates} draws): FAR {b.far_low:.3g}-{b.far_high:.3g}, "
        f"TAR {b.tar_low:.2%}-{b.tar_high:.2%} ({b.confidence:.0%} interval)")
