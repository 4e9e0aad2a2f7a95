"""Incident reports: counts, MTTA and MTTR per route, severity and source (used by ``scripts/alerts_report``).

MTTA: mean seconds from an incident opening to its first acknowledgement (acknowledged incidents only).
MTTR: mean seconds from opening to resolution (resolved incidents only).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Iterable

from .store import Incident


@dataclass
class ReportRow:
    """One line of the report. Times in seconds; ``None`` when no incident qualifies."""

    dimension: str
    value: str
    incidents: int
    acknowledged: int
    resolved: int
    mtta_s: float | None
    mttr_s: float | None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_report(incidents: Iterable[Incident]) -> list[ReportRow]:
    """Rows for ``dimension`` in (``total``, ``route``, ``severity``, ``source``), sorted by dimension and value."""
    incidents = list(incidents)
    rows = []
    for dim in ("total", "route", "severity", "source"):
        groups: dict[str, list[Incident]] = {}
        for inc in incidents:
            key = "all" if dim == "total" else str(getattr(inc, dim))
            groups.setdefault(key, []).append(inc)
        for value in sorted(groups):
            items = groups[value]
            tta = [(i.acknowledged_ts - i.created_ts) / 1000 for i in items if i.acknowledged_ts is not None]
            ttr = [(i.resolved_ts - i.created_ts) / 1000 for i in items if i.resolved_ts is not None]
            rows.append(ReportRow(dim, value, len(items), len(tta), len(ttr), _mean(tta), _mean(ttr)))
    return rows


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def format_table(rows: list[ReportRow]) -> str:
    """A fixed-width text table of ``rows``."""
    header = ("dimension", "value", "incidents", "acked", "resolved", "MTTA", "MTTR")
    lines = [header] + [
        (r.dimension, r.value, str(r.incidents), str(r.acknowledged), str(r.resolved), _fmt(r.mtta_s), _fmt(r.mttr_s))
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def format_csv(rows: list[ReportRow]) -> str:
    """CSV with a header row; MTTA/MTTR in seconds (empty when undefined)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["dimension", "value", "incidents", "acknowledged", "resolved", "mtta_seconds", "mttr_seconds"])
    for r in rows:
        w.writerow([r.dimension, r.value, r.incidents, r.acknowledged, r.resolved,
                    "" if r.mtta_s is None else f"{r.mtta_s:.1f}", "" if r.mttr_s is None else f"{r.mttr_s:.1f}"])
    return out.getvalue()
