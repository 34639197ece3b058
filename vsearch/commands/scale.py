"""`vsearch embed-shards | merge-shards | build-index`: indexing beyond one machine.

embed-shards writes embeddings as shard files (locally, or on a Ray cluster), merge-shards puts
them into a catalog, build-index gives a large catalog a compact IVF-PQ index. The commands are
merged into the main app (top-level names), see cli.py.
"""
from __future__ import annotations

import os
from typing import Annotated, List, Optional

import typer

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, DeviceOpt, ModelOpt, check_output_file, check_output_folder,
                                     err_console, escape, handle_errors, json_flag, plural, print_json, print_warning,
                                     resolve_device)

scale_app = typer.Typer()
SpaceOpt = Annotated[str, typer.Option("--space", help="Vector space (image, face, region, ...).")]


@scale_app.command("embed-shards")
@handle_errors
def embed_shards_cmd(
    paths: Annotated[Optional[List[str]], typer.Argument(help="Folders or image files to embed (recursively).")] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Shard folder to write (shared by all machines with --ray).")] = ...,
    from_list: Annotated[Optional[str], typer.Option("--list", help="A file of image paths, one per line (relative ones are relative to the file's folder), instead of or besides PATHS.")] = None,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    model: ModelOpt = "auto",
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Files per shard.")] = 10_000,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per encoder batch.")] = 64,
    use_ray: Annotated[bool, typer.Option("--ray", help="Run on Ray: a local instance, or the cluster at --ray-address.")] = False,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster address (ray://host:10001 or auto).")] = None,
    actors: Annotated[Optional[int], typer.Option("--actors", min=1, help="Encoder actors (default: one per GPU, else one per --cpus-per-actor CPUs).")] = None,
    cpus_per_actor: Annotated[int, typer.Option("--cpus-per-actor", min=1, help="CPUs each actor reserves and decodes with.")] = 1,
    device: DeviceOpt = "cpu",
    decode_threads: Annotated[int, typer.Option("--decode-threads", min=0, help="Without --ray: decoding threads (0: decode between batches).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete shards of another run found in --out.")] = False,
    as_json: Annotated[bool, json_flag("Print the run as JSON: shards written, embedded, failed, seconds.")] = False,
) -> None:
    """Embed image files into shard files (shard-NNNNN.npz) for `vsearch merge-shards`.

    With --db, only files that catalog does not hold unchanged are embedded, with its model.
    Interrupted? Run the same command again: finished shards are kept.
    """
    from indexer import manifest as mf
    from indexer.embed import LocalExecutor, embed_shards

    if not paths and not from_list:
        raise typer.BadParameter("give folders/files to embed, or --list FILE")
    out = check_output_folder(out, "--out")
    found = mf.gather(paths or (), from_list)
    if db or db_url:
        with CatalogRef(db, db_url).catalog(save=False) as catalog:
            found, model = mf.for_catalog(found, catalog, model)
    for path, reason in found.problems:
        err_console.print(f"  [red]skipped[/] {escape(path)}: {escape(reason)}")
    if not found.entries:
        if found.skipped:
            err_console.print(f"nothing to embed: the catalog already holds all {plural(found.skipped, 'file')}")
            if as_json:
                print_json({"out_dir": out, "shards": [], "embedded": 0, "failed": 0, "in_catalog": found.skipped})
            return
        err_console.print("[red]no image files found[/]")
        raise typer.Exit(1)
    if use_ray:
        from indexer.distributed import RayExecutor

        executor = RayExecutor(actors=actors, cpus_per_actor=cpus_per_actor, batch_size=batch_size, address=ray_address)
    else:
        executor = LocalExecutor(resolve_device(device), batch_size, decode_threads, on_shard=lambda s: err_console.print(
            f"  shard {s.index}: {s.embedded} embedded, {s.failed} failed, {s.seconds:.1f}s", highlight=False))
    report = embed_shards(found.entries, out, model, shard_size, executor, overwrite=overwrite)
    err_console.print(
        f"[green]done[/]: {plural(len(report.shards), 'shard')} written, {report.skipped_shards} already done, "
        f"of {report.total_shards} in {report.out_dir} — {report.embedded} embedded, {report.failed} failed "
        f"in {report.seconds:.1f}s ({report.images_per_second:.1f} img/s) with {report.model}"
        + (f"; {plural(found.skipped, 'file')} already in the catalog" if found.skipped else ""),
        highlight=False,
    )
    if as_json:
        print_json({**report.to_json(), "in_catalog": found.skipped})
    if report.shards and report.embedded == 0:
        err_console.print("[red]nothing could be embedded[/] (the failures are recorded by merge-shards)")
        raise typer.Exit(1)


@scale_app.command("merge-shards")
@handle_errors
def merge_shards_cmd(
    shard_dir: Annotated[str, typer.Argument(help="Folder written by `vsearch embed-shards`.")],
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    space: SpaceOpt = "image",
    as_json: Annotated[bool, json_flag("Print the counts as JSON (added, replaced, unchanged, stale, failed, ...).")] = False,
) -> None:
    """Put shard files into the catalog (safe to repeat: what is there already is skipped)."""
    from indexer.merge import merge_shards
    from vsearch.errors import ShardError

    if not os.path.isdir(shard_dir):  # before the catalog is opened (and perhaps created)
        raise ShardError(f"{'not a folder' if os.path.exists(shard_dir) else 'no such shard folder'}: {shard_dir}")
    with CatalogRef(db, db_url).catalog(create=True) as catalog:
        s = merge_shards(catalog, shard_dir, space=space)
    err_console.print(
        f"[green]merged[/] {plural(s.shards, 'shard')} in {s.seconds:.1f}s: added {s.added}, replaced {s.replaced}, "
        f"unchanged {s.unchanged}, stale {s.stale}, failed {s.failed}"
        + (f" (+{s.failed_known} known)" if s.failed_known else ""),
        highlight=False,
    )
    for path, reason in s.failures:
        err_console.print(f"  [red]failed[/] {escape(path)}: {escape(reason)}")
    if as_json:
        print_json(s.to_json())
    if s.missing_shards:
        shown = ", ".join(map(str, s.missing_shards[:10])) + (" …" if len(s.missing_shards) > 10 else "")
        print_warning(f"{plural(len(s.missing_shards), 'planned shard')} not written yet ({shown}): "
                      "merge again when embed-shards has finished")


@scale_app.command("build-index")
@handle_errors
def build_index_cmd(
    kind: Annotated[str, typer.Option("--kind", help="ivfpq: compact IVF-PQ with exact re-ranking; default: back to the catalog's own choice (exact or IVF).")] = "ivfpq",
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    space: SpaceOpt = "image",
    m: Annotated[Optional[int], typer.Option("--m", min=1, help="PQ bytes per vector (must divide the dimension; default dim/8).")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", min=1, help="Training sample size.")] = None,
    part_size: Annotated[int, typer.Option("--part-size", min=1, help="Vectors per part filled and written separately.")] = 500_000,
    ondisk: Annotated[Optional[str], typer.Option("--ondisk", help="Write an on-disk (memory-mapped) index to this file instead of installing it in the catalog.")] = None,
    check: Annotated[int, typer.Option("--check", min=0, help="Measure Recall@10 against exact search with this many queries (0: skip).")] = 200,
    as_json: Annotated[bool, json_flag("Print the build as JSON: kind, vectors, parameters, seconds, recall_at_10.")] = False,
) -> None:
    """Rebuild a vector space's index: IVF-PQ for a large catalog (25,000 vectors or more; fewer
    stop with exit 2, since the exact index is fast there), or back to the catalog's own kind."""
    ondisk = check_output_file(ondisk, "--ondisk")
    # closed without saving: the build writes its own files; only the connections go
    with CatalogRef(db, db_url).catalog(save=False) as catalog:
        if kind == "default":
            catalog.rebuild(space)
            catalog.save()
            err_console.print(f"[green]rebuilt[/] {space}: {catalog.index(space).kind} index", highlight=False)
            if as_json:
                print_json({"kind": catalog.index(space).kind, "space": space, "vectors": catalog.vector_count(space)})
            return
        if kind != "ivfpq":
            raise typer.BadParameter(f"unknown --kind {kind!r}: use ivfpq or default")
        report = catalog.build_ivfpq(space, m=m, sample_size=sample, part_size=part_size, ondisk_path=ondisk)
        p = report.params
        err_console.print(
            f"[green]built[/] IVF-PQ over {report.n} vectors: nlist {p.nlist}, m {p.m} ({p.code_bytes} bytes/vector), "
            f"trained on {report.sample_size}, {plural(report.parts, 'part')}; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
            + (f" → {ondisk}" if ondisk else f" → {catalog.index_path(space)}"),
            highlight=False,
        )
        recall = None
        if check and not ondisk:
            recall = catalog.recall_against_exact(space, n_queries=check)
            err_console.print(f"Recall@10 against exact search ({check} stored vectors as queries): {recall:.3f}")
        if as_json:
            print_json({**report.to_json(), "space": space, "index_file": ondisk or catalog.index_path(space),
                        "recall_at_10": None if recall is None else round(recall, 4)})
