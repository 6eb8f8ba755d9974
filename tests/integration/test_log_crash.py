"""Crash test: SIGKILL a process appending to a PartitionLog on disk, reopen, and check that
every append it reported as finished is there, byte for byte, with nothing after the last good
batch.

The writer (a real subprocess) appends deterministic batches (batch i holds records whose values
encode i and the record number) and prints `i last_offset` after each `append` returns. The
test kills it after a random number of acknowledgements (`seed=N` is printed; replay with
RAFKA_SEED=N), so the kill lands at a random point, often inside a write or a roll. Big batches
and small segments widen that window.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.log import LogConfig, PartitionLog
from cluster.log.segment import LOG_SUFFIX
from proto.records import RecordBatchBuilder, iter_batches

ROOT = Path(__file__).resolve().parents[2]
CONFIG = dict(segment_bytes=1 << 20, index_interval_bytes=4096)
RECORDS_PER_BATCH = 16
PAD = 4000

WRITER = f"""
import sys
from cluster.log import LogConfig, PartitionLog
from tests.integration.test_log_crash import make_batch
log = PartitionLog.open(sys.argv[1], LogConfig(**{CONFIG!r}), 0)
i = 0
out = sys.stdout
while True:
    info = log.append(make_batch(i), 1, 0)
    out.write(f"{{i}} {{info.last_offset}}\\n")
    out.flush()
    i += 1
"""


def make_batch(i: int) -> bytes:
    builder = RecordBatchBuilder()
    for j in range(RECORDS_PER_BATCH):
        builder.append(value(i, j), key=b"k%d" % j, timestamp_ms=1_700_000_000_000 + i)
    return builder.build()


def value(i: int, j: int) -> bytes:
    return b"%08d:%04d:" % (i, j) + bytes([i % 251]) * PAD


def _read_acks(proc: subprocess.Popen[bytes], want: int, deadline: float,
               acks: list[tuple[int, int]], pending: bytearray) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    while len(acks) < want:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"writer acknowledged {len(acks)} of {want} appends in time")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return  # EOF: the writer is gone
        pending += chunk
        *lines, rest = bytes(pending).split(b"\n")
        pending[:] = rest
        acks.extend((int(a), int(b)) for a, b in (line.split() for line in lines))


def _run_writer_and_kill(directory: Path, rng: random.Random) -> list[tuple[int, int]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acks: list[tuple[int, int]] = []
    pending = bytearray()
    try:
        _read_acks(proc, rng.randrange(1, 120), time.monotonic() + 20, acks, pending)
        assert proc.poll() is None, f"writer died: {proc.stderr.read() if proc.stderr else ''!r}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # Every complete line printed before the kill was an acknowledged append.
        _read_acks(proc, 1 << 30, time.monotonic() + 10, acks, pending)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return acks


@pytest.mark.slow
def test_acknowledged_appends_survive_sigkill(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    started = time.monotonic()
    for round_ in range(3):
        directory = tmp_path / f"crash{round_}-0"
        acks = _run_writer_and_kill(directory, rng)
        assert acks, f"seed={seed}: no acknowledged appends"
        assert [i for i, _ in acks] == list(range(len(acks)))
        log = PartitionLog.open(str(directory), LogConfig(**CONFIG), 0)  # type: ignore[arg-type]
        report = log.recovery_report
        assert not report.clean_shutdown
        last_acked = acks[-1][1]
        assert log.log_end_offset > last_acked, f"seed={seed}: lost acked data ({report})"
        offset, batch_index, total = 0, 0, 0
        while offset < log.log_end_offset:
            result = log.read(offset, 1 << 20)
            for batch in iter_batches(result.records):  # validates each CRC
                expected = make_batch(batch_index)
                assert bytes(batch.buffer)[16:] == expected[16:], f"seed={seed} batch {batch_index}"
                assert batch.base_offset == batch_index * RECORDS_PER_BATCH
                assert [r.value for r in batch] == [
                    value(batch_index, j) for j in range(RECORDS_PER_BATCH)]
                batch_index += 1
                total += batch.size_in_bytes
            offset = result.next_offset
        assert batch_index >= len(acks), f"seed={seed}"
        on_disk = sum(os.path.getsize(directory / name) for name in os.listdir(directory)
                      if name.endswith(LOG_SUFFIX))
        assert on_disk == total, f"seed={seed}: garbage after the last batch ({report})"
        log.close()
    assert time.monotonic() - started < 30
