"""What gets exported: the PyTorch graph for each artifact kind, its sample input and its metadata.

A CAE checkpoint yields three artifacts: the full model (``cae``), the ``cae-encoder`` (pixels -> latent,
what a spacecraft sends) and the ``cae-decoder`` (latent -> pixels, what a ground station runs). A VAE
yields one ``vae`` artifact whose graph computes the anomaly score inside; its dict output becomes a
tuple in the fixed order of :data:`edgeae.firmware_sim.runtime.OUTPUT_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeae.firmware_sim.runtime import OUTPUT_NAMES

from edgeae._optional import require
from edgeae.metadata import ModelMetadata

INPUT_NAMES = {"cae": "x", "cae-encoder": "x", "cae-decoder": "z", "vae": "x"}
KINDS_FOR = {"cae": ("cae", "cae-encoder", "cae-decoder"), "vae": ("vae",)}
#: patches per call of a VAE's TFLite file (its static batch). 16 cost the same per patch as 1 (XNNPACK int8,
#: 0.21-0.23 CPU-ms per 64 × 64 patch either way in benchmarks/nac_headline.py, session 4, decoder as trained) but
#: take the GIL once per 16 patches: with one patch per call, two scoring threads and a busy main thread convoyed.
VAE_TFLITE_BATCH = 16
#: how a VAE's decoder is converted: "subpixel" = each 2× nearest upsampling + 3×3 convolution as one exact
#: sub-pixel convolution (edgeae.models.subpixel). Part of the benchmark artifact cache's stamp.
VAE_EXPORT_FORM = "subpixel"


@dataclass
class Graph:
    """One exportable graph: ``module`` maps an NCHW float input to a tuple in ``output_names`` order.

    ``tflite_static_batch`` is set when litert-torch cannot convert the graph with a dynamic batch;
    ``tflite_layout`` "NHWC" converts with channels-last input/output (litert-torch turns the NCHW→NHWC
    transpose of a 1-channel input into a reshape that bakes in the sample's batch size).
    """

    kind: str
    module: Any  # torch.nn.Module
    metadata: ModelMetadata
    input_name: str
    output_names: tuple[str, ...]
    tflite_static_batch: int | None = None
    tflite_layout: str = "NCHW"
    float_outputs: tuple[str, ...] = ()  # outputs whose head stays float32 in int8 files (the VAE score)
    float_modules: tuple[str, ...] = ()  # the submodules computing them (names in ``module``)
    learned_modules: tuple[str, ...] = ()  # when set, only these submodules are quantised in int8 ONNX files
    no_tflite: str = ""  # why this graph cannot be converted to TFLite (empty: it can)
    #: an equivalent, faster form of ``module`` that the converters take (``module`` stays the reference)
    export_module: Any = None

    @property
    def converted(self) -> Any:
        """The module the ONNX and TFLite converters take: ``export_module`` when set, else ``module``."""
        return self.module if self.export_module is None else self.export_module

    def tflite_metadata(self) -> ModelMetadata:
        """Metadata of the TFLite file: its static batch (when converted with one) as the input shape's batch,
        and NHWC input shape and layout when converted channels-last."""
        n, c, h, w = self.metadata.input_shape
        n = self.tflite_static_batch or n
        if self.tflite_layout != "NHWC":
            return self.metadata.replace(input_shape=(n, c, h, w))
        return self.metadata.replace(layout="NHWC", input_shape=(n, h, w, c))

    def sample(self, batch: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """A float32 NCHW sample batch of the graph's input shape with values in [0, 1]."""
        rng = rng or np.random.default_rng(0)
        return rng.random((batch, *self.metadata.input_shape[1:]), dtype=np.float32)


def _tuple_module(model: Any, names: tuple[str, ...]) -> Any:
    nn = require("torch.nn")

    class TupleOutputs(nn.Module):  # type: ignore[name-defined]
        """Dict (or tensor) outputs -> a tuple in a stable, named order."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: Any) -> Any:
            out = self.inner(x)
            if isinstance(out, dict):
                return tuple(out[k] for k in names)
            return out

    return TupleOutputs().eval()


def has_prefill(model: Any) -> bool:
    """Whether a CAE starts with the normalised-convolution pre-fill of :mod:`edgeae.models.unet_cae` (every
    U-Net variant: ``unet``, ``unet2``, ``unet2h``), which litert-torch cannot convert."""
    from edgeae.models.unet_cae import NormConvFill

    return isinstance(getattr(model, "fill", None), NormConvFill)


def graphs_for(
    model: Any, metadata: ModelMetadata, kinds: tuple[str, ...] | None = None, vae_form: str = VAE_EXPORT_FORM
) -> list[Graph]:
    """The exportable graphs of a checkpoint's model (all of its kinds unless ``kinds`` is given).

    ``vae_form`` "subpixel" (default) converts a VAE's decoder in its exact sub-pixel form; "reference" converts
    the module as trained (for comparisons: ``benchmarks/vae_form.py``).
    """
    if vae_form not in ("subpixel", "reference"):
        raise ValueError(f"vae_form must be 'subpixel' or 'reference', got {vae_form!r}")
    base = metadata.kind
    if base not in KINDS_FOR:
        raise ValueError(f"cannot export a model of kind {base!r}; expected one of {sorted(KINDS_FOR)}")
    if base == "cae" and metadata.architecture.get("variant", "seed") != "seed":
        # the U-Net variant has skips between encoder and decoder: it exports whole, never split
        wanted = kinds or ("cae",)
        if tuple(wanted) != ("cae",):
            raise ValueError(f"a {metadata.architecture['variant']!r} CAE exports only as 'cae', not {wanted}")
    else:
        wanted = kinds or KINDS_FOR[base]
    from edgeae.models.cae import GATED_VARIANTS

    out: list[Graph] = []
    model = model.eval()
    for kind in wanted:
        if kind not in KINDS_FOR[base]:
            raise ValueError(f"a {base} checkpoint cannot be exported as {kind!r}")
        meta = metadata.replace(kind=kind)
        if kind == "cae":
            module = model
        elif kind == "cae-encoder":
            module = model.encoder
        elif kind == "cae-decoder":
            module = model.decoder
            lat = tuple(model.config.latent_shape)
            meta = metadata.replace(kind=kind, input_shape=(-1, *lat), channels=int(lat[0]))
        else:
            module = _tuple_module(model, OUTPUT_NAMES["vae"])
        # litert-torch bakes batch 2 into the VAE's flatten/fc layers when the batch is dynamic; its TFLite
        # file is converted with a static batch of VAE_TFLITE_BATCH and the loaders run any batch in chunks.
        static, layout = (VAE_TFLITE_BATCH, "NCHW") if kind == "vae" else (None, "NHWC")
        g = Graph(kind, module.eval(), meta, INPUT_NAMES[kind], OUTPUT_NAMES[kind], static, layout)
        variant = getattr(getattr(model, "config", None), "variant", "")
        if kind == "cae" and variant in GATED_VARIANTS:
            g.learned_modules = ("down", "up", "head")  # pre-fill and gate stay float32 (no weights)
        if kind == "cae" and has_prefill(model):
            g.no_tflite = (
                f"litert-torch cannot convert the {variant} pre-fill (normalised convolution; dynamic batch: "
                "'broadcast_in_dim shape must have every element be nonnegative', with a static batch the converter "
                "crashes); use ONNX or ORT"
            )
        if kind == "vae":  # the score head reads dequantised x̂ and μ and computes a(x) in float: no ceiling
            from edgeae.models.vae import FLOAT_MODULES, export_form

            g.float_outputs = ("score",)
            g.float_modules = FLOAT_MODULES
            # nearest upsampling splits LiteRT's XNNPACK delegation; the exact sub-pixel form does not
            if vae_form == "subpixel":
                g.export_module = _tuple_module(export_form(model), OUTPUT_NAMES["vae"])
                g.metadata = meta.replace(extra={**meta.extra, "decoder_form": "subpixel (edgeae.models.subpixel)"})
        out.append(g)
    return out


def torch_outputs(graph: Graph, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Run the reference PyTorch model on a float32 NCHW batch; outputs by name, float32 numpy."""
    torch = require("torch")
    with torch.inference_mode():
        out = graph.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
    outs = out if isinstance(out, tuple) else (out,)
    return {k: v.detach().float().cpu().numpy() for k, v in zip(graph.output_names, outs, strict=True)}
