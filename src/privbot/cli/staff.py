"""The staff commands of `privbot`: accounts, API tokens, the queue from a terminal, opt-outs,
and the web app alone. Registered by `cli/main.py`; each only parses and calls the core."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from privbot import erasure, optouts, retention
from privbot.app import App, build_app
from privbot.cli.tables import format_table
from privbot.config import ConfigError, Settings
from privbot.staff import actions, auth, daily, evidence, views
from privbot.tickets import DEFAULT_STATUSES, STATUSES, parse_ref, ref
from privbot.web.server import WebServer


def register(sub: Any, tickets: Any) -> None:
    """Add the commands to the top-level subparsers and the `tickets` actions."""

    def command(parent: Any, name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    staff = command(sub, "staff", _no_action, "staff accounts for the web queue")
    ssub = staff.add_subparsers(title="actions", metavar="ACTION")
    add_help = "add a staff account (password from PRIVBOT_STAFF_PASSWORD, else asked)"
    p = command(ssub, "add", _staff_add, add_help)
    p.add_argument("email")
    command(ssub, "list", _staff_list, "list staff accounts")
    p = command(ssub, "disable", _staff_disable, "disable an account and sign it out")
    p.add_argument("email")
    p = command(ssub, "digest", _staff_digest,
                "the daily staff mail (due and overdue tickets; new ones in digest mode), "
                "once a day: from PRIVBOT_STAFF_DAILY_HOUR, or at once with --now")  # fmt: skip
    p.add_argument("--now", action="store_true", help="do not wait for the hour")

    token = command(sub, "token", _no_action, "API tokens for machines (the marketing system)")
    tsub = token.add_subparsers(title="actions", metavar="ACTION")
    p = command(tsub, "create", _token_create, "create a token, printed once on the last line")
    p.add_argument("name", help="who uses it, e.g. marketing")
    p.add_argument(
        "--scope", action="append", choices=["read", "write"], dest="scopes",
        help="what it may do with the suppression list (repeat for both; default: read)",
    )  # fmt: skip
    command(tsub, "list", _token_list, "list tokens: name, scopes, last use, revoked")
    p = command(tsub, "revoke", _token_revoke, "revoke a token: refused from its next request")
    p.add_argument("name")

    by = "staff address recorded as the actor (default: PRIVBOT_STAFF)"
    p = command(tickets, "show", _tickets_show, "show a ticket: thread, why, audit trail")
    p.add_argument("id", type=_ticket_id)
    p.add_argument("--json", action="store_true", help="the ticket as JSON")
    p = command(tickets, "assign", _tickets_assign, "assign a ticket to a staff member")
    p.add_argument("id", type=_ticket_id)
    p.add_argument("assignee", help="a staff address, or 'none'")
    p.add_argument("--as", dest="actor", help=by)
    p = command(tickets, "status", _tickets_status, "set a ticket's status")
    p.add_argument("id", type=_ticket_id)
    p.add_argument("status", help="; ".join(
        [f"{kind}: {', '.join(s)}" for kind, s in STATUSES.items()]
        + [f"others: {', '.join(DEFAULT_STATUSES)}"]
    ))  # fmt: skip
    p.add_argument("--as", dest="actor", help=by)
    p = command(tickets, "language", _tickets_language,
                "set the language of every later mail on a ticket (e.g. de)")  # fmt: skip
    p.add_argument("id", type=_ticket_id)
    p.add_argument("language", help="a language privbot has replies in (replies/<code>/)")
    p.add_argument("--as", dest="actor", help=by)
    p = command(tickets, "reply", _tickets_reply, "queue a reply to the requester")
    p.add_argument("id", type=_ticket_id)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--template", help="a template in replies/staff/ (without .txt.j2)")
    group.add_argument("--body-file", type=Path, help="the reply text from a file ('-': stdin)")
    p.add_argument("--preview", action="store_true", help="print the reply, do not queue it")
    p.add_argument("--as", dest="actor", help=by)
    p = command(tickets, "note", _tickets_note, "add an internal note")
    p.add_argument("id", type=_ticket_id)
    p.add_argument("text")
    p.add_argument("--as", dest="actor", help=by)
    saved = "save an attachment of a ticket's mail to a file (recorded in the audit trail)"
    p = command(tickets, "attachment", _tickets_attachment, saved)
    p.add_argument("id", type=_ticket_id)
    p.add_argument("message", type=int, metavar="MESSAGE_ID", help="the message (tickets show)")
    p.add_argument("index", type=int, metavar="INDEX", help="the attachment's number, from 0")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE",
        help="a new file, readable by you only (an existing one is not overwritten); '-': stdout",
    )  # fmt: skip
    p.add_argument("--as", dest="actor", help=by)
    checked = "record that you checked the ticket's identity evidence (its attachments)"
    p = command(tickets, "evidence-checked", _tickets_evidence_checked, checked)
    p.add_argument("id", type=_ticket_id)
    p.add_argument("--as", dest="actor", help=by)

    optouts = command(sub, "optouts", _no_action, "the suppression list")
    osub = optouts.add_subparsers(title="actions", metavar="ACTION")
    p = command(osub, "export", _optouts_export, "write the suppression list as CSV")
    p.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    p.add_argument("--withdrawn", action="store_true", help="include withdrawn opt-outs")

    keep = command(sub, "retention", _no_action, "the retention policy (PRIVBOT_RETAIN_*)")
    ksub = keep.add_subparsers(title="actions", metavar="ACTION")
    command(ksub, "run", _retention_run, "redact and delete what is kept past its time, now")
    on_help = "a ticket (JC-12: its requester) or a person's e-mail address"
    hold_help = "legal hold: nothing of a person's is erased or redacted until it is released"
    holds = (("hold", _retention_hold, hold_help),
             ("release", _retention_release, "release a legal hold"))  # fmt: skip
    for name, handler, what in holds:
        p = command(ksub, name, handler, what)
        p.add_argument("on", metavar="TICKET|ADDRESS", help=on_help)
        p.add_argument("--reason", required=True, help="why, for the audit trail")
        p.add_argument("--as", dest="actor", help=by)
    p = command(ksub, "holds", _retention_holds, "list the legal holds that are on")
    p.add_argument("--all", action="store_true", help="released holds too")
    p.add_argument("--json", action="store_true", help="a JSON array instead of a table")

    command(sub, "web", _web, "run the web app (staff queue, chat) alone, on PRIVBOT_WEB")


def _ticket_id(value: str) -> int:
    ticket_id = parse_ref(value)
    if ticket_id is None:
        raise argparse.ArgumentTypeError(f"not a ticket id: {value!r} (e.g. 12 or {ref(12)})")
    return ticket_id


def _no_action(args: argparse.Namespace, settings: Settings) -> int:
    print("privbot: give an action; see --help", file=sys.stderr)
    return 2


def _fail(message: str) -> int:
    print(f"privbot: {message}", file=sys.stderr)
    return 1


def _with_app(settings: Settings) -> App:
    return build_app(settings)


# -- staff and tokens -------------------------------------------------------------------------


def _auth_action(settings: Settings, what: str, work: Callable[[Session], str]) -> int:
    """Run `work` in one transaction and print what it says; an `AuthError` fails `what`."""
    app = _with_app(settings)
    try:
        with app.sessions.begin() as session:
            message = work(session)
    except auth.AuthError as exc:
        return _fail(f"{what}: {exc}")
    finally:
        app.close()
    print(message)
    return 0


def _staff_add(args: argparse.Namespace, settings: Settings) -> int:
    password = os.environ.get("PRIVBOT_STAFF_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            return _fail("staff add: set PRIVBOT_STAFF_PASSWORD or run in a terminal")
        password = getpass.getpass(f"Password for {args.email}: ")
        if getpass.getpass("Again: ") != password:
            return _fail("staff add: the passwords differ")

    secret: str = password

    def add(session: Session) -> str:
        staff = auth.add_staff(session, args.email, secret)
        return f"staff account {staff.email} is ready"

    return _auth_action(settings, "staff add", add)


def _staff_list(args: argparse.Namespace, settings: Settings) -> int:
    app = _with_app(settings)
    try:
        with app.sessions() as session:
            rows = [
                {
                    "email": s.email,
                    "active": "yes" if s.active else "no",
                    "created": s.created_at.strftime("%Y-%m-%d"),
                }
                for s in auth.list_staff(session)
            ]
    finally:
        app.close()
    print(format_table(rows, ["email", "active", "created"]))
    return 0


def _staff_disable(args: argparse.Namespace, settings: Settings) -> int:
    def disable(session: Session) -> str:
        auth.disable_staff(session, args.email)
        return f"staff account {args.email.strip().lower()} is disabled and signed out"

    return _auth_action(settings, "staff disable", disable)


def _staff_digest(args: argparse.Namespace, settings: Settings) -> int:
    app = _with_app(settings)
    try:
        done = daily.run(app, before_hour=args.now)
    finally:
        app.close()
    print(done.describe())
    return 1 if done.outcome == daily.OFF else 0


def _token_create(args: argparse.Namespace, settings: Settings) -> int:
    scopes = tuple(f"suppressions:{s}" for s in args.scopes or ["read"])

    def create(session: Session) -> str:
        token = auth.create_token(session, args.name, scopes=scopes)
        return (
            f"API token {args.name.strip()!r} ({' '.join(dict.fromkeys(scopes))}) created. "
            f"It is shown only now; send it as\nAuthorization: Bearer TOKEN\n{token}"
        )

    return _auth_action(settings, "token create", create)


def _token_list(args: argparse.Namespace, settings: Settings) -> int:
    def day(moment: Any) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else ""

    app = _with_app(settings)
    try:
        with app.sessions() as session:
            rows = [
                {"name": t.name, "scopes": t.scopes, "created": day(t.created_at),
                 "last used": day(t.last_used_at), "revoked": day(t.revoked_at)}
                for t in auth.list_tokens(session)
            ]  # fmt: skip
    finally:
        app.close()
    print(format_table(rows, ["name", "scopes", "created", "last used", "revoked"]))
    return 0


def _token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    def revoke(session: Session) -> str:
        auth.revoke_token(session, args.name)
        return f"API token {args.name.strip()!r} is revoked: it is refused from now on"

    return _auth_action(settings, "token revoke", revoke)


# -- tickets --------------------------------------------------------------------------------


def _actor(args: argparse.Namespace, settings: Settings, app: App) -> str:
    actor = (args.actor or settings.staff or "").strip().lower()
    if not actor:
        raise actions.ReviewError("say who you are: --as EMAIL or PRIVBOT_STAFF=EMAIL")
    with app.sessions() as session:
        if auth.find_active(session, actor) is None:
            raise actions.ReviewError(f"no active staff account {actor} (privbot staff add)")
    return actor


def _review(args: argparse.Namespace, settings: Settings, action: Any) -> int:
    """Run one review action with its errors as one line."""
    app = _with_app(settings)
    try:
        message = action(app)
    except actions.ReviewError as exc:
        return _fail(f"tickets {args.action_name}: {exc}")
    finally:
        app.close()
    if message:
        print(message)
    return 0


def _tickets_show(args: argparse.Namespace, settings: Settings) -> int:
    app = _with_app(settings)
    try:
        detail = views.ticket_detail(app, args.id)
    finally:
        app.close()
    if detail is None:
        return _fail(f"tickets show: no ticket {ref(args.id)}")
    if args.json:
        print(json.dumps(detail, indent=2, ensure_ascii=False))
        return 0
    print(_format_ticket(detail))
    return 0


def _format_ticket(t: dict[str, Any]) -> str:
    days = t["days_left"]
    due = "closed" if t["closed_at"] else (
        f"overdue by {-days} days" if days is not None and days < 0 else f"{days} days left"
    )  # fmt: skip
    lines = [
        f"{t['ref']}  {t['subject']}",
        f"type {t['type']} · status {t['status']} · {due} (due {(t['due_at'] or '')[:10]})",
        f"requester {t['requester']} · assignee {t['assignee'] or 'nobody'} · "
        f"language {t['language'] or '?'}",
    ]
    lines += _verification_lines(t["verification"], t["requester"])
    for w in t["why"]:
        lines.append(
            f"why: {', '.join(w.get('intents', []))} (confidence {w.get('confidence')})"
            + (f"; held back: {'; '.join(w['held_back'])}" if w.get("held_back") else "")
        )
    for m in t["thread"]:
        lines.append("")
        if m["direction"] == "in":
            lines.append(f"--- from {m['from']} at {m['at']} [{m['status']}]")
        elif m["direction"] == "note":
            lines.append(f"--- internal note by {m['by']} at {m['at']}")
        else:
            lines.append(f"--- {m['kind']} reply to {m['to']} at {m['at']} [{m['status']}]")
        lines.append(m["text"].rstrip())
        for a in m.get("attachments") or []:
            what = "removed after the evidence was checked" if a["removed"] else (
                f"{a['content_type']}, {a['size_text']}"
            )  # fmt: skip
            lines.append(f"[attachment {a['index']} of message {m['id']}: {a['name']} ({what})]")
    lines.append("")
    lines.append("audit trail:")
    for e in t["events"]:
        lines.append(f"  {e['at'][:16]}  {e['actor']}: {e['text']}")
    return "\n".join(lines)


def _verification_lines(v: dict[str, Any], requester: str) -> list[str]:
    """What `tickets show` says about the sender's identity (the web page says the same)."""
    if v["verified"]:
        return []
    how = "the domain FAILED DMARC/DKIM/SPF" if v["failed"] else "nothing proves it"
    lines = [
        f"SENDER NOT VERIFIED: {how}; the mail may not come from {requester}",
        f"  verdict: {v['verdict']}",
        f"  envelope sender: {_envelope(v['envelope_from'])} (via {v['source']})",
    ]
    if v["identity_unproven"]:
        lines.append(f"  IDENTITY UNPROVEN: check that the requester is {requester} before acting")
    return lines


def _envelope(sender: str | None) -> str:
    return "(none recorded)" if sender is None else f"<{sender}>"


def _tickets_assign(args: argparse.Namespace, settings: Settings) -> int:
    args.action_name = "assign"

    def run(app: App) -> str:
        who = None if args.assignee.lower() == "none" else args.assignee
        actions.assign(app, args.id, who, actor=_actor(args, settings, app))
        return f"{ref(args.id)} assigned to {who or 'nobody'}"

    return _review(args, settings, run)


def _tickets_status(args: argparse.Namespace, settings: Settings) -> int:
    args.action_name = "status"

    def run(app: App) -> str:
        ticket = actions.set_status(app, args.id, args.status, actor=_actor(args, settings, app))
        return f"{ref(args.id)} is {ticket.status}"

    return _review(args, settings, run)


def _tickets_language(args: argparse.Namespace, settings: Settings) -> int:
    args.action_name = "language"

    def run(app: App) -> str:
        actor = _actor(args, settings, app)
        ticket = actions.set_language(app, args.id, args.language, actor=actor)
        return f"{ref(args.id)} is written to in {ticket.language}"

    return _review(args, settings, run)


def _tickets_note(args: argparse.Namespace, settings: Settings) -> int:
    args.action_name = "note"

    def run(app: App) -> str:
        actions.add_note(app, args.id, args.text, actor=_actor(args, settings, app))
        return f"note added to {ref(args.id)}"

    return _review(args, settings, run)


def _tickets_reply(args: argparse.Namespace, settings: Settings) -> int:
    args.action_name = "reply"

    def run(app: App) -> str:
        actor = _actor(args, settings, app)
        if args.template:
            body = actions.render_template(app, args.id, args.template, actor=actor)
        else:
            try:
                body = (sys.stdin.read() if str(args.body_file) == "-"
                        else args.body_file.read_text(encoding="utf-8"))  # fmt: skip
            except OSError as exc:
                raise actions.ReviewError(f"{args.body_file}: {exc.strerror or exc}") from None
        draft = actions.draft_reply(app, args.id, body)
        if args.preview:
            return f"To: {draft.to}\nSubject: {draft.subject}\n\n{draft.body}"
        row = actions.send_reply(app, args.id, body, actor=actor)
        return f"reply #{row} to {draft.to} queued in the outbox"

    return _review(args, settings, run)


def _tickets_attachment(args: argparse.Namespace, settings: Settings) -> int:
    args.action_name = "attachment"

    def run(app: App) -> str:
        actor = _actor(args, settings, app)
        # Where it goes first: a file that cannot be made is no reason to record an opening.
        out = None if args.output == "-" else _new_private_file(args.output)
        try:
            found = evidence.open_attachment(
                app, args.id, args.message, args.index, actor=actor, via="cli"
            )
        except BaseException:
            if out is not None:
                out.close()
                Path(args.output).unlink(missing_ok=True)
            raise
        if out is None:
            sys.stdout.buffer.write(found.data)
            sys.stdout.flush()
            return ""
        with out:
            out.write(found.data)
        return f"{found.filename} ({len(found.data)} bytes) written to {args.output}"

    return _review(args, settings, run)


def _new_private_file(path: str) -> Any:
    """A new file only its owner can read (passport copies); never one that exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise actions.ReviewError(f"{path}: {exc.strerror or exc}") from None
    return os.fdopen(fd, "wb")


def _tickets_evidence_checked(args: argparse.Namespace, settings: Settings) -> int:
    args.action_name = "evidence-checked"

    def run(app: App) -> str:
        count = evidence.mark_checked(app, args.id, actor=_actor(args, settings, app))
        return (
            f"{ref(args.id)}: evidence checked ({count} attachment(s)); the retention run "
            "removes them from the stored mail"
        )

    return _review(args, settings, run)


# -- opt-outs and the web app ---------------------------------------------------------------


def _optouts_export(args: argparse.Namespace, settings: Settings) -> int:
    app = _with_app(settings)
    try:
        rows = optouts.register(app.sessions, include_withdrawn=args.withdrawn, limit=None)
    finally:
        app.close()
    text = optouts.as_csv(rows)
    if args.output:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            return _fail(f"optouts export: {args.output}: {exc.strerror or exc}")
        print(f"{len(rows)} opt-outs written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _retention_run(args: argparse.Namespace, settings: Settings) -> int:
    app = _with_app(settings)
    try:
        report = retention.run(app)
    finally:
        app.close()
    print(f"retention: {report.describe()}")
    return 0


def _hold_action(args: argparse.Namespace, settings: Settings, what: str, action: Any) -> int:
    """Run a legal-hold action with its errors as one line."""
    app = _with_app(settings)
    try:
        message = action(app)
    except (erasure.HoldError, actions.ReviewError) as exc:
        return _fail(f"retention {what}: {exc}")
    finally:
        app.close()
    print(message)
    return 0


def _retention_hold(args: argparse.Namespace, settings: Settings) -> int:
    def run(app: App) -> str:
        on = erasure.target(args.on)
        hold = erasure.place_hold(app, on, reason=args.reason, actor=_actor(args, settings, app))
        return (
            f"hold #{hold} on {on.describe()}: nothing of theirs is erased or redacted "
            "until it is released"
        )

    return _hold_action(args, settings, "hold", run)


def _retention_release(args: argparse.Namespace, settings: Settings) -> int:
    def run(app: App) -> str:
        on = erasure.target(args.on)
        hold = erasure.release_hold(app, on, reason=args.reason, actor=_actor(args, settings, app))
        return f"hold #{hold} on {on.describe()} released: the retention policy applies again"

    return _hold_action(args, settings, "release", run)


def _retention_holds(args: argparse.Namespace, settings: Settings) -> int:
    app = _with_app(settings)
    try:
        rows = erasure.list_holds(app, released=args.all)
    finally:
        app.close()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    columns = ["id", "on", "reason", "placed_by", "placed_at"]
    if args.all:
        columns += ["released_at", "released_by"]
    # Moments to the minute, as the other listings print them.
    table = [{k: (r[k] or "")[:16] if k.endswith("_at") else r[k] for k in columns} for r in rows]
    print(format_table(table, columns))
    return 0


def _web(args: argparse.Namespace, settings: Settings) -> int:
    app = _with_app(settings)
    host, port = settings.web
    try:
        server = WebServer(app, host, port).start()
    except OSError as exc:
        app.close()
        raise ConfigError(f"PRIVBOT_WEB: cannot listen on {host}:{port}: {exc.strerror}") from None
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    print(f"privbot web app on {server.url} (staff: /login, visitors: /chat)", flush=True)
    try:
        while not stopped.wait(1.0):
            pass
    finally:
        server.stop()
        app.close()
    return 0
