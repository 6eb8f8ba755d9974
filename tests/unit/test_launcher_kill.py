"""`kill_and_wait`'s liveness test: a killed process counts as gone once it is a zombie."""

from __future__ import annotations

import subprocess
import sys
import time

from cluster.launcher import _process_alive


def test_a_killed_process_is_gone_before_its_parent_reaps_it() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _process_alive(proc.pid)
        proc.kill()  # not waited for: it stays a zombie until proc.wait()
        deadline = time.monotonic() + 10
        while _process_alive(proc.pid):
            assert time.monotonic() < deadline, "still alive 10 s after SIGKILL"
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert not _process_alive(proc.pid)
