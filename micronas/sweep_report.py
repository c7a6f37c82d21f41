"""A sweep's summary: OUT/report/sweep.md and sweep.html (self-contained) with one table and a
Pareto plot, int8 accuracy against measured latency and against arena, per board.

A job is on the Pareto front of its board when no other finished job of that board is at least
as accurate *and* at least as fast (or at least as small), and better in one. Latency is the
count measured on the emulated core (QEMU instructions at the board's clock), arena the
high-water mark measured there; the accuracy is the int8 model's on the test split (TFLite
Micro's arithmetic).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from micronas.report import PAGE_CSS, _plt, _save, html_table, md_table
from micronas.units import format_size, parse_duration, parse_size
from micronas_base.files import atomic_write_text

HEAD = ["board", "latency budget", "RAM budget", "seed", "int8 accuracy", "measured latency", "arena", "network",
        "wall time", "status"]
PLOT = "sweep_pareto.png"


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """Which (cost, accuracy) points no other point dominates (lower cost, higher accuracy)."""
    return [not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in points) for c, a in points]


def _measured(rec: dict) -> dict | None:
    f = rec.get("figures") or {}
    if rec.get("status") not in ("ok", "over_budget") or "measured_latency_ms" not in f or "accuracy_int8" not in f:
        return None
    return f


def rows(jobs: dict[str, dict]) -> list[list[str]]:
    """The table, one row per job in the sweep's order."""
    out = []
    for rec in jobs.values():
        j, f = rec["job"], rec.get("figures") or {}
        lat = f.get("measured_latency_ms")
        arena = f.get("arena_bytes_measured")
        status = rec["status"] + (f": {rec['message']}" if rec.get("message") else "")
        out.append([j["board"], f"{parse_duration(j['latency']) * 1e3:g} ms", format_size(parse_size(j["ram"])),
                    str(j["seed"]), f"{f['accuracy_int8']:.3f}" if "accuracy_int8" in f else "-",
                    f"{lat:.3f} ms" if lat is not None else "-", f"{arena:,} B" if arena is not None else "-",
                    f.get("network", "-"), f"{rec['wall_s']:.0f} s" if rec.get("wall_s") is not None else "-",
                    status])
    return out


def plot(jobs: dict[str, dict], path: Path) -> bool:
    """The Pareto plot; False (nothing written) when no job has measured figures."""
    boards: dict[str, list[dict]] = {}
    for rec in jobs.values():
        if _measured(rec):
            boards.setdefault(rec["job"]["board"], []).append(rec)
    if not boards:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (xkey, xlabel), ax in zip((("measured_latency_ms", "measured latency (ms, QEMU instruction count at the "
                                                            "board's clock)"),
                                   ("arena_bytes_measured", "arena (bytes, measured high-water)")), axes):
        for i, (board, recs) in enumerate(sorted(boards.items())):
            color = f"C{i}"
            pts = [(float(r["figures"][xkey]), float(r["figures"]["accuracy_int8"])) for r in recs]
            front = pareto(pts)
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=color, alpha=0.5, label=board)
            fp = sorted(p for p, f in zip(pts, front) if f)
            ax.plot([p[0] for p in fp], [p[1] for p in fp], color=color, marker="o", markersize=8,
                    markerfacecolor="none", linewidth=1.5, label=f"{board}: Pareto front")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("int8 accuracy (test split)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Sweep: int8 accuracy against measured latency and arena, per board")
    _save(fig, path)
    return True


def front_names(jobs: dict[str, dict], key: str = "measured_latency_ms") -> set[str]:
    """Names of the jobs on their board's accuracy-latency (or accuracy-`key`) Pareto front."""
    names: set[str] = set()
    by_board: dict[str, list[str]] = {}
    for name, rec in jobs.items():
        if _measured(rec):
            by_board.setdefault(rec["job"]["board"], []).append(name)
    for members in by_board.values():
        pts = [(float(jobs[n]["figures"][key]), float(jobs[n]["figures"]["accuracy_int8"])) for n in members]
        names |= {n for n, f in zip(members, pareto(pts)) if f}
    return names


def write(out: Path, journal: dict[str, Any]) -> dict[str, Any]:
    """Write OUT/report/sweep.md, sweep.html and the plot; returns their paths."""
    jobs = journal["jobs"]
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    has_plot = plot(jobs, folder / PLOT)
    front = front_names(jobs)
    table = [r[:-1] + [r[-1] + (" (Pareto front: latency)" if n in front else "")]
             for n, r in zip(jobs, rows(jobs))]
    counts: dict[str, int] = {}
    for rec in jobs.values():
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    s = journal["settings"]
    facts = [("jobs", ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))),
             ("data", s["data"]), ("search", f"{s['epochs'] or 'auto'} epochs, {s['candidates']} candidates; final training "
                                            f"{s['final_epochs'] or 'auto'} epochs"),
             ("figures", "int8 accuracy on the test split (TFLite Micro arithmetic); latency and arena measured on "
                         "the emulated core (QEMU instruction count at the board's clock, not cycles)"),
             ("journal", str(out / "sweep.json"))]
    caption = ("Each point is one search; the line joins the board's Pareto front (no other job of the board is "
               "as accurate and cheaper).")
    md = ["# micronas sweep", "", *[f"- **{k}**: {v}" for k, v in facts], "", md_table(HEAD, table), ""]
    if has_plot:
        md += ["## Pareto plot", "", f"![Pareto plot]({PLOT})", "", caption, ""]
    body = [f"<h1>micronas sweep</h1><ul>{''.join(f'<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>' for k, v in facts)}"
            "</ul>", html_table(HEAD, table)]
    if has_plot:
        data = base64.b64encode((folder / PLOT).read_bytes()).decode()
        body.append(f'<h2>Pareto plot</h2><img alt="Pareto plot" src="data:image/png;base64,{data}">'
                    f'<p class="caption">{html.escape(caption)}</p>')
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>micronas sweep</title>"
            f"<style>{PAGE_CSS}</style></head><body>{''.join(body)}</body></html>\n")
    atomic_write_text(folder / "sweep.md", "\n".join(md))
    atomic_write_text(folder / "sweep.html", page)
    return {"html": folder / "sweep.html", "md": folder / "sweep.md", "plot": folder / PLOT if has_plot else None}
