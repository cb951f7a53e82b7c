"""The keepa_sandbox management command: option errors, start line, persistence, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

MANAGE = Path(settings.BASE_DIR) / "manage.py"
KEY = "commandtestkey0123456789"


@pytest.mark.parametrize(
    "arguments, named",
    [
        (["--fault", "500@x"], "'500@x'"),
        (["--fault", "explode@1"], "'explode'"),
        (["--host", "0.0.0.0"], "0.0.0.0"),  # noqa: S104 (must be rejected)
    ],
)
def test_bad_option_is_command_error(arguments, named):
    with pytest.raises(CommandError) as caught:
        call_command("keepa_sandbox", "--port", "0", *arguments)

    assert named in str(caught.value)


def run_sandbox_once(var_dir: Path) -> list:
    """Start the command, fetch the first deal page, stop it with SIGTERM; return the deals."""
    environment = {
        **os.environ,
        "DEALSITE_VAR_DIR": str(var_dir),
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), "keepa_sandbox", "--port", "0", "--key", KEY, "--persistent", "--quiet",
         "--new-deals-per-minute", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )
    try:
        start_line = process.stdout.readline()
        assert start_line.startswith("Keepa sandbox listening on http://127.0.0.1:"), process.stderr.read()
        assert KEY in start_line
        url = start_line.split()[4]
        deals = requests.post(f"{url}/deal", params={"key": KEY}, json={}, timeout=5).json()["deals"]["dr"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0
    return deals


def test_persistent_restart_serves_same_deals(tmp_path):
    first = run_sandbox_once(tmp_path)
    second = run_sandbox_once(tmp_path)

    stored = json.loads((tmp_path / "sandbox" / "anchor.json").read_text())
    assert stored["seed"] == 0
    # Deals that appeared between the two runs come first; everything served before is served again.
    first_valid = [deal for deal in first if isinstance(deal, dict) and "asin" in deal]
    second_by_asin = {deal["asin"]: deal for deal in second if isinstance(deal, dict) and "asin" in deal}
    overlap = [deal for deal in first_valid if deal["asin"] in second_by_asin]
    assert len(overlap) >= 100
    assert all(second_by_asin[deal["asin"]]["creationDate"] == deal["creationDate"] for deal in overlap)
