"""``python -m bench``: every measurement side by side in one run, then a table and JSON.

    .venv/bin/python -m bench [--quick] [--json FILE] [--plot FILE] [--only SECTIONS]
                              [--profile DIR]

Sections, in order: classifier, raw, e2e, ratio, scale, queue, search, growth, memory.
``--before DIR``: the growth and scale sections also measure that checkout's ``privbot
serve``, taking turns with this one's (growth: on copies of the same databases). Run from the
repository root (it imports ``testing.servers``). A section that fails is reported in the table
and the JSON, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import classifier, e2e, growth, queue, raw, report
from bench.harness import CORPORA, REPO, MailMaker, TimedRelay, human_texts, work_dir
from bench.profile import recording, top
from privbot.app import App
from privbot.pipeline.examine import examine
from testing.apps import make_app
from testing.servers import Dovecot, PostgresDatabase

SECTIONS = ("classifier", "raw", "e2e", "ratio", "scale", "queue", "search", "growth", "memory")


@dataclass(frozen=True)
class Sizes:
    classifier_repeats: int
    long_repeats: int
    idle_samples: int
    burst: int
    levels: tuple[float, ...]
    level_seconds: float
    scale_burst: int
    scale_processes: tuple[int, ...]
    tickets: int
    messages: int
    query_repeats: int
    large_db_burst: int
    ratio_pairs: int  # raw burst + e2e burst pairs after the first (the ratio is their median)
    growth_sizes: tuple[int, ...]  # stored messages before each growth burst
    growth_burst: int
    growth_rounds: int
    scale_pinned: tuple[bool, ...]  # scale runs free, and with one CPU per process


QUICK = Sizes(1, 20, 5, 150, (5.0, 10.0, 30.0), 3.0, 60, (1, 2, 3), 2_000, 20_000, 20, 30, 0,
              (0, 20_000), 40, 1, (False,))  # fmt: skip
FULL = Sizes(3, 100, 20, 1000, (5.0, 10.0, 20.0, 40.0, 60.0, 80.0), 10.0, 600, (1, 2, 3),
             100_000, 1_000_000, 100, 300, 4, (0, 100_000, 1_000_000), 500, 2,
             (False, True))  # fmt: skip


def answered_texts(app: App) -> list[str]:
    """The human texts privbot answers (the tuning set's two spam rows get no reply)."""
    maker = MailMaker(human_texts(), "probe")
    texts = human_texts()
    keep = []
    for text, letter in zip(texts, maker.make(len(texts)), strict=True):
        seen = examine(app, letter.raw)
        if seen.skip is None and seen.problem is None and seen.understanding is not None:
            keep.append(text)
    return keep


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.root = root
        self.results: dict[str, Any] = {"errors": {}}
        self.dovecot = Dovecot(root / "dovecot")
        self.relay = TimedRelay()
        self.app: App | None = None
        self.texts: list[str] = []
        self.large_sqlite: Path | None = None
        # The queue section's PostgreSQL database, kept for the search section.
        self.large_pg: PostgresDatabase | None = None
        self.large_pg_load_s: float | None = None
        self.serve_rss: list[float] = []

    def section(self, name: str, fn: Callable[[], None]) -> None:
        if self.args.only and name not in self.args.only:
            return
        started = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            fn()
        except Exception as exc:
            traceback.print_exc()
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
        print(f"[bench] {name} done in {time.monotonic() - started:.1f} s",
              file=sys.stderr, flush=True)  # fmt: skip

    def maker(self, tag: str) -> MailMaker:
        return MailMaker(self.texts, tag)

    # -- sections ------------------------------------------------------------------------------

    def classifier(self) -> None:
        assert self.app is not None
        s = self.sizes
        self.results["classifier"] = classifier.run(
            self.app, CORPORA, s.classifier_repeats, s.long_repeats
        )

    def raw(self) -> None:
        s = self.sizes
        maker = self.maker("raw")
        self.results["raw"] = {
            "idle_delay_s": raw.idle_delay(self.dovecot, maker, s.idle_samples),
            "limit": raw.raw_limit(self.dovecot, self.relay, maker, s.burst, timeout=120),
        }

    def e2e(self) -> None:
        s = self.sizes
        maker = self.maker("e2e")
        out: dict[str, Any] = {"db": "sqlite", "processes": 1}
        self.results["e2e"] = out
        url = f"sqlite:///{self.root / 'e2e.db'}"
        with e2e.serving(self.dovecot, self.relay, maker, url, self.root) as serve:
            if self.args.profile:
                self.args.profile.mkdir(parents=True, exist_ok=True)
                prof = self.args.profile / "serve-burst.txt"
                with recording(serve.pids()[0], prof):
                    out["burst"] = e2e.load(
                        self.dovecot, self.relay, maker, s.burst, None, 180, "e2e: burst", serve
                    )
                out["profile"] = {"file": str(prof)} | {
                    thread: top(prof, thread) for thread in ("privbot-imap", "privbot-outbox")
                }
            else:
                out["burst"] = e2e.load(
                    self.dovecot, self.relay, maker, s.burst, None, 180, "e2e: burst", serve
                )
            out["levels"] = []
            for rate in s.levels:
                count = max(5, int(rate * s.level_seconds))
                out["levels"].append(
                    e2e.load(self.dovecot, self.relay, maker, count, rate, 120, f"e2e: {rate:g}/s")
                )
            rss = serve.peak_rss_mb()
            out["peak_rss_mb"] = max(rss) if rss else None
            out["log_errors"] = serve.errors()
        self.results.setdefault("memory", {})["e2e_peak_rss_mb"] = out["peak_rss_mb"]

    def ratio(self) -> None:
        """More raw/e2e burst pairs, back to back: on a shared machine one pair can mislead
        (the raw limit alone varied from 240 to 450 msg/s between runs here)."""
        s = self.sizes
        pairs: list[dict[str, Any]] = []
        first_raw = _pair_value(self.results, "raw", "limit")
        first_e2e = _pair_value(self.results, "e2e", "burst")
        if first_raw and first_e2e:
            pairs.append({"raw_msg_s": first_raw, "e2e_msg_s": first_e2e})
        self.results["ratio"] = {"pairs": pairs}
        for index in range(s.ratio_pairs):
            maker = self.maker(f"pair{index}")
            limit = raw.raw_limit(self.dovecot, self.relay, maker, s.burst, timeout=120)
            url = f"sqlite:///{self.root / f'pair{index}.db'}"
            with e2e.serving(self.dovecot, self.relay, maker, url, self.root) as serve:
                burst = e2e.load(self.dovecot, self.relay, maker, s.burst, None, 180,
                                 f"ratio: pair {index + 2}", serve)  # fmt: skip
            pairs.append({"raw_msg_s": limit["throughput_msg_s"],
                          "e2e_msg_s": burst["throughput_msg_s"]})  # fmt: skip
        for pair in pairs:
            pair["ratio"] = round(pair["e2e_msg_s"] / pair["raw_msg_s"], 3)

    def scale(self) -> None:
        """1 to 3 processes on one PostgreSQL database and mailbox, free and pinned to a CPU
        each; with --before, that checkout's and this one's take turns."""
        s = self.sizes
        runs: list[dict[str, Any]] = []
        self.results["scale"] = runs
        codes: list[tuple[str, Path | None]] = [("after", None)]
        if self.args.before is not None:
            codes.insert(0, ("before", self.args.before))
        for pin in s.scale_pinned:
            for count in s.scale_processes:
                for name, checkout in codes if count % 2 else codes[::-1]:
                    tag = f"scale{count}{'p' if pin else ''}{name}"
                    maker = self.maker(tag)
                    with (
                        PostgresDatabase("privbot_bench_") as pg,
                        e2e.serving(self.dovecot, self.relay, maker, pg.url, self.root, count,
                                    growth.code_env(checkout), pin) as sv,
                    ):  # fmt: skip
                        label = f"scale: {count} x serve{' pinned' if pin else ''} ({name})"
                        result = e2e.load(self.dovecot, self.relay, maker, s.scale_burst, None,
                                          180, label, sv)  # fmt: skip
                        rss = sv.peak_rss_mb()
                        result.update(processes=count, peak_rss_mb=max(rss) if rss else None,
                                      log_errors=sv.errors(), pinned=pin, code=name)  # fmt: skip
                    runs.append(result)
        peaks = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb")]
        if peaks:
            self.results.setdefault("memory", {})["scale_peak_rss_mb"] = max(peaks)

    def queue(self) -> None:
        s = self.sizes
        out: dict[str, Any] = {"tickets": s.tickets, "messages": s.messages}
        self.results["queue"] = out
        path = self.root / "large.db"
        load_s = queue.load_sqlite(path, s.tickets, s.messages)
        self.large_sqlite = path
        out["sqlite"] = self._time_queue(f"sqlite:///{path}", load_s)
        pg = self._large_postgres()
        out["postgresql"] = self._time_queue(pg.url, self.large_pg_load_s or 0.0)
        web = "web_queue" in out["sqlite"]
        out["how"] = (
            "privbot.web's /queue and /tickets/ID over HTTP (uvicorn, httpx), "
            "plus privbot.cli.listings.tickets and privbot.staff.views.ticket_detail"
            if web
            else "privbot.cli.listings.tickets, staff.views.ticket_detail (privbot.web absent)"
        )

    def _time_queue(self, url: str, load_s: float) -> dict[str, Any]:
        s = self.sizes
        figures: dict[str, Any] = {"load_s": round(load_s, 1)}
        figures.update(queue.time_queries(url, s.tickets, s.query_repeats))
        try:
            figures.update(queue.time_web(url, s.tickets, s.query_repeats) or {})
        except Exception as exc:  # the web app is young: its failure must not hide the rest
            figures["web_error"] = f"{type(exc).__name__}: {exc}"[:300]
        return figures

    def _large_postgres(self) -> PostgresDatabase:
        if self.large_pg is None:
            s = self.sizes
            pg = PostgresDatabase("privbot_bench_")
            self.large_pg = pg
            self.large_pg_load_s = queue.load_postgres(pg.url, pg.conninfo, s.tickets, s.messages)
        return self.large_pg

    def search(self) -> None:
        """The search box on the queue section's databases (built here if it did not run)."""
        s = self.sizes
        out: dict[str, Any] = {"tickets": s.tickets, "messages": s.messages}
        self.results["search"] = out
        if self.large_sqlite is None or not self.large_sqlite.exists():
            path = self.root / "large.db"
            out["sqlite_load_s"] = round(queue.load_sqlite(path, s.tickets, s.messages), 1)
            self.large_sqlite = path
        out["sqlite"] = queue.time_search(f"sqlite:///{self.large_sqlite}", s.tickets,
                                          s.query_repeats)  # fmt: skip
        pg = self._large_postgres()
        out["postgresql"] = queue.time_search(pg.url, s.tickets, s.query_repeats)
        out["how"] = (
            "privbot.staff.views.queue(QueueFilter(q=...)) directly, and GET /queue?q=... over "
            "HTTP (uvicorn, httpx, a signed-in staff member); a random ticket number per query"
        )

    def growth(self) -> None:
        s = self.sizes
        self.results["growth"] = growth.run(
            self.dovecot, self.relay, self.texts, self.root, s.growth_sizes, s.growth_burst,
            s.growth_rounds, self.args.before,
        )  # fmt: skip

    def memory(self) -> None:
        s = self.sizes
        if self.large_sqlite is None or not self.large_sqlite.exists():
            raise RuntimeError("needs the queue section's large SQLite database")
        maker = self.maker("large")
        url = f"sqlite:///{self.large_sqlite}"
        with e2e.serving(self.dovecot, self.relay, maker, url, self.root) as serve:
            burst = e2e.load(
                self.dovecot, self.relay, maker, s.large_db_burst, None, 120, "memory: large DB"
            )
            rss = serve.peak_rss_mb()
        memory = self.results.setdefault("memory", {})
        memory["large_db_peak_rss_mb"] = max(rss) if rss else None
        memory["large_db_burst"] = burst

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        s = self.sizes
        self.results["meta"] = {
            "quick": self.args.quick,
            "command": " ".join(["python -m bench", *sys.argv[1:]]),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.platform(),
            "sizes": s.__dict__,
        }
        started = time.monotonic()
        self.dovecot.start()
        self.relay.start()
        try:
            self.app = make_app(f"sqlite:///{self.root / 'bench-app.db'}")
            self.texts = answered_texts(self.app)
            self.section("classifier", self.classifier)
            self.section("raw", self.raw)
            self.section("e2e", self.e2e)
            self.section("ratio", self.ratio)
            self.section("scale", self.scale)
            self.section("queue", self.queue)
            self.section("search", self.search)
            self.section("growth", self.growth)
            self.section("memory", self.memory)
        finally:
            if self.large_pg is not None:
                self.large_pg.drop()
            if self.app is not None:
                self.app.close()
            self.relay.stop()
            self.dovecot.stop()
        self.results["meta"]["seconds"] = round(time.monotonic() - started, 1)
        self.results["targets"] = report.targets(self.results)
        return self.results


def _pair_value(results: dict[str, Any], section: str, key: str) -> float | None:
    value = (results.get(section) or {}).get(key) or {}
    rate = value.get("throughput_msg_s") if isinstance(value, dict) else None
    return float(rate) if isinstance(rate, int | float) and rate > 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument(
        "--plot", type=Path, default=None, help="latency PNG (full runs: bench/latency.png)"
    )
    parser.add_argument("--only", type=lambda v: set(v.split(",")), default=None,
                        help=f"comma-separated sections of {','.join(SECTIONS)}")  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy serve during the e2e burst into DIR"
    )
    parser.add_argument(
        "--before", type=Path, default=None, help="growth, scale: also measure that checkout"
    )
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "src" / "privbot").is_dir():
        parser.error(f"--before {args.before}: no src/privbot there")
    if args.only and not args.only <= set(SECTIONS):
        parser.error(f"unknown section(s): {', '.join(sorted(args.only - set(SECTIONS)))}")
    if Dovecot.available() or PostgresDatabase.available():
        print(f"bench: {Dovecot.available() or PostgresDatabase.available()}", file=sys.stderr)
        return 2
    os.chdir(REPO)
    with work_dir() as root:
        results = Bench(args, root).run()
    print()
    print(report.table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    plot_path = args.plot or (None if args.quick else REPO / "bench" / "latency.png")
    if plot_path is not None and report.plot(results, plot_path):
        print(f"\nplot: {plot_path}")
    growth_plot = plot_path.with_name("growth.png") if plot_path else None
    if growth_plot is not None and report.plot_growth(results, growth_plot):
        print(f"plot: {growth_plot}")
    scale_plot = plot_path.with_name("scale.png") if plot_path else None
    if scale_plot is not None and report.plot_scale(results, scale_plot):
        print(f"plot: {scale_plot}")
    return 1 if results["errors"] else 0
