from __future__ import annotations

from pathlib import Path

import pytest

from clipfeed.errors import ConfigError
from clipfeed.settings import Settings, check_environment, load_settings


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPFEED_PORT", "9123")
    monkeypatch.setenv("CLIPFEED_REDIS_URL", "redis://example:6379/0")
    s = load_settings()
    assert s.port == 9123
    assert s.redis_url == "redis://example:6379/0"


def test_toml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "clipfeed.toml"
    cfg.write_text("[clipfeed]\nport = 8100\nworld_seed = 9\n", encoding="utf-8")
    monkeypatch.setenv("CLIPFEED_CONFIG", str(cfg))
    monkeypatch.setenv("CLIPFEED_PORT", "8200")
    s = load_settings()
    assert (s.port, s.world_seed) == (8200, 9)


def test_unknown_toml_key_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "clipfeed.toml"
    cfg.write_text('port = 8100\nredis_ulr = "redis://x"\n', encoding="utf-8")
    monkeypatch.setenv("CLIPFEED_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="redis_ulr"):
        load_settings()


def test_unknown_environment_key_is_named() -> None:
    with pytest.raises(ConfigError, match="CLIPFEED_REDIS_ULR"):
        check_environment({"CLIPFEED_REDIS_ULR": "x", "CLIPFEED_PORT": "1"})
    check_environment({"CLIPFEED_PORT": "1", "OTHER": "y"})  # known keys and foreign vars pass


def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPFEED_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        load_settings()


def test_missing_or_broken_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLIPFEED_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings()
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1", encoding="utf-8")
    monkeypatch.setenv("CLIPFEED_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


def test_api_key_list() -> None:
    assert Settings(api_keys=" a, b ,,c").api_key_list == ["a", "b", "c"]
