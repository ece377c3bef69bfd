"""`python -m bench --quick` runs and writes its figures; no timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import CORPORA
from testing.servers import Dovecot, PostgresDatabase
from tests.conftest import REPO_ROOT, unavailable


@pytest.mark.timeout(600)
def test_quick_bench_runs_and_writes_json(tmp_path: Path) -> None:
    reason = Dovecot.available() or PostgresDatabase.available()
    if reason:
        unavailable(reason)
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["errors"] == {}
    for key in ("meta", "classifier", "raw", "e2e", "scale", "queue", "search", "growth",
                "memory", "targets"):  # fmt: skip
        assert key in figures, key
    assert {"idle_delay_s", "limit"} <= figures["raw"].keys()
    assert {"burst", "levels", "peak_rss_mb"} <= figures["e2e"].keys()
    assert [s["processes"] for s in figures["scale"]] == [1, 2, 3]
    assert {"sqlite", "postgresql"} <= figures["queue"].keys()
    assert {"e2e_peak_rss_mb", "large_db_peak_rss_mb"} <= figures["memory"].keys()
    assert {"sqlite", "postgresql"} <= figures["search"].keys()
    assert figures["search"]["sqlite"]["core"]["reference JC-n"]["matched"] == 1
    growth = figures["growth"]
    assert {(b["backend"], b["messages_stored"]) for b in growth["bursts"]} == {
        (backend, size) for backend in ("sqlite", "postgresql") for size in growth["sizes"]
    }
    assert all("error" not in b and b["replies"] == growth["burst"] for b in growth["bursts"])
    # The hot path's plans at the largest size: every statement planned, none a whole read.
    for backend in ("sqlite", "postgresql"):
        plans = growth["plans"][backend]
        assert len(plans) > 10 and all(p["plan"] for p in plans)
        assert [p["statement"] for p in plans if p["whole_reads"]] == []
    assert len(figures["targets"]) == 7
    verdicts = {name: t["met"] for name, t in figures["targets"].items()}
    if not CORPORA.is_dir():
        # Without ../shared the corpus figures are skipped, and said to be: not a failure.
        assert verdicts.pop("classifier on corpora") is None
        assert "corpora not found" in figures["classifier"]["note"]
    assert all(met in (True, False) for met in verdicts.values()), verdicts
    assert "targets" in done.stdout
