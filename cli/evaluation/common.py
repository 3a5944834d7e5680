"""What every evaluation section shares: the options object (from CLI flags or, in notebooks, from
``CLIPNB_*`` environment variables), paths, the default world, figure helpers and the rule that
tells measured numbers (which must match between runs) from timings (which never do).

The environment variables are ``CLIPNB_*``, not ``CLIPFEED_*``: ``clipfeed`` treats every unknown
``CLIPFEED_*`` variable as a typo and stops.

>>> EvalOptions(world=Path("w")).tagger_models
('teacher', 'student', 'copy_query')
>>> comparable({"f1": 0.5, "cost": {"ms_per_query": 3.0}, "seconds": 1.0, "nested": {"p99_ms": 2, "n": 3}})
{'f1': 0.5, 'nested': {'n': 3}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clipfeed.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_WORLD = REPO / ".cache" / "world"
DEFAULT_API_LOAD = REPO / ".cache" / "bench" / "api_load.json"
TAGGER_MODELS = ("teacher", "student", "standin", "copy_query")
ENV_PREFIX = "CLIPNB_"

# Keys whose values are wall-clock measurements: left out when two runs' numbers are compared.
TIMING_KEYS = frozenset({"cost", "timing", "latency", "seconds", "load_seconds", "train_seconds"})
TIMING_SUFFIXES = ("_ms", "_seconds", "ms_per_query", "_per_s", "throughput")


class EvalOptions(BaseModel):
    """One evaluation run's settings (``clipfeed eval report`` flags; ``CLIPNB_*`` in notebooks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    world: Path
    users: int | None = Field(default=300, ge=1, description="Users per population in the feed evaluation.")
    tagger: Literal["standin", "student"] = "standin"  # the tagger that feeds use
    tagger_models: tuple[str, ...] = ("teacher", "student", "copy_query")  # compared on the gold test split
    real_queries: int = Field(default=100, ge=0, description="Real Magnetic queries tagged by every model.")
    real_rows: int | None = Field(default=10_000, ge=1, description="Rows per real classifier data set.")
    feedback_users: int = Field(default=200, ge=0)
    importance_users: int = Field(default=100, ge=0)
    latency_users: int = Field(default=200, ge=0)
    bootstrap: int = Field(default=1000, ge=10)
    seed: int = 0
    model: Path | None = None  # ranker directory (default: the shipped one)
    api_load: Path | None = None  # benchmarks/api_load.py JSON output (default: DEFAULT_API_LOAD)
    shared_data: Path = SHARED_DATA
    progress: bool = True

    @field_validator("tagger_models")
    @classmethod
    def _known_models(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(models) - set(TAGGER_MODELS))
        if unknown:
            raise ValueError(
                f"unknown tagger model(s) {', '.join(unknown)}; expected some of {', '.join(TAGGER_MODELS)}"
            )
        return models

    def describe(self) -> dict[str, Any]:
        """The options as JSON-ready values (recorded in metrics.json)."""
        d = self.model_dump(mode="json", exclude={"progress"})
        d["world"] = str(self.world)
        return d


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("all", "none"):
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"{ENV_PREFIX}{name}={raw!r}: expected an integer or 'all'") from e


def options_from_env(**overrides: Any) -> EvalOptions:
    """Notebook options: ``CLIPNB_WORLD`` (default: the sample world in .cache/world, built on first
    use), ``CLIPNB_USERS``, ``CLIPNB_TAGGER``, ``CLIPNB_TAGGER_MODELS`` (comma-separated),
    ``CLIPNB_REAL_QUERIES``, ``CLIPNB_REAL_ROWS``, ``CLIPNB_FEEDBACK_USERS``,
    ``CLIPNB_IMPORTANCE_USERS``, ``CLIPNB_LATENCY_USERS``, ``CLIPNB_BOOTSTRAP``, ``CLIPNB_MODEL``,
    ``CLIPNB_API_LOAD``, ``CLIPNB_SHARED_DATA``."""
    env = os.environ
    d = EvalOptions.model_fields
    values: dict[str, Any] = {"world": Path(env[ENV_PREFIX + "WORLD"]) if env.get(ENV_PREFIX + "WORLD") else None}
    for name in ("users", "real_queries", "real_rows", "feedback_users", "importance_users", "latency_users"):
        values[name] = _env_int(name.upper(), d[name].default)
    values["bootstrap"] = _env_int("BOOTSTRAP", d["bootstrap"].default)
    if env.get(ENV_PREFIX + "TAGGER"):
        values["tagger"] = env[ENV_PREFIX + "TAGGER"]
    if env.get(ENV_PREFIX + "TAGGER_MODELS") is not None:
        values["tagger_models"] = tuple(m.strip() for m in env[ENV_PREFIX + "TAGGER_MODELS"].split(",") if m.strip())
    for name in ("model", "api_load", "shared_data"):
        if env.get(ENV_PREFIX + name.upper()):
            values[name] = Path(env[ENV_PREFIX + name.upper()])
    values.update(overrides)
    if values["world"] is None:
        values["world"] = ensure_default_world()
    return make_options(**{k: v for k, v in values.items() if v is not None or k in ("users", "real_rows")})


def make_options(**values: Any) -> EvalOptions:
    """:class:`EvalOptions`, with a bad value reported as one :class:`ConfigError` line."""
    try:
        return EvalOptions(**values)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "options"
        raise ConfigError(f"evaluation option {loc}: {err['msg']}") from e


def ensure_default_world(path: Path = DEFAULT_WORLD, seed: int = 42) -> Path:
    """The default sample world (what ``make demo`` builds), built here the first time."""
    if not (path / "world.json").exists():
        from clipfeed.world import WorldConfig, build_world

        build_world(path, WorldConfig(seed=seed), progress=False)
    return path


def check_world(world: Path) -> None:
    """One clear error when ``world`` is not an evaluable world (offline evaluation needs truth/)."""
    from clipfeed.errors import ClipfeedError

    if not world.is_dir():
        raise ClipfeedError(f"{world}: not a world directory (build one with `clipfeed world build --out {world}`)")
    for name in ("catalog.jsonl", "queries.jsonl", "events.jsonl", "gold.jsonl", "taxonomy.tsv"):
        if not (world / name).exists():
            raise ClipfeedError(f"{world}: no {name} (not a world built by `clipfeed world build`)")
    if not (world / "truth" / "users.jsonl").exists():
        raise ClipfeedError(f"{world}: no truth/ folder (offline evaluation needs the world's ground truth)")


def comparable(metrics: Any) -> Any:
    """``metrics`` without timings (keys in :data:`TIMING_KEYS` or ending in a timing suffix)."""
    if isinstance(metrics, dict):
        return {
            k: comparable(v)
            for k, v in metrics.items()
            if k not in TIMING_KEYS and not any(str(k).endswith(s) for s in TIMING_SUFFIXES)
        }
    if isinstance(metrics, list):
        return [comparable(v) for v in metrics]
    return metrics


def write_metrics(section: str, metrics: dict[str, Any], env: str = "METRICS_OUT") -> Path | None:
    """Notebooks: merge ``{section: metrics}`` into the JSON file ``CLIPNB_METRICS_OUT`` names, if any."""
    target = os.environ.get(ENV_PREFIX + env)
    if not target:
        return None
    path = Path(target)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data[section] = metrics
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def headless() -> None:
    """Use matplotlib's Agg backend (files only) unless a notebook backend is active."""
    import matplotlib

    if "inline" not in str(matplotlib.get_backend()).lower():
        matplotlib.use("Agg")


HANGUL_FONTS = ("NanumGothic", "NanumBarunGothic", "Noto Sans CJK KR", "Noto Sans KR", "Malgun Gothic", "AppleGothic")


def use_fonts() -> str | None:
    """Lets figures show Korean: the first installed Hangul font becomes DejaVu Sans's fallback
    (matplotlib falls back glyph by glyph); without one, missing-glyph warnings are silenced."""
    import warnings

    import matplotlib
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = next((f for f in HANGUL_FONTS if f in installed), None)
    if found:
        matplotlib.rcParams["font.family"] = ["DejaVu Sans", found]
    else:
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
    return found


def new_figure(width: float = 6.0, height: float = 3.6, ncols: int = 1, nrows: int = 1) -> tuple[Figure, Any]:
    import matplotlib.pyplot as plt

    use_fonts()

    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height))
    return fig, axes


def save_figures(figures: dict[str, Figure], out: Path) -> list[str]:
    """Writes each figure as ``<name>.png`` in ``out`` and closes it; returns the file names."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name, fig in figures.items():
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
        names.append(f"{name}.png")
    return names


def table(rows: list[dict[str, Any]], columns: list[str] | None = None, fmt: Callable[[Any], str] | None = None) -> str:
    """A Markdown table of dict rows (numbers to 3 decimals)."""
    if not rows:
        return "_(no rows)_\n"
    cols = columns or list(rows[0])

    def cell(v: Any) -> str:
        if fmt is not None:
            return fmt(v)
        if isinstance(v, float):
            return f"{v:.3f}"
        if isinstance(v, list | tuple):
            return ", ".join(cell(x) for x in v) or "∅"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
