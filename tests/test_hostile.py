"""Hostile and broken input: every message ends handled, screened or quarantined with a
reason; none crashes the service, none disappears, and none costs unbounded memory."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from privbot import pipeline
from privbot.app import App
from privbot.mail.parse import ParseError, parse_message
from privbot.models import Message
from testing.apps import make_app

FUZZ_EXAMPLES = int(os.environ.get("PRIVBOT_FUZZ_EXAMPLES", "150"))
ENDED = {"handled", "screened", "quarantined"}
HEAD = b"From: Eve <eve@example.org>\r\nTo: support@junocloud.me\r\nSubject: hostile\r\n"


def _zammad(corpora: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((corpora / "mime_zammad").glob("*.box"))]


def _mutate(data: bytes, ops: list[tuple[int, int, bytes]]) -> bytes:
    """Apply (kind, position, bytes) edits: overwrite, insert, delete, or truncate."""
    buf = bytearray(data)
    for kind, pos, chunk in ops:
        at = pos % (len(buf) + 1)
        if kind == 0:
            buf[at : at + len(chunk)] = chunk
        elif kind == 1:
            buf[at:at] = chunk
        elif kind == 2:
            del buf[at : at + len(chunk) * 8]
        else:
            del buf[at:]
    return bytes(buf)


def test_fuzzed_real_mail_never_crashes_or_vanishes(corpora: Path, tmp_path: Path) -> None:
    samples = _zammad(corpora)
    app = make_app(f"sqlite:///{tmp_path / 'fuzz.db'}")
    tried: list[int] = []
    edits = st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10**7), st.binary(min_size=1, max_size=40)),
        max_size=6,
    )

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(index=st.integers(0, len(samples) - 1), ops=edits)
    def check(index: int, ops: list[tuple[int, int, bytes]]) -> None:
        raw = _mutate(samples[index], ops) or b"\n"
        with contextlib.suppress(ParseError):  # the one exception parsing may raise
            parse_message(raw)
        out = pipeline.receive(app, raw, source="file")
        assert out.status in ENDED, (out.status, out.reason)
        if out.status == "quarantined":
            assert out.reason
        tried.append(out.message)

    check()
    with app.sessions() as s:
        stored = s.scalar(select(func.count(Message.id))) or 0
        waiting = s.scalar(select(func.count(Message.id)).where(Message.status.not_in(ENDED)))
    assert stored == len(set(tried)) and waiting == 0
    print(f"\nfuzz: {len(tried)} mutated messages through the pipeline, {stored} distinct")


def _many_parts(n: int = 5000) -> bytes:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n))
    return HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"


def _deep(depth: int = 2000) -> bytes:
    opening = b"".join(
        b'--%d\r\nContent-Type: multipart/mixed; boundary="%d"\r\n\r\n' % (i, i + 1)
        for i in range(depth)
    )
    return HEAD + b'Content-Type: multipart/mixed; boundary="0"\r\n\r\n' + opening + b"deep\r\n"


def _long_line() -> bytes:
    return HEAD + b"Content-Type: text/plain\r\n\r\n" + b"A" * 2_500_000 + b"\r\n"


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", b"\0" * 50_000_000)  # 50 MB that packs into ~50 KB
    payload = base64.encodebytes(buf.getvalue())
    return (
        HEAD
        + (
            b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n'
            b"--z\r\nContent-Type: text/plain\r\n\r\nPlease see the attached file.\r\n"
            b"--z\r\nContent-Type: application/zip; "
            b'name="data.zip"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        )
        + payload
        + b"\r\n--z--\r\n"
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (_many_parts, "quarantined"),
        (_deep, "quarantined"),
        (_long_line, "quarantined"),
        (_zip_bomb, "handled"),  # attachments are listed, never unpacked
    ],
    ids=["5000-parts", "2000-deep", "2.5MB-line", "zip-bomb"],
)
def test_hostile_shapes_are_bounded(
    build: Callable[[], bytes], expected: str, sqlite_url: str
) -> None:
    app: App = make_app(sqlite_url)
    raw = build()
    tracemalloc.start()
    try:
        out = pipeline.receive(app, raw, source="smtp")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.status == expected, out.reason
    if expected == "quarantined":
        assert out.reason and out.reason.startswith(("too big to read whole", "cannot be parsed"))
    # Bounded: a small multiple of the message itself, never the 50 MB inside the zip.
    assert peak < 40 * len(raw) + 50_000_000, f"peak {peak / 1e6:.0f} MB"
