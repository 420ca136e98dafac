"""Processes under test: gunicorn (portal or bare Flask), `flask worker`, and bench databases."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Two benches on one server (two checkouts) keep apart by giving each its own suffix.
BENCH_DB_SUFFIX = os.environ.get("BENCH_DB_SUFFIX", "")

# Fresh secrets per bench run; nothing is written to the instance folder.
SECRET_KEY = "bench-" + os.urandom(24).hex()
FERNET_KEY = Fernet.generate_key().decode()
PUBLIC_URL = "https://portal.bench.example"  # production refuses http; nothing ever calls it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_url(name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN_URL)


def recreate_pg_database(name: str) -> str:
    """Drop and create ``bench_*`` (never any other name) and return its URL."""
    import psycopg

    assert name.startswith("bench_"), name
    name += BENCH_DB_SUFFIX
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def drop_pg_database(name: str) -> None:
    import psycopg

    assert name.startswith("bench_"), name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name + BENCH_DB_SUFFIX}" WITH (FORCE)')


def portal_env(database_url: str, *, production: bool, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DARAJA_"))}
    env.update(
        PORTAL_ENV="production" if production else "development",
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEY,
        PORTAL_ENCRYPTION_KEYS=FERNET_KEY,
        PORTAL_BASE_URL=PUBLIC_URL if production else "http://127.0.0.1:5000",
        PORTAL_SCHEDULER="off",
    )
    env.update(extra)
    return env


@dataclass
class Gunicorn:
    """gunicorn, gthread workers, pinned to ``cpus`` with taskset; the settings are the bench's."""

    app: str  # "wsgi:app" or "benchlib.bare_app:app"
    env: dict[str, str]
    log_path: Path
    workers: int = 3
    threads: int = 2
    cpus: str = "0,1"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(VENV_BIN / "gunicorn"),
            "--worker-class", "gthread",
            "--workers", str(self.workers),
            "--threads", str(self.threads),
            "--bind", f"127.0.0.1:{self.port}",
            "--keep-alive", "5",
            "--log-level", "warning",
            "--chdir", str(ROOT),
            "--pythonpath", str(ROOT / "scripts"),
            self.app,
        ]
        if shutil.which("taskset") and self.cpus:
            cmd = ["taskset", "-c", self.cpus, *cmd]
        return cmd

    def start(self) -> Gunicorn:
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_http(self.url, self.process, self.log_path)
        return self

    def stop(self) -> None:
        stop_process(self.process)


def start_flask_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "worker"],
        cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def run_python(script: str, args: list[str], env: dict[str, str], log_path: Path, timeout: float) -> tuple[int, float, str]:
    """Run a helper under the venv's Python; returns (exit code, wall seconds, stdout)."""
    started = time.monotonic()
    done = subprocess.run(
        [str(VENV_BIN / "python"), str(Path(__file__).with_name(script)), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    elapsed = time.monotonic() - started
    log_path.write_text(done.stdout + done.stderr)
    return done.returncode, elapsed, done.stdout


def run_flask(args: list[str], env: dict[str, str], log_path: Path, timeout: float) -> tuple[int, float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    elapsed = time.monotonic() - started
    log_path.write_text(done.stdout + done.stderr)
    return done.returncode, elapsed, done.stdout


def wait_for_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> None:
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited at start:\n{log_path.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM the process group we started (gunicorn master + its workers), then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
