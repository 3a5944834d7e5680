"""The typed configuration of the topic model and its filter, saved as ``config.json`` beside it."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clipfeed.errors import ConfigError


class FilterConfig(BaseModel):
    """Keep/drop rules of :class:`classifier.TopicFilter`."""

    model_config = ConfigDict(extra="forbid")

    min_confidence: float = Field(default=0.45, ge=0.0, le=1.0, description="Drop below this calibrated p.")
    min_tag_chars: int = Field(default=2, ge=1)
    max_topics: int = Field(default=3, ge=1, description="Topics reported per tag (top-k).")


class TopicModelConfig(BaseModel):
    """Architecture, training and calibration of the hashed sub-word topic model."""

    model_config = ConfigDict(extra="forbid")

    labels: list[str] = Field(default_factory=list, description="Output classes, in logit order.")
    taxonomy_labels: bool = Field(default=True, description="Labels are taxonomy node ids.")
    n_buckets: int = Field(default=1 << 17, ge=256)
    dim: int = Field(default=48, ge=4, le=512)
    min_n: int = Field(default=2, ge=1)
    max_n: int = Field(default=4, ge=1)
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.01, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: int = 0
    temperature: float = Field(default=1.0, gt=0, description="Calibrated on the dev split after training.")
    filter: FilterConfig = Field(default_factory=FilterConfig)

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TopicModelConfig:
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: no topic model config here (is this a model directory?)") from e
        except (json.JSONDecodeError, ValidationError) as e:
            raise ConfigError(f"{path}: invalid topic model config: {e}") from e
