"""Offline evaluation shared by ``clipfeed eval report`` and the notebooks in ``notebooks/``: one
code path, so the report and the notebooks show the same numbers on the same world.

Sections: :mod:`~cli.evaluation.tagger_eval`, :mod:`~cli.evaluation.classifier_eval`,
:mod:`~cli.evaluation.recommender_eval`, :mod:`~cli.evaluation.serving_eval`; each has a ``run``
(the section's metrics as JSON-ready dicts) and ``figures`` (matplotlib figures of those metrics).
:mod:`~cli.evaluation.report` runs them headless and writes ``report.md``, ``metrics.json`` and PNGs.

>>> from cli.evaluation import EvalOptions, comparable
>>> EvalOptions(world="w").users
300
"""

from cli.evaluation.common import (
    DEFAULT_API_LOAD,
    DEFAULT_WORLD,
    SHARED_DATA,
    TAGGER_MODELS,
    EvalOptions,
    check_world,
    comparable,
    ensure_default_world,
    make_options,
    options_from_env,
    save_figures,
    table,
    write_metrics,
)

__all__ = [
    "DEFAULT_API_LOAD",
    "DEFAULT_WORLD",
    "SHARED_DATA",
    "TAGGER_MODELS",
    "EvalOptions",
    "check_world",
    "comparable",
    "ensure_default_world",
    "make_options",
    "options_from_env",
    "save_figures",
    "table",
    "write_metrics",
]
