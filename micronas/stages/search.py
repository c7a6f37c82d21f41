"""The search stage: from data and budgets to a measured model. The latency table for the
board and data shape (measured on demand), a feasibility check against the cheapest networks of
the space, the DNAS, derivation, then `train_export_profile` and the report."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from micronas import budgets as budget_mod
from micronas.budgets import FLASH, LATENCY, RAM
from micronas.parallel import map_tasks
from micronas.data import Standardizer, arrays_for, load_dataset, make_split
from micronas.results import ExportResult, MinimumCosts, PipelineResult, PredictionRecord, SearchRecord, SearchResult
from micronas.rundir import RunDir, atomic_write_text
from micronas.stages.common import StageCallback, data_fingerprint, have_emulator, no_stage, set_torch_threads, \
    torch_device
from micronas.stages.export import export_int8
from micronas.stages.profile import profile_run
from micronas.stages.train import train
from micronas.train import DEFAULT_EPOCHS, MIN_STEPS, EpochCallback, TrainConfig, epochs_for
from micronas.units import Budgets
from micronas_base.errors import BudgetError, ConfigError, MicronasError

# The final training distils a wider teacher (TrainConfig.teacher_width) into the found network at
# this weight: +1.6 points of validation accuracy for a searched network and +1.2 for the 64/64/64
# CNN on the watch data's three pool-subject folds (benchmarks/README.md, "distillation").
FINAL_DISTILL = 0.5
# ...when the final training is short: distillation about triples its time. On 6,094 training
# windows x 120 epochs the teacher alone ran at about 6 s per epoch (12 minutes) on 2 cores, while
# the whole search without it took 13.9 minutes (benchmarks/search_speed.py), so distilling there
# would miss issue 13's 15-minute target by far; the gain was measured on small data (watch: ~900
# training windows). Above this the default is off; `--distill W` decides either way.
DISTILL_MAX_WINDOW_EPOCHS = 250_000


def final_distill(train_windows: int, final_epochs: int) -> tuple[float, str]:
    """The default distillation weight of a search's final training, and why."""
    work = train_windows * final_epochs
    if work <= DISTILL_MAX_WINDOW_EPOCHS:
        return FINAL_DISTILL, f"distilled from a wider teacher trained first ({work:,} window-epochs)"
    return 0.0, (f"not distilled: {work:,} window-epochs is a long training already (over "
                 f"{DISTILL_MAX_WINDOW_EPOCHS:,}); --distill 0.5 distils anyway, at about 3x its time")

# Whether to remove each window's per-channel mean (`Standardizer`): decided per dataset on its
# validation split by training a proxy network (micronas train's default network) both ways for
# about this many weight steps with the final recipe. On the watch data removing it makes the
# searched network better on held-out pool subjects, on JapaneseVowels it loses, and the proxy
# decides both right (benchmarks/window_mean.py; figures in benchmarks/README.md).
WINDOW_MEAN_PROXY_STEPS = 1_500
WINDOW_MEAN_JOURNAL = "window_mean.json"
WINDOW_MEAN_SETTINGS = ("auto", "keep", "remove")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetPlan:
    """The board a search is for and its budgets, completed from the board.

    Attributes:
        board: The resolved board (`targets.boards.Board`).
        budgets: The budgets given, RAM and flash not given set to what the board has.
        lines: How they were read, one line each, for the start of the run.
    """

    board: Any
    budgets: Budgets
    lines: list[str]


def plan_budgets(given: Budgets, target: str | None = None) -> BudgetPlan:
    """Resolve the board (None: the default board) and complete `given` from it.

    Raises:
        ConfigError: an unknown board.
    """
    board = budget_mod.resolve_board(target)
    budgets = budget_mod.for_board(given, board)
    return BudgetPlan(board, budgets, budgets.describe() + budget_mod.defaulted_lines(given, board))


def minimum_costs(cm: Any, table: Any) -> MinimumCosts:
    """The smallest latency, arena and flash a network of the space reaches for this data on
    this board: exact predictions of the cheapest networks by each per-layer measure."""
    from latency_tables import costs as costs_mod
    from latency_tables import predict as predictor

    m = table.metadata
    cands = [costs_mod.cheapest_network(cm, metric, m["input_channels"], m["input_length"], m["num_classes"])
             for metric in ("latency", "ram", "flash")]
    preds = [predictor.predict(a, table) for a in cands]
    return MinimumCosts(min(p.latency_ms for p in preds), min(p.arena_bytes for p in preds),
                        min(p.flash_bytes for p in preds), [a.to_json() for a in cands])


def standardized(ds: Any, split: Any, parts: dict[str, Any], remove_window_mean: bool) -> tuple[Any, dict[str, Any]]:
    """The Standardizer fitted on the training windows, and the training and validation arrays it gives.

    Args:
        ds: The dataset.
        split: Its split.
        parts: `arrays_for(ds, split)`.
        remove_window_mean: Whether each window's per-channel mean is removed first.

    Returns:
        (standardizer, {"train": (X, y), "val": (X, y)}): labels as int64; the test split is not read.
    """
    std = Standardizer.fit(ds.X[split.train], remove_window_mean=remove_window_mean)
    return std, {k: (std.apply(parts[k][0]), parts[k][1].astype(np.int64)) for k in ("train", "val")}


def choose_window_mean(run: RunDir, ds: Any, split: Any, parts: dict[str, Any], setting: str, seed: int,
                       batch_size: int, stage: StageCallback) -> dict[str, Any]:
    """Whether the search and its final training remove each window's per-channel mean.

    "keep" / "remove": as given. "auto": the proxy network (micronas train's default network,
    shaped to the data) is trained with the final recipe for about WINDOW_MEAN_PROXY_STEPS steps
    on the windows as they are and with their mean removed (same seed, same batches); the mean is
    removed only when that gives a strictly lower validation loss (cross-entropy: it scores every
    window's confidence, where accuracy on a hundred windows moves in steps of about a point and
    often ties; a tie keeps the windows as they are). The test split is never read. The decision
    is journaled in RUN/window_mean.json (with the proxy runs in RUN/window_mean/), so a resumed
    search reuses it; a search checkpointed before the option existed (no journal) resumes with
    the mean kept, as it began.

    Returns:
        {"remove": bool, "setting": str, "why": str, and for "auto" the two validation scores}.
    """
    import hashlib
    import json

    from micronas.stages.common import resolve_arch
    from micronas.train import train as train_loop
    from search_space.network import build

    if setting not in WINDOW_MEAN_SETTINGS:
        raise ConfigError(f"--window-mean {setting!r} is not a setting", f"use one of {', '.join(WINDOW_MEAN_SETTINGS)}")
    if setting != "auto":
        return {"remove": setting == "remove", "setting": setting, "why": f"--window-mean {setting}"}
    if run.has("search_checkpoint.pt") and not run.has(WINDOW_MEAN_JOURNAL):  # journaled before any checkpoint
        return {"remove": False, "setting": setting,
                "why": "kept: this run's search started before micronas decided the window mean, and resumes as it began"}
    proxy = resolve_arch(None, ds)
    epochs = epochs_for(len(split.train), batch_size, WINDOW_MEAN_PROXY_STEPS, at_least=1)
    cfg = TrainConfig(epochs=epochs, seed=seed, checkpoint_rule="last")
    key = hashlib.sha256(json.dumps({"data": data_fingerprint(ds), "split": split.to_json(), "arch": proxy.to_json(),
                                     "train": asdict(cfg)}, sort_keys=True).encode()).hexdigest()[:16]
    if run.has(WINDOW_MEAN_JOURNAL):
        done = run.read_json(WINDOW_MEAN_JOURNAL)
        if done.get("key") == key:
            return done["decision"]
    stage(f"window mean: keep or remove? the default network trained both ways ({epochs} epochs), "
          "scored on validation")
    scores = {}
    for remove in (False, True):
        _, data = standardized(ds, split, parts, remove)
        name = "removed" if remove else "kept"
        digest = cfg.digest({"arch": proxy.to_json(), "data": data_fingerprint(ds), "remove_window_mean": remove})
        out = train_loop(RunDir.create(run.file("window_mean") / name), lambda: build(proxy), data, cfg, digest)
        scores[name] = {"val_acc": out["best"]["val_acc"], "val_loss": out["best"]["val_loss"]}
    kept, removed = scores["kept"], scores["removed"]
    remove = removed["val_loss"] < kept["val_loss"]  # a tie keeps the windows as they are
    why = (f"validation loss of the default network {removed['val_loss']:.4f} with each window's mean removed, "
           f"{kept['val_loss']:.4f} with it kept; accuracy {100 * removed['val_acc']:.1f} and "
           f"{100 * kept['val_acc']:.1f} %")
    decision = {"remove": remove, "setting": "auto", "why": why, "proxy_epochs": epochs, **scores}
    run.write_json(WINDOW_MEAN_JOURNAL, {"key": key, "decision": decision})
    return decision


def check_feasible(budgets: Budgets, mins: MinimumCosts, board: Any) -> None:
    """A budget below what the cheapest network of the space reaches is a BudgetError naming the minimum.

    Raises:
        BudgetError: naming each such budget and the value to relax it to.
    """
    budget_mod.raise_if_infeasible([
        budget_mod.check(budgets, LATENCY, f"the fastest network of the search space for this data on {board.name}",
                         mins.latency_ms, note="predicted from its latency table"),
        budget_mod.check(budgets, RAM, "the smallest arena of the search space for this data", mins.ram_bytes),
        budget_mod.check(budgets, FLASH, f"the smallest firmware of the search space for this data on {board.name}",
                         mins.flash_bytes),
    ])


def search(data: str | os.PathLike[str], out: str | os.PathLike[str], budgets: Budgets = Budgets(),
           target: Any = None, port: str | None = None, cfg: Any = None, final_epochs: int | None = None,
           profile_windows: int = 20, on_stage: StageCallback | None = None,
           on_epoch: EpochCallback | None = None, resume: bool = False,
           on_train_epoch: EpochCallback | None = None,
           on_window: Callable[[int, int], None] | None = None, threads: int | None = None,
           link: Any = None, train_overrides: dict[str, Any] | None = None, device: str = "cpu") -> SearchResult:
    """Search, train, export and profile: from data to a measured, budget-checked model.

    Budgets not given default to the board's SRAM and flash. Before searching, a budget below
    what any network of the space can reach is a BudgetError naming the minimum.

    Args:
        data: "basicmotions" or a data file.
        out: The run directory.
        budgets: Latency, RAM and flash budgets.
        target: Board name or Board (None: the default board).
        port: A real board for the final profile and missing table entries.
        cfg: `micronas.search.SearchConfig`.
        final_epochs: Epochs of the final training (None: 120, or more on small data; see
            `micronas.train.epochs_for`).
        profile_windows: Test windows profiled on the device.
        on_stage, on_epoch, on_train_epoch, on_window: Progress callbacks.
        resume: Continue a killed search (its settings must match).
        threads: torch's intra-op threads (None: MICRONAS_THREADS, OMP_NUM_THREADS, else
            min(4, CPUs); see `set_torch_threads`).
        train_overrides: TrainConfig fields of the final training other than the defaults
            (e.g. {"augment": (...)}).
        device: Where the final training runs: "cpu", "cuda" or "auto" (`torch_device`); the
            DNAS and the candidates' scoring run on the CPU (recorded in search.json).

    Returns:
        The architecture, predicted and measured figures, accuracy, the report.

    Raises:
        BudgetError: infeasible budget, or the measured network exceeds one.
        ConfigError, DataError, DeviceError, ExportError: as the stages raise them. An error after
            the search phase keeps the trained model, the export and (with metrics.json) the
            report; its hint says where.
    """
    from latency_tables import costs as costs_mod
    from latency_tables import predict as predictor
    from micronas import search as dnas
    from micronas import tables
    from search_space.space import position_choices
    from search_space.supernet import SuperNet

    stage = on_stage or no_stage
    n_threads, why = set_torch_threads(threads)  # first: a shared machine is oversubscribed by torch's default
    dev, dev_why = torch_device(device)
    stage(f"torch: {n_threads} intra-op thread{'s' if n_threads > 1 else ''} ({why}), 1 inter-op")
    if dev != "cpu" or device != "cpu":
        stage(f"final training on {dev} ({dev_why}); the DNAS and the candidates' scoring on the CPU")
    cfg = cfg or dnas.SearchConfig()
    board = budget_mod.resolve_board(target)
    budgets = budget_mod.for_board(budgets, board)
    budget_mod.check_board_has(budgets, board)
    ds = load_dataset(data)
    shape = (ds.n_channels, ds.length, ds.n_classes)
    tables.check_data_shape(*shape, source=f"the data {data}")
    split = make_split(ds, seed=cfg.seed, val_subjects=cfg.val_subjects)
    parts = arrays_for(ds, split)
    cfg = cfg.for_data(len(split.train))  # the epochs, resolved before they enter the digest

    stage(f"latency table for {board.name}, {shape[0]}ch x {shape[1]}, {shape[2]} classes")
    try:
        table = predictor.find_table(board.name, *shape)
    except predictor.NoTableError:  # only a missing table is measured; a bad one is the user's to fix
        if port is not None or not have_emulator():
            raise
        out_table = Path(predictor.USER_TABLES_DIR) / predictor.default_table_name(board.name, *shape)
        stage(f"no table yet: measuring one on the emulated core into {out_table}")
        table = tables.build_table(board, *shape, out_table, on_stage=stage)
    measure = ((lambda keys: tables.measure_into(table, keys, port=port, on_stage=stage))
               if port is not None or have_emulator() else None)
    space, scale, cm, mins = _sized_space(table, budgets, board, cfg, measure, stage)
    run = RunDir.create(out)  # only now: an infeasible budget leaves nothing behind
    with run.locked("search"):
        window_mean = choose_window_mean(run, ds, split, parts, cfg.window_mean, cfg.seed, cfg.batch_size, stage)
        stage(f"window mean: {'removed' if window_mean['remove'] else 'kept'} ({window_mean['why']})")
        std, scaled = standardized(ds, split, parts, window_mean["remove"])

        choices = [position_choices(space, i) for i in range(len(space.positions))]

        def factory():
            return SuperNet(space, choices, *shape)

        digest = cfg.digest({"data": data_fingerprint(ds), "budgets": budgets.to_json(), "board": board.name,
                             "table": table.metadata["runtime_hash"], "space": space.name,
                             "supernet": SuperNet.layout(),
                             **({"remove_window_mean": True} if window_mean["remove"] else {})})
        stage(f"DNAS over the {space.name} space ({cfg.epochs} epochs; supernet checkpointed every epoch)")
        trajectory = dnas.search(run, factory, cm, scaled, budgets, cfg, digest, on_epoch, must_resume=resume)
        net = dnas.load_supernet(run, factory)
        d = dnas.derive_journaled(run, table, budgets, digest, lambda: _derive(net, table, budgets, cfg, scaled, stage))
        if d["reused"]:
            stage(f"derivation: kept from {dnas.DERIVATION_JOURNAL} (same supernet, latency table, budgets and settings)")
        the_arch, repairs = d["arch"], d["repairs"]
        record = SearchRecord(config=asdict(cfg), digest=digest, budgets=budgets, board=board.name,
                              latency_table=table.path.name if table.path else None, minimum_costs=mins,
                              trajectory=trajectory,
                              search_seconds=round(sum(e.get("seconds", 0.0) for e in trajectory), 1),
                              derived=the_arch.to_json(), repairs=repairs,
                              predicted=PredictionRecord.from_json(d["predicted"]), candidates=d["candidates"],
                              derivation_seconds=d["derivation_seconds"],
                              space={"name": space.name, "widths": [list(p.widths) for p in space.positions],
                                     **scale.to_json()},
                              device={"search": "cpu", "candidates": "cpu", "final_training": dev},
                              window_mean=window_mean)
        run.write_json("search.json", record.to_json())
        arch_path = run.file("searched_arch.json")
        atomic_write_text(arch_path, the_arch.dumps())

        overrides = dict(train_overrides or {})
        train_windows = len(scaled["train"][1])
        epochs_why = ""
        if final_epochs is None:
            final_epochs = epochs_for(train_windows, overrides.get("batch_size", TrainConfig.batch_size))
            if final_epochs > DEFAULT_EPOCHS:
                epochs_why = f": at least {MIN_STEPS:,} weight steps on {train_windows:,} training windows"
        if "distill" in overrides:
            taught = (f"distilled at {overrides['distill']:g} from a wider teacher trained first"
                      if overrides["distill"] else "not distilled")
        else:
            overrides["distill"], taught = final_distill(train_windows, final_epochs)
        train_cfg = TrainConfig(epochs=final_epochs, seed=cfg.seed, val_subjects=cfg.val_subjects,
                                checkpoint_rule="last", remove_window_mean=window_mean["remove"], **overrides)
        stage(f"final training of the derived network from scratch ({final_epochs} epochs{epochs_why}; {taught})")
        from micronas import report

        try:
            done = train_export_profile(data, run.path, arch_path, train_cfg, board, budgets, port=port,
                                        profile_windows=profile_windows, on_stage=stage, on_epoch=on_train_epoch,
                                        on_window=on_window, threads=n_threads, link=link, device=dev)
        except MicronasError as e:  # over budget on the device, or our chain failed: keep what was made
            _report_anyway(run, stage, e)
            raise
        stage("report (HTML, Markdown, plots)")
        return SearchResult(run=str(run.path), arch=the_arch.to_json(), repairs=repairs, minimum_costs=mins,
                            predicted=record.predicted, train=done.train, metrics=done.metrics, profile=done.profile,
                            report=report.build(run.path))


def shape_of(table: Any) -> tuple[int, int]:
    """(channels, length) a latency table was built for."""
    return table.metadata["input_channels"], table.metadata["input_length"]


def _sized_space(table: Any, budgets: Budgets, board: Any, cfg: Any, measure: Any, stage: StageCallback) -> tuple:
    """The search space scaled to the budget (`micronas.space_scale`), its cost model and minimum
    costs. An automatic scale whose cheapest network misses a budget steps down; one whose table
    entries cannot be measured here (no emulator or board) falls back to the space as defined.

    Raises:
        BudgetError: even the space's smallest scale cannot meet a budget (naming the minimum).
        ConfigError: a bad --scale.
    """
    from latency_tables import costs as costs_mod
    from latency_tables.predict import MissingEntriesError
    from micronas import space_scale
    from search_space.space import DEFAULT_SPACE

    try:
        given = space_scale.parse(cfg.scale)
    except ValueError as e:
        raise ConfigError(str(e), "leave it out (auto sizes the space to the budget)") from None
    base_cm = costs_mod.build_costs(DEFAULT_SPACE, table, measure_missing=measure)
    from micronas.tables import bench_scratch_bytes

    scratch = bench_scratch_bytes(board)
    scale = space_scale.choose(DEFAULT_SPACE, table, base_cm, budgets, given, scratch)
    fell_back = False  # to the space as defined: no smaller scale can be measured here either
    while True:
        space = DEFAULT_SPACE.scaled(scale.multiplier, scale.extra_cells)
        widest = space_scale.largest_kernel_bytes(space, *shape_of(table))
        if given is not None and widest > scratch:
            raise ConfigError(f"--scale {cfg.scale}: the widest layer of the {space.name} space needs {widest:,} bytes "
                              f"to be measured on {board.name}, whose probe firmware has {scratch:,}",
                              "choose a smaller --scale, or leave it out (auto stays within the board)")
        try:
            cm = base_cm if space is DEFAULT_SPACE else costs_mod.build_costs(space, table, measure_missing=measure)
        except MissingEntriesError as e:
            if given is not None:
                raise
            stage(f"search space: {space.name} needs latency-table entries this machine cannot measure "
                  f"({e}); searching the {DEFAULT_SPACE.name} space as defined")
            scale, space, cm = space_scale.Scale(1.0, 0, "the scaled space's entries could not be measured"), \
                DEFAULT_SPACE, base_cm
            fell_back = True
        mins = minimum_costs(cm, table)
        try:
            check_feasible(budgets, mins, board)
            break
        except BudgetError:
            lower = None if given is not None or fell_back else space_scale.smaller(scale)
            if lower is None:
                raise
            scale = lower
    stage(f"search space {space.name}: {scale.reason}")
    return space, scale, cm, mins


def _derive(net: Any, table: Any, budgets: Budgets, cfg: Any, scaled: dict, stage: StageCallback) -> tuple:
    """The network to train: the most likely one, or (cfg.candidates > 1) the best on validation of
    candidates drawn from the learned distribution; each repaired and filled to the budgets.

    Returns:
        (arch, prediction, derivation steps of the chosen one, candidates record or None).
    """
    from micronas import search as dnas

    if cfg.candidates <= 1:
        stage("derivation: the most likely network, exact costs, repair if over a budget, fill towards the "
              "latency budget")
        return (*dnas.derive_and_repair(net, table, budgets), None)
    stage(f"derivation: up to {cfg.candidates} candidates (the most likely, then drawn from the learned "
          "distribution), each repaired and filled to the budgets")
    cands = dnas.derive_candidates(net, table, budgets, cfg.candidates, cfg.seed)
    if len(cands) == 1 and cfg.candidates > 1:
        stage(f"only the most likely network is a candidate: no network drawn from the learned distribution both "
              f"fits the budgets and uses {100 * dnas.FILLED:.0f} % of the latency budget, so the result is the "
              "most likely network, repaired or filled to the budgets")
    stage(f"scoring {len(cands)} candidate{'s' if len(cands) != 1 else ''} on validation (supernet weights, "
          f"{cfg.finetune_epochs:g}-epoch fine-tune, batch norm recalibrated)")
    # independent fine-tunes: Ray tasks when a sweep (or the user) initialised Ray, else here; same scores
    scores = map_tasks(functools.partial(_score, net, scaled, cfg), [a for a, _, _ in cands])
    best = max(range(len(cands)), key=lambda i: (scores[i], -i))  # ties: the more likely (earlier) one
    record = [{"arch": a.to_json(), "predicted_latency_ms": p.latency_ms, "validation_score": s, "chosen": i == best}
              for i, ((a, p, _), s) in enumerate(zip(cands, scores))]
    arch, pred, steps = cands[best]
    stage(f"chose candidate {best + 1} of {len(cands)}: validation {100 * scores[best]:.1f} % "
          f"(the most likely network: {100 * scores[0]:.1f} %)" if len(cands) > 1 else
          f"the candidate scores {100 * scores[0]:.1f} % on validation")
    return arch, pred, steps, record


def _score(net: Any, scaled: dict, cfg: Any, arch: Any) -> float:
    """`score_candidate` with the candidate last: the picklable task of `map_tasks`."""
    from micronas import search as dnas

    return dnas.score_candidate(net, arch, scaled, cfg)


def _report_anyway(run: RunDir, stage: StageCallback, error: MicronasError) -> None:
    """Write the report of a search whose last steps failed, when there is an export to report on,
    and say in the error's hint where the kept model and report are."""
    from micronas import report

    if not run.has("metrics.json"):
        error.hint = "; ".join(filter(None, [error.hint, f"the trained model is kept in {run.path}"]))
        return
    stage("report (HTML, Markdown, plots) of the kept model")
    try:
        page = report.build(run.path).html
    except Exception as e:  # the report must not hide the error that ended the search
        log.warning("the report of %s could not be written: %s: %s", run.path, type(e).__name__, e)
        page = None
    kept = f"the trained model and export are kept in {run.path}" + (f", the report in {page}" if page else "")
    error.hint = "; ".join(filter(None, [error.hint, kept]))


def train_export_profile(data: str | os.PathLike[str], run_path: str | os.PathLike[str],
                         arch: str | os.PathLike[str], train_cfg: TrainConfig, target: Any, budgets: Budgets,
                         port: str | None = None, profile_windows: int = 20,
                         on_stage: StageCallback | None = None, on_epoch: EpochCallback | None = None,
                         on_window: Callable[[int, int], None] | None = None,
                         threads: int | None = None, link: Any = None, device: str = "cpu") -> PipelineResult:
    """Train `arch` from scratch into a run, export it to int8 (QAT when PTQ loses any validation
    accuracy) and profile it on the board: the last steps of a search, and how a hand-designed
    baseline is measured the same way. A run holding another model is retrained.

    Only a measured budget violation (the profile) or a failure of our own chain ends it: a
    figure over budget at export is a prediction, warned about, and the device measures it.

    The budgets are final (nothing recorded is read back); the board is resolved once.

    Args:
        data: The data.
        run_path: The run directory.
        arch: An arch.json path.
        train_cfg: Training settings.
        target: Board name or Board.
        budgets: The budgets export and profile check.
        port: A real board's URL (None: emulated).
        profile_windows: Test windows profiled.
        on_stage, on_epoch, on_window: Progress callbacks.
        threads: torch's intra-op threads, as for `train`.
        device: The training's torch device, as for `train`.

    Returns:
        The kept epoch, metrics.json and profile.json.
    """
    stage = on_stage or no_stage
    board = budget_mod.resolve_board(target)
    with RunDir.create(run_path).locked("train, export and profile"):  # held across the three stages
        try:
            summary = train(data, run_path, arch=arch, cfg=train_cfg, on_epoch=on_epoch, threads=threads,
                            device=device)
        except ConfigError:  # the run holds the model of an earlier search of another network: replace it
            summary = train(data, run_path, arch=arch, cfg=train_cfg, force=True, on_epoch=on_epoch, threads=threads,
                            device=device)
        run = RunDir.open(run_path)
        config = run.read_json("config.json")
        config["target"] = board.name  # the record: a later `micronas export` or `profile` of the run uses it
        run.write_json("config.json", config)
        stage("int8 export, C runtime")
        try:
            metrics = export_int8(run.path, budgets, on_stage=stage, board=board)
        except BudgetError as e:  # a prediction over budget: the device's measurement decides
            stage(f"warning: predicted over budget ({e.message}); the measurement on {board.name} decides")
            metrics = ExportResult.from_json(run.read_json("metrics.json"))
        stage(f"profile on {board.name} ({'emulated' if port is None else port})")
        prof = profile_run(run, board, budgets, metrics, port=port, windows=profile_windows, on_stage=stage,
                           on_window=on_window, link=link)
        return PipelineResult(train=summary.best, metrics=metrics, profile=prof)
