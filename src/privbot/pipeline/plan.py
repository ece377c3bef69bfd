"""What to do about what a person asks: what is safe is done at once, the rest goes to staff.

`plan` is a pure decision over the classification (what to apply, which ticket); the
pipeline writes it. Which intents privbot may complete alone is the intent files' `automatic`.
"""

from __future__ import annotations

from dataclasses import dataclass

from privbot.models import TicketStatus
from privbot.understand import Classification, Intents


@dataclass(frozen=True)
class Plan:
    intents: tuple[str, ...]
    ticket_type: str
    ticket_status: str
    needs_staff: bool  # False: all was done automatically, the ticket is closed as done
    opt_out_scopes: tuple[str, ...]  # to record for the sender now
    held_back: tuple[str, ...]  # why something was not done automatically, for staff
    doubt: str | None = None  # why the sender may not be who From says


def plan(
    understanding: Classification,
    intents: Intents,
    sender: str,
    unverified: str | None = None,
    *,
    opt_outs_unverified: bool = False,
) -> Plan:
    """`unverified`: why the sender's identity is in doubt (then nothing else is automatic).

    `opt_outs_unverified`: an opt-out is applied all the same (the sender was not proven,
    but nothing failed): it only ever reduces what we send, and its confirmation goes to
    the From address, whose real owner learns of it and can undo it by replying.
    """
    names = understanding.intents or ("other",)
    held: list[str] = []
    scopes: tuple[str, ...] = ()
    staff: list[str] = [n for n in names if not intents.get(n).automatic]
    if unverified is not None:
        # A forged From must not get an answer about "their" data, or opt someone out on the
        # word of a failed check.
        held.append(f"sender not verified: {unverified}")
        staff = list(names)
        if opt_outs_unverified and "opt_out" in names and not understanding.low_confidence:
            scopes, why = _opt_out(understanding, sender)
            if why is None:
                staff.remove("opt_out")
            else:
                held.append(why)
    elif understanding.low_confidence:
        held.append(
            "low confidence ({:.2f}); candidates: {}".format(
                understanding.confidence,
                ", ".join(f"{n} {s:.2f}" for n, s in understanding.candidates) or "none",
            )
        )
        staff = list(names)
    else:
        if "opt_out" in names:
            scopes, why = _opt_out(understanding, sender)
            if why is not None:
                held.append(why)
                staff.append("opt_out")
        if "question" in names and (
            understanding.unanswered_question or not understanding.citations
        ):
            held.append("the policy has no clear answer to the question")
            staff.append("question")
    if staff:
        main = max(staff, key=lambda n: intents.get(n).priority)
        intent = intents.get(main)
        return Plan(
            names, intent.ticket_type, intent.ticket_status, True, scopes, tuple(held), unverified
        )
    return Plan(
        names,
        intents.get(names[0]).ticket_type,
        TicketStatus.DONE,
        False,
        scopes,
        tuple(held),
        unverified,
    )


def _opt_out(understanding: Classification, sender: str) -> tuple[tuple[str, ...], str | None]:
    """The scopes to record for the sender, or why staff must look instead."""
    others = [a for a in understanding.named_addresses if a != sender]
    if others:
        # Only the owner of an address may opt it out; staff check who asks.
        return (), f"opt-out names another address: {', '.join(others)}"
    return understanding.opt_out_scopes or ("marketing_email",), None
