"""The short soak: bench/soak.py --short in a subprocess, which exits 1 when any invariant fails.

It starts its own Redis, sandbox and Celery workers, and uses a new database on
DATABASE_URL's PostgreSQL server (dropped afterwards) or a temporary SQLite file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOAK_TIMEOUT_SECONDS = 240


@pytest.mark.slow
def test_short_soak_keeps_every_invariant(tmp_path):
    figures_path = tmp_path / "soak.json"
    environment = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}

    result = subprocess.run(
        [sys.executable, "bench/soak.py", "--short", "--json", str(figures_path)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=SOAK_TIMEOUT_SECONDS, check=False,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    figures = json.loads(figures_path.read_text())
    assert figures["violations"] == []
    assert figures["deals_stored"] > 0
    assert len(figures["faults_applied"]) >= 10
    assert figures["lowest_balance"] >= -180
