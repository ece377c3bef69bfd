"""Cost as the database grows (issue 16): one burst size at several stored-message counts.

Each size's database is bulk-loaded once (``bench.queue``: a tenth as many tickets as
messages, dated within the retention period), then copied for every burst, so each burst
starts from the same rows: a SQLite file copy, a PostgreSQL ``CREATE DATABASE ... TEMPLATE``.
With ``--before DIR`` (another checkout, e.g. ``git worktree add DIR <commit>``) the template
is migrated by that checkout, and its ``privbot serve`` and this one's take turns on copies
of it, round by round, so before and after are measured in the same minutes.

After the bursts, the mail's hot path runs in-process on a copy of the largest database of
each backend, and every statement's plan is recorded (``testing.statements``): SQLite's
EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN ANALYZE with its timing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench import e2e, queue
from bench.harness import REPO, MailMaker, TimedRelay
from privbot.models import Outgoing
from testing.apps import make_app
from testing.servers import Dovecot, PostgresDatabase
from testing.statements import (
    postgres_plan,
    recording,
    serve_round,
    shape,
    sqlite_plan,
    whole_reads,
)

BACKENDS = ("sqlite", "postgresql")


@dataclass
class Template:
    """A loaded database of one size, copied for each burst."""

    backend: str
    messages: int
    load_s: float
    path: Path | None = None  # SQLite
    pg: PostgresDatabase | None = None

    @contextlib.contextmanager
    def copy(self, root: Path, tag: str) -> Iterator[str]:
        """A fresh copy's URL, removed after."""
        if self.path is not None:
            target = root / f"growth-{tag}.db"
            shutil.copyfile(self.path, target)
            # The copy's gigabytes on disk before the burst: else the serve's first fsync
            # waits for the bench's own writeback (15 ms commits at a million, not 1.3).
            os.sync()
            try:
                yield f"sqlite:///{target}"
            finally:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{target}{suffix}").unlink(missing_ok=True)
            return
        assert self.pg is not None
        clone = PostgresDatabase("privbot_bench_", template=self.pg.name)
        try:
            yield clone.url
        finally:
            clone.drop()

    def drop(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        if self.pg is not None:
            self.pg.drop()


def code_env(checkout: Path | None) -> dict[str, str]:
    """The environment that makes `python -m privbot` that checkout's (None: this one)."""
    if checkout is None:
        return {}
    return {"PYTHONPATH": str(checkout / "src")}


def migrator(checkout: Path | None) -> Callable[[str], None]:
    """Migrate a database with a checkout's own `privbot db upgrade`."""
    if checkout is None:
        return queue.migrate_here

    def migrate(url: str) -> None:
        env = {**os.environ, **code_env(checkout), "PRIVBOT_DATABASE_URL": url}
        subprocess.run([sys.executable, "-m", "privbot", "db", "upgrade"], env=env, cwd=REPO,
                       check=True, capture_output=True)  # fmt: skip

    return migrate


def load(backend: str, messages: int, root: Path, checkout: Path | None) -> Template:
    tickets = messages // 10
    migrate = migrator(checkout)
    if backend == "sqlite":
        path = root / f"growth-{messages}.db"
        return Template(backend, messages, queue.load_sqlite(path, tickets, messages, migrate),
                        path=path)  # fmt: skip
    pg = PostgresDatabase("privbot_bench_")
    try:
        load_s = queue.load_postgres(pg.url, pg.conninfo, tickets, messages, migrate)
    except BaseException:
        pg.drop()
        raise
    return Template(backend, messages, load_s, pg=pg)


def burst(
    dovecot: Dovecot,
    relay: TimedRelay,
    maker: MailMaker,
    url: str,
    root: Path,
    count: int,
    checkout: Path | None,
    label: str,
) -> dict[str, Any]:
    with e2e.serving(dovecot, relay, maker, url, root, extra_env=code_env(checkout)) as serve:
        result = e2e.load(dovecot, relay, maker, count, None, 300, label, serve)
        rss = serve.peak_rss_mb()
        result.update(peak_rss_mb=max(rss) if rss else None, log_errors=serve.errors())
    return result


def hot_path_plans(url: str, relay_url: str) -> list[dict[str, Any]]:
    """Every statement of one round of the serve work on this database, with its plan."""
    app = make_app(url, smtp_url=relay_url, reply_cap_per_domain="1000000")
    try:
        with app.sessions() as session:
            ours = session.scalars(
                select(Outgoing.message_id).order_by(Outgoing.id.desc()).limit(2)
            ).all()
        with recording(app.engine) as recorded:
            serve_round(app, "plan", [f"<{m}>" for m in ours] + ["<m7@example.org>"])
        out = []
        dialect = app.engine.dialect.name
        for sql, params in recorded.queries():
            started = time.perf_counter()
            if dialect == "sqlite":
                lines = reads = sqlite_plan(app.engine, sql, params)
            else:
                # The plan chosen, timed; and whether any index could serve it (a seq scan
                # of a table that is still small here is the planner's right choice).
                lines = postgres_plan(app.engine, sql, params, analyze=True)
                reads = postgres_plan(app.engine, sql, params, index_if_any=True)
            out.append({
                "statement": shape(sql)[:200],
                "plan": lines,
                "whole_reads": whole_reads(reads, dialect),
                "explain_ms": round(1000 * (time.perf_counter() - started), 2),
            })  # fmt: skip
        return out
    finally:
        app.close()


def run(
    dovecot: Dovecot,
    relay: TimedRelay,
    texts: list[str],
    root: Path,
    sizes: tuple[int, ...],
    count: int,
    rounds: int,
    before: Path | None,
) -> dict[str, Any]:
    codes: list[tuple[str, Path | None]] = [("after", None)]
    if before is not None:
        codes.insert(0, ("before", before))
    out: dict[str, Any] = {
        "sizes": list(sizes), "burst": count, "rounds": rounds,
        "codes": {name: str(path or REPO) for name, path in codes},
        "bursts": [], "loads": [], "plans": {},
    }  # fmt: skip
    templates: list[Template] = []
    try:
        for backend in BACKENDS:
            for size in sizes:
                template = load(backend, size, root, before)
                templates.append(template)
                out["loads"].append({"backend": backend, "messages": size,
                                     "load_s": round(template.load_s, 1)})  # fmt: skip
        for index in range(rounds):
            # Alternate which code goes first, so neither always meets a warmer machine.
            order = codes if index % 2 == 0 else codes[::-1]
            for template in templates:
                for name, checkout in order:
                    tag = f"g{index}-{template.backend[:2]}{template.messages}-{name}"
                    result = _burst_once_more(dovecot, relay, texts, template, root, count,
                                              checkout, tag)  # fmt: skip
                    result.update(backend=template.backend, messages_stored=template.messages,
                                  code=name, round=index)  # fmt: skip
                    out["bursts"].append(result)
        for template in templates:
            if template.messages == max(sizes):
                with template.copy(root, f"plans-{template.backend}") as url:
                    out["plans"][template.backend] = hot_path_plans(url, relay.url)
    finally:
        for template in templates:
            template.drop()
    out["summary"] = summarise(out["bursts"])
    return out


def _burst_once_more(
    dovecot: Dovecot,
    relay: TimedRelay,
    texts: list[str],
    template: Template,
    root: Path,
    count: int,
    checkout: Path | None,
    tag: str,
) -> dict[str, Any]:
    """A burst on a fresh copy; one that fails is tried once more, and its error kept (one
    bad burst on this shared machine must not lose the run's other figures)."""
    errors: list[str] = []
    for attempt in range(2):
        try:
            with template.copy(root, f"{tag}-{attempt}") as url:
                result = burst(dovecot, relay, MailMaker(texts, f"{tag}-{attempt}"), url, root,
                               count, checkout, f"growth: {tag}")  # fmt: skip
            return result | ({"earlier_error": errors[0]} if errors else {})
        except RuntimeError as exc:
            errors.append(str(exc)[-1500:])
    return {"error": errors[-1], "earlier_error": errors[0]}


def summarise(bursts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backend, code and size: the median throughput and CPU per message over rounds,
    and the throughput relative to the empty database's of the same code and backend."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for b in bursts:
        if "error" in b:
            continue
        groups.setdefault((b["backend"], b["code"], b["messages_stored"]), []).append(b)
    rows = []
    for (backend, code, size), runs in sorted(groups.items()):
        rows.append({
            "backend": backend, "code": code, "messages_stored": size,
            "throughput_msg_s": _median([r["throughput_msg_s"] for r in runs]),
            "cpu_ms_per_msg": _median([r["serve_cpu_ms_per_msg"] for r in runs]),
            "runs": [r["throughput_msg_s"] for r in runs],
        })  # fmt: skip
    empty = {(r["backend"], r["code"]): r["throughput_msg_s"] for r in rows
             if r["messages_stored"] == 0}  # fmt: skip
    for row in rows:
        base = empty.get((row["backend"], row["code"]))
        row["vs_empty"] = round(row["throughput_msg_s"] / base, 3) if base else None
    return rows


def _median(values: list[Any]) -> float | None:
    nums = sorted(float(v) for v in values if isinstance(v, int | float))
    if not nums:
        return None
    mid = len(nums) // 2
    return round(nums[mid] if len(nums) % 2 else (nums[mid - 1] + nums[mid]) / 2, 2)
