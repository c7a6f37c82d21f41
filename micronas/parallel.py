"""One way to run independent jobs: in this process, in a process pool, or as Ray tasks.

    map_tasks(fn, items, executor="auto")  -> [fn(item) for item in items], in order

Ray is an optional extra (`pip install 'micronas[scale]'`); nothing here imports it at module
import. "auto" uses Ray only when it is installed *and* already initialised (a sweep started
it, or a notebook called `ray.init`): a plain `micronas search` never starts a cluster behind
the user's back. Every task sets torch to one intra-op thread first, so N parallel tasks use N
cores, not N x cores.

The results do not depend on the executor: each task is a pure function of its item (its own
seeded generators, no global RNG read before seeding), and a remote task sees the same pickled
inputs the in-process call gets (tests/test_parallel.py checks inproc against Ray bit for bit).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from micronas_base.errors import ToolchainError, UsageError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("auto", "ray", "process", "inproc")
INSTALL_HINT = "install the scale extra: pip install 'micronas[scale]' (or `make scale` in a checkout)"
TOOLCHAIN_RESOURCE = "micronas_toolchain"  # a node with QEMU and arm-none-eabi-gcc declares it


def ray_installed() -> bool:
    """Ray can be imported (without importing it: that takes a second)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # sys.modules["ray"] is None: an import of it fails
        return False


def require_ray(what: str):
    """Import Ray for `what`, or a ToolchainError that says how to get it.

    Raises:
        ToolchainError: Ray is not installed (exit 2).
    """
    try:
        import ray
    except ImportError:
        raise ToolchainError(f"{what} needs Ray, which is not installed", INSTALL_HINT) from None
    return ray


def ray_ready() -> bool:
    """Ray is installed and initialised in this process (a cluster is attached)."""
    if not ray_installed():
        return False
    import ray

    return ray.is_initialized()


def _one_thread_call(fn: Callable[[T], R], item: T) -> R:
    """Run `fn(item)` with torch at one intra-op thread (imported only if installed)."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)
    return fn(item)


def _resolve(executor: str) -> str:
    if executor not in EXECUTORS:
        raise UsageError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}",
                         "use auto (Ray when it is initialised, else in this process)")
    if executor == "auto":
        return "ray" if ray_ready() else "inproc"
    return executor


def map_tasks(fn: Callable[[T], R], items: Iterable[T], executor: str = "auto", num_cpus: float = 1,
              num_gpus: float = 0, resources: dict[str, float] | None = None, workers: int | None = None) -> list[R]:
    """`[fn(item) for item in items]`, the calls run in parallel where `executor` allows.

    Args:
        fn: A picklable function of one item (module-level, or a closure: Ray pickles closures).
        items: The inputs; the result list has their order.
        executor: "auto" (Ray if initialised, else in-process), "ray" (a local Ray is started
            for the call when none is initialised), "process" (a spawn process pool), "inproc".
        num_cpus, num_gpus, resources: What each Ray task asks of the cluster.
        workers: Process-pool size (default: CPUs available), and the local Ray's CPUs when
            this call starts one.

    Returns:
        The results, in the order of `items`.

    Raises:
        ToolchainError: executor "ray" without Ray installed.
        UsageError: an unknown executor.
        Whatever `fn` raises (the first failure, in item order).
    """
    items = list(items)
    how = _resolve(executor)
    if how == "inproc" or not items:
        return [fn(item) for item in items]
    if how == "process":
        import concurrent.futures as cf
        import multiprocessing

        n = workers or len(os.sched_getaffinity(0))
        with cf.ProcessPoolExecutor(max_workers=min(n, len(items)),
                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(_one_thread_call, [fn] * len(items), items))
    ray = require_ray("running tasks on Ray")
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=workers or len(os.sched_getaffinity(0)), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        started = True
    try:
        remote = ray.remote(_one_thread_call).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                                      resources=resources or {}, max_retries=1)
        fn_ref = ray.put(fn)  # shipped once, not once per item (a supernet is megabytes)
        return ray.get([remote.remote(fn_ref, item) for item in items])
    finally:
        if started:
            ray.shutdown()
