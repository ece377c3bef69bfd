"""What the reply says about each thing asked: one part per intent, with the policy's words.

Each part names its template (`replies/intents/<intent>.txt.j2`) and carries what that
template quotes. Citations are always the policy's exact words with their heading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from privbot.policy import Citation, Section

if TYPE_CHECKING:
    from privbot.act import Plan
    from privbot.app import App
    from privbot.understand import Classification

# These requests are answered with their whole (short) policy section: the conditions
# matter in full (the fee AND the evidence of identity), not the best-matching clause.
WHOLE_SECTION = frozenset({"data_access", "correction", "deletion"})


def section_citations(section: Section) -> tuple[Citation, ...]:
    """A section as citations, in reading order: its opening paragraph, clauses, the rest."""
    paragraphs = [Citation(section.heading, p) for p in section.paragraphs]
    clauses = [Citation(section.heading, c.text, c.letter) for c in section.clauses]
    return tuple(paragraphs[:1] + clauses + paragraphs[1:])


def in_policy_order(app: App, cites: list[Citation]) -> tuple[Citation, ...]:
    """Best-matching citations, but quoted in the order the policy reads."""
    order = {
        (c.heading, c.letter, c.text): i
        for i, c in enumerate(c for s in app.policy.sections for c in section_citations(s))
    }
    return tuple(sorted(cites, key=lambda c: order.get((c.heading, c.letter, c.text), 0)))


def reply_parts(
    app: App, understanding: Classification, decision: Plan, joined: bool
) -> list[dict[str, Any]]:
    intents = app.classifier.intents
    used: set[Citation] = set()
    parts: list[dict[str, Any]] = []
    if decision.doubt is not None:
        return [{"intent": "unverified", "template": "intents/unverified.txt.j2", "citations": ()}]
    if understanding.low_confidence:
        return [{"intent": "review", "template": "intents/review.txt.j2", "citations": ()}]
    for name in decision.intents:
        if name == "question":
            continue  # answered last, with what the requests did not already quote
        intent = intents.get(name)
        if name in WHOLE_SECTION:
            cites = tuple(
                c for heading in intent.policy_sections
                for c in section_citations(app.policy.section(heading))
            )  # fmt: skip
        else:
            cites = tuple(c for c in understanding.citations if c.heading in intent.policy_sections)
        used.update(cites)
        parts.append(_part(name, cites, understanding, decision))
    if "question" in decision.intents:
        cites = in_policy_order(app, [c for c in understanding.citations if c not in used])
        answered = bool(cites) and not understanding.unanswered_question
        part = _part("question", cites if answered else (), understanding, decision)
        parts.append({**part, "answered": answered})
    if joined and decision.intents == ("other",):
        return []  # a follow-up with nothing new to act on: the opening line says it all
    return parts


def _part(
    name: str, cites: tuple[Citation, ...], understanding: Classification, decision: Plan
) -> dict[str, Any]:
    return {
        "intent": name,
        "template": f"intents/{name}.txt.j2",
        "citations": cites,
        "scopes": decision.opt_out_scopes,
        "held_back": decision.held_back,
        "change": understanding.correction_text or "",
    }


def answer_text(app: App, text: str) -> tuple[Classification, str]:
    """The answer to a question asked in words (`privbot ask`, the chat): nothing is applied."""
    from privbot.act import plan

    understanding = app.classifier.classify(text)
    decision = plan(understanding, app.classifier.intents, sender="")
    parts = reply_parts(app, understanding, decision, joined=False)
    if decision.intents == ("other",) and not understanding.low_confidence:
        parts = []
    descriptions = {
        i.name: i.description.rstrip(".").lower() for i in app.classifier.intents.intents
    }
    body = app.replies.render(
        "ask.txt.j2", parts=parts, address=app.settings.address, descriptions=descriptions
    )
    return understanding, body
