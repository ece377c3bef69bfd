"""Acting on what a person asks: what is safe is done at once, the rest goes to staff.

`plan` is a pure decision over the classification (what to apply, which ticket); `apply_*`
write it to the tables inside the pipeline's one transaction, with an audit event each.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from privbot.models import Message, Suppression, Ticket, utcnow
from privbot.tickets import record
from privbot.understand import Classification, Intents

SCOPES = ("marketing_email", "third_party_marketing", "targeted_ads")
# Intents privbot can complete on its own; every other one needs a person.
AUTOMATIC = frozenset({"opt_out", "question"})


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
    understanding: Classification, intents: Intents, sender: str, unverified: str | None = None
) -> Plan:
    """`unverified`: why the sender's identity is in doubt (then nothing is automatic)."""
    names = understanding.intents or ("other",)
    held: list[str] = []
    scopes: tuple[str, ...] = ()
    staff: list[str] = [n for n in names if n not in AUTOMATIC]
    if unverified is not None:
        # A forged From must not opt someone out or get an answer about "their" data.
        held.append(f"sender not verified: {unverified}")
        staff = list(names)
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
            others = [a for a in understanding.named_addresses if a != sender]
            if others:
                # Only the owner of an address may opt it out; staff check who asks.
                held.append(f"opt-out names another address: {', '.join(others)}")
                staff.append("opt_out")
            else:
                scopes = understanding.opt_out_scopes or ("marketing_email",)
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
    return Plan(names, intents.get(names[0]).ticket_type, "done", False, scopes, tuple(held))


def apply_opt_out(
    session: Session,
    address: str,
    scopes: tuple[str, ...],
    *,
    message: Message | None,
    ticket: Ticket | None,
    actor: str = "privbot",
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Record suppressions for an address; idempotent. Returns (newly recorded, already there)."""
    new: list[str] = []
    already: list[str] = []
    for scope in scopes:
        if scope not in SCOPES:
            raise ValueError(f"unknown opt-out scope {scope!r}")
        row = session.scalar(
            select(Suppression).where(Suppression.address == address, Suppression.scope == scope)
        )
        if row is not None and row.withdrawn_at is None:
            already.append(scope)
            continue
        if row is not None:  # withdrawn earlier, asked for again
            row.withdrawn_at = None
            row.created_at = utcnow()
            row.source_message = message.id if message else None
        else:
            try:
                # A savepoint: another process recording the same opt-out must not undo ours.
                with session.begin_nested():
                    session.add(
                        Suppression(
                            address=address,
                            scope=scope,
                            source_message=message.id if message else None,
                            ticket_id=ticket.id if ticket else None,
                            created_by=actor,
                            created_at=utcnow(),
                        )
                    )
            except IntegrityError:
                already.append(scope)
                continue
        new.append(scope)
    record(
        session, "opt_out_applied", ticket=ticket, message=message, actor=actor,
        address=address, scopes=new, already=already,
    )  # fmt: skip
    return tuple(new), tuple(already)


def suppressed_scopes(session: Session, address: str) -> tuple[str, ...]:
    rows = session.scalars(
        select(Suppression.scope).where(
            Suppression.address == address, Suppression.withdrawn_at.is_(None)
        )
    ).all()
    return tuple(s for s in SCOPES if s in rows)
