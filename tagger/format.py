"""The tagger's input limits and its strict output format, shared by teacher and student.

Output is one line: up to ``MAX_TAGS`` comma-separated short tags, or ``NONE`` when the search has
no clip-worthy intent (login, paperwork, navigation). Anything else is malformed and is retried,
then abstained; it is never silently accepted.

>>> parse_tags(" 아르헨티나 여행, 이과수 폭포\\nQuery: x")
['아르헨티나 여행', '이과수 폭포']
>>> parse_tags("NONE")
[]
>>> parse_tags("Tags: Tags: Tags:") is None
True
>>> check_query("  ")
'empty query'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from clipfeed.text import normalize

MAX_QUERY_CHARS = 200  # longer "queries" are pasted text, not searches
MAX_DOCS = 5
MAX_DOC_CHARS = 120
MAX_TAGS = 4
MAX_TAG_CHARS = 40
NO_TAGS = "NONE"

SYSTEM = (
    "You label search queries with intent tags for a short-video feed. Answer with up to "
    f"{MAX_TAGS} short tags separated by commas, in the query's language, naming what the user "
    f"wants to watch. Use clicked document titles when they reveal the intent. Answer {NO_TAGS} "
    "when the search is navigation, login, paperwork or anything without a video interest."
)

_BAD_TAG = re.compile(r"(query|tags?|clicked|answer)\s*:", re.IGNORECASE)
# letters we tag: Latin, Hangul (syllables and jamo); digits and punctuation are neutral
_SUPPORTED = re.compile(r"[A-Za-z\u00c0-\u024f\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


def check_query(query: str) -> str | None:
    """Why a query gets no tags (a clear reason naming the limit), or None when it can be tagged."""
    if any(unicodedata.category(c) in ("Cc", "Cs", "Co") and c not in "\t\n\r" for c in query) or "\ufffd" in query:
        return "binary or control characters in query"
    q = normalize(query)
    if not q:
        return "empty query"
    if len(q) > MAX_QUERY_CHARS:
        return f"query longer than {MAX_QUERY_CHARS} characters ({len(q)})"
    letters = [c for c in q if c.isalpha()]
    if letters and sum(1 for c in letters if _SUPPORTED.match(c)) < 0.5 * len(letters):
        return "unsupported script (clipfeed tags Korean and Latin-script queries)"
    if not letters and not any(c.isdigit() for c in q):
        return "no letters or digits in query"
    return None


def clean_docs(docs: Sequence[str]) -> tuple[str, ...]:
    """At most ``MAX_DOCS`` normalised titles, each cut to ``MAX_DOC_CHARS`` (a title is context, not content)."""
    out = []
    for d in docs:
        n = normalize(d)[:MAX_DOC_CHARS]
        if n and check_query(n) is None:
            out.append(n)
    return tuple(out[:MAX_DOCS])


def render_input(query: str, docs: Sequence[str]) -> str:
    """The user turn: the query and, when there are any, the clicked titles."""
    text = f"Query: {query}"
    if docs:
        text += "\nClicked: " + " | ".join(docs)
    return text


def parse_input(user: str) -> tuple[str, tuple[str, ...]]:
    """The inverse of :func:`render_input` (for backends that get the rendered turn)."""
    lines = user.split("\n")
    query = lines[0].removeprefix("Query: ")
    docs = next((ln.removeprefix("Clicked: ") for ln in lines[1:] if ln.startswith("Clicked: ")), "")
    return query, tuple(d.strip() for d in docs.split(" | ") if d.strip())


def render_tags(tags: Sequence[str]) -> str:
    return ", ".join(tags) if tags else NO_TAGS


def parse_tags(text: str) -> list[str] | None:
    """The tags of one generation, ``[]`` for ``NONE``, or None when the output is malformed."""
    line = text.strip().split("\n", 1)[0].strip()
    if line.upper().rstrip(".") == NO_TAGS:
        return []
    if not line or _BAD_TAG.search(line):
        return None
    tags: list[str] = []
    for part in line.split(","):
        tag = " ".join(part.strip().strip("\"'.;").split())
        if not tag:
            continue
        if len(tag) > MAX_TAG_CHARS or not any(c.isalnum() for c in tag):
            return None
        if normalize(tag) not in {normalize(t) for t in tags}:
            tags.append(tag)
    if not tags or len(tags) > MAX_TAGS:
        return None
    return tags
