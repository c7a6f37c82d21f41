"""Latency-table campaigns: build a table on a board (emulated or over `--port`), measure the
entries a search lacks, and take a network's flash from a firmware ELF.

A table holds every runtime-op configuration of the search space for one input shape
(`latency_tables.build.enumerate_keys`), each measured with BENCH_OP over serial on one firmware
image. The firmware is the ordinary profiling firmware around a probe network (a sampled
architecture of the space, lowered and generated with synthetic weights): BENCH_OP runs each
kernel on its arena plus a scratch buffer. The fixed per-inference overhead is the
whole-network count (INVOKE) minus the sum of its layers' entries, the median over eight probe
networks when emulated (their synthetic weights make each layer's data-dependent cost differ a
little from the entry's: the difference lands in the overhead, a few hundred to ~2,000
instructions); on a real board the flashed probe's alone. The probes' ELFs also calibrate the
flash model.

Every measured entry is appended to a journal (`<table>.partial.jsonl`, flushed and fsynced)
before the next is measured, so a killed build resumes where it stopped; the table file is
written (temp file + rename) only when complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_tables import table as table_mod
from latency_tables.build import enumerate_keys, probe_arch
from latency_tables.generate import generate
from latency_tables.keys import op_key, parse_key
from latency_tables.lowering import lower
from latency_tables.table import USER_TABLES_DIR, Table, bench_hash, default_table_name, runtime_hash, table_dirs
from micronas.budgets import resolve_board
from micronas.device import Counter, build_image, counter, open_device
from micronas_base import __version__, locks, tempdirs
from micronas_base.errors import ConfigError, MicronasError
from micronas_base.files import atomic_write_text
from search_space.space import SPACES, SearchSpace, resolve_space

BENCH_CALLS = 2  # calls per entry: the count is data-independent for these synthetic inputs


def bench_scratch_bytes(board) -> int:
    """BENCH_OP's scratch buffer in the probe firmware: three quarters of the board's SRAM (a
    scaled search space's widest layers; the rest holds the probe's arena, stack and frame
    buffers). A kernel whose tensors do not fit cannot be measured."""
    return board.sram_bytes * 3 // 4 // 16 * 16


PROBE_SEEDS = (0, 1)  # probe 0's firmware measures every entry (and is the real board's image)
FLASH_PROBE_SEEDS = (2, 3, 4, 5, 6, 7)  # more probe networks for the overhead and flash model


@dataclass
class Probe:
    """A probe network's firmware and generated model."""

    arch: Any  # search_space.arch.Arch
    keys: list[str]
    const_bytes: int
    layers: int
    arena_bytes: int
    image: Any  # targets.build.FirmwareImage



# The input shapes a latency table can be built for (and so the data a search can take).
SHAPE_LIMITS = {"channels": (1, 256), "length": (8, 4096), "classes": (2, 256)}


def check_data_shape(channels: int, length: int, classes: int, source: str) -> None:
    """Refuse data whose shape no latency table can be built for, naming the data, not an option.

    Raises:
        DataError: channels, length or classes outside SHAPE_LIMITS.
    """
    from micronas_base.errors import DataError

    for name, v in (("channels", channels), ("length", length), ("classes", classes)):
        lo, hi = SHAPE_LIMITS[name]
        if not lo <= v <= hi:
            raise DataError(f"{source} has {v:,} {name if name != 'length' else 'time steps per window'}; "
                            f"micronas searches data with {lo}..{hi:,} (the range its latency tables cover)",
                            {"classes": "merge or drop classes (e.g. keep the 256 most frequent) and run search again",
                             "channels": "select or merge channels and run search again",
                             "length": "resample or cut the windows to that length and run search again"}[name])

def build_probe(board, space: SearchSpace, channels: int, length: int, classes: int, seed: int, work: Path,
                emulated: bool) -> Probe:
    """Generate probe network `seed` with synthetic weights and build its profiling firmware."""
    from firmware_export.codegen import write

    arch = probe_arch(space, channels, length, classes, seed)
    gen = generate(lower(arch), channels, classes)
    c_dir = work / f"probe{seed}" / "c"
    write(gen, c_dir)
    image = build_image(board, c_dir, work / f"probe{seed}" / ("emulated" if emulated else "board"),
                           emulated=emulated, bench_scratch_bytes=bench_scratch_bytes(board))
    return Probe(arch, [op_key(la.op, la.fields) for la in gen.layers], gen.flash_bytes_weights, len(gen.layers),
                 gen.arena_bytes, image)


def measure_key(dev, key: str, count: Counter) -> float:
    """One entry: the mean count of BENCH_CALLS calls of the key's kernel."""
    from firmware_export.codegen.bench import bench_request

    op, cost = parse_key(key)
    kernel, params = bench_request(op, cost)
    stats = dev.bench_op(kernel, params, BENCH_CALLS, timeout_s=60.0)
    return round(count(stats.mean_ticks), 1)


class Journal:
    """Append-only record of a build in progress: a header line, then one line per entry."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path, self.header = path, header
        self.entries: dict[str, float] = {}
        if path.exists():
            lines = path.read_text().splitlines()
            try:
                old = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                old = None
            if old != header:
                raise ConfigError(f"{path} is a partial table build for another configuration or runtime",
                                  f"delete it to start over: rm {shlex.quote(str(path))}")
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                    self.entries[rec["key"]] = float(rec["count"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    break  # a line cut by the kill: everything before it is good
        self._rewrite()  # drops a line cut by the kill, so appends start on a fresh line

    def _rewrite(self) -> None:
        lines = [json.dumps(self.header)] + [json.dumps({"key": k, "count": v}) for k, v in self.entries.items()]
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def add(self, key: str, count: float) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"key": key, "count": count}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries[key] = count


ProgressCallback = Callable[[int, int, str, float], None]  # done, total, what, elapsed seconds


def _space(space_name: str | SearchSpace) -> SearchSpace:
    if isinstance(space_name, SearchSpace):
        return space_name
    space = resolve_space(space_name)
    if space is not None:
        return space
    raise ConfigError(f"search space {space_name!r} is unknown; known: {', '.join(SPACES)}")


def build_table(target: Any, channels: int, length: int, classes: int, out: Path,
                port: str | None = None, space_name: str | SearchSpace = "default", work: Path | None = None,
                progress: ProgressCallback | None = None, command: str | None = None,
                on_stage: Callable[[str], None] | None = None, flash_cmd: str | None = None,
                link: Any = None) -> Table:
    """Measure every key of the space for one input shape on `target`; write `out`.

    Args:
        target: Board name or Board (default: the default board).
        channels, length, classes: The data shape the table is for.
        out: The table file (its journal is `out` + `.partial.jsonl`).
        port: A real board's serial URL (its firmware must be the probe image, see
            `build_probe`); None runs the board's emulated core in QEMU.
        space_name: The search space.
        work: Scratch directory for firmware builds (default: beside `out`).
        progress: Called after each entry.
        command: The command line recorded in the metadata.
        on_stage: Progress callback.
        flash_cmd: With `port`: program the probe firmware first ({elf}/{bin} placeholders;
            without it the board must already run the probe image, which HELLO checks).
        link: `micronas.device.Link` (reply timeout and retries); default: the protocol's.

    Returns:
        The table, also written to `out`.

    Raises:
        ConfigError: bad shape, unknown board or space, or a journal of another build.
        DeviceError: the device failed.
    """
    stage = on_stage or (lambda _s: None)
    t_start = time.monotonic()
    for name, v in (("channels", channels), ("length", length), ("classes", classes)):
        lo, hi = SHAPE_LIMITS[name]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"--{name} = {v!r}; expected an integer in [{lo}, {hi}]")
    space = _space(space_name)
    board = resolve_board(target)
    emulated = port is None
    where = f"emulated: QEMU {board.qemu.machine}" if emulated else f"real board over {port}"
    out = Path(out)
    work = Path(work) if work else out.parent / f".{out.stem}.work"
    command = command or (f"micronas tables build --target {board.name} --channels {channels} --length {length} "
                          f"--classes {classes} --out {shlex.quote(str(out))}" + (f" --port {port}" if port else ""))

    stage(f"enumerating the {space.name} space's runtime ops for {channels}ch x {length}, {classes} classes")
    keys = enumerate_keys(space, channels, length, classes)
    header = {"journal": "micronas.latency_table_journal/1", "board": board.name, "where": where,
              "space": space.name, "input_channels": channels, "input_length": length, "num_classes": classes,
              "runtime_hash": runtime_hash(), "bench_hash": bench_hash(keys), "bench_calls_per_entry": BENCH_CALLS}
    out.parent.mkdir(parents=True, exist_ok=True)
    with locks.exclusive(out.with_name(out.name + ".lock"), f"latency table {out}", "tables build",
                         "choose another --out for the table"):  # one build per table file at a time
        journal = Journal(out.with_name(out.name + ".partial.jsonl"), header)

        stage(f"probe firmware for {board.name} ({where}), arm-none-eabi-gcc")
        probes = [build_probe(board, space, channels, length, classes, s, work, emulated) for s in PROBE_SEEDS]
        todo = [k for k in keys if k not in journal.entries]
        stage(f"{len(keys)} entries, {len(keys) - len(todo)} already measured; measuring {len(todo)} over BENCH_OP")
        overheads: list[float] = []
        with open_device(board, probes[0].image, port, work / "probe0" / "qemu", flash_cmd=flash_cmd, link=link,
                         on_stage=stage) as dev:
            t0 = time.monotonic()
            hello = dev.hello()
            if hello.board != board.name or hello.arena_bytes != probes[0].arena_bytes:
                raise ConfigError(f"the device at {port} runs other firmware ({hello.board}, arena "
                                  f"{hello.arena_bytes} B; the table firmware: {board.name}, arena "
                                  f"{probes[0].arena_bytes} B)",
                                  f"flash {probes[0].image.elf} first, or pass --flash-cmd")
            count, unit, source = counter(hello, board)
            for i, key in enumerate(todo):
                journal.add(key, measure_key(dev, key, count))
                if progress:
                    progress(len(keys) - len(todo) + i + 1, len(keys), key, time.monotonic() - t0)
            t_measured = time.monotonic()
            overheads.append(_overhead(dev, probes[0], journal.entries, count))
        stage(f"flash model and overhead: {len(FLASH_PROBE_SEEDS)} more probe networks")
        probes += [build_probe(board, space, channels, length, classes, s, work, emulated) for s in FLASH_PROBE_SEEDS]
        if emulated:  # every probe network: the overhead absorbs their data-dependent costs, take the median
            for i, probe in enumerate(probes[1:], start=1):
                with open_device(board, probe.image, None, work / f"probe{i}" / "qemu", link=link) as dev:
                    overheads.append(_overhead(dev, probe, journal.entries, count))
        flash = _flash_model(probes)
        meta = {
            "board": board.name, "core": board.core, "clock_hz": board.clock_hz, "where": where,
            "timer_kind": unit, "count_source": source,
            "compiler": _compiler_version(), "cflags": _cflags(probes[0].image), "simd": probes[0].image.simd,
            "runtime_version": _runtime_version(), "runtime_hash": header["runtime_hash"],
            "bench_hash": header["bench_hash"],
            "micronas_version": __version__, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command, "space": space.name, "input_channels": channels, "input_length": length,
            "num_classes": classes, "bench_calls_per_entry": BENCH_CALLS,
            "overhead_per_probe": [round(o, 1) for o in overheads],
            "overhead_how": "median over probe networks of INVOKE (whole model) minus the sum of its layers' entries",
            "flash_model": flash,
            "measure_seconds": round(t_measured - t0, 1),
            "build_seconds": round(time.monotonic() - t_start, 1),
        }
        table = Table(meta, dict(journal.entries), round(float(statistics.median(overheads)), 1))
        table.save(out)
        journal.path.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        return table


def measure_into(table: Table, keys: list[str], port: str | None = None, save_to: Path | None = None,
                 on_stage: Callable[[str], None] | None = None, space: SearchSpace | None = None) -> None:
    """Measure `keys` on the table's board (emulated unless `port`) and add them to `table`.

    The table is then saved to `save_to` (default: its own file, or ./micronas-tables/ for a
    shipped table), so the next search finds the entries. Used when a search needs entries
    the table lacks and a board or emulator is available.

    Raises:
        ConfigError: the table was measured on a real board and no `port` is given (an
            emulated count cannot be mixed with cycles), or for another runtime.
    """
    m = table.metadata
    if port is None and not m["where"].startswith("emulated"):
        raise ConfigError(f"{table.describe()} was measured on a real board; its missing entries need that board",
                          f"pass --port, or run: {m['command']}")
    if m["runtime_hash"] != runtime_hash():
        raise ConfigError(f"{table.describe()} was measured with another C runtime; new entries would not match it",
                          f"rebuild it: {m['command']}")
    bench_current = m.get("bench_hash") == bench_hash(table.entries)
    (on_stage or (lambda _s: None))(f"measuring {len(keys)} missing latency-table entries on {m['where']}")
    board = resolve_board(m["board"])
    space = space or resolve_space(m["space"])
    if space is None:
        raise ConfigError(f"{table.describe()} is for search space {m['space']!r}, which this micronas does not know")
    with tempdirs.temp_dir("measure") as td:
        probe = build_probe(board, space, m["input_channels"], m["input_length"], m["num_classes"], PROBE_SEEDS[0],
                            Path(td), port is None)
        with open_device(board, probe.image, port, Path(td) / "dev" / "qemu") as dev:
            count, unit, _ = counter(dev.hello(), board)
            if unit != table.unit:
                raise ConfigError(f"the device counts {unit}, the table {table.unit}")
            for key in keys:
                table.entries[key] = measure_key(dev, key, count)
    if bench_current:  # measured as the rest were: the hash now covers the new keys too
        m["bench_hash"] = bench_hash(table.entries)
    shipped = table.path is not None and table_mod.shipped_dir() in table.path.parents
    if save_to is None:
        save_to = (Path(USER_TABLES_DIR) / default_table_name(m["board"], m["input_channels"], m["input_length"],
                                                              m["num_classes"], m["space"])
                   if shipped or table.path is None else table.path)
    table.save(save_to)


def elf_flash(table: Table) -> Callable[[Any], int]:
    """For `latency_tables.predict.predict(elf_flash=...)`: the flash bytes of the profiling
    firmware ELF built around a generated model, for the table's board (needs arm-none-eabi-gcc, ~3 s)."""
    def measure(gen: Any) -> int:
        from firmware_export.codegen import write

        board = resolve_board(table.metadata["board"])
        with tempdirs.temp_dir("flash") as td:
            write(gen, Path(td) / "c")
            image = build_image(board, Path(td) / "c", Path(td) / "fw",
                                         emulated=table.metadata["where"].startswith("emulated"))
            return image.flash_bytes

    return measure


def _overhead(dev, probe: Probe, entries: dict[str, float], count: Counter) -> float:
    import numpy as np

    hello = dev.hello()
    rng = np.random.default_rng(0)
    dev.set_input(rng.integers(-128, 128, hello.input_bytes, dtype=np.int8).tobytes())
    stats = dev.invoke(count=3)
    total = count(stats.mean_ticks)
    missing = [k for k in probe.keys if k not in entries]
    if missing:
        raise RuntimeError(f"the probe network runs {len(missing)} ops the enumeration missed, e.g. {missing[0]}")
    return total - sum(entries[k] for k in probe.keys)


def _flash_model(probes: list[Probe]) -> dict[str, Any]:
    """ELF flash = base + constant bytes + per_layer * layers, least squares over the probe ELFs."""
    import numpy as np

    a = np.array([[1.0, p.layers] for p in probes])
    y = np.array([p.image.flash_bytes - p.const_bytes for p in probes], float)
    (base, per_layer), *_ = np.linalg.lstsq(a, y, rcond=None)
    residual = y - a @ np.array([base, per_layer])
    return {"base_bytes": round(float(base), 1), "per_layer_bytes": round(float(per_layer), 2),
            "max_residual_bytes": round(float(np.abs(residual).max()), 1),
            "how": f"{len(probes)} probe firmware ELFs (text + data) minus their constant bytes, least squares "
                   "for base + per_layer * layers",
            "probes": [{"layers": p.layers, "const_bytes": p.const_bytes, "elf_flash_bytes": p.image.flash_bytes}
                       for p in probes]}


def _compiler_version() -> str:
    import subprocess

    try:
        out = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.splitlines()[0].strip() if out else "arm-none-eabi-gcc (unknown version)"
    except (OSError, subprocess.SubprocessError):
        return "arm-none-eabi-gcc (unknown version)"


def _cflags(image) -> list[str]:
    cmd = list(image.commands[1]) if len(image.commands) > 1 else []
    return [c for c in cmd if c.startswith(("-O", "-m", "-D", "-f")) and "MN_UART" not in c]


def _runtime_version() -> str:
    from firmware_export.codegen import RUNTIME_VERSION

    return RUNTIME_VERSION


# ---- what the CLI's `tables` commands need -----------------------------------------------------


def data_shape(data: str, channels: int | None = None, length: int | None = None,
               classes: int | None = None) -> tuple[int, int, int]:
    """(channels, length, classes): those given, the rest from the data.

    Raises:
        DataError: the data cannot be read (only when a figure is missing).
    """
    if channels is not None and length is not None and classes is not None:
        return channels, length, classes
    from micronas.data import load_dataset

    ds = load_dataset(data)
    return (channels or ds.n_channels, length or ds.length, classes or len(ds.class_names))


def build_table_for(target: str | None, data: str, channels: int | None = None, length: int | None = None,
                    classes: int | None = None, out: Path | None = None, port: str | None = None,
                    flash_cmd: str | None = None, on_stage: Callable[[str], None] | None = None,
                    progress: ProgressCallback | None = None, link: Any = None) -> Table:
    """`micronas tables build`: the shape from the data (or given), the default file name in
    ./micronas-tables, then `build_table`."""
    from micronas.device import check_flash_cmd

    check_flash_cmd(flash_cmd, port)
    c, t, k = data_shape(data, channels, length, classes)
    board = resolve_board(target)
    out_file = out or Path(USER_TABLES_DIR) / default_table_name(board.name, c, t, k)
    return build_table(board, c, t, k, out_file, port=port, flash_cmd=flash_cmd, on_stage=on_stage,
                       progress=progress, link=link)


@dataclass(frozen=True)
class BoardBuild:
    """One board's outcome of `build_tables_for`: its table file, or the error that stopped it."""

    board: str
    path: str
    error: str | None = None
    hint: str | None = None
    exit_code: int = 0


def _build_one(board: str, shape: tuple[int, int, int], out_dir: Path | None,
               space: str | SearchSpace = "default") -> BoardBuild:
    """A whole table build for one board; a MicronasError is returned, not raised, so the other
    boards of `build_tables_for` finish (each build keeps its own journal and resumes)."""
    out_file = (out_dir or Path(USER_TABLES_DIR)) / default_table_name(board, *shape)
    try:
        build_table(resolve_board(board), *shape, out_file, space_name=space)
    except MicronasError as e:
        return BoardBuild(board, str(out_file), e.message, e.hint, e.exit_code)
    return BoardBuild(board, str(out_file))


def build_tables_for(targets: list[str], data: str, channels: int | None = None, length: int | None = None,
                     classes: int | None = None, out_dir: Path | None = None, executor: str | None = None,
                     workers: int | None = None, space: str | SearchSpace = "default") -> list[BoardBuild]:
    """`micronas tables build --target B,C,...`: one emulated build per board, in parallel.

    Ray tasks when Ray is installed (a local Ray is started for the call), else a process pool
    (`micronas.parallel.map_tasks`). Each board's table has its own file and journal
    (`<table>.partial.jsonl`): a killed multi-board build resumes board by board.

    Args:
        targets: Board names (two or more).
        out_dir: Folder of the table files (default ./micronas-tables).
        executor: Override `map_tasks`'s executor (None: "ray" if installed, else "process").
        workers: Builds at once (default: CPUs available, at most one per board).
        space: The search space whose ops are measured (a name of SPACES, or a SearchSpace).

    Returns:
        One `BoardBuild` per board, in the order given.

    Raises:
        ConfigError: an unknown board, a repeated one, or `out_dir` is a file.
    """
    from micronas.parallel import map_tasks, ray_installed

    boards = [resolve_board(t).name for t in targets]  # unknown names fail here, before any build
    if len(set(boards)) != len(boards):
        raise ConfigError(f"--target {','.join(targets)} names a board twice", "give each board once")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"--out {out_dir} is a file; with several boards --out is the folder of their tables",
                          "give a folder, or leave --out out for ./micronas-tables")
    shape = data_shape(data, channels, length, classes)
    how = executor or ("ray" if ray_installed() else "process")
    n = min(len(boards), workers or len(os.sched_getaffinity(0)))
    import functools

    return map_tasks(functools.partial(_build_one, shape=shape, out_dir=out_dir, space=space), boards, executor=how,
                     workers=n)


@dataclass(frozen=True)
class TableListing:
    """One table file found by `list_tables` (`micronas tables show`)."""

    path: str
    usable: bool
    summary: str
    board: str | None = None
    shape: tuple[int, int, int] | None = None
    entries: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The listing as `micronas tables show --json` prints it."""
        if not self.usable:
            return {"path": self.path, "usable": False, "summary": self.summary}
        return {"path": self.path, "usable": True, "summary": self.summary, "board": self.board,
                "shape": list(self.shape or ()), "entries": self.entries}


def list_tables() -> list[TableListing]:
    """Every table file in `latency_tables.table.table_dirs()`, yours first, usable or not."""
    found = []
    for d in table_dirs():
        for f in sorted(d.glob("*.json")) if d.is_dir() else []:
            try:
                t = table_mod.load(f, allow_stale=True)
                m = t.metadata
                found.append(TableListing(str(f), True, t.describe(), m["board"],
                                          (m["input_channels"], m["input_length"], m["num_classes"]),
                                          len(t.entries)))
            except MicronasError as e:
                found.append(TableListing(str(f), False, f"unusable: {e.message}"))
    return found
