"""Sweeps: one `micronas search` per (board, latency budget, RAM budget, seed), run on Ray.

    run_sweep(SweepConfig(...), out)  -> SweepResult   (OUT/sweep.json, OUT/jobs/*/, OUT/report/)

Every job is the search stage called in-process inside a Ray task (no subprocess: the stage
already isolates what can crash - the converters, QEMU and the compiler are its own child
processes - and a Ray worker that dies anyway is what `max_retries` covers). Each job has its
own run directory, OUT/jobs/<name>/, so a job that was running when the sweep was killed
resumes from its own search checkpoint.

The journal OUT/sweep.json (temp file + rename, written by the driver alone) holds the settings
and every job's status; a re-run of the same command skips the finished jobs (ok, or a budget
that cannot be met) and runs the rest. A worker that dies is retried once by Ray, then the job
is reported failed; the other jobs go on.

Resources each job asks of the cluster: 1 CPU (torch runs one intra-op thread), the custom
resource `micronas_toolchain` (QEMU and arm-none-eabi-gcc: the profile and any missing table
entry need them), and 1 GPU with `device="cuda"`. The local cluster a sweep starts declares
`micronas_toolchain` when the tools are on PATH; a node of an existing cluster declares it with
`ray start --resources='{"micronas_toolchain": N}'` (docs/commands/sweep.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from micronas.parallel import TOOLCHAIN_RESOURCE, require_ray
from micronas_base import __version__, locks
from micronas_base.errors import BudgetError, ConfigError, MicronasError, Terminated, ToolchainError, UsageError
from micronas_base.files import atomic_write_json, unwritable

log = logging.getLogger(__name__)

SWEEP_FORMAT = "micronas.sweep/1"
JOURNAL = "sweep.json"
FINISHED = ("ok", "infeasible", "over_budget")  # not rerun by a resumed sweep; "failed" is
EventCallback = Callable[[str], None]


@dataclass(frozen=True)
class SweepJob:
    """One search of a sweep: a board, two budgets (as the user wrote them) and a seed."""

    board: str
    latency: str
    ram: str
    seed: int

    @property
    def name(self) -> str:
        """The job's folder under OUT/jobs: readable, and unique within a sweep."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.board}_lat{self.latency}_ram{self.ram}_seed{self.seed}")


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep searches over, and the search options passed to every job.

    A resumed sweep must have the same settings (recorded in sweep.json); `device` is not one
    of them: a sweep started on CPUs may be finished on GPUs.
    """

    latencies: tuple[str, ...]
    rams: tuple[str, ...]
    targets: tuple[str, ...] = ()  # () -> the default board
    seeds: tuple[int, ...] = (0,)
    data: str = "basicmotions"
    epochs: int | None = None  # search epochs, as `micronas search` (None: 40, more on small data)
    final_epochs: int | None = None  # as `micronas search` (None: 120, more on small data)
    candidates: int = 8
    val_subjects: tuple[str, ...] = ()
    augment: str | None = None  # `--augment` as given (None: the default recipe)
    device: str = field(default="cpu", compare=False)

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("device")
        return json.loads(json.dumps(d))  # tuples as lists: compares equal to what sweep.json holds

    def jobs(self) -> list[SweepJob]:
        boards = self.targets or (None,)
        return [SweepJob(_board_name(b), lat, ram, seed)
                for b in boards for lat in self.latencies for ram in self.rams for seed in self.seeds]


def _board_name(target: str | None) -> str:
    from micronas.budgets import resolve_board

    return resolve_board(target).name


def parse_list(text: str, what: str, example: str) -> tuple[str, ...]:
    """`5ms,10ms` -> ("5ms", "10ms"); an empty or repeated item is a UsageError."""
    items = tuple(v.strip() for v in text.split(","))
    if not items or any(not v for v in items):
        raise UsageError(f"{what} {text!r} has an empty item", f"separate values by commas, e.g. {what} {example}")
    if len(set(items)) != len(items):
        raise UsageError(f"{what} {text!r} repeats a value", "give each value once")
    return items


def describe(cfg: SweepConfig) -> list[str]:
    """How the sweep's lists were read (echoed at the start), every budget interpreted."""
    from micronas.units import format_duration, format_size, parse_duration, parse_size

    lats = ", ".join(f"{format_duration(parse_duration(v))}" for v in cfg.latencies)
    rams = ", ".join(format_size(parse_size(v)) for v in cfg.rams)
    boards = ", ".join(dict.fromkeys(j.board for j in cfg.jobs()))
    n = len(cfg.jobs())
    return [f"latency budgets: {lats}", f"RAM budgets: {rams}", f"boards: {boards}",
            f"seeds: {', '.join(map(str, cfg.seeds))}",
            f"{n} search{'es' if n != 1 else ''} of {cfg.epochs or 'auto'} search + {cfg.final_epochs or 'auto'} "
            f"final-training epochs on {cfg.data}, device {cfg.device}"]


# ---- one job (runs inside a Ray task) ---------------------------------------------------------

def run_job(job: SweepJob, cfg: SweepConfig, run_dir: str) -> dict[str, Any]:
    """One search of the sweep, in this process; never raises for a job's own failure.

    Returns:
        {"status": "ok" | "infeasible" | "over_budget" | "failed", "message", "wall_s",
         "figures": what the run dir holds (accuracy, measured latency, arena, network)}.
    """
    from micronas import search as dnas
    from micronas.stages.search import search
    from micronas.units import Budgets

    t0 = time.monotonic()
    status, message = "ok", ""
    try:
        overrides = {}
        if cfg.augment is not None:
            from micronas import augment as aug

            overrides["augment"] = aug.parse(cfg.augment)
        search(cfg.data, run_dir, Budgets.parse(latency=job.latency, ram=job.ram), target=job.board,
               cfg=dnas.SearchConfig(epochs=cfg.epochs, seed=job.seed,
                                     val_subjects=cfg.val_subjects, candidates=cfg.candidates),
               final_epochs=cfg.final_epochs, train_overrides=overrides, threads=1, device=cfg.device)
    except BudgetError as e:  # before the search (nothing written) or measured over budget on the device
        status = "over_budget" if (Path(run_dir) / "profile.json").exists() else "infeasible"
        message = e.message
    except MicronasError as e:
        status, message = "failed", e.message + (f" (hint: {e.hint})" if e.hint else "")
    except Exception as e:  # a bug in one job must not end the sweep: reported, the others go on
        import traceback

        status, message = "failed", f"internal error: {type(e).__name__}: {e}"
        log.error("job %s: %s", job.name, traceback.format_exc())
    return {"status": status, "message": message, "wall_s": round(time.monotonic() - t0, 1),
            "figures": figures(Path(run_dir))}


def figures(run_dir: Path) -> dict[str, Any]:
    """The figures a job's run directory holds (empty for a job that stopped before them)."""
    def read(name: str) -> dict:
        try:
            return json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    m, p, s = read("metrics.json"), read("profile.json"), read("search.json")
    arch = read("searched_arch.json") or s.get("derived") or {}
    out: dict[str, Any] = {}
    if "accuracy_int8" in m:
        out.update(accuracy_int8=m["accuracy_int8"], accuracy_fp32=m.get("accuracy_fp32"),
                   arena_bytes_planned=m.get("arena_bytes_planned"))
    if "measured_latency_ms" in p:
        out.update(measured_latency_ms=p["measured_latency_ms"], arena_bytes_measured=p.get("arena_bytes_measured"),
                   timer_kind=p.get("timer_kind"), where=p.get("where"))
    if s.get("predicted"):
        out["predicted_latency_ms"] = s["predicted"].get("predicted_latency_ms")
    if arch.get("stem"):
        from micronas.report import arch_summary

        out["network"] = arch_summary(arch)
    if s.get("device"):
        out["device"] = s["device"]
    return out


# ---- the journal ------------------------------------------------------------------------------

def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    """OUT/sweep.json: the settings and one record per job; rewritten whole (temp + rename)."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data = path, data

    @classmethod
    def open(cls, out: Path, cfg: SweepConfig) -> Journal:
        """Create OUT's journal, or reopen it when the settings match.

        Raises:
            ConfigError: OUT holds something else, or a sweep of other settings.
        """
        path = out / JOURNAL
        jobs = {j.name: {"job": asdict(j), "status": "pending", "attempts": 0} for j in cfg.jobs()}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ConfigError(f"{path} is corrupt ({e})", f"delete {out} and run the sweep again") from None
            if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT:
                raise ConfigError(f"{path} is not a micronas sweep journal ({SWEEP_FORMAT})",
                                  "choose a new --out for the sweep")
            if data.get("settings") != cfg.settings():
                changed = sorted(k for k, v in cfg.settings().items() if data.get("settings", {}).get(k) != v)
                raise ConfigError(f"the sweep in {out} was started with other settings ({', '.join(changed)} differ)",
                                  "repeat the original command to resume it, or give a new --out")
            data["jobs"] = {**jobs, **{k: v for k, v in data.get("jobs", {}).items() if k in jobs}}
            return cls(path, data)
        if out.exists() and (not out.is_dir() or any(c.name != ".lock" for c in out.iterdir())):
            raise ConfigError(f"--out {out} exists and is not a sweep folder (no {JOURNAL})",
                              "choose a new or empty folder for --out")
        j = cls(path, {"format": SWEEP_FORMAT, "micronas_version": __version__, "created": _now(),
                       "settings": cfg.settings(), "jobs": jobs})
        j.save()
        return j

    def save(self) -> None:
        try:
            atomic_write_json(self.path, self.data)
        except OSError as e:
            raise unwritable(self.path, e) from None

    def record(self, name: str, **fields: Any) -> None:
        self.data["jobs"][name].update(fields)
        self.save()

    def pending(self) -> list[str]:
        return [n for n, r in self.data["jobs"].items() if r["status"] not in FINISHED]


# ---- the driver -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: the journal's jobs, what ran this time, the report's files."""

    out: str
    jobs: dict[str, dict[str, Any]]
    ran: list[str]
    skipped: list[str]
    wall_s: float
    report_html: str
    report_md: str
    plot: str | None

    def count(self, status: str) -> int:
        return sum(1 for r in self.jobs.values() if r["status"] == status)


def _check_tables(cfg: SweepConfig) -> None:
    """Every board has a latency table for the data's shape: jobs must not race to build one.

    Raises:
        ConfigError: a missing table, with the command that builds them all in parallel.
    """
    from latency_tables import predict as predictor
    from micronas.data import load_dataset

    ds = load_dataset(cfg.data)
    shape = (ds.n_channels, ds.length, ds.n_classes)
    missing = []
    for board in dict.fromkeys(j.board for j in cfg.jobs()):
        try:
            predictor.find_table(board, *shape)
        except predictor.NoTableError:
            missing.append(board)
    if missing:
        raise ConfigError(f"no latency table for {', '.join(missing)} at {shape[0]}ch x {shape[1]}, {shape[2]} classes "
                          f"(the data {cfg.data})", f"build them first (in parallel): micronas tables build --target "
                          f"{','.join(missing)} --data {cfg.data}")


def _start_ray(address: str | None, workers: int | None, device: str, stage: EventCallback):
    """Attach to `address` or start a local Ray; returns the module.

    Raises:
        ToolchainError: Ray missing, or no node declares the toolchain resource / a GPU.
        ConfigError: the cluster at `address` cannot be reached.
    """
    ray = require_ray("micronas sweep")
    from micronas.stages.common import have_emulator

    env = {"OMP_NUM_THREADS": "1", "MICRONAS_THREADS": "1"}
    main = threading.current_thread() is threading.main_thread()
    on_term = signal.getsignal(signal.SIGTERM) if main else None  # ray.init replaces it with its own
    if address:
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"--address {address}: cannot attach to a Ray cluster ({e})",
                              "check that `ray start --head` runs there and the address is right") from None
    else:
        n = workers or len(os.sched_getaffinity(0))
        res = {TOOLCHAIN_RESOURCE: float(n)} if have_emulator() else {}
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # keep CUDA_VISIBLE_DEVICES as set
        ray.init(num_cpus=n, resources=res, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": env})
    if main and callable(on_term):
        def term(signum: int, frame: Any) -> None:  # the CLI's handler (clean-up, exit 143), remembered:
            _TERMINATED.append(signum)  # Ray's wait turns an exception raised in it into KeyboardInterrupt
            on_term(signum, frame)

        signal.signal(signal.SIGTERM, term)
    have = ray.cluster_resources()
    where = f"the Ray cluster at {address}" if address else "this machine"
    stage(f"Ray: {where}, {have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs, "
          f"{have.get(TOOLCHAIN_RESOURCE, 0):g} {TOOLCHAIN_RESOURCE}")
    if have.get(TOOLCHAIN_RESOURCE, 0) < 1:
        ray.shutdown()
        raise ToolchainError(f"no node of {where} has the Arm toolchain and QEMU (resource {TOOLCHAIN_RESOURCE!r})",
                             "run `make setup` (or scripts/toolchain.sh) on the nodes; on a cluster start them with "
                             f"ray start --resources='{{\"{TOOLCHAIN_RESOURCE}\": CPUS}}'")
    if device == "cuda" and have.get("GPU", 0) < 1:
        ray.shutdown()
        raise ToolchainError(f"--device cuda: {where} has no GPU", "use --device cpu, or add a GPU node to the cluster")
    return ray


def run_sweep(cfg: SweepConfig, out: str | os.PathLike[str], address: str | None = None, workers: int | None = None,
              on_stage: EventCallback | None = None) -> SweepResult:
    """Run (or resume) a sweep into `out` and write its report.

    Args:
        cfg: What to sweep.
        out: The sweep folder (journal, jobs/, report/).
        address: An existing Ray cluster (`ray://host:10001`, or `auto`); None starts a local one.
        workers: CPUs of the local cluster (default: CPUs available); jobs in parallel at most.
        on_stage: Progress lines.

    Returns:
        The jobs' records and the report. Job outcomes are in the records, not raised.

    Raises:
        UsageError, ConfigError, ToolchainError: as the checks above say (exit 2).
    """
    stage = on_stage or (lambda s: None)
    from micronas.units import parse_duration, parse_size

    for v in cfg.latencies:
        parse_duration(v)
    for v in cfg.rams:
        parse_size(v)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers} is not a worker count", "give 1 or more")
    out = Path(out)
    cfg.jobs()  # unknown boards fail here, before anything is written
    _check_tables(cfg)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(out, e) from None
    t0 = time.monotonic()
    with locks.exclusive(out / ".lock", f"sweep folder {out}", "sweep", "wait for it, or give another --out"):
        journal = Journal.open(out, cfg)
        todo = journal.pending()
        skipped = [n for n in journal.data["jobs"] if n not in todo]
        if skipped:
            stage(f"resuming: {len(skipped)} finished job{'s' if len(skipped) != 1 else ''} kept, {len(todo)} to run")
        if todo:
            _run_jobs(journal, cfg, out, todo, address, workers, stage)
        from micronas import sweep_report

        rep = sweep_report.write(out, journal.data)
        return SweepResult(str(out), journal.data["jobs"], todo, skipped, round(time.monotonic() - t0, 1),
                           str(rep["html"]), str(rep["md"]), str(rep["plot"]) if rep["plot"] else None)


_TERMINATED: list[int] = []  # SIGTERM seen while Ray ran: report it as such, not as Ctrl-C


def _run_jobs(journal: Journal, cfg: SweepConfig, out: Path, todo: list[str], address: str | None,
              workers: int | None, stage: EventCallback) -> None:
    ray = _start_ray(address, workers, cfg.device, stage)
    try:
        task = ray.remote(run_job).options(num_cpus=1, num_gpus=1 if cfg.device == "cuda" else 0,
                                           resources={TOOLCHAIN_RESOURCE: 1}, max_retries=1)
        cfg_ref = ray.put(cfg)
        running: dict[Any, str] = {}
        for name in todo:
            rec = journal.data["jobs"][name]
            job = SweepJob(**rec["job"])
            run_dir = out / "jobs" / name
            running[task.remote(job, cfg_ref, str(run_dir.resolve()))] = name
            # "submitted": handed to Ray, which starts it when a CPU (and the toolchain) is free
            journal.data["jobs"][name].update(status="submitted", started=_now(), attempts=rec.get("attempts", 0) + 1,
                                               run_dir=str(Path("jobs") / name))
        journal.save()
        total, done = len(todo), 0
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)  # short: Ctrl-C/SIGTERM get through
            if not ready:
                continue
            name = running.pop(ready[0])
            try:
                r = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died twice (Ray retried it once)
                r = {"status": "failed", "wall_s": None, "figures": {},
                     "message": f"its worker died and the retry did too ({type(e).__name__}: {str(e).splitlines()[0]})"}
            done += 1
            journal.record(name, finished=_now(), **r)
            stage(f"[{done}/{total}] {name}: {r['status']}" + (f" ({r['message']})" if r["message"] else "")
                  + (f", {r['wall_s']:.0f} s" if r.get("wall_s") is not None else ""))
    except KeyboardInterrupt as e:
        if _TERMINATED and not isinstance(e, Terminated):
            raise Terminated() from None
        raise
    finally:
        ray.shutdown()
