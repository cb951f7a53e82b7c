#!/usr/bin/env python3
"""Set up dealsite and run its main job or its tests, with nothing but Python installed.

    python3 dev.py run [update_recent_deals options]   # install, migrate, ingest deals
    python3 dev.py test [pytest options]               # install, run the test suite
    python3 dev.py stop-redis                          # stop the embedded Redis server

Both create the virtual environment in .venv when it is missing and reinstall
requirements.txt only when that file changed, so they are cheap to repeat.
With no KEEPA_API_KEY set, `run` starts the local Keepa sandbox and ingests
its deals instead of calling the real API.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DEALSITE_VENV", ROOT / ".venv"))
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / "requirements.sha256"
MINIMUM_PYTHON = (3, 11)
SANDBOX_START_SECONDS = 30


def main(argv: list[str]) -> int:
    if sys.version_info < MINIMUM_PYTHON:
        print(f"dealsite needs Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer; this is {sys.version.split()[0]}.")
        return 2
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        return 2

    try:
        python = ensure_environment()
        return COMMANDS[argv[0]](python, argv[1:])
    except subprocess.CalledProcessError as error:
        # The step has printed its own error; a traceback here would only repeat it.
        return error.returncode


def ensure_environment() -> Path:
    """Create .venv if missing and install requirements.txt when it changed. Returns the venv's python."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"Creating the virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)

    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    installed = STAMP.read_text().strip() if STAMP.exists() else ""
    if wanted != installed:
        print("Installing requirements.txt ...", flush=True)
        command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        command += ["-r", str(REQUIREMENTS)]
        # pip's output is shown only when it fails, so a repeated run stays quiet.
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            sys.stderr.write(completed.stdout + completed.stderr)
            raise SystemExit(f"Installing requirements.txt failed (pip exit status {completed.returncode}); see above.")
        STAMP.write_text(wanted + "\n")
    return python


def run_main_job(python: Path, arguments: list[str]) -> int:
    """Migrate, then run update_recent_deals against Keepa or, without a key, the sandbox."""
    manage = [str(python), str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], check=True, cwd=ROOT)
    # The job prints its own summary; its log shows warnings and errors unless asked for more.
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")

    if os.environ.get("KEEPA_API_KEY"):
        return subprocess.run([*manage, "update_recent_deals", *arguments], cwd=ROOT, check=False).returncode

    print("KEEPA_API_KEY is not set: running against the local Keepa sandbox, not the real API.", flush=True)
    sandbox_key = secrets.token_hex(16)
    port = free_port()
    # The sandbox logs only warnings, so that the job's own summary is easy to find.
    sandbox_environment = {**os.environ, "DJANGO_LOG_LEVEL": "WARNING"}
    sandbox = subprocess.Popen(
        [*manage, "keepa_sandbox", "--port", str(port), "--key", sandbox_key, "--persistent", "--quiet"],
        cwd=ROOT, env=sandbox_environment, stdout=subprocess.DEVNULL,
    )
    try:
        sandbox_url = f"http://127.0.0.1:{port}"
        wait_for_sandbox(sandbox, sandbox_url, sandbox_key)
        environment = {**os.environ, "KEEPA_API_KEY": sandbox_key, "KEEPA_API_URL": sandbox_url}
        command = [*manage, "update_recent_deals", *arguments]
        return subprocess.run(command, cwd=ROOT, env=environment, check=False).returncode
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def run_tests(python: Path, arguments: list[str]) -> int:
    return subprocess.run([str(python), "-m", "pytest", *arguments], cwd=ROOT, check=False).returncode


def stop_redis(python: Path, arguments: list[str]) -> int:
    """Stop the embedded Redis server that dealsite starts when REDIS_URL is unset."""
    var_dir = os.environ.get("DEALSITE_VAR_DIR", str(ROOT / "var"))
    code = (
        "import sys; from pathlib import Path; from dealsite.embedded_redis import stop_embedded_redis;"
        "print('Stopped the embedded Redis.' if stop_embedded_redis(Path(sys.argv[1]) / 'redis')"
        " else 'The embedded Redis was not running.')"
    )
    return subprocess.run([str(python), "-c", code, var_dir], cwd=ROOT, check=False).returncode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_sandbox(process: subprocess.Popen, url: str, key: str) -> None:
    deadline = time.monotonic() + SANDBOX_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"The Keepa sandbox exited with status {process.returncode} before it responded.")
        try:
            with urllib.request.urlopen(f"{url}/token?key={key}", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise SystemExit(f"The Keepa sandbox did not respond on {url} within {SANDBOX_START_SECONDS} s.")


COMMANDS = {"run": run_main_job, "test": run_tests, "stop-redis": stop_redis}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
