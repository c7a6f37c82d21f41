"""Should I switch? A compiled model's figures under the micronas runtime beside TensorFlow Lite
Micro's, each with where it comes from, for the terminal and for DIR/report/.

Only figures micronas measures or plans are shown as numbers; what it does not measure (TFLM's
code size and instruction count on the device, its arena on a 32-bit core) is said to be not
measured, never guessed.
"""

from __future__ import annotations

import html
from pathlib import Path
from micronas.report import PAGE_CSS, html_table, md_table, plot_arena, plot_layers
from micronas.results import CompileResult, ProfileResult, ReportResult
from micronas.rundir import atomic_write_text

REPORT_DIR = "report"
HEAD = ["figure", "micronas runtime", "TensorFlow Lite Micro", "ours / TFLM", "source"]
NOT_MEASURED = "not measured"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours is not None and theirs else "-"


def rows(record: CompileResult, profile: ProfileResult | None = None) -> list[list[str]]:
    """The side-by-side, one row per figure: [figure, ours, TFLM, ratio, source].

    Args:
        record: compile.json.
        profile: profile.json, when the model was profiled (the device's figures).
    """
    r = record
    out = [["arena (RAM for activations)", f"{r.arena_bytes_planned:,} B planned",
            f"{r.tflm_arena_bytes:,} B", _ratio(r.arena_bytes_planned, r.tflm_arena_bytes),
            "ours: planned, exact (static arena)"
            + (f"; measured high-water on {profile.board}: {profile.arena_bytes_measured:,} B" if profile else "")
            + "; TFLM: measured, the smallest arena the tflite-micro host interpreter (64-bit) runs with "
              "(an upper bound for a 32-bit core; micronas has no 32-bit estimate)"],
           ["constants (flash)", f"{r.flash_bytes_weights:,} B", f"{r.tflite_bytes:,} B",
            _ratio(r.flash_bytes_weights, r.tflite_bytes),
            "ours: counted, distinct const bytes of the generated C (weights, biases, requantisation, params); "
            "TFLM: the .tflite flatbuffer it reads in place"]]
    fp = r.code_footprint
    out.append(["code + constants (flash)", f"{fp['text_bytes']:,} B" if fp else NOT_MEASURED, NOT_MEASURED, "-",
                (f"ours: {fp['source']}" if fp else "ours: no ARM cross compiler was installed at compile time")
                + "; TFLM + CMSIS-NN: micronas does not build it"])
    if profile is not None:
        out.append([f"{profile.timer_kind} per inference", f"{profile.total:,.0f}", NOT_MEASURED, "-",
                    f"ours: {profile.count_source}, mean of {profile.windows} windows; TFLM on the device: micronas "
                    "does not build it"])
    agree = r.runtime_vs_tflm
    exact = round(agree["exact_match_rate"] * agree["windows"])
    ours = f"{exact}/{agree['windows']} windows bit-exact"
    source = f"host build of the generated C against the tflite-micro host interpreter ({r.windows_source})"
    if profile is not None:
        same = profile.windows if profile.outputs_equal_tflm else 0
        ours += f", {same}/{profile.windows} on the device"
        source += f"; on {profile.board} ({profile.where}) the first {profile.windows} of them"
    out.append(["outputs", ours, "reference", "-", source])
    return out


def lines(record: CompileResult, profile: ProfileResult | None = None) -> list[str]:
    """The side-by-side as aligned text lines for the terminal."""
    table = rows(record, profile)
    w0 = max(len(t[0]) for t in table)
    w1 = max(len(t[1]) for t in table)
    w2 = max(len(t[2]) for t in table)
    out = [f"  {'':<{w0}}  {'micronas':>{w1}}  {'TFLite Micro':>{w2}}  ours/TFLM"]
    out += [f"  {t[0]:<{w0}}  {t[1]:>{w1}}  {t[2]:>{w2}}  {t[3]}" for t in table]
    return out


def write_report(folder: Path, record: CompileResult, profile: ProfileResult | None = None) -> ReportResult:
    """DIR/report/report.html (self-contained) and report.md: the side-by-side, the model's ops and
    arena, and per-layer counts when profiled. Uses the run report's tables, plots and style."""
    import base64

    from latency_tables.table import count_to_ms

    out_dir = Path(folder) / REPORT_DIR
    out_dir.mkdir(exist_ok=True)
    plots: list[tuple[str, str, str]] = []
    if profile is not None:
        names = [f"{i}: {record.runtime_layer_ops[i] if i < len(record.runtime_layer_ops) else la['name']}"
                 for i, la in enumerate(profile.per_layer)]
        plot_layers(names, [count_to_ms(c, profile.clock_hz) for c in profile.layer_counts()], None, profile.where,
                    out_dir / "layers.png")
        plots.append(("layers.png", "Latency per layer",
                      f"Measured per kernel call on {profile.board} ({profile.where}, {profile.timer_kind}, "
                      f"at {profile.clock_hz / 1e6:g} MHz)."))
    if record.arena_timeline:
        plot_arena(record.arena_timeline, record.arena_bytes_planned,
                   profile.arena_bytes_measured if profile else None, None, out_dir / "arena.png")
        plots.append(("arena.png", "Arena over the execution order",
                      "Bytes of the tensors alive during each kernel call and the highest arena byte they occupy in "
                      "the static plan; the plan's peak is the arena the generated C reserves."))
    title = f"micronas compile {record.source_name}"
    facts = [("model", f"{record.source} ({record.tflite_bytes:,} B, sha256 {record.sha256[:16]}...)"),
             ("input", f"int8 {record.input['shape']}, scale {record.input['scale']:.6g}, zero point "
                       f"{record.input['zero_point']}"),
             ("output", f"int8 {record.output['shape']}"),
             ("ops", ", ".join(f"{k} x{v}" for k, v in record.op_counts.items())),
             ("labels", ", ".join(record.labels) if record.labels else "none given (the header says so)"),
             ("normalisation", "given (--mean/--std)" if record.normalisation else "none given"),
             ("board", profile.board + f" ({profile.where})" if profile else f"{record.target} (not profiled yet: "
                                                                                 f"micronas profile {folder})"),
             ("micronas", record.micronas_version)]
    if profile is not None:
        facts += [("stack high-water", f"{profile.stack_high_water_bytes:,} B (measured on the device)"),
                  ("profiling firmware", f"flash {profile.flash_bytes:,} B, RAM {profile.ram_bytes:,} B (ELF; the "
                                         "serial protocol, BENCH_OP and every kernel)")]
    side = rows(record, profile)
    md = [f"# {title}", "", *[f"- **{k}**: {v}" for k, v in facts], "", "## micronas against TensorFlow Lite Micro",
          "", md_table(HEAD, side), ""]
    body = [f"<h1>{html.escape(title)}</h1><ul>"
            + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in facts) + "</ul>",
            "<h2>micronas against TensorFlow Lite Micro</h2>", html_table(HEAD, side)]
    for f, t, caption in plots:
        md += [f"## {t}", "", f"![{t}]({f})", "", caption, ""]
        data = base64.b64encode((out_dir / f).read_bytes()).decode()
        body.append(f'<h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="data:image/png;base64,{data}">'
                    f'<p class="caption">{html.escape(caption)}</p>')
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    atomic_write_text(out_dir / "report.html",
                      f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                      f"</title><style>{PAGE_CSS}</style></head><body>{''.join(body)}</body></html>\n")
    return ReportResult(str(out_dir / "report.html"), str(out_dir / "report.md"),
                        [str(out_dir / f) for f, _, _ in plots])


__all__ = ["HEAD", "lines", "rows", "write_report"]
