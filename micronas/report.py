"""The run report: one self-contained HTML page and the same content as Markdown, with PNG plots.

Written into RUN/report/ at the end of `micronas search` and by `micronas report RUN` from the
run's JSON files alone (metrics.json, profile.json, search.json, arch.json, train_log.json):

* budgets against achieved figures, each with where it comes from (predicted from a latency
  table, planned, measured on the emulated core or on a board);
* accuracy fp32 / int8 and the int8 confusion matrix on the test split;
* the architecture as a table;
* plots: the search trajectory against the budget lines, validation accuracy against
  predicted latency of the candidates the search held most likely, per-layer latency from
  the device profile, and the arena over the execution order.

A run that was trained and exported but not searched or profiled gets the parts it has.
Imports matplotlib (Agg backend).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from micronas_base.errors import ConfigError
from micronas.budgets import kib, ms
from micronas.data.split import CLIP_PERCENT
from micronas.results import ExportResult, ProfileResult, ReportResult, SearchRecord
from micronas.rundir import TEACHER_DIR, RunDir, atomic_write_bytes, atomic_write_text
from micronas.units import Budgets, format_size
from search_space.registry import SEARCH_OPS

REPORT_DIR = "report"


def _load(run: RunDir, name: str, record: Any = None) -> Any:
    """A JSON artefact of the run (None when absent), as `record` when one is given."""
    if not run.has(name):
        return None
    d = run.read_json(name)
    if record is None:
        return d
    try:
        return record.from_json(d)
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{run.file(name)} lacks {e} (written by another version of micronas?)",
                          "re-run the stage that writes it with this version") from None


def _kernel_less(la: dict) -> bool:
    """An op without a kernel (a skip) is shown by its name alone."""
    return not SEARCH_OPS.get(la["op"]).kernels


def _layer_text(la: dict) -> str:
    if _kernel_less(la):
        return la["op"]
    s = f"{la['op']} {la['out']}ch k{la['kernel']}"
    if la.get("experts"):
        s += f" x{la['experts']} experts"
    return s + (" /2" if la.get("stride") == 2 else "")


def layer_short(la: dict) -> str:
    """`dyconv32k5x4/2`: op, width, kernel, experts, /2 for stride 2."""
    if _kernel_less(la):
        return la["op"]
    return (f"{la['op']}{la['out']}k{la['kernel']}" + (f"x{la['experts']}" if la.get("experts") else "")
            + ("/2" if la.get("stride") == 2 else ""))


def arch_summary(arch: dict) -> str:
    """One line for an arch.json: its layers, `layer_short` each."""
    return ", ".join(layer_short(la) for la in [arch["stem"], *arch["cells"]])


def accuracy_interval(accuracy: float, windows: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of an accuracy measured on `windows` windows, each counted as
    an independent draw (windows of one subject are not, so the true spread is wider)."""
    if windows <= 0:
        return 0.0, 1.0
    z2n = z * z / windows
    centre = (accuracy + z2n / 2) / (1 + z2n)
    half = z * (accuracy * (1 - accuracy) / windows + z2n / (4 * windows)) ** 0.5 / (1 + z2n)
    return max(0.0, centre - half), min(1.0, centre + half)


def interval_text(accuracy: float, windows: int) -> str:
    """`95 % interval 0.841-0.881 over 1,145 windows`: how far a test figure can be trusted."""
    lo, hi = accuracy_interval(accuracy, windows)
    return f"95 % interval {lo:.3f}-{hi:.3f} over {windows:,} windows"


# ---- plots ------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110})
    return plt


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_trajectory(search: SearchRecord, path: Path) -> None:
    """Expected latency, expected arena and the most likely network's validation accuracy per epoch."""
    plt = _plt()
    traj = search.trajectory
    ep = [e["epoch"] + 1 for e in traj]
    b = search.budgets
    warm = search.config.get("warmup_epochs", 0)
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 7.2), sharex=True)
    panels = [
        ("expected latency (ms)", [e["expected"]["latency_ms"] for e in traj],
         None if b.latency_s is None else ms(b.latency_s), "latency budget", "ms"),
        ("expected peak arena (KiB)", [kib(e["expected"]["ram_bytes"]) for e in traj],
         None if b.ram_bytes is None else kib(b.ram_bytes), "RAM budget", "KiB"),
        ("validation accuracy\n(most likely network,\nsupernet weights)", [e["val_acc_most_likely"] for e in traj],
         None, "", ""),
    ]
    for ax, (label, ys, budget, blabel, unit) in zip(axes, panels):
        ax.plot(ep, ys, marker="o", ms=3, color="#1f77b4", label="search")
        if budget is not None:
            ax.axhline(budget, color="#d62728", ls="--", lw=1.5, label=f"{blabel} {budget:g} {unit}")
            lo, hi = min(ys + [budget]), max(ys + [budget])
            if hi / max(lo, 1e-9) > 20:  # a budget far above the figures: log scale keeps both readable
                ax.set_yscale("log")
            ax.legend(loc="best", fontsize=8)
        if warm:
            ax.axvspan(0.5, warm + 0.5, color="#999999", alpha=0.15, lw=0)
        ax.set_ylabel(label)
    axes[2].set_ylim(0, 1.02)
    axes[2].set_xlabel("search epoch (grey: weight-only warm-up)")
    axes[0].set_title("Search trajectory")
    _save(fig, path)


def plot_candidates(cands: list[dict], final: dict | None, latency_budget_ms: float | None, path: Path) -> None:
    """Validation accuracy against predicted latency of each epoch's most likely network."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    xs = [c["latency_ms"] for c in cands]
    ys = [c["val_acc"] for c in cands]
    sc = ax.scatter(xs, ys, c=[c["epoch"] for c in cands], cmap="viridis", s=28, zorder=3,
                    label="most likely network of an epoch (supernet weights)")
    fig.colorbar(sc, ax=ax, label="search epoch")
    if final is not None:
        ax.scatter([final["latency_ms"]], [final["val_acc"]], marker="*", s=260, color="#d62728", zorder=4,
                   edgecolor="black", label="found network, trained from scratch")
    if latency_budget_ms is not None:
        ax.axvline(latency_budget_ms, color="#d62728", ls="--", lw=1.5, label=f"latency budget {latency_budget_ms:g} ms")
    ax.set_xlabel("predicted latency on the board (ms, latency table)")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("Candidates the search held most likely")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_layers(names: list[str], measured_ms: list[float], predicted_ms: list[float] | None, source: str,
                path: Path) -> None:
    """Per-layer latency bars from the device profile (predicted entries as markers)."""
    plt = _plt()
    n = len(names)
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.28 * n + 1.2)))
    ypos = list(range(n))[::-1]
    ax.barh(ypos, measured_ms, color="#1f77b4", label=f"measured ({source})")
    if predicted_ms and len(predicted_ms) == n:
        ax.scatter(predicted_ms, ypos, marker="|", s=120, color="#d62728", zorder=3, label="predicted (latency table)")
    ax.set_yticks(ypos)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("latency per inference (ms at the board clock)")
    ax.set_title("Latency per layer")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_arena(timeline: list[dict], planned: int, measured: int | None, budget: int | None, path: Path) -> None:
    """Bytes alive per kernel in execution order, and the highest arena byte in use."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = [t["layer"] for t in timeline]
    ax.step(x, [t["top_byte"] for t in timeline], where="mid", color="#1f77b4", label="highest arena byte in use")
    ax.fill_between(x, [t["live_bytes"] for t in timeline], step="mid", color="#1f77b4", alpha=0.25,
                    label="bytes of live tensors")
    ax.axhline(planned, color="black", ls=":", lw=1.2, label=f"planned arena {planned:,} B")
    if measured is not None:
        ax.axhline(measured, color="#2ca02c", ls="--", lw=1.2, label=f"measured high-water {measured:,} B")
    title = "Arena over the execution order"
    if budget is not None:
        title += f" (RAM budget {format_size(budget)}: {100 * planned / budget:.1f} % used)"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("kernel call, in execution order")
    ax.set_ylabel("bytes")
    ax.set_ylim(0, max(planned, measured or 0) * 1.45)
    ax.legend(loc="upper center", fontsize=8, ncol=2)
    _save(fig, path)


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path) -> None:
    plt = _plt()
    import numpy as np

    m = np.asarray(matrix)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(m, cmap="Blues")
    ax.grid(False)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k))
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xlabel("predicted (int8)")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix, int8, test split", fontsize=10)
    _save(fig, path)


# ---- content ----------------------------------------------------------------------------------

def _candidates(search: SearchRecord, run: RunDir) -> list[dict]:
    """Predicted latency of each epoch's most likely network (after the warm-up)."""
    from latency_tables import predict as predictor
    from search_space import arch as arch_mod

    arch = arch_mod.from_json(search.derived, "search.json")
    try:
        table = predictor.find_table(search.board, arch.input_channels, arch.input_length, arch.num_classes)
    except ConfigError:
        return []
    warm = search.config.get("warmup_epochs", 0)
    cache: dict[str, float] = {}
    out = []
    for e in search.trajectory:
        if e["epoch"] < warm:
            continue
        key = json.dumps(e["most_likely"], sort_keys=True)
        if key not in cache:
            try:
                cache[key] = predictor.predict(arch_mod.from_json(e["most_likely"], "search.json"), table).latency_ms
            except ConfigError:
                continue
        out.append({"epoch": e["epoch"] + 1, "latency_ms": cache[key], "val_acc": e["val_acc_most_likely"]})
    return out


def _rows(m: ExportResult, p: ProfileResult | None, budgets: Budgets) -> list[list[str]]:
    """Budget vs achieved, one row per figure, with sources."""
    where = p.where if p else "not profiled"
    unit = p.timer_kind if p else ""
    pred = m.prediction

    def size(v):
        return "-" if v is None else f"{v:,} B"

    rows = [["latency", "-" if budgets.latency_s is None else f"{ms(budgets.latency_s):g} ms",
             "-" if pred.latency_ms is None else f"{pred.latency_ms:.3f} ms",
             "-" if p is None else f"{p.measured_latency_ms:.3f} ms",
             f"predicted: latency table {pred.latency_table or '-'}; measured: {where}"
             + (f" ({unit}; one per cycle at the board clock)" if unit == "instructions" else f" ({unit})" if unit else "")],
            ["RAM (arena)", size(budgets.ram_bytes), size(m.arena_bytes_planned),
             size(p.arena_bytes_measured if p else None),
             "predicted: the export's static plan (exact); measured: canary high-water mark on the device"],
            ["RAM (whole profiling firmware)", "not checked", "-", size(p.ram_bytes if p else None),
             "ELF data + bss: the arena, BENCH_OP's scratch buffer, the serial protocol's buffers; not the stack "
             f"(high-water {size(p.stack_high_water_bytes if p else None)})"],
            ["flash", size(budgets.flash_bytes), size(pred.flash_bytes), size(p.flash_bytes if p else None),
             f"predicted: {pred.flash_source or '-'}; measured: the profiling firmware's ELF "
             "(links every kernel)"]]
    if m.tflm_arena_bytes is not None:
        rows.append(["RAM (TFLite Micro arena)", size(budgets.ram_bytes), "-", size(m.tflm_arena_bytes),
                     "for comparison: tflite-micro host interpreter (64-bit), smallest arena that runs"])
    return rows


def build(run_path: str | Path) -> ReportResult:
    """Write RUN/report/{report.html, report.md, *.png}.

    Returns:
        The paths of the page, the Markdown and the plots included.

    Raises:
        ConfigError: the run has no metrics.json (nothing exported yet).
    """
    run = RunDir.open(run_path)
    if not run.has("metrics.json"):
        raise ConfigError(f"{run.path} has no metrics.json: nothing has been exported yet",
                          f"export it first: micronas export {run.path}")
    metrics = _load(run, "metrics.json", ExportResult)
    profile = _load(run, "profile.json", ProfileResult)
    search = _load(run, "search.json")
    # a search still running has no result yet: only its trajectory
    search = _load(run, "search.json", SearchRecord) if search is not None and "derived" in search else None
    arch = run.read_json("arch.json")
    train_log = _load(run, "train_log.json")
    config = run.read_json("config.json")
    budgets = search.budgets if search else profile.budgets if profile else metrics.budgets
    out_dir = run.file(REPORT_DIR)
    out_dir.mkdir(exist_ok=True)
    plots: list[tuple[str, str, str]] = []  # (file, title, caption)

    if search is not None:
        plot_trajectory(search, out_dir / "trajectory.png")
        plots.append(("trajectory.png", "Search trajectory",
                      "Per search epoch: the expected latency and peak arena of the architecture distribution "
                      "(from the latency table) against the budgets, and the validation accuracy of the most likely "
                      "network with the supernet's shared weights, batch norm recalibrated on it (not the final accuracy)."))
        cands = _candidates(search, run)
        if cands:
            final = None
            if train_log is not None and search.predicted:
                final = {"latency_ms": search.predicted.latency_ms, "val_acc": train_log["best"]["val_acc"]}
            plot_candidates(cands, final, None if budgets.latency_s is None else ms(budgets.latency_s),
                            out_dir / "candidates.png")
            plots.append(("candidates.png", "Accuracy against latency of the candidates",
                          "Each dot is the network the search held most likely at the end of an epoch (after the "
                          "warm-up), at its predicted latency; the star is the network found, trained from scratch "
                          "(validation accuracy of its kept epoch)."))
    if profile is not None:
        from latency_tables.table import count_to_ms

        unit = profile.timer_kind
        per = profile.per_layer
        clock = profile.clock_hz
        ops = metrics.runtime_layer_ops
        names = [f"{i}: {ops[i] if i < len(ops) else la['name']}" for i, la in enumerate(per)]
        measured = [count_to_ms(c, clock) for c in profile.layer_counts()]
        pred = metrics.prediction.per_layer_count
        predicted = [count_to_ms(c, clock) for c in pred] if pred else None
        plot_layers(names, measured, predicted, profile.where, out_dir / "layers.png")
        plots.append(("layers.png", "Latency per layer",
                      f"Measured per kernel call on {profile.board} ({profile.where}, {unit}), "
                      "with the latency table's entry for the same call."))
    if metrics.arena_timeline:
        plot_arena(metrics.arena_timeline, metrics.arena_bytes_planned,
                   profile.arena_bytes_measured if profile else None, budgets.ram_bytes, out_dir / "arena.png")
        plots.append(("arena.png", "Arena over the execution order",
                      "Bytes of the tensors alive during each kernel call, and the highest arena byte they occupy "
                      "in the static plan; the plan's peak is the arena the firmware reserves."))
    if metrics.confusion_int8:
        plot_confusion(metrics.confusion_int8, metrics.classes, out_dir / "confusion.png")
        plots.append(("confusion.png", "Confusion matrix", "int8 model on the test split (TFLite Micro)."))

    doc = _document(run, config, metrics, profile, search, arch, train_log, budgets, plots)
    atomic_write_text(out_dir / "report.md", _markdown(doc))
    atomic_write_text(out_dir / "report.html", _html(doc, out_dir))
    return ReportResult(str(out_dir / "report.html"), str(out_dir / "report.md"),
                        [str(out_dir / f) for f, _, _ in plots])


def _document(run, config, metrics, profile, search, arch, train_log, budgets, plots) -> dict:
    """The report's content, independent of the format."""
    title = f"micronas run {run.path.name}"
    facts = [("run", str(run.path)), ("data", f"{config['data']['spec']} ({config['data']['channels']} channels x "
                                              f"{config['data']['length']} samples, {len(config['classes'])} classes)"),
             ("board", (profile.board if profile else None) or config.get("target") or "-"),
             ("micronas", metrics.micronas_version)]
    if search is not None:
        facts.append(("search", f"{len(search.trajectory)} epochs, {search.search_seconds} s"))
        if search.space:
            facts.append(("search space", f"{search.space['name']}: {search.space['reason']}"))
        if search.window_mean:
            wm = search.window_mean
            facts.append(("window mean", f"{'removed' if wm['remove'] else 'kept'} ({wm['why']})"))
    if config.get("train"):
        facts.append(("training", _training_text(run, config["train"])))
    acc = [["fp32", f"{100 * metrics.accuracy_fp32:.1f} %", "torch, folded network"],
           ["int8", f"{100 * metrics.accuracy_int8:.1f} %",
            f"{metrics.weights}; TFLite Micro; int8 loss {100 * (metrics.accuracy_fp32 - metrics.accuracy_int8):+.1f} "
            f"points against fp32; {interval_text(metrics.accuracy_int8, metrics.test_windows)} (windows counted "
            "as independent: windows of one subject are not, so the true spread is wider)"]]
    lc = metrics.litert_check
    if lc:
        acc.append(["int8 (LiteRT)", f"{100 * lc['accuracy_int8_litert']:.1f} %",
                    f"for comparison: max {lc['max_lsb_diff']} LSB from TFLite Micro "
                    f"({'within' if lc['ok'] else 'more than'} the {lc['allowed_max_lsb_diff']} LSB expected), "
                    f"argmax agreement {100 * lc['argmax_agreement']:.1f} %"])
    norm = run.read_json("normalization.json") if run.has("normalization.json") else {}
    clip = norm.get("clip")
    if clip and metrics.input:
        acc.append(["int8 input", f"step {metrics.input['scale']:.3g}",
                    ("each window's per-channel mean removed, then " if norm.get("remove_window_mean") else "")
                    + f"standardised values clipped to {clip[0]:.2f}..{clip[1]:.2f} in training, calibration and "
                    f"evaluation ({CLIP_PERCENT:g} % of training values at each end); the board's input saturates there"])
    q = metrics.qat
    if q:
        acc.append(["QAT", "ran, kept " + q["kept"] if q.get("ran") else "not needed",
                    f"validation fp32 {100 * q['validation_accuracy_fp32']:.1f} %, int8 (PTQ) "
                    f"{100 * q['validation_accuracy_int8_ptq']:.1f} %"
                    + (f", int8 after fine-tuning {100 * q['validation_accuracy_int8_qat']:.1f} %"
                       if q.get("ran") else "") + f"; rule: {q['trigger']}"])
    err = {r["layer"]: f"{100 * r['relative_error']:.1f} % ({r['rms_error_lsb']:.1f} LSB)"
           for r in (metrics.layer_int8_error or {}).get("layers", [])}
    layers = [[str(i), "stem" if i == 0 else f"cell {i}", _layer_text(la), err.get(i, "-")]
              for i, la in enumerate([arch["stem"], *arch["cells"]])]
    layers.append([str(len(layers)), "head", f"global average, fully connected -> {arch['num_classes']} classes",
                   err.get(len(layers), "-")])
    notes = []
    if profile and profile.over_budget:
        notes.append("OVER BUDGET on the device: " + "; ".join(profile.over_budget))
    elif profile:
        notes.append(f"Fits every budget, measured on {profile.where}.")
    else:
        notes.append("Not profiled on a device yet: run `micronas profile " + str(run.path) + "`.")
    if lc and lc.get("warning"):
        notes.append("Warning: " + lc["warning"])
    if search and search.repairs:
        notes.append("Derivation steps (repair while over a budget, then fill towards the latency budget): "
                     + "; ".join(search.repairs))
    return {"title": title, "facts": facts, "notes": notes, "budget_rows": _rows(metrics, profile, budgets),
            "accuracy": acc, "layers": layers, "arch_short": arch_summary(arch),
            "plots": plots, "confusion": (metrics.classes, metrics.confusion_int8)}


def _training_text(run, t: dict) -> str:
    """The recipe in one line, with the teacher's validation accuracy when distilled."""
    parts = [f"{t['epochs']} epochs", f"batches of {t['batch_size']}", f"Adam {t['lr']:g}, cosine",
             f"label smoothing {t['label_smoothing']:g}" if t.get("label_smoothing") else "",
             "augmentation " + ", ".join(t["augment"]) if t.get("augment") else "no augmentation",
             f"weight average (EMA {t['ema_decay']:g})" if t.get("ema_decay") else "",
             "kept: " + ("last epoch" if t.get("checkpoint_rule") == "last" else "best validation epoch")]
    if t.get("distill"):
        teacher = _load(run, f"{TEACHER_DIR}/train_log.json")
        got = f", teacher validation accuracy {100 * teacher['best']['val_acc']:.1f} %" if teacher else ""
        parts.append(f"distilled at {t['distill']:g} from a x{t.get('teacher_width', 1.5):g}-wide teacher{got}")
    return "; ".join(p for p in parts if p)


_BUDGET_HEAD = ["figure", "budget", "predicted", "measured", "source"]
_LAYER_HEAD = ["#", "position", "layer", "int8 vs fp32 output error (validation)"]
_LAYER_NOTE = ("int8 vs fp32: RMS of the int8 output minus the fp32 output, relative to the fp32 output's RMS "
               "(and in the int8 tensor's LSB); it accumulates from layer to layer, so the layer where it jumps "
               "is the one that loses. int8 from LiteRT with every tensor kept, on validation windows.")


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _markdown(doc: dict) -> str:
    parts = [f"# {doc['title']}", "", *[f"- **{k}**: {v}" for k, v in doc["facts"]], "",
             *[f"> {n}" for n in doc["notes"]], "", "## Budgets and achieved figures", "",
             md_table(_BUDGET_HEAD, doc["budget_rows"]), "", "## Accuracy (test split)", "",
             md_table(["model", "accuracy", "notes"], doc["accuracy"]), "",
             f"## Architecture: {doc['arch_short']}", "", md_table(_LAYER_HEAD, doc["layers"]), "",
             _LAYER_NOTE, ""]
    for f, title, caption in doc["plots"]:
        parts += [f"## {title}", "", f"![{title}]({f})", "", caption, ""]
    return "\n".join(parts)


def html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


PAGE_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;margin:2em auto;
padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee}.note{background:#f6f8fa;border-left:4px solid #1f77b4;
padding:.5em 1em;margin:.5em 0}.caption{color:#555;font-size:14px}"""


def _html(doc: dict, out_dir: Path) -> str:
    facts = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in doc["facts"])
    notes = "".join(f'<div class="note">{html.escape(n)}</div>' for n in doc["notes"])
    body = [f"<h1>{html.escape(doc['title'])}</h1><ul>{facts}</ul>{notes}",
            "<h2>Budgets and achieved figures</h2>", html_table(_BUDGET_HEAD, doc["budget_rows"]),
            "<h2>Accuracy (test split)</h2>", html_table(["model", "accuracy", "notes"], doc["accuracy"]),
            f"<h2>Architecture: {html.escape(doc['arch_short'])}</h2>",
            html_table(_LAYER_HEAD, doc["layers"]), f'<p class="caption">{html.escape(_LAYER_NOTE)}</p>']
    for f, title, caption in doc["plots"]:
        data = base64.b64encode((out_dir / f).read_bytes()).decode()
        body.append(f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
                    f'<p class="caption">{html.escape(caption)}</p>')
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(doc['title'])}"
            f"</title><style>{PAGE_CSS}</style></head><body>{''.join(body)}</body></html>\n")
