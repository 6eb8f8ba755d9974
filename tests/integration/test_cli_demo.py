"""The README's first command runs `rafka demo`; it must keep working and keep its promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_recovers_a_torn_log_through_the_real_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "demo", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "recovery truncated at offset 1150" in result.stdout
    assert result.stdout.strip().endswith("survived, with its value")
