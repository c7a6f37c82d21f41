"""The op registry: the one place every stage asks about an op.

Entries are looked up by name, never by if/elif chains:

* search ops (`conv`, `dwsep`, `skip`, `dyconv`, ...): the choices a cell of the search space
  can take, with their valid parameters and the torch module that implements them.

Runtime ops (`CONV_2D`, `MEAN`, ...: the int8 TFLite builtins the micronas C runtime executes)
have their own registry in `firmware_export.codegen.registry`, which owns every runtime op.

This module imports no torch (latency tables key on it); the torch modules are imported when
`SearchOp.build` is called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from micronas_base.errors import ConfigError, unknown_name_error

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> entry mapping; unknown names raise an error listing the known ones.

    Args:
        kind: What the entries are ("search op", "runtime op"), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """Return the entry called `name`.

        Raises:
            ConfigError: `name` is not registered; the message lists the known names and the
                closest match.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name_error(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


# --------------------------------------------------------------------------------------------
# Search ops


@dataclass(frozen=True)
class SearchOp:
    """One choice a layer of the network can take.

    Attributes:
        name: Registry name, used in arch.json (`"op": "dyconv"`).
        summary: One line for docs and `--help`.
        module: "package.module:Class" of the torch module; imported lazily by `build`.
        kernels: Valid kernel sizes (empty: the op has no kernel).
        strides: Valid strides.
        experts: Valid expert counts (empty: the op takes no `experts`).
        keeps_width: The op cannot change the channel count (skip).
        shares_parent: Layers of this op with one (in, out, kernel) shape share one parent
            kernel (KernelDNA); `build` then takes a `parent` parameter.
        supernet_as: The op the supernet trains in this op's place where both are offered
            (`conv` is `wconv` with one width: once widths are masks they compute the same
            function, so the supernet keeps one candidate for both). Empty: itself.
    """

    name: str
    summary: str
    module: str
    kernels: tuple[int, ...] = (3, 5, 7)
    strides: tuple[int, ...] = (1, 2)
    experts: tuple[int, ...] = ()
    keeps_width: bool = False
    shares_parent: bool = False
    supernet_as: str = ""

    def parent_key(self, in_channels: int, out: int, kernel: int) -> str:
        """The name of the parent kernel that layers of this (in, out, kernel) shape share.

        It names the parameter in a network's state dict (`parents.<key>`) and the one constant
        the exporter stores for all those layers, so every stage keys parents through it.
        """
        return f"{self.name}_{in_channels}x{out}x{kernel}"

    def build(self, in_channels: int, **params: Any):
        """Instantiate the torch module for this op (imports torch).

        Args:
            in_channels: Channels of the layer input.
            **params: The layer's validated parameters (out, kernel, stride, experts).

        Returns:
            A `torch.nn.Module` mapping (B, in_channels, T) to (B, out, T').
        """
        return self.block_class()(in_channels, **params)

    def block_class(self) -> Callable[..., Any]:
        """The torch module class of `module` (imports it)."""
        module_name, cls_name = self.module.split(":")
        return getattr(importlib.import_module(module_name), cls_name)

    def build_sharing(self, in_channels: int, parents: Any, **params: Any):
        """`build`, with the parent kernel of a `shares_parent` op taken from (or added to) `parents`.

        Args:
            in_channels: Channels of the layer input.
            parents: A `torch.nn.ParameterDict` of the network's shared parents, by `parent_key`.
            **params: out, kernel, stride (and experts) as for `build`.
        """
        if self.shares_parent:
            key = self.parent_key(in_channels, params["out"], params["kernel"])
            if key not in parents:
                parents[key] = self.build(in_channels, **params).parent
            params["parent"] = parents[key]
        return self.build(in_channels, **params)


SEARCH_OPS: Registry[SearchOp] = Registry("search op")


def register_search_op(op: SearchOp) -> SearchOp:
    return SEARCH_OPS.add(op.name, op)


# In the order the search space offers them (`search_space.space.ALL_OPS`): the supernet's
# candidate order, hence its architecture parameters, follows it.
register_search_op(SearchOp(
    name="conv",
    summary="plain 1-D convolution + batch norm (folded at export) + ReLU",
    module="search_space.layers:ConvBlock",
    supernet_as="wconv",
))

register_search_op(SearchOp(
    name="wconv",
    summary="width-searchable convolution: Gumbel-softmax over channel masks; exports as a plain narrower conv",
    module="search_space.layers:WidthConvBlock",
))

register_search_op(SearchOp(
    name="dwsep",
    summary="depthwise-separable: depthwise k-tap conv + ReLU, pointwise 1x1 conv + ReLU",
    module="search_space.layers:DWSepBlock",
))

register_search_op(SearchOp(
    name="dyconv",
    summary="dynamic convolution (DY-Conv/CondConv), K experts mixed by input attention, split form",
    module="search_space.layers:DyConvBlock",
    experts=(2, 4),
))

register_search_op(SearchOp(
    name="kdna",
    summary="KernelDNA: kernel from a parent shared by same-shape layers, static per-filter scale, input filter attention",
    module="search_space.layers:KernelDNABlock",
    shares_parent=True,
))

register_search_op(SearchOp(
    name="skip",
    summary="identity (stride 1, same width): lets the search drop a cell",
    module="search_space.layers:SkipBlock",
    kernels=(),
    strides=(1,),
    keeps_width=True,
))

register_search_op(SearchOp(
    name="dyagg",
    summary="dynamic convolution (DY-Conv), K experts aggregated by input attention into one kernel, one conv",
    module="search_space.layers:DyAggBlock",
    experts=(2, 4),
))
