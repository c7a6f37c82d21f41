"""Rendering: the C text of a planned model (`micronas_model.h/.c`), from the template files.

Deterministic: the same plan gives the same bytes. Nothing here decides anything about the
model; every figure comes from the plan.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from string import Template

from micronas_base import __version__

from .plan import Const, ModelPlan
from .registry import get_runtime_op

RUNTIME_VERSION = "1"  # bump when kernel semantics or the params structs change


def template(name: str) -> Template:
    """A template file of firmware_export/templates."""
    return Template((resources.files("firmware_export") / "templates" / name).read_text())


def c_struct(fields: dict[str, object], _nested: bool = False) -> str:
    """A C99 designated initializer of a params struct.

    Top-level fields go one per line (readable generated code); nested structs stay inline.
    """
    parts = []
    for k, v in fields.items():
        if isinstance(v, (list, tuple)):
            parts.append(f".{k} = {{{', '.join(str(int(x)) for x in v)}}}")
        elif isinstance(v, dict):
            parts.append(f".{k} = {c_struct(v, _nested=True)}")
        else:
            parts.append(f".{k} = {v}")
    if _nested:
        return "{" + ", ".join(parts) + "}"
    return "{\n    " + ",\n    ".join(parts) + ",\n}"


def c_const(name: str, const: Const) -> str:
    """The definition of one constant array (byte arrays 16-byte aligned for the SIMD loads)."""
    values = const.data.reshape(-1).tolist()
    per_line = 16 if const.ctype in ("int8_t", "uint8_t") else 6
    rows = [", ".join(str(int(v)) for v in values[i : i + per_line]) for i in range(0, len(values), per_line)]
    body = "\n    " + ",\n    ".join(rows) + ",\n"
    align = "MICRONAS_ALIGNAS16 " if const.ctype in ("int8_t", "uint8_t") else ""
    return f"static {align}const {const.ctype} {name}[{len(values)}] = {{{body}}};"


def _float_api(plan: ModelPlan) -> tuple[str, str]:
    """The header declarations and the definition of `micronas_invoke_float` ("" for an int8 model).

    The model's own input and output types as the .tflite declares them: a float32 edge is
    quantised (input) or dequantised (output) with TFLM's arithmetic, an int8 one copied.
    """
    from ..carrays import c_float

    fin, fout = plan.float_input, plan.float_output
    if fin is None and fout is None:
        return "", ""
    in_t, out_t = ("float" if fin else "int8_t"), ("float" if fout else "int8_t")
    g = plan.graph
    in_elems = fin.elems if fin else g.tensors[g.inputs[0]].nbytes
    out_elems = fout.elems if fout else g.tensors[g.outputs[0]].nbytes
    lines = ["", "",
             "/* The model with its converted input and output types (a float32 input through TFLite's",
             " * QUANTIZE, a float32 output through DEQUANTIZE: round(x / scale) + zero point, halves away",
             " * from zero, and scale * (q - zero point), as TFLite Micro computes them; an int8 edge is",
             " * copied). Same arena and kernels as micronas_invoke, which takes the int8 tensors between. */",
             "#define MICRONAS_FLOAT_API 1",
             f"#define MICRONAS_MODEL_INPUT_ELEMS {in_elems}",
             f"#define MICRONAS_MODEL_OUTPUT_ELEMS {out_elems}",
             f"typedef {in_t} micronas_model_input_t;",
             f"typedef {out_t} micronas_model_output_t;",
             "int micronas_invoke_float(const micronas_model_input_t *input, micronas_model_output_t *output);"]
    body = ["int micronas_invoke_float(const micronas_model_input_t *input, micronas_model_output_t *output) {"]
    if fin:
        body.append(f"    mn_quantize_f32_s8(input, mn_arena + {plan.input_offset}, {fin.elems}, "
                    f"{c_float(fin.scale)}f, {fin.zero_point});")
    else:
        body.append(f"    memcpy(mn_arena + {plan.input_offset}, input, MICRONAS_INPUT_BYTES);")
    body.append("    mn_layers();")
    if fout:
        body.append(f"    mn_dequantize_s8_f32(mn_arena + {plan.output_offset}, output, {fout.elems}, "
                    f"{c_float(fout.scale)}f, {fout.zero_point});")
    else:
        body.append(f"    memcpy(output, mn_arena + {plan.output_offset}, MICRONAS_OUTPUT_BYTES);")
    body += ["    return 0;", "}"]
    return "\n".join(lines), "\n".join(body)


def _invoke(plan: ModelPlan, body: list[str]) -> str:
    """micronas_invoke (the int8 API); with a float API the layers move into one shared function."""
    head = f"int micronas_invoke(const int8_t *input, int8_t *output) {{\n" \
           f"    memcpy(mn_arena + {plan.input_offset}, input, MICRONAS_INPUT_BYTES);\n"
    tail = f"    memcpy(output, mn_arena + {plan.output_offset}, MICRONAS_OUTPUT_BYTES);\n    return 0;\n}}"
    _, float_def = _float_api(plan)
    if not float_def:
        return head + "\n".join(body) + "\n" + tail
    return ("static void mn_layers(void) {\n" + "\n".join(body) + "\n}\n\n" + head + "    mn_layers();\n" + tail +
            "\n\n" + float_def)


def render(plan: ModelPlan, labels: tuple[str, ...] | None, input_mean: tuple[float, ...] | None,
           input_std: tuple[float, ...] | None, source_name: str = "model_int8.tflite",
           remove_window_mean: bool = False) -> tuple[str, str, list[str]]:
    """The header, the source and each layer's kernel call of a planned model.

    Args:
        plan: The planned model.
        labels: Class names, in output order; None: not known (a model compiled without
            --labels): the labels are the output indices as text, and the header says so.
        input_mean: Per-channel mean used to standardise raw input (for the quantise helper);
            None with `input_std`: not known: mean 0, std 1, and the header says so.
        input_std: Per-channel std.
        source_name: The flatbuffer's file name, for the provenance banner.
        remove_window_mean: Whether the model was trained on windows whose per-channel mean
            was removed (`micronas_model_quantize_window` then removes it too).

    Returns:
        (micronas_model.h text, micronas_model.c text, the C call of every layer).
    """
    from ..carrays import c_float, c_string

    g = plan.graph
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    has_labels = labels is not None
    if labels is None:
        labels = tuple(str(i) for i in range(max(1, tout.nbytes)))
    has_norm = input_mean is not None and input_std is not None
    if not has_norm:
        input_mean, input_std = (0.0,) * tin.shape[-1], (1.0,) * tin.shape[-1]
    params, calls = [], []
    for k, layer in enumerate(plan.layers):
        em = get_runtime_op(layer.op)
        name = f"mn_p{k}"
        params.append(f"static const {em.struct} {name} = {c_struct(layer.fields)};")
        calls.append(em.render(layer, name))
    buf = plan.tflite
    digest = hashlib.sha256(buf).hexdigest()
    source_line = (f"From {source_name}: {len(buf)} bytes, sha256 {digest}." if buf else
                   "From a graph lowered from the search space (synthetic weights, for measurement only).")
    banner = f"Generated by micronas {__version__} (runtime {RUNTIME_VERSION}); do not edit. {source_line}"
    in_shape = [d for d in tin.shape]
    body = []
    for k, call in enumerate(calls):
        body.append(f"    MN_LAYER_BEGIN({k});")
        body.append(f"    {call}")
        body.append(f"    MN_LAYER_END({k});")
    header = template("micronas_model.h.tmpl").substitute(
        banner=banner,
        arena_bytes=plan.arena_bytes,
        input_bytes=tin.nbytes,
        output_bytes=tout.nbytes,
        input_shape=", ".join(map(str, in_shape)),
        input_length=in_shape[1] if len(in_shape) == 3 else in_shape[-2],
        input_channels=in_shape[-1],
        input_scale=c_float(tin.scale),
        input_zero_point=tin.zero_point,
        output_scale=c_float(tout.scale),
        output_zero_point=tout.zero_point,
        num_classes=len(labels),
        num_layers=len(plan.layers),
        float_api=_float_api(plan)[0],
        output_shape=", ".join(map(str, tout.shape)),
        labels_note=("the argmax indexes micronas_model_class_labels." if has_labels else
                     "no class names were given (micronas compile --labels), so\n"
                     " *         micronas_model_class_labels[i] is the index i as text."),
        normalisation_note=(("each channel's mean over the window removed,\n *         then " if remove_window_mean
                             else "") + "standardisation by the training\n"
                            " *         split's per-channel mean and std, then the input scale and zero point;\n"
                            " *         values past the int8 input range saturate (micronas trains on values\n"
                            " *         clipped the same way: normalization.json \"clip\")."
                            if has_norm else
                            "no mean/std were given\n"
                            " *         (micronas compile --mean/--std), so it applies only the input scale and\n"
                            " *         zero point: pass values already normalised as in training."),
        has_labels=int(has_labels),
        has_normalisation=int(has_norm),
        removes_window_mean=int(remove_window_mean),
    )
    source = template("micronas_model.c.tmpl").substitute(
        banner=banner,
        consts="\n".join(c_const(f"mn_c{i}", c) for i, c in enumerate(plan.consts)),
        params="\n".join(params),
        invoke=_invoke(plan, body),
        layer_names="\n".join(f"    {c_string(f'{k}:{layer.op}')}," for k, layer in enumerate(plan.layers)),
        labels="\n".join(f"    {c_string(label)}," for label in labels),
        mean=", ".join(c_float(v) + "f" for v in input_mean),
        std=", ".join(c_float(v) + "f" for v in input_std),
    )
    return header, source, calls


__all__ = ["RUNTIME_VERSION", "c_const", "c_struct", "render", "template"]
