"""UID claims: several watchers on one mailbox divide its messages (issue 16)."""

from __future__ import annotations

from privbot.channels.imap import UidClaims
from privbot.db import make_engine


def test_on_postgresql_a_uid_is_one_watchers_until_released(pg_url: str) -> None:
    first, second = make_engine(pg_url), make_engine(pg_url)  # as two processes
    a, b = UidClaims(first, "INBOX"), UidClaims(second, "INBOX")
    try:
        assert a.take(7, [1, 2, 3]) == [1, 2, 3]
        assert b.take(7, [2, 3, 4, 5]) == [4, 5]
        assert b.take(8, [1, 2]) == [1, 2]  # another UIDVALIDITY: other messages
        assert UidClaims(second, "Other").take(7, [1]) == [1]  # another folder
        a.release(7, [1, 2])
        assert b.take(7, [1, 2, 3]) == [1, 2]
        # UIDs past 2**31 (unsigned 32-bit on the wire, signed in the lock key) come back.
        top = (1 << 32) - 1
        assert a.take(7, [top, 1 << 31]) == [1 << 31, top]
        assert b.take(7, [top]) == []
    finally:
        for claims in (a, b):
            claims.close()
        first.dispose()
        second.dispose()


def test_a_dead_watchers_claims_go_with_its_connection(pg_url: str) -> None:
    first, second = make_engine(pg_url), make_engine(pg_url)
    a, b = UidClaims(first, "INBOX"), UidClaims(second, "INBOX")
    try:
        assert a.take(1, [10, 11]) == [10, 11]
        assert b.take(1, [10, 11]) == []
        a.close()  # its session ends, as when a process dies
        assert b.take(1, [10, 11]) == [10, 11]
    finally:
        b.close()
        second.dispose()


def test_on_sqlite_every_uid_is_taken(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        a, b = UidClaims(engine, "INBOX"), UidClaims(engine, "INBOX")
        assert a.take(1, [1, 2]) == [1, 2]
        assert b.take(1, [1, 2]) == [1, 2]  # one writer: the random first batch spreads them
        a.release(1, [1, 2])
    finally:
        engine.dispose()
