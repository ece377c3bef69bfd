"""The policy passages a classification cites: for a question, what answers its words; for
an action, the intent's own sections, ranked by what the sender wrote."""

from __future__ import annotations

from collections.abc import Sequence

from privbot.understand.intents import Intents
from privbot.understand.policy import Citation, PolicyIndex
from privbot.understand.sentences import Sentence


def cite(
    intents_data: Intents,
    policy_index: PolicyIndex,
    intents: Sequence[str],
    sentences: Sequence[Sentence],
    question_sentences: Sequence[int],
    hit_sentences: dict[str, list[int]],
) -> tuple[tuple[Citation, ...], tuple[str, ...], bool]:
    """(citations, sections, a question the policy does not answer)."""
    citations: list[Citation] = []
    sections: list[str] = []
    unanswered = False
    for name in intents:
        if name == "question":
            text = " ".join(sentences[i].text for i in question_sentences)
            found = policy_index.answer(text, limit=3)
            unanswered = not found
            sections.extend(c.heading for c in found)
            citations.extend(found)
        elif name in intents_data.requests:
            intent = intents_data.get(name)
            sections.extend(intent.policy_sections)
            said = " ".join(sentences[i].text for i in hit_sentences.get(name, [])[:3])
            found = policy_index.answer(
                f"{intent.cite_query} {said}", sections=intent.policy_sections, limit=2
            )
            citations.extend(found)
    return tuple(dict.fromkeys(citations)), tuple(dict.fromkeys(sections)), unanswered
