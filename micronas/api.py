"""The Python API behind the CLI; notebooks call these directly.

One function per stage, each implemented in `micronas.stages` and returning a frozen record
(`micronas.results`) with `to_json()`:

    train(data, out, ...)            -> TrainResult
    export(run, budgets, ...)        -> ExportResult   (metrics.json)
    export_int8(run, budgets, ...)   -> ExportResult   (export, QAT when PTQ loses any val. accuracy)
    profile(run, target, port, ...)  -> ProfileResult  (profile.json)
    compile_model(model, out, ...)   -> CompileResult  (a .tflite made elsewhere: compile.json, c/)
    profile_compiled(dir_or_model, ...) -> (ProfileResult, CompileResult, folder)
    search(data, out, budgets, ...)  -> SearchResult   (search.json, then all of the above)
    train_export_profile(...)        -> PipelineResult
    build_table(...), list_tables()  latency tables (`micronas tables`)

Each stage writes its artefact into an explicit run directory:

    run.json            run format marker
    config.json         data source and fingerprint, training settings, class names
    arch.json           the architecture (alone rebuilds the network)
    split.json          train/val/test indices
    normalization.json  per-channel mean/std of the training split
    model.pt            fp32 state dict (load with weights_only=True)
    train_log.json      per-epoch history and the checkpoint rule
    model.onnx          dynamo ONNX export, batch norms folded, one file
    model_int8.tflite   full-integer int8, builtins only, 16-byte aligned buffers
    c/model_data.{h,c}  the flatbuffer as a C array plus I/O quantisation and labels
    metrics.json        accuracies, agreement, sizes, the TFLM arena, budget check
    export.log          what the converters printed
    profile.json        counts, arena and stack measured on the device, budgets exceeded
    search.json         the search: budgets, trajectory, derivation, prediction
"""

from __future__ import annotations

# For notebooks: run an exported int8 model on LiteRT or the TFLite Micro host interpreter.
from firmware_export import verify
from micronas.budgets import check_board_has, for_board as board_budgets, resolve_board
from micronas.data import Dataset, load_dataset
from micronas.results import (CompileResult, ExportResult, MinimumCosts, PipelineResult, ProfileResult, ReportResult, SearchRecord,
                              SearchResult, TrainResult)
from micronas.stages.common import (QAT_MODEL, StageCallback, data_fingerprint, folded_model as _folded_model,
                                    load_run as _load_run, resolve_arch, torch_device, torch_threads)
from micronas.stages.compile import compile_model, default_out as default_compile_out, is_compiled, \
    profile_compiled
from micronas.stages.export import MAX_INTERPRETER_LSB_DIFF, QAT_TRIGGER, export, export_int8
from micronas.stages.profile import effective_budgets, profile
from micronas.stages.search import BudgetPlan, check_feasible, minimum_costs, plan_budgets, search, \
    train_export_profile
from micronas.stages.train import train
from micronas.tables import TableListing, build_table_for as build_table, list_tables
from micronas_base.errors import BudgetError, ConfigError, DataError, ExportError
from search_space import arch as arch_mod

__all__ = [
    "BudgetError", "BudgetPlan", "CompileResult", "ConfigError", "DataError", "Dataset", "ExportError", "ExportResult",
    "MAX_INTERPRETER_LSB_DIFF", "MinimumCosts", "PipelineResult", "ProfileResult", "QAT_MODEL", "QAT_TRIGGER",
    "ReportResult", "SearchRecord", "SearchResult", "StageCallback", "TableListing", "TrainResult", "arch_mod",
    "board_budgets", "build_table", "check_board_has", "check_feasible", "compile_model", "default_compile_out", "data_fingerprint", "effective_budgets",
    "export", "export_int8", "is_compiled", "list_tables", "load_dataset", "minimum_costs", "plan_budgets", "profile", "profile_compiled",
    "resolve_arch", "resolve_board", "search", "torch_device", "torch_threads", "train", "train_export_profile", "verify",
]
