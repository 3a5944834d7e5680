"""``clipfeed ranker index``: the catalog's clip text vectors into an HNSW index, built offline.

The API loads it when ``CLIPFEED_ANN_DIR`` names the output directory (unset: exact search), e.g.
``clipfeed ranker index --world .cache/world --out .cache/ann``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cli.output import emit_json, stdout
from cli.wiring import load_stack
from clipfeed.errors import ClipfeedError
from recommender.ann import AnnConfig, ClipVectorIndex, rss_bytes

_DEFAULT = AnnConfig()


def index_cmd(
    world: Annotated[Path, typer.Option("--world", help="World directory (see `clipfeed world build`).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for ann.bin and ann.json.")],
    m: Annotated[int, typer.Option("--m", help="HNSW links per node.")] = _DEFAULT.M,
    ef_construction: Annotated[
        int, typer.Option("--ef-construction", help="Candidate list while building.")
    ] = _DEFAULT.ef_construction,
    ef_search: Annotated[int, typer.Option("--ef-search", help="Candidate list per query.")] = _DEFAULT.ef_search,
    threads: Annotated[int, typer.Option("--threads", help="Build threads.")] = _DEFAULT.num_threads,
    classifier: Annotated[
        Path | None, typer.Option("--classifier", help="Topic model directory (default: shipped).")
    ] = None,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Update the index already in OUT in place (new clips added, changed replaced, gone removed).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Build the ANN index of the world's clip text vectors (served with CLIPFEED_ANN_DIR=OUT); with
    --update, bring an existing one up to date without a rebuild (it keeps its own HNSW settings)."""
    cfg = AnnConfig(M=m, ef_construction=ef_construction, ef_search=ef_search, num_threads=threads)
    stack = load_stack(world, classifier_dir=classifier, prefetch=False)
    vectors = stack.catalog.vectors
    if vectors is None:
        raise ClipfeedError("the catalog has no text vectors to index")
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    changes: dict[str, int] | None = None
    if update and (out / "ann.json").exists():
        index = ClipVectorIndex.load(out, dim=vectors.shape[1])
        changes = index.sync(stack.catalog.ids, vectors, progress=not json_out)
    else:
        index = ClipVectorIndex.build(stack.catalog.ids, vectors, cfg, progress=not json_out)
    build_s = time.perf_counter() - t0
    rss_delta = max(0, rss_bytes() - rss0)
    index.save(out)
    index_bytes = (out / "ann.bin").stat().st_size
    summary = {
        "out": str(out),
        "clips": len(index),
        "dim": index.dim,
        "build_seconds": round(build_s, 3),
        "index_bytes": index_bytes,
        "rss_delta_bytes": rss_delta,
        "config": index.cfg.model_dump(),
        "updated": changes,
    }
    if json_out:
        emit_json(summary)
        return
    if changes is not None:
        stdout.print("updated in place: " + ", ".join(f"{k} {v}" for k, v in changes.items()), highlight=False)
    stdout.print(
        f"ANN index of {summary['clips']} clips ({summary['dim']}-d) written to {out} in {build_s:.2f} s; "
        f"index {index_bytes / 2**20:.1f} MiB on disk, resident memory +{rss_delta / 2**20:.1f} MiB. "
        f"Serve it with CLIPFEED_ANN_DIR={out}",
        highlight=False,
    )
