"""What ``make demo`` prints after building the sample world: what works now, what does not yet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console


def main(world: str) -> None:
    console = Console()
    meta = json.loads((Path(world) / "world.json").read_text(encoding="utf-8"))
    s = meta["stats"]
    console.print(f"\n[bold]clipfeed demo[/] — sample world in {world} (seed {meta['config']['seed']})")
    console.print(
        f"  {s['clips']} clips over {s['tier2_topics']} tier-2 / {s['tier1_topics']} tier-1 topics, "
        f"{s['users']} users ({s['cold_users']} cold-start), {s['queries']} searches, "
        f"{s['gold_rows']} gold rows",
        highlight=False,
    )
    console.print("\n[bold]Working now:[/]")
    for cmd in (
        f"clipfeed world validate {world}",
        "clipfeed world build --out /tmp/clipfeed-world --seed 7 --json",
        f"head -3 {world}/queries.jsonl",
    ):
        console.print(f"  .venv/bin/{cmd}" if cmd.startswith("clipfeed") else f"  {cmd}", highlight=False)
    console.print(
        "\n[bold yellow]Not built yet:[/] the feed API (issue #6), the tagger (#3), the topic "
        "classifier (#4) and the ranker (#5). `make demo` will start the API on an embedded "
        "Redis once they land; their commands exit with code 3 and say so until then."
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/world")
