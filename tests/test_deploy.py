"""Running it for real: deploy/privbot.env.example names every setting with its default,
deploy/privbot.service passes systemd's own checks, and a fresh venv with only the
production dependencies runs `privbot serve` (slow: a real pip install)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from privbot.config import Settings, env_name, load_settings
from testing.apps import NO_DNS, mail
from testing.servers import CaptureRelay, free_port, wait_for_port
from tests.conftest import REPO_ROOT, unavailable

DEPLOY = REPO_ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / "privbot.env.example"
UNIT = DEPLOY / "privbot.service"
# Where the example and the unit put the checkout and the state folder.
CHECKOUT, STATE = "/opt/privbot/src", "/var/lib/privbot"

ASSIGNMENT = re.compile(r"^(#)?(PRIVBOT_[A-Z0-9_]+)=(.*)$")
FIELDS = {env_name(f.name): f.name for f in dataclasses.fields(Settings)}


def _assignments() -> list[tuple[bool, str, str]]:
    """(commented, name, value) of each `[#]PRIVBOT_X=value` line, quotes taken off."""
    found = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            value = match[3]
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            found.append((match[1] is not None, match[2], value))
    return found


def _here(value: str, state: Path) -> str:
    """A value of the example with its paths moved to this checkout and a scratch state."""
    return value.replace(CHECKOUT, str(REPO_ROOT)).replace(STATE, str(state))


# -- the example environment file ---------------------------------------------------------


def test_the_example_environment_names_every_setting_once() -> None:
    names = [name for _, name, _ in _assignments()]
    missing = sorted(set(FIELDS) - set(names))
    assert not missing, f"settings missing from deploy/privbot.env.example: {missing}"
    unknown = sorted(set(names) - set(FIELDS))
    assert not unknown, f"deploy/privbot.env.example names no such settings: {unknown}"
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"named twice in deploy/privbot.env.example: {twice}"


def test_the_example_environment_loads_and_shows_the_defaults(tmp_path: Path) -> None:
    active = {n: _here(v, tmp_path) for commented, n, v in _assignments() if not commented}
    # What a site sets: it loads as it stands (paths moved here), as systemd would pass it.
    base = load_settings(active)
    assert base.database_url == f"sqlite:///{tmp_path}/privbot.db"
    assert base.model_cache_dir == str(tmp_path) and base.imap is not None
    # A commented line shows the default: uncommented, it changes nothing.
    for commented, name, value in _assignments():
        if commented:
            shown = load_settings({**active, name: value})
            field = FIELDS[name]
            assert getattr(shown, field) == getattr(base, field), f"{name}={value} is no default"
            assert getattr(base, field) == getattr(Settings(), field), name


def test_every_example_line_is_explained() -> None:
    # Each setting's line (or block of lines) has a comment just above it.
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if ASSIGNMENT.match(line):
            above = next(x for x in reversed(lines[:i]) if not ASSIGNMENT.match(x))
            assert above.startswith("# ") and len(above) > 10, f"no comment above: {line}"


# -- the systemd unit ---------------------------------------------------------------------


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        unavailable("systemd-analyze is not installed (Debian's systemd package)")
    assert found is not None
    return found


def _unit_here(tmp_path: Path, privbot: Path) -> Path:
    """The unit with ExecStart pointing at an existing privbot (verify checks it exists)."""
    text = UNIT.read_text(encoding="utf-8").replace("/opt/privbot/venv/bin/privbot", str(privbot))
    unit = tmp_path / "privbot.service"
    unit.write_text(text, encoding="utf-8")
    return unit


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = _unit_here(tmp_path, Path(sys.executable).parent / "privbot")
    result = subprocess.run([_systemd_analyze(), "verify", str(unit)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    unit = _unit_here(tmp_path, Path(sys.executable).parent / "privbot")
    analyze = [_systemd_analyze(), "security", "--offline=true", str(unit)]
    # --threshold is the overall exposure times ten: 15 is 1.5 of 10 ("OK"; 1.1 today).
    result = subprocess.run([*analyze, "--threshold=15"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads(subprocess.run([*analyze, "--json=short"], capture_output=True,
                                       text=True, timeout=60, check=True).stdout)  # fmt: skip
    unset = {item["name"] for item in report if item["set"] is False}
    for must in ("ProtectSystem=", "ProtectHome=", "NoNewPrivileges=", "PrivateTmp=",
                 "User=/DynamicUser=", "RestrictAddressFamilies=~AF_PACKET"):  # fmt: skip
        assert must not in unset, f"{must} not in force"
    text = UNIT.read_text(encoding="utf-8")
    for line in ("ProtectSystem=strict", "StateDirectory=privbot", "CapabilityBoundingSet=\n",
                 "EnvironmentFile=/etc/privbot/privbot.env", "User=privbot"):  # fmt: skip
        assert line in text


# -- a production install in a fresh venv runs serve ----------------------------------------

# In the test extras and the demo's, never in a production install.
NOT_IN_PRODUCTION = ("pytest", "hypothesis", "ruff", "playwright", "matplotlib", "pymap",
                     "dnslib", "httpx", "tqdm", "pyyaml")  # fmt: skip

# Run in the new venv: every distribution installed, and the closure of privbot's own
# requirements without extras (markers evaluated there).
CLOSURE = """
import json, re
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement  # pip's own: no install
def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
installed = {norm(d.metadata["Name"]) for d in metadata.distributions()}
seen, todo = set(), [("privbot", frozenset())]
while todo:
    name, extras = todo.pop()
    if name in seen: continue
    seen.add(name)
    for text in metadata.requires(name) or []:
        req = Requirement(text)
        env = [{"extra": e} for e in extras] or [{"extra": ""}]
        if req.marker is None or any(req.marker.evaluate(e) for e in env):
            todo.append((norm(req.name), frozenset(req.extras)))
print(json.dumps({"installed": sorted(installed), "needed": sorted(seen)}))
"""

# Imports every module of the installed package: the production set is enough for all
# (but __main__, which runs the command, and the migrations, which Alembic runs).
IMPORT_ALL = """
import importlib, pkgutil, privbot
names = [m.name for m in pkgutil.walk_packages(privbot.__path__, "privbot.")
         if not m.name.endswith(".__main__") and not m.name.startswith("privbot.migrations")]
for name in names: importlib.import_module(name)
print(len(names), privbot.__file__)
"""


@pytest.fixture(scope="module")
def production_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with `pip install` of this checkout, no extras: the production set.

    pip uses this machine's own configuration (its indexes and caches), as `pip install .`
    would on a site. The checkout is copied first, as an sdist would carry it: an in-tree
    build reuses a stale build/ folder, whose modules since removed would reach the wheel.
    """
    root = tmp_path_factory.mktemp("production")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"pip install of the checkout failed:\n{result.stderr[-3000:]}")
    return venv


def _run(venv: Path, code: str) -> str:
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_production_install_holds_only_what_privbot_needs(production_venv: Path) -> None:
    report = json.loads(_run(production_venv, CLOSURE))
    installed, needed = set(report["installed"]), set(report["needed"])
    assert "privbot" in installed and {"fastapi", "scikit-learn", "aiosmtpd"} <= needed
    assert not installed & set(NOT_IN_PRODUCTION), sorted(installed & set(NOT_IN_PRODUCTION))
    # Nothing but the requirements' closure, and the venv's own pip and setuptools.
    extra = installed - needed - {"pip", "setuptools"}
    assert not extra, f"installed but required by nothing: {sorted(extra)}"
    # ... and that is enough for every module of privbot.
    count, where = _run(production_venv, IMPORT_ALL).split()
    assert int(count) > 50 and where.startswith(str(production_venv))


@pytest.fixture
def serving(production_venv: Path, tmp_path: Path, relay: CaptureRelay) -> Iterator[
    tuple[subprocess.Popen[bytes], int, Path]
]:  # fmt: skip
    """`privbot serve` from the production venv: the SMTP receiver, the relay for replies."""
    port, web = free_port(), free_port()
    env = {
        # A clean environment, as systemd gives one: nothing of this test run leaks in.
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path),
        "PRIVBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'privbot.db'}",
        "PRIVBOT_LISTEN": f"127.0.0.1:{port}", "PRIVBOT_WEB": f"127.0.0.1:{web}",
        "PRIVBOT_SMTP_URL": relay.url, "PRIVBOT_DNS_SERVERS": NO_DNS,
        # As in deploy/privbot.env.example: a pip-installed privbot does not carry its
        # data; the checkout's intents/ (and the model cached beside its bank) and replies/.
        "PRIVBOT_INTENTS_DIR": str(REPO_ROOT / "intents"),
        "PRIVBOT_REPLIES_DIR": str(REPO_ROOT / "replies"),
        "PRIVBOT_SECRET_KEY": "test-" + "k" * 32,
    }  # fmt: skip
    privbot = production_venv / "bin" / "privbot"
    # Like every command, it loads the classifier: it trains it (minutes on 2 busy cores)
    # unless another test has already cached the model of these intents beside the bank.
    upgrade = subprocess.run([str(privbot), "db", "upgrade"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(privbot), "serve"], env=env, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        if not wait_for_port(port, timeout=300, process=proc):
            raise AssertionError(f"serve did not listen:\n{log.read_text()[-3000:]}")
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_serve_from_the_production_venv_answers_a_mail(
    serving: tuple[subprocess.Popen[bytes], int, Path], relay: CaptureRelay
) -> None:
    proc, port, log = serving
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("ann@example.org", ["support@junocloud.me"],
                      mail(sender="ann@example.org", message_id="prod-1@example.org"))  # fmt: skip
    try:
        [reply] = relay.wait_for(1, timeout=120)
    except Exception:
        raise AssertionError(f"no reply:\n{log.read_text()[-3000:]}") from None
    assert reply["To"] == "ann@example.org" and "support@junocloud.me" in reply["From"]
    assert reply["In-Reply-To"] == "<prod-1@example.org>"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert "Traceback" not in log.read_text()
