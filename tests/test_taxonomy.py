from __future__ import annotations

from pathlib import Path

import pytest

from clipfeed.errors import InputError
from clipfeed.taxonomy import Taxonomy
from tests.conftest import shared_data


def test_shipped_taxonomy_structure() -> None:
    tax = Taxonomy.load()
    assert len(tax.at_tier(1)) >= 37 and len(tax.at_tier(2)) >= 323
    assert tax.name("533") == "Soccer" and tax.tier2_of("533") == "533" and tax.tier1_of("533") == "483"
    assert tax.node("662").path == ("Travel", "Travel Locations", "South America Travel")
    assert tax.tier2_of("662") == "655"
    assert "545" in tax.siblings("533") and "533" not in tax.siblings("533")


def test_shipped_taxonomy_covers_iab_tiers_1_and_2() -> None:
    iab = Taxonomy.load(shared_data("iab_taxonomy", "Content_Taxonomy_3.1.tsv"))  # IAB's own file loads as is
    ours = Taxonomy.load()
    for tier in (1, 2):
        for node_id in iab.at_tier(tier):
            assert node_id in ours and ours.name(node_id) == iab.name(node_id)


def test_not_clip_worthy_applies_to_subtrees() -> None:
    tax = Taxonomy.load()
    assert not tax.is_clip_worthy("CF101") and not tax.is_clip_worthy("CF103")
    assert tax.not_clip_worthy_reason("Rm3SiT") is not None  # adult content, under Sensitive Topics
    assert tax.is_clip_worthy("655") and tax.is_clip_worthy("533")


def _tsv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "t.tsv"
    path.write_text("id\tparent\tname\ttier1\ttier2\ttier3\ttier4\n" + body, encoding="utf-8")
    return path


def test_custom_taxonomy(tmp_path: Path) -> None:
    tax = Taxonomy.load(
        _tsv(tmp_path, "S\t\tSports\tSports\nS1\tS\tSoccer\tSports\tSoccer\n"), not_clip_worthy=tmp_path / "none.tsv"
    )
    assert tax.tier1_of("S1") == "S" and tax.children("S") == ["S1"]


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("A\t\tAlpha\tAlpha\nA\t\tAgain\tAgain\n", 3, "id"),
        ("A\t\tAlpha\tAlpha\nB\tZ\tBeta\tAlpha\tBeta\n", 3, "parent"),
        ("A\t\t\tAlpha\n", 2, "name"),
        ("A\tonly-two\n", 2, None),
    ],
)
def test_bad_taxonomy_rows(tmp_path: Path, body: str, line: int, field: str | None) -> None:
    with pytest.raises(InputError) as info:
        Taxonomy.load(_tsv(tmp_path, body), not_clip_worthy=tmp_path / "none.tsv")
    assert (info.value.line, info.value.field) == (line, field)
