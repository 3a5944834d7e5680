"""The topic taxonomy (IAB Content Taxonomy 3.1 shape) and the not-clip-worthy list.

The loader reads the project's own ``taxonomy.tsv`` (header ``id parent name tier1..tier4``) or
IAB's published TSV as is (two header rows), so any file of the same shape can replace it.

>>> tax = Taxonomy.load()
>>> tax.tier1_of("533"), tax.name("533")
('483', 'Soccer')
>>> tax.is_clip_worthy("CF103"), tax.is_clip_worthy("655")
(False, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clipfeed.errors import InputError

_HEADER_FIRST_CELLS = {"id", "unique id", "relational id system"}


@dataclass(frozen=True)
class TaxonomyNode:
    id: str
    parent: str | None
    name: str
    path: tuple[str, ...]  # tier-1 name .. this node's name

    @property
    def tier(self) -> int:
        return len(self.path)


def shipped_taxonomy_path() -> Path:
    return Path(str(resources.files("clipfeed") / "data" / "taxonomy.tsv"))


def shipped_not_clip_worthy_path() -> Path:
    return Path(str(resources.files("clipfeed") / "data" / "not_clip_worthy.tsv"))


class Taxonomy:
    """Nodes by id with tier lookups, siblings and the clip-worthiness rule."""

    def __init__(self, nodes: dict[str, TaxonomyNode], not_clip_worthy: dict[str, str] | None = None) -> None:
        self.nodes = nodes
        self.not_clip_worthy = dict(not_clip_worthy or {})
        self._children: dict[str | None, list[str]] = {}
        self._chains: dict[str, tuple[str, ...]] = {}
        for node in nodes.values():
            self._children.setdefault(node.parent, []).append(node.id)

    @classmethod
    def load(cls, path: str | Path | None = None, not_clip_worthy: str | Path | None = None) -> Taxonomy:
        """Loads a taxonomy TSV (default: the shipped one) and a not-clip-worthy list."""
        tsv = Path(path) if path is not None else shipped_taxonomy_path()
        nodes = _read_nodes(tsv)
        ncw_path = Path(not_clip_worthy) if not_clip_worthy is not None else shipped_not_clip_worthy_path()
        ncw = _read_not_clip_worthy(ncw_path) if ncw_path.exists() else {}
        unknown = [i for i in ncw if i not in nodes]
        if unknown and path is None:
            raise InputError(ncw_path, None, "id", f"unknown taxonomy ids: {', '.join(unknown)}")
        return cls(nodes, {i: r for i, r in ncw.items() if i in nodes})

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, node_id: str) -> TaxonomyNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"unknown taxonomy node {node_id!r}") from None

    def name(self, node_id: str) -> str:
        return self.node(node_id).name

    def ancestors(self, node_id: str) -> list[str]:
        """This node and its ancestors, nearest first."""
        chain = self._chains.get(node_id)
        if chain is None:  # computed once per node: feeds ask for the same few topics all the time
            out = [node_id]
            node = self.node(node_id)
            while node.parent is not None:
                out.append(node.parent)
                node = self.node(node.parent)
            chain = self._chains[node_id] = tuple(out)
        return list(chain)

    def tier1_of(self, node_id: str) -> str:
        return self.ancestors(node_id)[-1]

    def tier2_of(self, node_id: str) -> str | None:
        chain = self.ancestors(node_id)
        return chain[-2] if len(chain) >= 2 else None

    def children(self, node_id: str | None) -> list[str]:
        return list(self._children.get(node_id, []))

    def siblings(self, node_id: str) -> list[str]:
        parent = self.node(node_id).parent
        return [c for c in self.children(parent) if c != node_id] if parent is not None else []

    def at_tier(self, tier: int) -> list[str]:
        return [n.id for n in self.nodes.values() if n.tier == tier]

    def not_clip_worthy_reason(self, node_id: str) -> str | None:
        """Why this node (or an ancestor) must not drive recommendations; ``None`` if it may."""
        for anc in self.ancestors(node_id):
            if anc in self.not_clip_worthy:
                return self.not_clip_worthy[anc]
        return None

    def is_clip_worthy(self, node_id: str) -> bool:
        return self.not_clip_worthy_reason(node_id) is None


def _read_nodes(path: Path) -> dict[str, TaxonomyNode]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(path, None, None, f"cannot read taxonomy: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, "taxonomy is not UTF-8") from e
    raw: dict[str, tuple[str | None, str, int]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split("\t")]
        if cells[0].lower() in _HEADER_FIRST_CELLS:
            continue
        if len(cells) < 4:
            raise InputError(path, lineno, None, f"expected at least 4 tab-separated columns, got {len(cells)}")
        node_id, parent, name = cells[0], cells[1] or None, cells[2]
        if not name:
            raise InputError(path, lineno, "name", "empty node name")
        if not cells[3]:
            raise InputError(path, lineno, "tier1", "empty tier-1 name")
        if node_id in raw:
            raise InputError(path, lineno, "id", f"duplicate node id {node_id!r}")
        raw[node_id] = (parent, name, lineno)
    if not raw:
        raise InputError(path, None, None, "taxonomy has no nodes")
    nodes: dict[str, TaxonomyNode] = {}

    def build(node_id: str, depth: int = 0) -> TaxonomyNode:
        if node_id in nodes:
            return nodes[node_id]
        parent, name, lineno = raw[node_id]
        if depth > 8:
            raise InputError(path, lineno, "parent", "parent chain is cyclic or deeper than 8 tiers")
        if parent is None:
            node = TaxonomyNode(node_id, None, name, (name,))
        elif parent not in raw:
            raise InputError(path, lineno, "parent", f"unknown parent id {parent!r}")
        else:
            node = TaxonomyNode(node_id, parent, name, (*build(parent, depth + 1).path, name))
        nodes[node_id] = node
        return node

    for node_id in raw:
        build(node_id)
    return {k: nodes[k] for k in raw}


def _read_not_clip_worthy(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t", 1)
        if len(cells) != 2 or not cells[1].strip():
            raise InputError(path, lineno, "reason", "expected 'id<TAB>reason'")
        out[cells[0].strip()] = cells[1].strip()
    return out
