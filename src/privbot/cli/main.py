"""The `privbot` command. It only parses arguments and calls the core; errors are one line."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from privbot import pipeline
from privbot.app import (
    MODEL_CACHE,
    App,
    LiveClassifier,
    build_app,
    data_folder,
    load_understanding,
    model_cache_dir,
)
from privbot.cli import check, listings, staff
from privbot.cli.demo import run_demo
from privbot.cli.tables import format_table
from privbot.config import ConfigError, Settings, load_settings
from privbot.models import MessageStatus, OutboxStatus
from privbot.ops.logs import configure_logging
from privbot.outbox.queue import RetryError, retry_failed
from privbot.pipeline.examine import examine, foresee
from privbot.pipeline.reply import answer_text
from privbot.replies import RepliesError
from privbot.serve import serve_forever
from privbot.tickets import ref
from privbot.understand.blind import BlindReport, judge, read_batch
from privbot.understand.evaluate import evaluate
from privbot.understand.learned import cross_validate, read_bank

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = load_settings(config_file=args.config)
        configure_logging(args.log_level, settings.log_format)
        return int(args.handler(args, settings))
    except (ConfigError, RepliesError) as exc:
        print(f"privbot: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        print(f"privbot: database error (PRIVBOT_DATABASE_URL): {exc.orig}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privbot",
        description="The privacy support bot on JunoCloud's privacy mailbox.",
        epilog="Settings come from PRIVBOT_* environment variables (see README).",
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env overrides)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    command("serve", _serve, "run the mail channels and the outbox sender until stopped")
    p = command("ingest", _ingest, "put .eml files through the pipeline (replays, imports)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.eml")

    p = command("db", _no_action, "database maintenance")
    dbsub = p.add_subparsers(title="actions", metavar="ACTION")
    u = dbsub.add_parser("upgrade", help="apply schema migrations", description="apply migrations")
    u.set_defaults(handler=_db_upgrade)

    actions: dict[str, Any] = {}
    for noun, lister in (("tickets", _tickets_list), ("outbox", _outbox_list)):
        p = command(noun, _no_action, f"{noun}: list them")
        nsub = p.add_subparsers(title="actions", metavar="ACTION")
        lp = nsub.add_parser("list", help=f"list {noun}", description=f"list {noun}")
        lp.add_argument("--json", action="store_true", help="a JSON array instead of a table")
        lp.add_argument("--limit", type=int, default=1000, help="at most this many (newest)")
        if noun == "outbox":
            lp.add_argument("--status", choices=[str(s) for s in OutboxStatus],
                            help="only this status")  # fmt: skip
        lp.set_defaults(handler=lister)
        actions[noun] = nsub
    rp = actions["outbox"].add_parser(
        "retry",
        help="put a failed reply back in the outbox queue",
        description="Put a failed reply back in the outbox queue, due now, after the cause is "
        "fixed (the relay, an address); the sender of `privbot serve` delivers it.",
    )
    rp.add_argument("id", type=int, help="the reply's id (outbox list --status failed)")
    rp.add_argument("--as", dest="actor", help="who is retrying, for the audit trail")
    rp.set_defaults(handler=_outbox_retry)

    p = command("messages", _no_action, "inbound messages: list them with their status")
    msub = p.add_subparsers(title="actions", metavar="ACTION")
    lp = msub.add_parser("list", help="list messages", description="list inbound messages")
    lp.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    # A status privbot does not have is an error naming the ones it has, not an empty list.
    lp.add_argument("--status", choices=[str(s) for s in MessageStatus], help="only this status")
    lp.add_argument("--limit", type=int, default=1000, help="at most this many (newest)")
    lp.set_defaults(handler=_messages_list)
    rp = msub.add_parser(
        "retry",
        help="put a failed or quarantined message through the pipeline again",
        description="Put failed or quarantined messages through the pipeline again, after the "
        "cause is fixed (a template, a setting). Each is handled from its stored bytes.",
    )
    which = rp.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the message's id (messages list)")
    which.add_argument("--failed", action="store_true", help="every failed message")
    rp.add_argument("--as", dest="actor", help="who is retrying, for the audit trail")
    rp.set_defaults(handler=_messages_retry)

    p = command("classify", _classify, "show what privbot makes of mail files (no action)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.eml")
    p.add_argument("--json", action="store_true", help="one JSON object per line per file")

    p = command("ask", _ask, "print the answer privbot would give to a question, with citations")
    p.add_argument("text", help="the question or request, in any supported language")

    p = command("eval", _eval, "measure the classifier on the labelled corpora")
    p.add_argument("--corpora", type=Path, help="default: ../shared/corpora beside the checkout")
    p.add_argument("--labelled", type=Path, action="append", help="a labelled .tsv (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--blind",
        type=Path,
        action="append",
        help="a blind batch folder (repeatable); default: the newest in tests/data/blind",
    )

    p = command(
        "train", _train, "train the learned layer from intents/examples (and staff corrections)"
    )
    p.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds to report (0: none)"
    )

    p = command("demo", _demo, "run a self-contained demo with its own IMAP and SMTP servers")
    p.add_argument("--no-wait", action="store_true", help="exit after the table (for tests)")

    check.register(sub)  # config check
    staff.register(sub, actions["tickets"])  # staff, token, optouts, web, tickets show/...
    return parser


def _no_action(args: argparse.Namespace, settings: Settings) -> int:
    print("privbot: give an action; see --help", file=sys.stderr)
    return 2


def _app(settings: Settings) -> App:
    return build_app(settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    app = _app(settings)
    if settings.imap is None and settings.listen is None:
        raise ConfigError("PRIVBOT_IMAP_URL or PRIVBOT_LISTEN: set at least one intake channel")
    if settings.smtp is None:
        raise ConfigError("PRIVBOT_SMTP_URL: needed to send replies")
    try:
        serve_forever(app)
    finally:
        app.close()
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    app = _app(settings)
    status = 0
    try:
        for path in args.files:
            try:
                raw = path.read_bytes()
            except OSError as exc:
                print(f"privbot: {path}: {exc.strerror or exc}", file=sys.stderr)
                status = 1
                continue
            outcome = pipeline.receive(app, raw, source="file", source_ref=str(path))
            print(_outcome_line(str(path), outcome))
    finally:
        app.close()
    return status


def _outcome_line(name: str, outcome: Any) -> str:
    parts = [f"{name}: {outcome.status}"]
    if outcome.duplicate:
        parts.append("(already stored)")
    if outcome.ticket:
        parts.append(f"ticket {ref(outcome.ticket)}")
    if outcome.reply:
        parts.append(f"reply #{outcome.reply} queued")
    if outcome.reason:
        parts.append(f"- {outcome.reason}")
    return " ".join(parts)


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    app = build_app(settings, migrate=True)
    app.close()
    print("database is up to date")
    return 0


def _tickets_list(args: argparse.Namespace, settings: Settings) -> int:
    return _listing(args, settings, listings.tickets, ["id", "status", "requester", "subject"])


def _outbox_list(args: argparse.Namespace, settings: Settings) -> int:
    def fetch(app: App, limit: int) -> list[dict[str, Any]]:
        return listings.outbox(app, limit, status=args.status)

    # last_error: why a reply failed, or why it is still waiting.
    columns = ["id", "status", "to", "subject", "attempts", "last_error"]
    return _listing(args, settings, fetch, columns)


def _messages_list(args: argparse.Namespace, settings: Settings) -> int:
    def fetch(app: App, limit: int) -> list[dict[str, Any]]:
        return listings.messages(app, limit, status=args.status)

    return _listing(args, settings, fetch, ["id", "status", "sender", "subject", "reason"])


def _outbox_retry(args: argparse.Namespace, settings: Settings) -> int:
    app = _app(settings)
    actor = (args.actor or settings.staff or "cli").strip().lower()
    try:
        with app.sessions.begin() as session:
            row = retry_failed(session, args.id, actor=actor)
            line = f"reply #{row.id} to {row.to_addr} is back in the outbox queue"
    except RetryError as exc:
        print(f"privbot: outbox retry: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()
    print(line)
    return 0


def _messages_retry(args: argparse.Namespace, settings: Settings) -> int:
    app = _app(settings)
    actor = (args.actor or settings.staff or "cli").strip().lower()
    status = 0
    try:
        ids = pipeline.set_aside(app) if args.failed else [args.id]
        if not ids:
            print("no failed messages")
        for message_id in ids:
            try:
                outcome = pipeline.retry(app, message_id, actor=actor)
            except pipeline.RetryError as exc:
                print(f"privbot: messages retry: {exc}", file=sys.stderr)
                status = 1
                continue
            print(_outcome_line(f"message {message_id}", outcome))
    finally:
        app.close()
    return status


def _listing(
    args: argparse.Namespace,
    settings: Settings,
    fetch: Callable[[App, int], list[dict[str, Any]]],
    columns: list[str],
) -> int:
    app = _app(settings)
    try:
        rows = fetch(app, args.limit)
    finally:
        app.close()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(format_table(rows, columns))
    return 0


def _understanding_app(settings: Settings) -> App:
    """An App for commands that only read mail: no database is touched or created."""
    replies, policy, classifier = load_understanding(settings)
    return App(settings, None, None, replies, policy, LiveClassifier(classifier))  # type: ignore[arg-type]


def _classify(args: argparse.Namespace, settings: Settings) -> int:
    app = _understanding_app(settings)
    status = 0
    for path in args.files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            print(f"privbot: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        seen = examine(app, raw)
        u = seen.understanding
        row = {
            "file": str(path),
            "intents": list(u.intents) if u else [],
            "skip": seen.skip or seen.problem,
            "sections": list(u.sections) if u and not seen.skip else [],
            "language": u.language if u else None,
            "confidence": round(u.confidence, 3) if u else None,
            "low_confidence": u.low_confidence if u else None,
            "opt_out_scopes": list(u.opt_out_scopes) if u else [],
        }
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            what = f"skip ({row['skip']})" if row["skip"] else ", ".join(row["intents"])
            print(f"{path}: {what}")
    return status


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    text = args.text.strip()
    if not text:
        print("privbot: ask: give a question, e.g. privbot ask \"Do you use cookies?\"",
              file=sys.stderr)  # fmt: skip
        return 2
    answer = answer_text(_understanding_app(settings), text)
    understanding, body = answer.understanding, answer.body
    print(f"[{', '.join(understanding.intents)}; language {understanding.language}; "
          f"confidence {understanding.confidence:.2f}]\n")  # fmt: skip
    print(body, end="")
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    app = _understanding_app(settings)
    corpora = args.corpora or data_folder("tests").parent.parent / "shared" / "corpora"
    labelled = args.labelled or [
        p for p in (data_folder("tests") / "data" / "labelled").glob("*.tsv") if p.is_file()
    ]
    if not corpora.is_dir():
        print(f"privbot: eval: no corpora at {corpora} (give --corpora); using labelled data only",
              file=sys.stderr)  # fmt: skip
    for folder in args.blind or newest_blind_batch(data_folder("tests") / "data" / "blind"):
        print(blind_report(app, folder).format(), end="\n\n")
    report = evaluate(
        app.classifier,
        corpora if corpora.is_dir() else None,
        labelled,
        progress=not args.no_progress,
    )
    print(report.format())
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    intents_dir = Path(settings.intents_dir or data_folder("intents"))
    bank = intents_dir / "examples"
    models = model_cache_dir(settings)
    for cached in models.glob(MODEL_CACHE.format(key="*")):
        cached.unlink(missing_ok=True)  # train afresh, whatever was cached
    _, _, classifier = load_understanding(settings)
    if classifier.model is None or classifier.concepts is None:
        print(f"privbot: train: no example bank in {bank} or no {intents_dir}/_concepts.toml",
              file=sys.stderr)  # fmt: skip
        return 1
    examples = read_bank(bank)
    counts = Counter(label for e in examples for label in e.labels)
    print(f"trained on {len(examples)} examples: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))  # fmt: skip
    for cache in models.glob(MODEL_CACHE.format(key="*")):
        print(f"model: {cache} ({cache.stat().st_size / 1e6:.1f} MB)")
    if args.folds > 1:
        rows = classifier.training_rows(classifier.concepts, examples)
        predicted = cross_validate(rows, classifier.model.labels, args.folds)
        right = [set(p) == set(r[2]) for p, r in zip(predicted, rows, strict=True)]
        by_language: dict[str, list[bool]] = {}
        for example, ok in zip(examples, right, strict=True):
            by_language.setdefault(example.language, []).append(ok)
        print(
            f"{args.folds}-fold cross-validation on the bank, exact label sets: "
            f"{sum(right)}/{len(right)} ({sum(right) / len(right):.1%}); "
            + ", ".join(f"{k} {sum(v) / len(v):.0%}" for k, v in sorted(by_language.items()))
        )
        print("(how the bank itself is learned; the blind set in privbot eval is the figure "
              "that predicts real mail)")  # fmt: skip
    return 0


def newest_blind_batch(root: Path) -> list[Path]:
    """The freshest blind batch (batchN with the highest N): the figure to report."""
    batches = [p for p in root.glob("batch*") if p.is_dir() and p.name[5:].isdigit()]
    return [max(batches, key=lambda p: int(p.name[5:]))] if batches else []


def blind_report(app: App, folder: Path) -> BlindReport:
    """What privbot would do with every mail of a blind batch, judged against its labels."""
    intents = app.classifier.intents
    return judge(
        folder.name, read_batch(folder), lambda m: foresee(app, m.raw), intents.names,
        intents.requests,
    )  # fmt: skip


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo(wait=not args.no_wait)


if __name__ == "__main__":
    raise SystemExit(main())
