from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for group in ("world", "tagger", "classifier", "ranker", "feed", "serve", "bench"):
        assert group in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("clipfeed 0.")


def test_world_build_json_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    code = main(
        [
            "world",
            "build",
            "--out",
            str(out),
            "--seed",
            "5",
            "--clips",
            "300",
            "--users",
            "80",
            "--creators",
            "40",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stats"]["clips"] >= 300 and report["stats"]["users"] == 80
    assert main(["world", "validate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_validate_reports_corrupted_catalog_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    assert (
        main(["world", "build", "--out", str(out), "--clips", "300", "--users", "60", "--creators", "30", "--quiet"])
        == 0
    )
    capsys.readouterr()
    catalog = out / "catalog.jsonl"
    lines = catalog.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[6])
    row["duration_s"] = "long"
    lines[6] = json.dumps(row, ensure_ascii=False)
    catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["world", "validate", str(out)]) == 1
    captured = capsys.readouterr()
    assert "catalog.jsonl:7: field duration_s:" in captured.err
    assert "Traceback" not in captured.err + captured.out

    # skip-invalid: the bad row is reported, every other row is kept, the world is usable.
    assert main(["world", "validate", str(out), "--skip-invalid", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    cat = report["files"]["catalog.jsonl"]
    assert (cat["rows"], cat["rejected"]) == (len(lines) - 1, 1)


def test_validate_reports_dangling_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    assert (
        main(["world", "build", "--out", str(out), "--clips", "300", "--users", "60", "--creators", "30", "--quiet"])
        == 0
    )
    with (out / "events.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"event_id": "zz1", "user_id": "u1", "ts": 0, "type": "like", "clip_id": "c999999"}) + "\n")
    capsys.readouterr()
    assert main(["world", "validate", str(out)]) == 1
    assert "field clip_id: clip 'c999999' not in catalog" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["world", "build", "--out", "/tmp/x", "--clips", "5"], 2, "--clips"),
        (["world", "build"], 2, "--out"),
        (["world", "validate", "/definitely/not/here"], 2, "not a directory"),
        (["tagger", "tag"], 2, "give a QUERY or --file"),
        (["tagger", "distill", "--labels", "/definitely/not/here", "--out", "/tmp/x"], 2, "no labels"),
        (["serve", "--port", "0"], 2, "greater than or equal to 1"),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_bad_input_one_line_no_traceback(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_unknown_environment_setting_is_rejected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLIPFEED_REDIS_ULR", "redis://x")
    assert main(["world", "validate", "."]) == 2
    assert "CLIPFEED_REDIS_ULR" in capsys.readouterr().err


def test_console_script_exit_codes(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("clipfeed")
    proc = subprocess.run([str(exe), "world", "validate", str(tmp_path / "nope")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_demo_script_runs_on_a_world(small_world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import demo

    demo.main(str(small_world))
    out = capsys.readouterr().out
    assert "Topic filter" in out and "Intent tags" in out and "clipfeed feed" in out
    assert "Traceback" not in out


def test_bench_runs_the_benchmark_scripts_and_says_where_they_are_missing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from cli.bench import SCRIPTS, script_path
    from clipfeed.errors import ClipfeedError

    assert all(script_path(name).is_file() for name in SCRIPTS)
    with pytest.raises(ClipfeedError, match="source checkout"):
        script_path("api", root=tmp_path)
    assert main(["bench", "api", "--help"]) == 0  # arguments pass through to the script
    assert "--rates" in capfd.readouterr().out
    assert main(["bench", "api", "--no-such-flag"]) == 2  # the script's own exit code comes back
