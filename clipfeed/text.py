"""Text normalisation shared by the stages (the same text always gives the same tokens).

>>> tokens("  Iguazu Falls  투어!! ")
['iguazu', 'falls', '투어']
"""

from __future__ import annotations

import re
import unicodedata

MAX_TEXT_CHARS = 512
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """NFKC, lower case, collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text)[:MAX_TEXT_CHARS])


def hangul_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for c in letters if "\uac00" <= c <= "\ud7a3" or "\u3130" <= c <= "\u318f") / len(letters)
