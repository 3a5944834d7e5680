"""The shipped ranker is what `make ranker-model` trains from today's code: a change that moves the
training features (and so the trees) must re-ship the model, or the shipped artifact stops being
reproducible by its documented command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.wiring import shipped_ranker_dir
from recommender import Ranker
from recommender.ranker import FEATURES


@pytest.mark.slow
def test_make_ranker_model_reproduces_the_shipped_ranker(
    default_world: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    world, _ = default_world  # the seed-42 default world, as `make ranker-model` builds it
    result = CliRunner().invoke(app, ["ranker", "train", "--world", str(world), "--out", str(tmp_path), "--seed", "0"])
    assert result.exit_code == 0, result.output
    ours, shipped = Ranker.load(tmp_path), Ranker.load(shipped_ranker_dir())
    assert ours.meta["best_iteration"] == shipped.meta["best_iteration"]
    assert ours.meta.get("residual_best_iteration") == shipped.meta.get("residual_best_iteration")
    assert (
        ours.booster.model_to_string().split("\nparameters:")[0]
        == shipped.booster.model_to_string().split("\nparameters:")[0]
    ), "the trees differ: re-ship with `make ranker-model`"
    assert ours.collab is not None and shipped.collab is not None
    assert ours.collab.ids == shipped.collab.ids
    x = np.random.default_rng(0).random((64, len(FEATURES)), dtype=np.float32)
    np.testing.assert_allclose(ours.predict(x), shipped.predict(x), rtol=1e-6, atol=1e-9)
