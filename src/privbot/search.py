"""Finding tickets: by reference, by address, by words of the subject and of what people wrote.

Each ticket has one row in `ticket_search`: its subject and requester (`head`) and the new
text of its messages (`body`, bounded), folded to plain lower-case words without accents,
so both databases index the same words and a search finds "données" by "donnees". The
database's own full-text index serves it (migration 0009): an FTS5 table `ticket_fts` on
SQLite, kept in step by triggers on `ticket_search`; a generated `tsvector` column with a
GIN index on PostgreSQL. The row is written on every path that changes a ticket's words:
`tickets.open_ticket`, the pipeline when a message joins, retention's redaction and
erasure (which empty it, so removed words cannot be found either).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    column,
    literal,
    select,
    text,
    union,
)
from sqlalchemy.orm import Session

from privbot.models import Ticket, TicketSearch

# A whole ticket's words stay small whatever arrives: a 25 MB mail is someone's to send.
MESSAGE_CHARS = 4_000
BODY_CHARS = 20_000
# How many words one search combines.
MAX_TERMS = 8
# Matches past which SQLite reads tickets in the page's order instead (see _words).
BROAD = 2_000
# Letters a word needs before words beginning with it match too ("pas" finds "passport").
PREFIX_MIN = 3
# Words and numbers: what FTS5's unicode61 and PostgreSQL's parser both take as one token.
_WORD = re.compile(r"[^\W_]+")


def fold(value: str) -> str:
    """Text as the index holds it: lower-case words without accents, one space apart."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORD.findall(plain))


def head_of(subject: str | None, requester: str | None) -> str:
    return fold(f"{subject or ''} {requester or ''}")[:MESSAGE_CHARS]


def with_text(body: str, new_text: str) -> str:
    """`body` with a message's words added while there is room (the opening mail first)."""
    words = fold(new_text[: MESSAGE_CHARS * 4])[:MESSAGE_CHARS]
    if not words or len(body) >= BODY_CHARS:
        return body
    joined = f"{body} {words}" if body else words
    return joined[:BODY_CHARS].rsplit(" ", 1)[0] if len(joined) > BODY_CHARS else joined


def index(session: Session, ticket: Ticket, new_text: str = "") -> None:
    """Bring the ticket's row up to date with its subject and requester; add `new_text`
    (what the requester wrote now) to its words. Call in the transaction that changed it."""
    row = session.get(TicketSearch, ticket.id)
    if row is None:
        row = TicketSearch(ticket_id=ticket.id, head="", body="")
        session.add(row)
    row.head = head_of(ticket.subject, ticket.requester)
    if new_text:
        row.body = with_text(row.body or "", new_text)


def forget(session: Session, where: ColumnElement[bool]) -> None:
    """The words of the tickets matching `where` are gone (redacted, erased): their rows
    keep what each ticket now says (a placeholder subject, a pseudonym), none of their mail."""
    rows = session.execute(
        select(TicketSearch, Ticket.subject, Ticket.requester)
        .join(Ticket, Ticket.id == TicketSearch.ticket_id)
        .where(where)
    )
    for row, subject, requester in rows:
        row.head = head_of(subject, requester)
        row.body = ""


# -- queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What a search box said: a ticket reference, an address (its beginning), words."""

    ticket_id: int | None = None
    address: str = ""
    terms: tuple[str, ...] = ()
    # A bare number ("7") is a reference or a word of the mail: both are searched.
    number_is_word: bool = False

    @property
    def empty(self) -> bool:
        return self.ticket_id is None and not self.address and not self.terms


@dataclass(frozen=True)
class Match:
    """A WHERE clause on `Ticket` for a query (None: it asks for nothing), and how many
    tickets have its words when the database told that on the way (SQLite's FTS5 does)."""

    where: ColumnElement[bool] | None
    count: int | None = None


def condition(session: Session, query: Query) -> Match:
    """The query as a WHERE clause served by an index on either backend."""
    clauses: list[ColumnElement[bool]] = []
    count = None
    if query.address:
        # Addresses are stored lower-case: a range is an index scan on both databases.
        clauses.append(Ticket.requester >= query.address)
        clauses.append(Ticket.requester < query.address + "\uffff")
    if query.terms:
        ids, count = _words(session, query.terms)
        broad = count is not None and count > BROAD
        if query.ticket_id is not None:
            # The ticket or a mail with the number: a UNION, as an OR would scan every ticket.
            ids, count = union(select(literal(query.ticket_id, Integer)), ids), None
        clauses.append((Ticket.id + 0 if broad else Ticket.id).in_(ids))
    elif query.ticket_id is not None:
        clauses.append(Ticket.id == query.ticket_id)
    if query.address:
        count = None
    return Match(and_(*clauses) if clauses else None, count)


def _match(term: str) -> tuple[str, bool]:
    """The term, and whether words that begin with it match too: not for numbers (whole),
    nor for one or two letters (they begin half the dictionary)."""
    return term, not term.isdigit() and len(term) >= PREFIX_MIN


def _words(session: Session, terms: tuple[str, ...]) -> tuple[Select[tuple[int]], int | None]:
    """The ids of tickets having every term, and how many they are (SQLite only)."""
    matched = [_match(t) for t in terms]
    if session.get_bind().dialect.name == "postgresql":
        tsquery = " & ".join(f"'{t}':*" if prefix else f"'{t}'" for t, prefix in matched)
        sql = "SELECT ticket_id AS id FROM ticket_search WHERE vector @@ to_tsquery('simple', :q)"
        return _ids(sql, tsquery), None
    fts = " ".join(f'"{t}"*' if prefix else f'"{t}"' for t, prefix in matched)
    # SQLite looks each match up by its id, then sorts them all: right for a few hundred,
    # slow for a word in every ticket. Then it is cheaper to read the tickets in the page's
    # order (its index) and test each against the matches, stopping at the page's end;
    # `id + 0` keeps the id's own index out of the plan. FTS5 counts matches in a few ms.
    count = text("SELECT count(*) FROM ticket_fts WHERE ticket_fts MATCH :q")
    found = session.scalar(count.bindparams(bindparam("q", fts))) or 0
    return _ids("SELECT rowid AS id FROM ticket_fts WHERE ticket_fts MATCH :q", fts), found


def _ids(sql: str, match: str) -> Select[tuple[int]]:
    textual = text(sql).bindparams(bindparam("q", match)).columns(column("id", Integer))
    return select(textual.subquery().c.id)
