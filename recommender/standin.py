"""A rule-based stand-in for the intent tagger, behind the same ``IntentTagger`` protocol.

Until the distilled student tagger lands (issue #3), each query becomes one tag (its normalised
text) and each clicked-document title another. The topic filter then maps every tag to a topic and
drops the utility ones, so the rest of the pipeline runs end to end. It is documented as a
stand-in: figures measured with it say so.

>>> QueryAsTagTagger().tag_batch(["볼리비아 비자"], [["이과수 폭포 투어 후기"]])[0][1].tag
'이과수 폭포 투어 후기'
"""

from __future__ import annotations

from collections.abc import Sequence

from clipfeed.protocols import IntentTag
from clipfeed.text import normalize


class QueryAsTagTagger:
    name = "query-as-tag stand-in"

    def tag_batch(self, queries: Sequence[str], docs: Sequence[Sequence[str]] | None = None) -> list[list[IntentTag]]:
        out = []
        for n, q in enumerate(queries):
            tags = [IntentTag(normalize(q)[:64], 1.0)]
            for title in docs[n] if docs is not None else ():
                tags.append(IntentTag(normalize(title)[:64], 0.8))
            out.append([t for t in tags if t.tag])
        return out
