"""The run report: `report.json`, a self-contained HTML timeline, and a terminal table.

`write_report(out_dir, report, history)` writes `out_dir/report.json` exactly as
`{"valid": bool, "checks": {name: {"valid": bool, ...evidence}}, "stats": {...}}` and
`out_dir/timeline.html`: one file, inline SVG and CSS, no external assets, showing faults as
markers across every lane, per-partition leader (coloured by broker) and ISR size over time,
producer acks and errors per second, and each group's generation over time. Hovering an
element shows its details (SVG `<title>`).
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path

from chaos.checkers import CheckReport
from chaos.history import ConsumerFn, History, Json, MetadataOp, OpType
from clients.types import TopicPartition

REPORT_JSON = "report.json"
TIMELINE_HTML = "timeline.html"

_WIDTH = 1100  # plot width in px, right of the labels
_LABEL = 170
_LANE = 26
_BROKER_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
                   "#ff9da7", "#9c755f", "#bab0ac", "#e15759")


def write_report(out_dir: str | Path, report: CheckReport, history: History) -> tuple[Path, Path]:
    """Write `report.json` and `timeline.html` into `out_dir`; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / REPORT_JSON
    json_path.write_text(json.dumps(report.to_json(), indent=2, sort_keys=False) + "\n",
                         encoding="utf-8")
    html_path = out / TIMELINE_HTML
    html_path.write_text(render_html(report, history), encoding="utf-8")
    return json_path, html_path


def render_table(report: CheckReport) -> str:
    """The verdict table as aligned text for the terminal, ending with the overall result."""
    rows = [("CHECK", "RESULT", "DETAIL")]
    for v in report.verdicts:
        rows.append((v.name, "ok" if v.valid else "FAIL", summarize(v.evidence)))
    name_w = max(len(r[0]) for r in rows)
    result_w = max(len(r[1]) for r in rows)
    lines = [f"{n:<{name_w}}  {r:<{result_w}}  {d}".rstrip() for n, r, d in rows]
    lines.append(f"{'valid' if report.valid else 'INVALID'}: "
                 f"{sum(not v.valid for v in report.verdicts)} of {len(report.verdicts)} "
                 "checks failed")
    return "\n".join(lines)


def summarize(evidence: dict[str, Json], width: int = 80) -> str:
    """A one-line digest of a verdict's evidence: scalars, and counts of bounded lists."""
    parts: list[str] = []
    for key, value in evidence.items():
        if isinstance(value, dict) and "count" in value and "first" in value:
            parts.append(f"{key}={value['count']}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key}={value}")
        elif isinstance(value, list):
            parts.append(f"{key}={len(value)}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_html(report: CheckReport, history: History) -> str:
    status = "PASS" if report.valid else "FAIL"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Rafka chaos run: {status}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1 class="{status.lower()}">Chaos run: {status}</h1>',
        _verdict_table(report),
        "<h2>Timeline</h2>",
        Timeline(history).svg(),
        "<h2>report.json</h2>",
        "<details><summary>raw</summary><pre>"
        f"{html.escape(json.dumps(report.to_json(), indent=2))}</pre></details>",
        "</body></html>",
    ])


_CSS = """
body { font: 13px system-ui, sans-serif; margin: 20px; color: #222; }
h1.pass { color: #2e7d32; } h1.fail { color: #c62828; }
table.verdicts { border-collapse: collapse; margin-bottom: 16px; }
table.verdicts td, table.verdicts th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
tr.fail td.result { color: #c62828; font-weight: bold; } tr.ok td.result { color: #2e7d32; }
svg text { font: 11px system-ui, sans-serif; }
pre { font-size: 11px; }
"""


def _verdict_table(report: CheckReport) -> str:
    rows = ["<table class=\"verdicts\"><tr><th>check</th><th>result</th><th>detail</th></tr>"]
    for v in report.verdicts:
        cls = "ok" if v.valid else "fail"
        rows.append(f'<tr class="{cls}" data-check="{html.escape(v.name)}">'
                    f"<td>{html.escape(v.name)}</td><td class=\"result\">"
                    f"{'ok' if v.valid else 'FAIL'}</td>"
                    f"<td>{html.escape(summarize(v.evidence, width=140))}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


class Timeline:
    """Lays out the history as SVG lanes sharing one time axis."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.t0 = history.start_ms()
        self.t1 = max(history.end_ms(), self.t0 + 1)
        self.parts: list[str] = []
        self.y = 20

    def x(self, time_ms: int) -> float:
        return _LABEL + (time_ms - self.t0) * _WIDTH / (self.t1 - self.t0)

    def svg(self) -> str:
        self._axis()
        top = self.y
        self._fault_labels()
        self._throughput()
        self._partitions()
        self._groups()
        self._faults(top, self.y)
        height = self.y + 10
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LABEL + _WIDTH + 20}" '
                f'height="{height}" class="timeline">' + "".join(self.parts) + "</svg>")

    def _label(self, text: str, y: float) -> None:
        self.parts.append(f'<text x="4" y="{y + _LANE / 2 + 4:.1f}">{html.escape(text)}</text>')

    def _axis(self) -> None:
        span_s = (self.t1 - self.t0) / 1000
        step_s = max(1, int(span_s / 10) or 1)
        t = 0
        while t <= span_s:
            x = self.x(self.t0 + t * 1000)
            self.parts.append(f'<line x1="{x:.1f}" y1="{self.y}" x2="{x:.1f}" y2="{self.y + 5}" '
                              'stroke="#888"/>'
                              f'<text x="{x:.1f}" y="{self.y - 3}" '
                              f'text-anchor="middle">{t}s</text>')
            t += step_s
        self.y += 12

    def _throughput(self) -> None:
        acked: dict[int, int] = defaultdict(int)
        errors: dict[int, int] = defaultdict(int)
        for op in self.history.sends:
            second = (op.time_ms - self.t0) // 1000
            if op.type is OpType.OK:
                acked[second] += 1
            elif op.type in (OpType.FAIL, OpType.INFO):
                errors[second] += 1
        peak = max([*acked.values(), *errors.values(), 1])
        height = 3 * _LANE
        self._label(f"acks/s, errors/s (peak {peak})", self.y + _LANE)
        for second in sorted(set(acked) | set(errors)):
            x0, x1 = self.x(self.t0 + second * 1000), self.x(self.t0 + (second + 1) * 1000)
            w = max(1.0, (x1 - x0) / 2 - 1)
            for n, colour, dx, kind in ((acked[second], "#59a14f", 0.0, "ack"),
                                        (errors[second], "#e15759", w, "error")):
                if n:
                    h = n * height / peak
                    self.parts.append(
                        f'<rect class="throughput {kind}" x="{x0 + dx:.1f}" '
                        f'y="{self.y + height - h:.1f}" width="{w:.1f}" height="{h:.1f}" '
                        f'fill="{colour}"><title>{second}s: {n} {kind}s</title></rect>')
        self.y += height + 8

    def _partitions(self) -> None:
        by_tp: dict[TopicPartition, list[MetadataOp]] = defaultdict(list)
        for m in sorted(self.history.metadata, key=lambda m: m.time_ms):
            by_tp[m.tp].append(m)
        for tp, states in sorted(by_tp.items()):
            self._label(f"{tp.topic}-{tp.partition} leader, ISR size", self.y)
            ends = [s.time_ms for s in states[1:]] + [self.t1]
            max_isr = max(max(len(s.isr) for s in states), 1)
            points: list[str] = []
            for state, end in zip(states, ends):
                x0, x1 = self.x(state.time_ms), self.x(end)
                colour = ("#ddd" if state.leader < 0
                          else _BROKER_COLOURS[state.leader % len(_BROKER_COLOURS)])
                self.parts.append(
                    f'<rect class="partition-lane" data-partition="{tp.topic}-{tp.partition}" '
                    f'x="{x0:.1f}" y="{self.y + 2}" width="{max(x1 - x0, 0.5):.1f}" '
                    f'height="{_LANE - 4}" fill="{colour}" fill-opacity="0.35">'
                    f"<title>leader {state.leader} epoch {state.leader_epoch} "
                    f"isr {list(state.isr)} at {state.time_ms - self.t0} ms</title></rect>")
                if x1 - x0 > 40:
                    leader = "none" if state.leader < 0 else f"b{state.leader}"
                    self.parts.append(f'<text x="{x0 + 3:.1f}" y="{self.y + _LANE - 5}">'
                                      f"{leader} isr {len(state.isr)}</text>")
                y = self.y + _LANE - 3 - len(state.isr) * (_LANE - 8) / max_isr
                points.append(f"{x0:.1f},{y:.1f} {x1:.1f},{y:.1f}")
            self.parts.append(f'<polyline class="isr-size" points="{" ".join(points)}" '
                              'fill="none" stroke="#333" stroke-width="1.5"/>')
            self.y += _LANE

    def _groups(self) -> None:
        by_group: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for op in self.history.consumer_ops:
            if op.f is ConsumerFn.ASSIGN and op.type is OpType.OK:
                by_group[op.group].append((op.time_ms, op.generation, op.member_id))
        for group, assigns in sorted(by_group.items()):
            self._label(f"group {group} generation", self.y)
            for time_ms, generation, member in sorted(assigns):
                x = self.x(time_ms)
                self.parts.append(
                    f'<g class="group-generation" data-group="{html.escape(group)}">'
                    f'<circle cx="{x:.1f}" cy="{self.y + _LANE / 2}" r="4" fill="#4e79a7"/>'
                    f'<text x="{x + 5:.1f}" y="{self.y + _LANE / 2 + 4}">{generation}</text>'
                    f"<title>{html.escape(member)} assigned in generation {generation} at "
                    f"{time_ms - self.t0} ms</title></g>")
            self.y += _LANE

    def _fault_labels(self) -> None:
        """A lane naming each fault (labels alternate between two rows to overlap less)."""
        faults = self.history.faults
        if not faults:
            return
        self._label("faults", self.y)
        for i, fault in enumerate(sorted(faults, key=lambda f: f.time_ms)):
            y = self.y + 11 + (i % 2) * 12
            self.parts.append(f'<text class="fault-label" x="{self.x(fault.time_ms) + 3:.1f}" '
                              f'y="{y}" fill="#c62828">'
                              f"{html.escape(f'{fault.f.value} {fault.target}')}</text>")
        self.y += _LANE + 4

    def _faults(self, top: float, bottom: float) -> None:
        for fault in self.history.faults:
            x = self.x(fault.time_ms)
            label = html.escape(f"{fault.f.value} {fault.target}")
            self.parts.append(
                f'<g class="fault-marker" data-fault="{html.escape(fault.f.value)}">'
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#c62828" '
                'stroke-dasharray="3,3"/>'
                f'<path d="M{x - 5:.1f},{top - 8} L{x + 5:.1f},{top - 8} L{x:.1f},{top}Z" '
                f'fill="#c62828"/><title>{label} at {fault.time_ms - self.t0} ms '
                f"{html.escape(json.dumps(dict(fault.detail)))}</title></g>")
