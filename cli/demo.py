"""What ``make demo`` prints after building the sample world: what works now, what does not yet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from cli.main import main as clipfeed


def _showcase_user(world: Path) -> str | None:
    """A cold-start Korean user planning a trip to Argentina (picked from the world's ground truth
    for the demo only; the feed itself never reads it)."""
    for line in (world / "truth" / "users.jsonl").read_text(encoding="utf-8").splitlines():
        u = json.loads(line)
        if u["cold"] and any(i["topic"] == "655" and i["entity"] == "argentina" for i in u["interests"]):
            return str(u["user_id"])
    return None


def main(world_dir: str) -> None:
    console = Console()
    world = Path(world_dir)
    meta = json.loads((world / "world.json").read_text(encoding="utf-8"))
    s = meta["stats"]
    console.print(f"\n[bold]clipfeed demo[/] — sample world in {world} (seed {meta['config']['seed']})")
    console.print(
        f"  {s['clips']} clips over {s['tier2_topics']} tier-2 / {s['tier1_topics']} tier-1 topics, "
        f"{s['users']} users ({s['cold_users']} cold-start), {s['queries']} searches, "
        f"{s['gold_rows']} gold rows",
        highlight=False,
    )
    console.print(
        "\n[bold]Intent tags[/] (shipped student; the first run converts Gemma 3 270M from its PyPI GGUF, ~2 min):"
    )
    clipfeed(["tagger", "tag", "볼리비아 비자", "--doc", "이과수 폭포 투어 후기"])
    clipfeed(["tagger", "tag", "손흥민 골"])
    clipfeed(["tagger", "tag", "네이버 로그인"])
    console.print("\n[bold]Topic filter[/] (shipped classifier):")
    for text in ("아르헨티나 여행", "볼리비아 비자 신청 서류", "손흥민 골", "오타니 홈런"):
        clipfeed(["classifier", "predict", text])
    user = _showcase_user(world)
    if user is not None:
        console.print(f"\n[bold]Cold-start feed[/] for {user}, who never watched a clip; their searches:")
        for line in (world / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            if q["user_id"] == user:
                docs = ", ".join(d["title"] for d in q["clicked_docs"])
                console.print(f"  '{q['query']}'" + (f"  (clicked: {docs})" if docs else ""), highlight=False)
        clipfeed(["feed", user, "--world", str(world), "--explain", "--limit", "8"])
    console.print("\n[bold]Try:[/]")
    for cmd in (
        f"clipfeed feed {user or 'u00000'} --world {world} --explain --json",
        f"clipfeed ranker eval --world {world} --max-users 200",
        "clipfeed classifier predict '이과수 폭포' --query '볼리비아 비자' --json",
        "clipfeed tagger tag '이과수 폭포' --json",
        "clipfeed tagger eval --json",
        f"clipfeed world validate {world}",
    ):
        console.print(f"  .venv/bin/{cmd}", highlight=False, markup=False)
    console.print(
        "\n[bold yellow]Note:[/] feeds still use the documented stand-in tagger (each query and clicked title is a "
        "tag, then the topic filter) until the student's effect on feeds is measured; set CLIPFEED_TAGGER=student "
        "to serve with the student. `clipfeed bench --help` lists the benchmarks that print the README's figures."
    )
    console.print(
        "\n[bold]Starting the feed API[/] (`clipfeed serve`) on an embedded Redis; it prints example requests "
        "that work as printed. Ctrl-C stops it."
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/world")
