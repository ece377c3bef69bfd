"""The results as a table, the issue's targets as met/missed, and the latency-against-load plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# The targets.
RATIO_TARGET = 0.5  # end-to-end throughput / raw limit
LATENCY_OVER_IDLE_TARGET = 0.3  # s, delivery-to-reply p95 above Dovecot's IDLE delay
CLASSIFIER_TARGET = 1000.0  # msg/s on one core, over the corpora
QUEUE_P95_TARGET = 0.150  # s
SEARCH_P95_TARGET = 0.150  # s, every kind of search over HTTP, 100,000 tickets
RSS_TARGET = 200.0  # MB
GROWTH_TARGET = 0.9  # throughput at the most stored messages / on the empty database
STEADY_RATE = 10.0  # msg/s: the load at which the latency target is judged


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def ratio_median(r: dict[str, Any]) -> float | None:
    """End-to-end over raw throughput: the median over back-to-back pairs of bursts."""
    ratios = sorted(p["ratio"] for p in _get(r, "ratio", "pairs") or [] if "ratio" in p)
    if not ratios:
        raw = _num(_get(r, "raw", "limit", "throughput_msg_s"))
        e2e = _num(_get(r, "e2e", "burst", "throughput_msg_s"))
        return round(e2e / raw, 3) if raw and e2e is not None else None
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else round((ratios[mid - 1] + ratios[mid]) / 2, 3)


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: the measured value, the bound, met (True/False) or None if not measured."""
    out: dict[str, dict[str, Any]] = {}

    def put(name: str, value: float | None, bound: str, met: bool | None, unit: str) -> None:
        out[name] = {"value": value, "target": bound, "met": met, "unit": unit}

    ratio = ratio_median(r)
    put("throughput ratio e2e/raw (median of pairs)", ratio, f">= {RATIO_TARGET}",
        None if ratio is None else ratio >= RATIO_TARGET, "x")  # fmt: skip

    idle = _num(_get(r, "raw", "idle_delay_s", "p50"))
    steady = next(
        (lv for lv in _get(r, "e2e", "levels") or [] if lv.get("offered_msg_s") == STEADY_RATE),
        None,
    )
    p95 = _num(_get(steady or {}, "latency_s", "p95"))
    over = round(p95 - idle, 4) if p95 is not None and idle is not None else None
    put(f"p95 above IDLE delay at {STEADY_RATE:g} msg/s", over, f"< {LATENCY_OVER_IDLE_TARGET} s",
        None if over is None else over < LATENCY_OVER_IDLE_TARGET, "s")  # fmt: skip

    clf = _num(_get(r, "classifier", "corpora_all", "msg_s"))
    put("classifier on corpora", clf, f">= {CLASSIFIER_TARGET:g} msg/s",
        None if clf is None else clf >= CLASSIFIER_TARGET, "msg/s")  # fmt: skip

    pages = [
        _num(_get(r, "queue", backend, "web_queue", "p95"))
        or _num(_get(r, "queue", backend, "queue_page_50", "p95"))
        for backend in ("sqlite", "postgresql")
    ]
    worst = max((p for p in pages if p is not None), default=None)
    put("queue page p95 (worse backend)", worst, f"< {QUEUE_P95_TARGET * 1000:g} ms",
        None if worst is None else worst < QUEUE_P95_TARGET, "s")  # fmt: skip

    searches = [
        _num(_get(r, "search", backend, "web_all", "p95")) for backend in ("sqlite", "postgresql")
    ]
    worst = max((p for p in searches if p is not None), default=None)
    put("search p95 over HTTP (worse backend)", worst, f"< {SEARCH_P95_TARGET * 1000:g} ms",
        None if worst is None else worst < SEARCH_P95_TARGET, "s")  # fmt: skip

    sizes = _get(r, "growth", "sizes") or []
    largest = [
        row
        for row in _get(r, "growth", "summary") or []
        if sizes and row["messages_stored"] == max(sizes) and row["code"] == "after"
    ]
    worst = min((row["vs_empty"] for row in largest if row["vs_empty"] is not None), default=None)
    put(f"throughput at {max(sizes, default=0):,} stored msgs / empty DB (worse backend)", worst,
        f">= {GROWTH_TARGET}", None if worst is None else worst >= GROWTH_TARGET, "x")  # fmt: skip

    rss = [
        _num(_get(r, "memory", "e2e_peak_rss_mb")),
        _num(_get(r, "memory", "large_db_peak_rss_mb")),
        _num(_get(r, "memory", "scale_peak_rss_mb")),
    ]
    peak = max((x for x in rss if x is not None), default=None)
    put("peak RSS of privbot serve", peak, f"< {RSS_TARGET:g} MB",
        None if peak is None else peak < RSS_TARGET, "MB")  # fmt: skip
    return out


def _lat(stats: dict[str, Any] | None) -> str:
    if not stats or not stats.get("n"):
        return "-"
    return f"p50 {stats['p50']:.3f} / p95 {stats['p95']:.3f} / p99 {stats['p99']:.3f} s"


def _ms(stats: dict[str, Any] | None) -> str:
    if not stats or not stats.get("n"):
        return "-"
    return f"p50 {stats['p50'] * 1000:.1f} / p95 {stats['p95'] * 1000:.1f} ms"


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, what, figure) for every figure measured."""
    out: list[tuple[str, str, str]] = []
    add = out.append
    idle = _get(r, "raw", "idle_delay_s")
    if idle:
        add(("raw", "Dovecot IDLE notification delay", _lat(idle)))
    limit = _get(r, "raw", "limit")
    if limit:
        add(("raw", f"limit: LMTP -> IMAP -> SMTP, {limit['messages']} msgs",
             f"{limit['throughput_msg_s']} msg/s ({limit['replies']} replies)"))  # fmt: skip
        add(("raw", "  stages: LMTP deliver / IMAP fetch+move / SMTP send",
             f"{limit['lmtp_deliver_msg_s']} / {limit['imap_fetch_move_msg_s']} / "
             f"{limit['smtp_send_msg_s']} msg/s"))  # fmt: skip
        add(("raw", "  delivery-to-reply", _lat(limit["latency_s"])))
    burst = _get(r, "e2e", "burst")
    if burst:
        add(("e2e", f"privbot serve (SQLite), burst of {burst['messages']}",
             f"{burst['throughput_msg_s']} msg/s ({burst['replies']} replies)"))  # fmt: skip
        add(("e2e", "  delivery-to-reply in the burst", _lat(burst["latency_s"])))
        if burst.get("serve_cpu_ms_per_msg") is not None:
            add(("e2e", "  CPU of privbot serve per message (all threads)",
                 f"{burst['serve_cpu_ms_per_msg']} ms"))  # fmt: skip
    for level in _get(r, "e2e", "levels") or []:
        add(("e2e", f"  at {level['offered_msg_s']:g} msg/s offered ({level['messages']} msgs)",
             _lat(level["latency_s"]) + f" ({level['replies']} replies)"))  # fmt: skip
    pairs = _get(r, "ratio", "pairs") or []
    if len(pairs) > 1:
        add(("ratio", f"e2e/raw in {len(pairs)} back-to-back pairs of bursts",
             ", ".join(f"{p['e2e_msg_s']:g}/{p['raw_msg_s']:g} = {p['ratio']:.2f}" for p in pairs)
             + f"; median {ratio_median(r)}"))  # fmt: skip
    for s in _get(r, "scale") or []:
        how = (", pinned" if s.get("pinned") else "") + (f", {s['code']}" if s.get("code") else "")
        add(("scale", f"{s['processes']} x serve on PostgreSQL{how}, burst of {s['messages']}",
             f"{s['throughput_msg_s']} msg/s, {_lat(s['latency_s'])}, "
             f"RSS {s['peak_rss_mb']} MB, CPU {s.get('serve_cpu_ms_per_msg')} ms/msg "
             f"({s['replies']} replies)"))  # fmt: skip
    clf = r.get("classifier") or {}
    for name in ("gdpr letters", "privacyqa", "spamassassin", "corpora_all"):
        if name in clf:
            c = clf[name]
            add(("classifier", f"classify: {name} ({c['messages']} runs)",
                 f"{c['msg_s']} msg/s, p50 {c['p50_ms']} / p99 {c['p99_ms']} ms"))  # fmt: skip
    for name, what in (
        ("examine_raw_mail", "examine (parse+screen+classify): raw mail corpora"),
        ("long_examine", "examine: 50 KB newsletter replied to"),
        ("long_classify_whole", "classify: the same 50 KB, quote not removed"),
    ):
        if name in clf:
            c = clf[name]
            add(("classifier", f"{what} ({c['messages']} runs)",
                 f"{c['msg_s']} msg/s, p50 {c['p50_ms']} / p99 {c['p99_ms']} ms"))  # fmt: skip
    if clf.get("note"):
        add(("classifier", "note", clf["note"]))
    queue = r.get("queue") or {}
    for backend in ("sqlite", "postgresql"):
        q = queue.get(backend)
        if not q:
            continue
        size = f"{queue['tickets']:,} tickets, {queue['messages']:,} msgs"
        add(("queue", f"{backend}: bulk load ({size})", f"{q['load_s']:.1f} s"))
        add(("queue", f"{backend}: listings.tickets, 50 tickets", _ms(q["queue_page_50"])))
        add(("queue", f"{backend}: listings.tickets, 1000 (CLI default)", _ms(q["queue_1000"])))
        add(("queue", f"{backend}: ticket page queries", _ms(q["ticket_page"])))
        for key, what in (
            ("web_queue", "GET /queue (first page)"),
            ("web_queue_search", "GET /queue?q=... (search)"),
            ("web_ticket", "GET /tickets/ID"),
            ("web_static", "GET /static/style.css (HTTP floor)"),
        ):
            if key in q:
                add(("queue", f"{backend}: {what}", _ms(q[key])))
        if "web_error" in q:
            add(("queue", f"{backend}: web pages", f"not timed: {q['web_error']}"))
    if queue.get("how"):
        add(("queue", "timed through", queue["how"]))
    search = r.get("search") or {}
    for backend in ("sqlite", "postgresql"):
        q = search.get(backend)
        if not q:
            continue
        for name, stats in (q.get("web") or {}).items():
            core = (q.get("core") or {}).get(name) or {}
            add(("search", f"{backend}: {name} ({core.get('matched', '?')} found)",
                 f"HTTP {_ms(stats)}; core {_ms(core)}"))  # fmt: skip
        if q.get("web_all"):
            add(("search", f"{backend}: every search above, over HTTP", _ms(q["web_all"])))
    if search.get("how"):
        add(("search", "timed through", search["how"]))
    grow = r.get("growth") or {}
    for load in grow.get("loads") or []:
        if load["messages"]:
            add(("growth", f"{load['backend']}: bulk load of {load['messages']:,} msgs",
                 f"{load['load_s']} s"))  # fmt: skip
    for row in grow.get("summary") or []:
        add(("growth", f"{row['backend']}, {row['code']}: burst of {grow['burst']} on "
             f"{row['messages_stored']:,} stored msgs",
             f"{row['throughput_msg_s']} msg/s (runs {', '.join(f'{x:g}' for x in row['runs'])}), "
             f"CPU {row['cpu_ms_per_msg']} ms/msg, {row['vs_empty']}x empty"))  # fmt: skip
    for backend, plans in (grow.get("plans") or {}).items():
        scans = [p["statement"][:90] for p in plans if p["whole_reads"]]
        add(("growth", f"{backend}: hot-path statements at {max(grow['sizes']):,} msgs",
             f"{len(plans)} planned, {len(scans)} read a growing table whole"
             + (f": {'; '.join(scans)}" if scans else "")))  # fmt: skip
    memory = r.get("memory") or {}
    if "e2e_peak_rss_mb" in memory:
        add(("memory", "peak RSS, serve during the e2e run", f"{memory['e2e_peak_rss_mb']} MB"))
    if "large_db_peak_rss_mb" in memory:
        b = memory.get("large_db_burst") or {}
        add(("memory", f"peak RSS, serve on the large SQLite DB ({b.get('messages')} msgs)",
             f"{memory['large_db_peak_rss_mb']} MB; {b.get('throughput_msg_s')} msg/s, "
             f"{_lat(b.get('latency_s'))}"))  # fmt: skip
    for section, error in (r.get("errors") or {}).items():
        add((section, "ERROR", error[:200]))
    return out


def _fmt_value(t: dict[str, Any]) -> str:
    value = t["value"]
    if value is None:
        return "not measured"
    if t["unit"] == "s":
        return f"{value * 1000:.0f} ms"
    if t["unit"] == "x":
        return f"{value:.2f}x"
    return f"{value:g} {t['unit']}"


def table(r: dict[str, Any], markdown: bool = False) -> str:
    lines: list[str] = []
    body = rows(r)
    checks = r.get("targets") or targets(r)
    if markdown:
        lines += ["| section | measure | figure |", "|---|---|---|"]
        lines += [f"| {s} | {w.strip()} | {v} |" for s, w, v in body]
        lines += ["", "| target | measured | bound | verdict |", "|---|---|---|---|"]
        for name, t in checks.items():
            verdict = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
            lines.append(f"| {name} | {_fmt_value(t)} | {t['target']} | {verdict} |")
        return "\n".join(lines)
    width = max((len(w) for _, w, _ in body), default=40)
    for section, what, value in body:
        lines.append(f"{section:<11} {what:<{width}}  {value}")
    lines.append("")
    lines.append("targets")
    for name, t in checks.items():
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"  {name:<38} {_fmt_value(t):>14}  (target {t['target']})  {verdict}")
    return "\n".join(lines)


def _pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only (imported late: only full runs plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot(r: dict[str, Any], path: Path) -> bool:
    """Delivery-to-reply latency against offered load; False when there is nothing to plot."""
    levels = [lv for lv in _get(r, "e2e", "levels") or [] if _get(lv, "latency_s", "n")]
    if not levels:
        return False
    plt = _pyplot()
    rates = [lv["offered_msg_s"] for lv in levels]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        ax.plot(rates, [lv["latency_s"][key] for lv in levels], style, label=f"privbot {key}")
    idle = _num(_get(r, "raw", "idle_delay_s", "p50"))
    if idle is not None:
        ax.axhline(idle, color="grey", linestyle=":", label=f"Dovecot IDLE delay ({idle:.2f} s)")
        ax.axhline(idle + LATENCY_OVER_IDLE_TARGET, color="red", linestyle="--",
                   label="target: IDLE delay + 0.3 s (p95)")  # fmt: skip
    raw = _num(_get(r, "raw", "limit", "throughput_msg_s"))
    burst = _num(_get(r, "e2e", "burst", "throughput_msg_s"))
    if burst:
        ax.axvline(burst, color="black", linestyle="-.", alpha=0.5,
                   label=f"privbot burst throughput ({burst:g} msg/s)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("offered load (LMTP deliveries per second)")
    ax.set_ylabel("delivery to reply captured (s)")
    title = "privbot serve (SQLite, one process): latency against load"
    if raw:
        title += f"\nraw limit in the same run: {raw:g} msg/s"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(plt, fig, path)
    return True


def plot_growth(r: dict[str, Any], path: Path) -> bool:
    """Throughput and CPU per message against stored messages, per backend and code."""
    rows = _get(r, "growth", "summary") or []
    if not rows:
        return False
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.4), dpi=110, sharex=True)
    lines = sorted({(row["backend"], row["code"]) for row in rows})
    for backend, code in lines:
        mine = sorted((x for x in rows if (x["backend"], x["code"]) == (backend, code)),
                      key=lambda x: x["messages_stored"])  # fmt: skip
        sizes = [max(x["messages_stored"], 1_000) for x in mine]  # the empty DB at 1,000: log
        style = ("o" if backend == "sqlite" else "s") + ("--" if code == "before" else "-")
        label = f"{backend}, {code}"
        top.plot(sizes, [x["throughput_msg_s"] for x in mine], style, label=label)
        bottom.plot(sizes, [x["cpu_ms_per_msg"] for x in mine], style, label=label)
    top.set_ylabel("burst throughput (msg/s)")
    bottom.set_ylabel("serve CPU per message (ms)")
    bottom.set_xlabel("messages already stored (empty database drawn at 1,000)")
    bottom.set_xscale("log")
    burst = _get(r, "growth", "burst")
    top.set_title(f"privbot serve: a burst of {burst} as the database grows (median of rounds)",
                  fontsize=10)  # fmt: skip
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(bottom=0)
    top.legend(fontsize=8)
    _save(plt, fig, path)
    return True


def plot_scale(r: dict[str, Any], path: Path) -> bool:
    """Throughput and CPU per message against serve processes, per code, free and pinned."""
    runs = [x for x in _get(r, "scale") or [] if x.get("throughput_msg_s")]
    if not runs:
        return False
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.4), dpi=110, sharex=True)
    for code, pinned in sorted({(x.get("code", "after"), bool(x.get("pinned"))) for x in runs}):
        mine = sorted((x for x in runs if (x.get("code", "after"), bool(x.get("pinned")))
                       == (code, pinned)), key=lambda x: x["processes"])  # fmt: skip
        style = ("s" if pinned else "o") + ("--" if code == "before" else "-")
        label = f"{code}{', one CPU each' if pinned else ''}"
        procs = [x["processes"] for x in mine]
        top.plot(procs, [x["throughput_msg_s"] for x in mine], style, label=label)
        bottom.plot(procs, [x["serve_cpu_ms_per_msg"] for x in mine], style, label=label)
    top.set_ylabel("burst throughput (msg/s)")
    bottom.set_ylabel("serve CPU per message (ms, all processes)")
    bottom.set_xlabel("privbot serve processes on one PostgreSQL database and mailbox")
    bottom.set_xticks(sorted({x["processes"] for x in runs}))
    top.set_title(f"privbot serve: 1 to {max(x['processes'] for x in runs)} processes "
                  f"({runs[0]['messages']} messages a burst)", fontsize=10)  # fmt: skip
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    top.legend(fontsize=8)
    _save(plt, fig, path)
    return True
