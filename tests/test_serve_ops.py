"""A real `privbot serve` as monitoring sees it: JSON log lines (PRIVBOT_LOG_FORMAT=json),
/healthz and /readyz on the web listener, /metrics on PRIVBOT_METRICS_LISTEN, an IMAP
reconnect counted."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testing.apps import mail, serve_env, wait_until
from testing.servers import CaptureRelay, Dovecot, free_port, wait_for_port

BODY = "Ocelot harmonium 8812, delivered to the lighthouse."
FIELDS = {"time", "level", "logger", "message"}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _metric(url: str, name: str, **labels: str) -> float:
    status, text = _get(url)
    assert status == 200, text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_serve_logs_json_and_answers_health_and_metrics(
    sqlite_url: str, dovecot: Dovecot, relay: CaptureRelay, tmp_path: Path
) -> None:
    smtp_port, web_port, metrics_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVBOT_")}
    env.update(serve_env(sqlite_url, imap_url=dovecot.imap_url(), smtp_url=relay.url,
                         listen=f"127.0.0.1:{smtp_port}", web=f"127.0.0.1:{web_port}",
                         metrics_listen=f"127.0.0.1:{metrics_port}",
                         log_format="json"))  # fmt: skip
    log_path = tmp_path / "serve.log"
    relay.fail_with(451, times=1)  # the first reply is deferred once: a line with its ids
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "privbot", "--log-level", "debug", "serve"],
                                env=env, stdout=log, stderr=log)  # fmt: skip
    try:
        web = f"http://127.0.0.1:{web_port}"
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_for_port(smtp_port, timeout=120)
        for i in range(2):
            dovecot.deliver(mail(sender=f"imap{i}@example.org",
                                 body=f"Please send me a copy of my data. {BODY}"))  # fmt: skip
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            raw = mail(sender="direct@example.org", body=f"Unsubscribe me. {BODY}")
            smtp.sendmail("direct@example.org", ["support@junocloud.me"], raw)
        relay.wait_for(3, timeout=60)

        assert _get(f"{web}/healthz") == (200, '{"status":"ok"}')
        wait_until(lambda: _get(f"{web}/readyz")[0] == 200, timeout=20, what="ready")
        ready = json.loads(_get(f"{web}/readyz")[1])
        assert ready == {"status": "ready", "checks": {"database": "ok", "imap": "ok",
                                                       "outbox": "ok", "smtp": "ok"}}  # fmt: skip
        # /metrics is not on the web listener (no token set), but on its own.
        assert _get(f"{web}/metrics")[0] == 404
        wait_until(lambda: _metric(metrics, "privbot_replies_total", outcome="sent") == 3,
                   timeout=20, what="3 replies counted")  # fmt: skip
        assert _metric(metrics, "privbot_messages_total", outcome="received", reason="none") == 3
        assert _metric(metrics, "privbot_messages_total", outcome="handled", reason="none") == 3
        assert _metric(metrics, "privbot_replies_total", outcome="retried") == 1
        assert _metric(metrics, "privbot_classification_seconds_count") >= 3
        assert _metric(metrics, "privbot_imap_reconnects_total") == 0

        dovecot.restart()
        wait_until(lambda: _metric(metrics, "privbot_imap_reconnects_total") >= 1, timeout=30,
                   what="the reconnect counted")  # fmt: skip
        wait_until(lambda: _get(f"{web}/readyz")[0] == 200, timeout=30, what="ready again")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    text = log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) > 20
    records = []
    for line in lines:
        record = json.loads(line)  # every line, libraries' too, is one JSON object
        assert isinstance(record, dict) and set(record) >= FIELDS, line
        records.append(record)
    assert BODY not in text and "Ocelot" not in text  # no mail text, even at debug
    assert records[0]["time"].endswith("+00:00") and records[0]["time"][:2] == "20"
    messages = [r["message"] for r in records]
    assert any(m.startswith("privbot serving:") for m in messages)
    deferred = [r for r in records if "deferred" in r["message"]]
    assert deferred and deferred[0]["outbox_id"] >= 1 and deferred[0]["ticket_id"] >= 1
    assert deferred[0]["logger"] == "privbot.outbox.sender" and deferred[0]["level"] == "INFO"
    stored = [r for r in records if r["message"].startswith("smtp: stored message")]
    assert stored and isinstance(stored[0]["message_id"], int)
    assert any(r["logger"] == "privbot.channels.imap" and r["level"] == "WARNING"
               and "reconnecting" in r["message"] for r in records)  # fmt: skip
    assert records[-1]["message"] == "privbot stopped"
