"""Scale-out on Ray (issue #8): the heavy batch jobs on an existing Ray cluster, through the same code
as the single-machine default. Ray is optional (the ``[scale]`` extra) and imported only when a job
runs, so importing this package costs nothing.

- :func:`label_on_ray` / :func:`tag_on_ray` — teacher labeling and student tagging over JSONL/Parquet
  shards on a pool of actors, resumable from the labeling job's content-hash cache;
- :func:`train_ranker_on_ray` — LambdaRank features on actors, LightGBM data-parallel on Ray Train;
- :func:`write_contexts` — every user's context into the feed store in pipelined batches.

``cli/scale.py`` wires them to the stages; ``docs/scale.md`` sizes a cluster.

>>> import scale
>>> sorted(scale.__all__)[:2]
['RayMissing', 'label_on_ray']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clipfeed.lazy import lazy_exports

if TYPE_CHECKING:
    from scale.contexts import write_contexts
    from scale.engine import RayMissing, require_ray, session
    from scale.labeling import label_on_ray, tag_on_ray
    from scale.ranker import train_ranker_on_ray

_EXPORTS = {
    "label_on_ray": "scale.labeling",
    "RayMissing": "scale.engine",
    "require_ray": "scale.engine",
    "session": "scale.engine",
    "tag_on_ray": "scale.labeling",
    "train_ranker_on_ray": "scale.ranker",
    "write_contexts": "scale.contexts",
}
__all__ = [
    "RayMissing",
    "label_on_ray",
    "require_ray",
    "session",
    "tag_on_ray",
    "train_ranker_on_ray",
    "write_contexts",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
