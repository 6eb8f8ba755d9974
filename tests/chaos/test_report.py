"""The report: report.json has exactly the agreed shape, the HTML timeline is one
self-contained file with its markers, and the terminal table is aligned."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chaos.checkers import CheckConfig, check_all
from chaos.history import FaultKind, OpType
from chaos.report import render_table, write_report
from tests.chaos.test_checkers import HistoryBuilder, clean_run


def _broken_run() -> HistoryBuilder:
    b = HistoryBuilder().meta(0, 1, [1, 2]).assign("c1", [0], t=0, gen=1)
    b.send("v0", 0, t=10).send("v1", 1, t=1200).send("v2", None, t=1300, outcome=OpType.FAIL)
    b.fault(FaultKind.KILL, "leader:t/0", t=1000, broker=1)
    b.meta(1100, 2, [2], epoch=1)
    b.fault(FaultKind.PARTITION, "broker:2", t=2000, peers=[1, 3])
    b.assign("c1", [0], t=2500, gen=2)
    b.final(2, ["v0"], leader=True)  # v1 lost
    return b


def test_report_json_has_the_agreed_shape(tmp_path: Path) -> None:
    b = _broken_run()
    report = check_all(b.history(), config=CheckConfig())
    json_path, _ = write_report(tmp_path / "out", report, b.history())
    data = json.loads(json_path.read_text())
    assert set(data) == {"valid", "checks", "stats"}
    assert data["valid"] is False
    assert set(data["checks"]) == {v.name for v in report.verdicts}
    assert all(isinstance(c["valid"], bool) for c in data["checks"].values())
    assert data["checks"]["lost"]["valid"] is False
    assert data["checks"]["lost"]["lost"]["first"][0]["value"] == "v1"
    assert data["stats"]["faults"] == {"kill": 1, "partition": 1}
    assert data["stats"]["recoveries"][0]["ack_ms"] == 205  # the ack of v1 (invoked at 1200)


def test_a_valid_run_reports_valid(tmp_path: Path) -> None:
    b = clean_run()
    json_path, _ = write_report(tmp_path, check_all(b.history()), b.history())
    assert json.loads(json_path.read_text())["valid"] is True


def test_timeline_is_self_contained_and_has_its_markers(tmp_path: Path) -> None:
    b = _broken_run()
    _, html_path = write_report(tmp_path, check_all(b.history()), b.history())
    page = html_path.read_text()
    assert html_path.name == "timeline.html" and page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "Chaos run: FAIL" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external assets"
    assert page.count('class="fault-marker"') == 2
    assert 'data-fault="kill"' in page and 'data-fault="partition"' in page
    assert 'data-partition="t-0"' in page  # leader lane
    assert 'class="isr-size"' in page
    assert 'class="throughput ack"' in page and 'class="throughput error"' in page
    assert page.count('class="group-generation"') == 2
    assert '<tr class="fail" data-check="lost">' in page


def test_timeline_of_an_empty_history_renders() -> None:
    from chaos.history import History
    from chaos.report import render_html
    assert "<svg" in render_html(check_all(History.of([])), History.of([]))


def test_terminal_table_is_aligned_and_names_failures() -> None:
    report = check_all(_broken_run().history())
    table = render_table(report).splitlines()
    assert table[0].split() == ["CHECK", "RESULT", "DETAIL"]
    result_column = table[0].index("RESULT")
    lost = next(line for line in table if line.startswith("lost "))
    assert lost[result_column:].startswith("FAIL") and "lost=1" in lost
    assert all(line[result_column - 2: result_column] == "  " for line in table[1:-1])
    assert table[-1].startswith("INVALID:")
