"""The raw limit's stand-in for privbot: IMAP in, SMTP out, no privbot logic in between.

Run by ``bench.raw`` as its own process, laid out like ``privbot serve``: one thread watches
the folder (IDLE, SEARCH, FETCH in batches of 50, MOVE out, exactly the IMAP traffic of
privbot's watcher) and one thread sends a reply per message over one SMTP connection.

    python -m bench.raw_peer IMAP_PORT USER PASSWORD SMTP_PORT COUNT TIMEOUT

Prints ``ready`` once idling, then one JSON line with its own timings when done.
"""

from __future__ import annotations

import json
import queue
import re
import select
import smtplib
import socket
import sys
import threading
import time

from imapclient import IMAPClient

HOST = "127.0.0.1"
BATCH = 50
FOLDER = "raw-processed"
_FROM = re.compile(rb"^From:[^\r\n]*?<?([^<>\s\r\n]+@[^<>\s\r\n]+?)>?\s*$", re.I | re.M)
_MID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.I | re.M)
# About the size of one of privbot's replies (a few quoted policy clauses).
_BODY = ("Thank you for your message. We have recorded your request.\r\n" * 30).encode()


def _reply(raw: bytes, n: int) -> tuple[str, bytes]:
    head = raw[:16384]
    sender = _FROM.search(head)
    mid = _MID.search(head)
    to = sender.group(1).decode() if sender else "unknown@example.org"
    in_reply_to = mid.group(1) if mid else b"<none>"
    message = (
        b"From: support@junocloud.me\r\nTo: " + to.encode() + b"\r\n"
        b"Subject: Re: your message\r\nMessage-ID: <raw-" + str(n).encode() + b"@junocloud.me>\r\n"
        b"In-Reply-To: " + in_reply_to + b"\r\nAuto-Submitted: auto-replied\r\n\r\n" + _BODY
    )
    return to, message


def main(argv: list[str]) -> int:
    imap_port, user, password, smtp_port, count, timeout = argv
    total, deadline = int(count), time.monotonic() + float(timeout)
    outgoing: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
    timings = {"imap_busy_s": 0.0, "smtp_busy_s": 0.0, "fetched": 0, "sent": 0}

    def sender() -> None:
        smtp = smtplib.SMTP(HOST, int(smtp_port), timeout=30)
        try:
            while True:
                item = outgoing.get()
                if item is None:
                    return
                started = time.perf_counter()
                smtp.sendmail("support@junocloud.me", [item[0]], item[1])
                timings["smtp_busy_s"] += time.perf_counter() - started
                timings["sent"] += 1
        finally:
            smtp.quit()

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    client = IMAPClient(HOST, int(imap_port), ssl=False, timeout=30)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.login(user, password)
    if not client.folder_exists(FOLDER):
        client.create_folder(FOLDER)
    client.select_folder("INBOX")
    announced = False
    while timings["fetched"] < total and time.monotonic() < deadline:
        started = time.perf_counter()
        uids = client.search("ALL")
        for start in range(0, len(uids), BATCH):
            batch = uids[start : start + BATCH]
            fetched = client.fetch(batch, ["BODY.PEEK[]"])
            for uid in batch:
                data = fetched.get(uid)
                if data and b"BODY[]" in data:
                    outgoing.put(_reply(data[b"BODY[]"], int(timings["fetched"])))
                    timings["fetched"] += 1
            client.move(batch, FOLDER)
        timings["imap_busy_s"] += time.perf_counter() - started
        if uids:
            continue  # search again: IDLE does not announce what arrived meanwhile
        client.idle()
        if not announced:
            print("ready", flush=True)
            announced = True
        select.select([client.socket()], [], [], 1.0)
        client.idle_done()
    outgoing.put(None)
    thread.join(timeout=60)
    client.logout()
    print(json.dumps(timings), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
