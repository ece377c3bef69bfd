"""An audit event as one sentence staff read: the ticket page, the audit log, `tickets show`.

The trail stores each event's detail as the JSON its code recorded (lists, None, booleans).
Staff never see that: every kind recorded anywhere in src/ has a sentence here, and any
other kind falls back to words built from its keys, never a Python or JSON repr.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from babel import Locale, UnknownLocaleError

from privbot.tickets import ref

Detail = Mapping[str, Any]

SCOPE_LABELS = {
    "marketing_email": "marketing e-mails",
    "third_party_marketing": "marketing by third parties",
    "targeted_ads": "targeted advertising",
}
INTENT_LABELS = {
    "data_access": "a copy of their data",
    "opt_out": "an opt-out",
    "deletion": "deletion",
    "correction": "a correction",
    "question": "a question",
    "other": "not a privacy matter",
    "review": "unclear",
}
# Each one tells who read the mail how; "by" values of message_joined.
JOINED_BY = {"references": "by its references", "subject tag": "by the ticket tag in its subject"}
MAX_TEXT = 300  # a reason or a requested change, shown within the sentence


# -- words for values -----------------------------------------------------------------------


def words(value: Any) -> str:
    """Any recorded value in words: lists joined, None/True/False/{} never shown as such."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        parts = [f"{label(str(k))} {words(v)}" for k, v in value.items()]
        return ", ".join(parts) if parts else "none"
    if isinstance(value, list | tuple | set | frozenset):
        return join([words(v) for v in value]) or "none"
    return _clip(str(value))


def join(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def label(key: str) -> str:
    return key.replace("_", " ")


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    return [] if value is None or value == "" or isinstance(value, Mapping) else [value]


def scopes(value: Any) -> str:
    return join([SCOPE_LABELS.get(words(s), label(words(s))) for s in _list(value)]) or "nothing"


def intents(value: Any) -> str:
    return join([INTENT_LABELS.get(words(i), label(words(i))) for i in _list(value)]) or "nothing"


def status(value: Any) -> str:
    return label(words(value)) if value else "none"


def person(value: Any) -> str:
    return words(value) if value else "nobody"


def language(code: Any) -> str:
    """'de' as 'German'; a code Babel does not know stays as written."""
    if not code or not isinstance(code, str):
        return "not known" if not code else words(code)
    try:
        name = Locale.parse(code).get_display_name("en")
    except (ValueError, TypeError, UnknownLocaleError):
        return words(code)
    return name or words(code)


def day(value: Any) -> str:
    """An ISO time as its date (what a deadline is); other values in words."""
    text = words(value)
    return text[:10] if len(text) >= 10 and text[4:5] == "-" else text


def _because(value: Any) -> str:
    return f": {words(value)}" if value not in (None, "", [], {}) else ""


def _outbox(d: Detail) -> str:
    return f" (outbox #{words(d['outbox'])})" if d.get("outbox") not in (None, "") else ""


def _count(n: Any, one: str, many: str) -> str:
    return f"{words(n)} {one if n == 1 else many}"


# -- a sentence per kind ----------------------------------------------------------------------


def a(word: str) -> str:
    """The word with its article: 'an access', 'a deletion'."""
    return f"{'an' if word[:1].lower() in 'aeio' else 'a'} {word}"


def _opened(d: Detail) -> str:
    return f"Ticket opened as {a(status(d.get('type')))} request."


def _joined(d: Detail) -> str:
    by = d.get("by")
    how = JOINED_BY.get(words(by), f"by {words(by)}") if by else ""
    return f"A new message joined this ticket{' ' + how if how else ''}."


def _classified(d: Detail) -> str:
    sure = d.get("confidence")
    sure_text = f"{round(float(sure) * 100)}% sure" if isinstance(sure, int | float) else ""
    if d.get("low_confidence") is True:
        sure_text = f"{sure_text}, low confidence" if sure_text else "low confidence"
    text = f"Read as {intents(d.get('intents'))}"
    if sure_text:
        text += f" ({sure_text})"
    if d.get("language"):
        text += f", written in {language(d.get('language'))}"
    text += "; done automatically" if d.get("automatic") is True else "; needs staff"
    held = _list(d.get("held_back"))
    if held:
        text += f"; held back: {join([words(h) for h in held])}"
    return text + "."


def _change_requested(d: Detail) -> str:
    return f"Asked for this change: “{words(d.get('text'))}”."


def _reopened(d: Detail) -> str:
    return f"Reopened by a new message (was {status(d.get('previous'))})."


def _quarantined(d: Detail) -> str:
    return f"Message quarantined (it cannot be read){_because(d.get('reason'))}."


def _screened(d: Detail) -> str:
    return f"Message screened out, never answered{_because(d.get('reason'))}."


def _failed(d: Detail) -> str:
    tries = _count(d.get("attempts"), "attempt", "attempts") if d.get("attempts") else ""
    after = f" after {tries}" if tries else ""
    return f"Processing failed{after}; set aside for staff{_because(d.get('reason'))}."


def _retried(d: Detail) -> str:
    was = status(d.get("previous"))
    return f"Message put through again (was {was}{_because(d.get('reason'))})."


def _reply_suppressed(d: Detail) -> str:
    return f"Automatic reply held back{_because(d.get('reason'))}."


def _reply_queued(d: Detail) -> str:
    return f"Automatic reply queued{_outbox(d)}."


def _reply_sent(d: Detail) -> str:
    text = f"Reply sent to {person(d.get('to'))}{_outbox(d)}"
    if d.get("recovered"):
        text += f"; {words(d.get('recovered'))}"
    return text + "."


def _reply_failed(d: Detail) -> str:
    return f"Reply could not be delivered{_outbox(d)}{_because(d.get('error'))}."


def _reply_deferred(d: Detail) -> str:
    return f"Reply not delivered yet, to be tried again{_outbox(d)}{_because(d.get('error'))}."


def _staff_reply(d: Detail) -> str:
    return f"Staff reply to {person(d.get('to'))} queued{_outbox(d)}."


def _extension_notice(d: Detail) -> str:
    return f"Extension notice to {person(d.get('to'))} queued{_outbox(d)}."


def _assigned(d: Detail) -> str:
    was = person(d.get("previous"))
    if not d.get("to"):
        return f"Unassigned (was {was})."
    return f"Assigned to {person(d['to'])} (was {was})."


def _status_changed(d: Detail) -> str:
    return f"Status set to {status(d.get('to'))} (was {status(d.get('previous'))})."


def _language_set(d: Detail) -> str:
    return f"Language set to {language(d.get('to'))} (was {language(d.get('previous'))})."


def _note(d: Detail) -> str:
    return f"Internal note: {words(d.get('text'))}"


def _extended(d: Detail) -> str:
    months = _count(d.get("months"), "month", "months")
    text = f"Deadline extended by {months} to {day(d.get('due'))} (was {day(d.get('previous'))})"
    return text + _because(d.get("reason")) + "."


def _reclassified(d: Detail) -> str:
    text = f"Reclassified as {intents(d.get('intents'))} (was {intents(d.get('previous'))})"
    if d.get("type") and d.get("type") != d.get("previous_type"):
        text += f"; now {a(status(d.get('type')))} ticket (was {status(d.get('previous_type'))})"
    if d.get("example") is True:
        text += "; the message is now an example the classifier learns from"
    return text + "."


def _opt_out_applied(d: Detail) -> str:
    new, already = _list(d.get("scopes")), _list(d.get("already"))
    who = f" for {person(d['address'])}" if d.get("address") else ""
    if new:
        text = f"Opted out of: {scopes(new)}{who}"
        if already:
            text += f"; already in place: {scopes(already)}"
        return text + "."
    if already:
        return f"Opt-out asked for{who}; already in place: {scopes(already)}."
    return f"Opt-out asked for{who}; nothing to change."


def _opt_out_withdrawn(d: Detail) -> str:
    who = f" for {person(d['address'])}" if d.get("address") else ""
    if not _list(d.get("scopes")):
        return f"Opt-out withdrawal{who}: none was in place."
    return f"Opt-out withdrawn{who}: {scopes(d.get('scopes'))}."


ERASED_COUNTS = {
    "messages_erased": ("message", "messages"),
    "replies_erased": ("reply", "replies"),
    "chat_requests_erased": ("chat request", "chat requests"),
    "chat_requests_deleted": ("chat request deleted", "chat requests deleted"),
    "examples_deleted": ("training example deleted", "training examples deleted"),
    "events_scrubbed": ("audit event scrubbed", "audit events scrubbed"),
}


def _erased(d: Detail) -> str:
    request = words(d.get("request")) if d.get("request") else "a deletion request"
    text = f"Personal data erased under {request}"
    if d.get("done_at"):
        held = d.get("hold_days")
        after = f", after a hold of {_count(held, 'day', 'days')}" if held is not None else ""
        text += f" (done {day(d.get('done_at'))}{after})"
    counts = [_count(d[k], one, many) for k, (one, many) in ERASED_COUNTS.items() if d.get(k)]
    if counts:
        text += f": {join(counts)}"
    if d.get("suppressions_kept"):
        text += f"; {_count(d['suppressions_kept'], 'opt-out', 'opt-outs')} kept, so no mail goes"
        text += " to them again"
    tickets = _list(d.get("tickets"))
    if len(tickets) > 1:
        text += f"; tickets {join([words(t) for t in tickets])}"
    return text + "."


def _hold_placed(d: Detail) -> str:
    on = "this ticket" if d.get("on") == "ticket" else "the person" if d.get("on") else ""
    target = f" on {on}" if on else ""
    return f"Legal hold #{words(d.get('hold'))} placed{target}{_because(d.get('reason'))}."


def _hold_released(d: Detail) -> str:
    return f"Legal hold #{words(d.get('hold'))} released{_because(d.get('reason'))}."


RETENTION_COUNTS = {
    "messages_redacted": ("message redacted", "messages redacted"),
    "replies_redacted": ("reply redacted", "replies redacted"),
    "tickets_redacted": ("ticket redacted", "tickets redacted"),
    "chat_requests_deleted": ("chat request deleted", "chat requests deleted"),
    "chat_clients_cleared": ("chat client address cleared", "chat client addresses cleared"),
    "signin_failures_deleted": ("failed sign-in forgotten", "failed sign-ins forgotten"),
    "people_erased": ("person erased", "people erased"),
    "erasures_on_hold": ("erasure on legal hold", "erasures on legal hold"),
    "erasures_waiting": ("erasure waiting", "erasures waiting"),
}
RETENTION_DAYS = {
    "retain_closed_days": "closed tickets",
    "retain_chat_days": "chat requests",
    "retain_signin_days": "failed sign-ins",
    "deletion_hold_days": "data after a deletion",
}


def _retention(d: Detail) -> str:
    done = [_count(d[k], one, many) for k, (one, many) in RETENTION_COUNTS.items() if d.get(k)]
    text = f"Retention run: {join(done)}" if done else "Retention run: nothing was due"
    kept = [
        f"{what} {_count(d[k], 'day', 'days')}"
        for k, what in RETENTION_DAYS.items()
        if d.get(k) is not None
    ]
    if kept:
        text += f" (kept: {', '.join(kept)})"
    return text + "."


def _chat_link(d: Detail) -> str:
    what = f" for {intents(d.get('intents'))}" if _list(d.get("intents")) else ""
    return (
        f"Chat request #{words(d.get('request'))}{what}: a confirmation link was mailed to "
        f"{person(d.get('address'))}{_outbox(d)}."
    )


def _chat_confirmed(d: Detail) -> str:
    text = f"Chat request #{words(d.get('request'))} confirmed by the link"
    if d.get("message_ref"):
        text += f"; it came in as message #{words(d.get('message_ref'))}"
    if type(d.get("ticket_ref")) is int:
        text += f" on {ref(d['ticket_ref'])}"
    return text + "."


def _login_failed(d: Detail) -> str:
    text = f"Failed sign-in from {words(d.get('client'))}" if d.get("client") else "Failed sign-in"
    if d.get("name_digest"):
        text += f" with a name that is no account (digest {words(d.get('name_digest'))})"
    return text + "."


def _token_created(d: Detail) -> str:
    allowed = f" (may: {words(d.get('scopes'))})" if _list(d.get("scopes")) else ""
    return f"API token “{words(d.get('name'))}” created{allowed}."


def _token_revoked(d: Detail) -> str:
    return (
        f"API token “{words(d.get('name'))}” revoked ({_count(d.get('count'), 'token', 'tokens')})."
    )


def _staff_notified(d: Detail) -> str:
    return f"Staff notified of the new ticket: {words(d.get('to'))}."


def _staff_daily(d: Detail) -> str:
    within = f"{words(d.get('due_soon'))} due within {words(d.get('due_within_days'))} days"
    counts = f"{words(d.get('overdue'))} overdue, {within}"
    if d.get("new") is not None:
        counts += f", {words(d.get('new'))} new"
    mails = _count(len(_list(d.get("outbox"))), "mail", "mails")
    return f"Daily staff mail of {words(d.get('day'))}: {mails} ({counts})."


def _reply_retried(d: Detail) -> str:
    text = f"Failed reply put back in the outbox to be sent again{_outbox(d)}"
    if d.get("attempts"):
        text += f"; it had failed after {_count(d.get('attempts'), 'attempt', 'attempts')}"
    return text + _because(d.get("error")) + "."


def _messages(value: Any) -> str:
    ids = [f"#{words(m)}" for m in _list(value)]
    return f" in message{'s' if len(ids) > 1 else ''} {join(ids)}" if ids else ""


def _attachment_opened(d: Detail) -> str:
    name = f"“{words(d.get('filename'))}”" if d.get("filename") else "an attachment"
    size = f", {_size(d.get('size'))}" if type(d.get("size")) is int else ""
    via = f", via {words(d.get('via'))}" if d.get("via") else ""
    return f"Attachment {name} opened (downloaded{size}{via})."


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10_000 else f"{n // 1000} kB"


def _evidence_checked(d: Detail) -> str:
    files = _count(d.get("attachments"), "attachment", "attachments")
    return (
        f"Identity evidence marked checked ({files}{_messages(d.get('messages'))}); the files "
        "go under the retention rules."
    )


def _evidence_removed(d: Detail) -> str:
    text = f"Checked evidence removed: {_count(d.get('attachments'), 'attachment', 'attachments')}"
    text += _messages(d.get("messages"))
    if d.get("checked_by"):
        text += f"; checked by {person(d.get('checked_by'))}"
        if d.get("checked_at"):
            text += f" on {day(d.get('checked_at'))}"
    return text + "."


SENTENCES: dict[str, Callable[[Detail], str]] = {
    "ticket_opened": _opened,
    "message_joined": _joined,
    "classified": _classified,
    "change_requested": _change_requested,
    "resolved_automatically": lambda d: "Done automatically: nothing is left for staff.",
    "reopened": _reopened,
    "quarantined": _quarantined,
    "screened": _screened,
    "failed": _failed,
    "retried": _retried,
    "reply_suppressed": _reply_suppressed,
    "reply_queued": _reply_queued,
    "reply_sent": _reply_sent,
    "reply_failed": _reply_failed,
    "reply_deferred": _reply_deferred,
    "staff_reply": _staff_reply,
    "extension_notice_queued": _extension_notice,
    "assigned": _assigned,
    "status_changed": _status_changed,
    "language_set": _language_set,
    "note": _note,
    "deadline_extended": _extended,
    "reclassified": _reclassified,
    "opt_out_applied": _opt_out_applied,
    "opt_out_withdrawn": _opt_out_withdrawn,
    "data_erased": _erased,
    "legal_hold_placed": _hold_placed,
    "legal_hold_released": _hold_released,
    "retention_run": _retention,
    "chat_link_queued": _chat_link,
    "chat_request_confirmed": _chat_confirmed,
    "staff_added": lambda d: f"Staff account {person(d.get('email'))} added.",
    "staff_disabled": lambda d: f"Staff account {person(d.get('email'))} disabled; signed out.",
    "login": lambda d: "Signed in.",
    "logout": lambda d: "Signed out.",
    "login_failed": _login_failed,
    "reply_retried": _reply_retried,
    "attachment_opened": _attachment_opened,
    "evidence_checked": _evidence_checked,
    "evidence_removed": _evidence_removed,
    "token_created": _token_created,
    "token_revoked": _token_revoked,
    "staff_notified": _staff_notified,  # staff/notify.py
    "staff_daily": _staff_daily,  # staff/daily.py
}


def sentence(kind: str, detail: Detail | None) -> str:
    """What happened, as staff read it. A kind without its own sentence (one added later)
    is still words: its name, then each detail as 'key value'."""
    d: Detail = detail if isinstance(detail, Mapping) else {}
    known = SENTENCES.get(kind)
    if known is not None:
        try:
            return known(d)
        except (TypeError, ValueError, KeyError, AttributeError):
            pass  # an old event recorded with other detail: the plain form below still reads
    head = label(kind).capitalize() or "Event"
    rest = "; ".join(f"{label(str(k))} {words(v)}" for k, v in d.items())
    return f"{head}: {rest}." if rest else f"{head}."
