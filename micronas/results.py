"""The results of the stages: typed, frozen records with `to_json()` / `from_json()`.

Each is what a stage returns and what it writes into the run directory: `ExportResult` is
metrics.json, `ProfileResult` profile.json, `SearchRecord` search.json; `to_json()` gives exactly
the file's keys, in the file's order. A field is named as its key, except where a key carries
the count unit (`total_instructions` is `ProfileResult.total`). Nested records that are data
of their own (a confusion matrix, the arena timeline, a trajectory) stay JSON values.

No heavy imports: the CLI and the report read these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from micronas.units import Budgets


class Record:
    """A frozen dataclass whose fields are, in order, the keys of its JSON object.

    Subclasses name fields that are left out when None (`_omit_none`), fields that are records
    or budgets (`_nested`), and fields whose keys are merged into the parent (`_flatten`).
    """

    _omit_none: ClassVar[tuple[str, ...]] = ()
    _nested: ClassVar[dict[str, Any]] = {}
    _flatten: ClassVar[tuple[str, ...]] = ()

    def _key(self, name: str) -> str:
        return name

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in field order."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name in self._omit_none and v is None:
                continue
            if f.name in self._flatten:
                out.update(v.to_json())
                continue
            out[self._key(f.name)] = v.to_json() if hasattr(v, "to_json") else v
        return out

    @classmethod
    def _keys_for(cls, d: dict[str, Any]) -> dict[str, str]:
        return {}

    @classmethod
    def from_json(cls, d: dict[str, Any]):
        """Rebuild from `to_json()` output (a file written by this stage)."""
        rename = cls._keys_for(d)
        kw: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in cls._flatten:
                kw[f.name] = cls._nested[f.name].from_json(d)
                continue
            key = rename.get(f.name, f.name)
            if key not in d:
                if f.name in cls._omit_none:
                    kw[f.name] = None
                    continue
                raise KeyError(key)
            v = d[key]
            kw[f.name] = cls._nested[f.name].from_json(v) if f.name in cls._nested and v is not None else v
        return cls(**kw)


# ---- train ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitSizes(Record):
    """Windows per split, and how the split was made."""

    train: int
    val: int
    test: int
    test_from_file: bool
    by_subject: bool


@dataclass(frozen=True)
class TrainResult(Record):
    """What `train` did: the run, the arch, the split, and the kept epoch (`best`: epoch,
    val_acc, val_loss)."""

    run: str
    arch: dict[str, Any]
    classes: list[str]
    split: SplitSizes
    reused: bool
    best: dict[str, Any]
    _nested: ClassVar[dict[str, Any]] = {"split": SplitSizes}


# ---- export (metrics.json) ---------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionRecord(Record):
    """A latency table's prediction for a network (`latency_tables.predict.Prediction.to_json()`,
    the board it is for when export made it), or why there is none."""

    latency_ms: float | None
    latency_count: float | None = None
    latency_unit: str | None = None
    latency_source: str | None = None
    per_layer_count: list[float] | None = None
    arena_bytes: int | None = None
    const_bytes: int | None = None
    flash_bytes: int | None = None
    flash_source: str | None = None
    latency_table: str | None = None
    for_board: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.latency_ms is None:
            return {"predicted_latency_ms": None, "predicted_latency_note": self.note}
        out = {"predicted_latency_ms": self.latency_ms, "predicted_latency_count": self.latency_count,
               "predicted_latency_unit": self.latency_unit, "predicted_latency_source": self.latency_source,
               "predicted_per_layer_count": self.per_layer_count, "predicted_arena_bytes": self.arena_bytes,
               "predicted_const_bytes": self.const_bytes, "predicted_flash_bytes": self.flash_bytes,
               "predicted_flash_source": self.flash_source, "latency_table": self.latency_table}
        if self.for_board is not None:
            out["predicted_for_board"] = self.for_board
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PredictionRecord:
        if d.get("predicted_latency_ms") is None:
            return cls(None, note=d.get("predicted_latency_note"))
        return cls(d["predicted_latency_ms"], d["predicted_latency_count"], d["predicted_latency_unit"],
                   d["predicted_latency_source"], d["predicted_per_layer_count"], d["predicted_arena_bytes"],
                   d["predicted_const_bytes"], d["predicted_flash_bytes"], d["predicted_flash_source"],
                   d["latency_table"], d.get("predicted_for_board"))


@dataclass(frozen=True)
class ExportResult(Record):
    """metrics.json: accuracies, agreement, sizes, arenas, the prediction, the budget check."""

    micronas_version: str
    test_windows: int
    test_split: str
    accuracy_fp32: float
    accuracy_int8: float
    int8_accuracy_drop: float
    weights: str
    argmax_agreement_int8_vs_fp32: float
    classes: list[str]
    confusion_int8: list[list[int]]
    int8_source: str
    litert_vs_tflm: dict[str, Any]
    tflite_bytes: int
    tflm_arena_bytes: int
    tflm_arena_source: str
    tflm_arena_recorded_bytes: int | None
    tflite_ops: list[str]
    arena_bytes_planned: int
    arena_source: str
    arena_bytes_without_reuse: int
    arena_timeline: list[dict[str, Any]]
    flash_bytes_weights: int
    flash_bytes_weights_source: str
    flash_bytes_weights_unshared: int
    prediction: PredictionRecord
    runtime_layers: int
    runtime_layer_ops: list[str]
    macs: int
    runtime_vs_tflm: dict[str, Any]
    runtime_vs_litert: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]
    budgets: Budgets
    export_seconds: float
    budget_check: dict[str, dict[str, Any]] = field(default_factory=dict)
    qat: dict[str, Any] | None = None  # export_int8's record: what was done about quantisation and why
    # LiteRT against TFLite Micro (allowed and measured LSB, ok, warning); None in older files
    litert_check: dict[str, Any] | None = None
    # per layer, int8 against fp32 on validation windows (micronas.layer_error); None in older files
    layer_int8_error: dict[str, Any] | None = None

    _omit_none: ClassVar[tuple[str, ...]] = ("qat", "litert_check", "layer_int8_error")
    _flatten: ClassVar[tuple[str, ...]] = ("prediction",)
    _nested: ClassVar[dict[str, Any]] = {"prediction": PredictionRecord, "budgets": Budgets}


# ---- profile (profile.json) --------------------------------------------------------------------

_UNIT_KEYS = {"total": "total_{}", "total_min_max": "total_{}_min_max", "total_note": "total_{}_note",
              "per_layer": "per_layer_{}", "per_layer_sum": "per_layer_sum_{}",
              "per_layer_window_total": "per_layer_window_total_{}"}


@dataclass(frozen=True)
class ProfileResult(Record):
    """profile.json: counts (in `timer_kind` units: keys carry the unit), arena, stack, ELF sizes,
    the prediction's error, and the budgets exceeded on the device."""

    micronas_version: str
    board: str
    core: str
    clock_hz: int
    where: str
    timer_kind: str
    count_source: str
    total: float
    total_min_max: list[float]
    total_note: str
    per_layer: list[dict[str, Any]]  # {"index", "name", <unit>: count}
    per_layer_sum: float
    per_layer_window_total: float
    per_layer_sum_over_total: float | None
    repeat_min_max_ticks: list[int]
    repeat_equals_first_run: bool
    measured_latency_ms: float
    windows: int
    outputs_equal_host_runtime: bool
    outputs_equal_tflm: bool
    arena_bytes_measured: int
    arena_bytes_planned: int
    stack_high_water_bytes: int
    stack_bytes_reserved: int
    elf: dict[str, int]
    flash_bytes: int
    ram_bytes: int
    ram_source: str
    budgets: Budgets
    predicted_latency_ms: float | None = None
    prediction_error: float | None = None
    prediction_source: str | None = None
    over_budget: list[str] = field(default_factory=list)

    _omit_none: ClassVar[tuple[str, ...]] = ("predicted_latency_ms", "prediction_error", "prediction_source")
    _nested: ClassVar[dict[str, Any]] = {"budgets": Budgets}

    def _key(self, name: str) -> str:
        return _UNIT_KEYS[name].format(self.timer_kind) if name in _UNIT_KEYS else name

    @classmethod
    def _keys_for(cls, d: dict[str, Any]) -> dict[str, str]:
        return {k: v.format(d["timer_kind"]) for k, v in _UNIT_KEYS.items()}

    def layer_counts(self) -> list[float]:
        """Each layer's count, in `timer_kind` units."""
        return [la[self.timer_kind] for la in self.per_layer]


# ---- compile (compile.json): a model made elsewhere ------------------------------------------------


@dataclass(frozen=True)
class CompileResult(Record):
    """compile.json: a .tflite made elsewhere, compiled to the micronas C model and verified
    against TFLite Micro; what `micronas profile DIR` and the comparison read back."""

    format: str
    micronas_version: str
    source: str  # the path given to `micronas compile`
    source_name: str  # its file name; the copy in the folder has this name
    sha256: str
    tflite_bytes: int
    tflite_ops: list[str]
    op_counts: dict[str, int]
    input: dict[str, Any]  # shape, scale, zero_point, layout
    output: dict[str, Any]
    labels: list[str] | None  # None: not given (the header says the labels are the indices)
    normalisation: dict[str, list[float]] | None  # {"mean", "std"}; None: not given
    target: str  # the board profile uses by default
    windows: int
    windows_source: str  # the user's file, or the seed of the random windows
    runtime_vs_tflm: dict[str, Any]
    sanitizer_build_equal: bool
    arena_bytes_planned: int
    arena_source: str
    arena_bytes_without_reuse: int
    arena_timeline: list[dict[str, Any]]
    flash_bytes_weights: int
    flash_bytes_weights_source: str
    runtime_layers: int
    runtime_layer_ops: list[str]
    macs: int
    tflm_arena_bytes: int
    tflm_arena_source: str
    tflm_arena_recorded_bytes: int
    board_sram_bytes: int
    compile_seconds: float
    # the model linked into the smallest application for the target's core (text/data/bss bytes,
    # source); None when the ARM cross compiler is not installed
    code_footprint: dict[str, Any] | None = None

    _omit_none: ClassVar[tuple[str, ...]] = ("code_footprint",)


# ---- search (search.json) and the whole pipeline -------------------------------------------------


@dataclass(frozen=True)
class MinimumCosts(Record):
    """The smallest latency, arena and flash a network of the space reaches for the data on the
    board, and the cheapest network by each measure (arch.json objects)."""

    latency_ms: float
    ram_bytes: int
    flash_bytes: int
    networks: list[dict[str, Any]]


@dataclass(frozen=True)
class SearchRecord(Record):
    """search.json once the search is derived (while it runs, only config, digest, budgets and
    the trajectory are written)."""

    config: dict[str, Any]
    digest: str
    budgets: Budgets
    board: str
    latency_table: str | None
    minimum_costs: MinimumCosts
    trajectory: list[dict[str, Any]]
    search_seconds: float
    derived: dict[str, Any]
    repairs: list[str]
    predicted: PredictionRecord  # the derived network's, by the table's flash model
    # the derivation's candidates: {"arch", "predicted_latency_ms", "validation_score", "chosen"};
    # None in older files
    candidates: list[dict[str, Any]] | None = None
    derivation_seconds: float | None = None
    # the searched space: {"name", "widths" per position, "multiplier", "extra_cells", "reason",
    # "reference_ms"} (`micronas.space_scale`); None in older files (the default space)
    space: dict[str, Any] | None = None
    # where each part ran: {"search", "candidates", "final_training"} -> "cpu" | "cuda"; None in older files
    device: dict[str, str] | None = None
    # whether each window's mean is removed and why (`micronas.stages.search.choose_window_mean`);
    # None in older files (kept)
    window_mean: dict[str, Any] | None = None

    _nested: ClassVar[dict[str, Any]] = {"budgets": Budgets, "minimum_costs": MinimumCosts,
                                         "predicted": PredictionRecord}
    _omit_none: ClassVar[tuple[str, ...]] = ("candidates", "derivation_seconds", "space", "device", "window_mean")


@dataclass(frozen=True)
class ReportResult(Record):
    """Where the report was written."""

    html: str
    markdown: str
    plots: list[str]


@dataclass(frozen=True)
class PipelineResult(Record):
    """`train_export_profile`: the kept epoch, metrics.json and profile.json."""

    train: dict[str, Any]
    metrics: ExportResult
    profile: ProfileResult
    _nested: ClassVar[dict[str, Any]] = {"metrics": ExportResult, "profile": ProfileResult}


@dataclass(frozen=True)
class SearchResult(Record):
    """`search`: the architecture, derivation steps, minimums, prediction, and the final
    training, export, profile and report."""

    run: str
    arch: dict[str, Any]
    repairs: list[str]
    minimum_costs: MinimumCosts
    predicted: PredictionRecord  # the derived network's, by the table's flash model (not the ELF)
    train: dict[str, Any]
    metrics: ExportResult
    profile: ProfileResult
    report: ReportResult
    _nested: ClassVar[dict[str, Any]] = {"minimum_costs": MinimumCosts, "predicted": PredictionRecord,
                                         "metrics": ExportResult,
                                         "profile": ProfileResult, "report": ReportResult}
