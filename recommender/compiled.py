"""LightGBM boosters compiled to native code by lleaves, for serving.

LightGBM walks its trees node by node behind a C call (~0.25 ms for the shipped content booster
on a 300-candidate feed); lleaves compiles the same model text to machine code with LLVM, 5-7x
faster on that call as measured (``benchmarks/recommender_bench.py --parts speed`` prints both). The
compiled forest must give LightGBM's scores: it is checked on probe rows when it is built and
not used if it does not (LightGBM keeps serving, with a warning), and nothing needs it —
training, ``pred_contrib`` explanations and any machine without lleaves use LightGBM itself.

Compiled code is cached in ``cache_dir`` under the hash of the model text and the compiler
versions (lleaves itself does not check a cache file's staleness), written atomically so that
two server workers starting together do not read each other's half-written file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

log = logging.getLogger(__name__)

PROBE_ROWS = 256


class CompiledForest:
    """One compiled booster: ``predict(x)`` equals ``booster.predict(x)`` for float64 rows."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def predict(self, x: np.ndarray) -> np.ndarray:
        # one thread: a feed is a few hundred rows and the server's other core serves Redis
        return np.asarray(self._model.predict(np.ascontiguousarray(x, dtype=np.float64), n_jobs=1))


def compiler_versions() -> str | None:
    """``lleaves-X+llvmlite-Y`` when both are importable, else None."""
    try:
        from importlib.metadata import version

        import llvmlite

        return f"lleaves-{version('lleaves')}+llvmlite-{llvmlite.__version__}"
    except Exception:  # not installed (or broken): LightGBM serves
        return None


def probe_rows(booster: lgb.Booster, n: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that reach many leaves: each feature drawn around the thresholds the trees split on,
    with a share of NaNs (LightGBM's missing-value branches) and zeros."""
    rng = np.random.default_rng(seed)
    n_features = booster.num_feature()
    dump = booster.dump_model()
    cuts: list[list[float]] = [[] for _ in range(n_features)]

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            cuts[node["split_feature"]].append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in dump["tree_info"]:
        walk(tree["tree_structure"])
    x = rng.normal(size=(n, n_features))
    for j, c in enumerate(cuts):
        if c:
            # a random threshold of this feature, nudged to either side of it
            x[:, j] = rng.choice(np.asarray(c), size=n) + rng.normal(scale=1e-3, size=n) * (1 + np.abs(x[:, j]))
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.05] = 0.0
    return x


def compile_booster(booster: lgb.Booster, cache_dir: Path) -> CompiledForest | None:
    """``booster`` compiled (or loaded from the cache), or None when lleaves is missing, fails, or
    disagrees with LightGBM on the probe rows. A cached file that does not load or disagrees is
    deleted and compiled again once."""
    versions = compiler_versions()
    if versions is None:
        log.info("lleaves is not installed: the ranker predicts with LightGBM")
        return None
    text = booster.model_to_string()
    key = hashlib.sha256(f"{text}\n{versions}\n{platform.machine()}".encode()).hexdigest()[:24]
    target = cache_dir / f"forest-{key}.bin"
    x = probe_rows(booster)
    expected = booster.predict(x, num_threads=1)
    for attempt in ("cache", "fresh"):
        if attempt == "cache" and not _intact(target):
            continue
        try:
            forest = _build(text, target, fresh=attempt == "fresh")
            got = forest.predict(x)
        except Exception as e:  # any compiler failure: LightGBM keeps serving
            log.warning("compiling the ranker with lleaves failed (%s)", e)
            _remove(target)
            continue
        if np.allclose(got, expected, rtol=0.0, atol=1e-9):
            return forest
        log.warning("the compiled ranker differs from LightGBM by up to %.3g", float(np.nanmax(np.abs(got - expected))))
        _remove(target)
    log.warning("LightGBM predicts for the ranker (no compiled forest)")
    return None


def _build(text: str, target: Path, fresh: bool) -> CompiledForest:
    import lleaves

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        model_file = Path(tmp) / "model.txt"
        model_file.write_text(text, encoding="utf-8")
        model = lleaves.Model(model_file=str(model_file))
        if fresh:
            scratch = Path(tmp) / "forest.bin"
            model.compile(cache=str(scratch))
            digest = Path(tmp) / "forest.sha256"
            digest.write_text(_sha256(scratch), encoding="ascii")
            # atomic renames, the digest last: a concurrent reader sees no file or an intact pair
            os.replace(scratch, target)
            os.replace(digest, _digest_path(target))
        else:
            model.compile(cache=str(target))
    return CompiledForest(model)


def _digest_path(target: Path) -> Path:
    return target.with_suffix(".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(target: Path) -> bool:
    """The cached object file exists and has the bytes it was written with. LLVM aborts the whole
    process (no Python exception) on a damaged object file, so it is never handed one."""
    digest = _digest_path(target)
    try:
        return target.is_file() and digest.read_text(encoding="ascii").strip() == _sha256(target)
    except OSError:
        return False


def _remove(target: Path) -> None:
    target.unlink(missing_ok=True)
    _digest_path(target).unlink(missing_ok=True)
