"""The benchmark stages of ``python -m benchmarks``: the :class:`Stage` record (the quick and full-size commands of
one benchmark, whether it reads the data and whether it is timed) and the ``STAGES`` table, in the order they run."""

from __future__ import annotations

import sys
from dataclasses import dataclass

PY = sys.executable


Command = tuple[str, ...]


@dataclass(frozen=True)
class Stage:
    """One benchmark: lists of commands for the quick and the full size; ``{out}`` is the stage folder. ``data``: it
    reads the data folder (skipped without it); ``timed``: its tables report timings (waits for a quiet machine)."""

    title: str
    quick: tuple[Command, ...]
    full: tuple[Command, ...]
    data: bool = False
    timed: bool = False


SPEED: Command = (PY, "-m", "pytest", "benchmarks/test_speed.py", "-m", "speed", "-q", "-p", "no:cacheprovider",
                  "--benchmark-json={out}/benchmark.json", "--benchmark-columns=median,iqr,rounds")  # fmt: skip
ZOO_ART = "edgeae/zoo/artifacts/rover-rgb-gtcae/rover-rgb-gtcae"
# the sparse frame rebuilt by the default ground CAE and by classical fills, blend among them (the best classical
# fill of the reconstruction stage on the same rover test images)
LINK: Command = (PY, "benchmarks/link_comparison.py", "--out", "{out}", "--methods", "telea,linear,normconv,blend",
                 "--model", "rover-rgb-unet2-ground", "--encoder", f"{ZOO_ART}-encoder.int8.onnx",
                 "--decoder", f"{ZOO_ART}-decoder.int8.onnx", "--compare-v1")  # fmt: skip
RECON_MODELS = "rover-rgb-gtcae,rover-rgb-gtcae-v2,rover-rgb-gtunet,rover-rgb-unet2-flight,rover-rgb-unet2-ground"
RECON_ACCEPT: Command = (
    PY, "benchmarks/reconstruction_acceptance.py", "--out", "{out}/acceptance",
    "--rover-models", "rover-rgb-unet2-ground,rover-rgb-unet2-flight,rover-rgb-gtunet,rover-rgb-gtcae-v2,"
    "edgeae/zoo/artifacts/rover-rgb-unet2-ground/rover-rgb-unet2-ground.int8.onnx,"
    "edgeae/zoo/artifacts/rover-rgb-unet2-flight/rover-rgb-unet2-flight.int8.onnx",
    "--gray-models", "orbital-gray-unet2-ground,orbital-gray-gtunet",
    "--default-model", "rover-rgb-unet2-ground", "--flight-model", "rover-rgb-unet2-flight",
)  # fmt: skip
# the ground models adapted to each image (edgeae.adapt, default steps) next to the same models as shipped, each
# also cross-checked against linear interpolation (edgeae.crosscheck)
ADAPT: Command = (
    PY, "benchmarks/reconstruction_acceptance.py", "--out", "{out}", "--rover-models", "rover-rgb-unet2-ground",
    "--gray-models", "orbital-gray-unet2-ground", "--default-model", "rover-rgb-unet2-ground", "--keeps", "0.1",
    "--adapt-steps", "100", "--cross-check", "linear", "--threads", "2",
)  # fmt: skip
# the ground models mixed with linear interpolation by the held-out cross-check (edgeae.crosscheck)
XCHECK: Command = (
    PY, "benchmarks/reconstruction_acceptance.py", "--out", "{out}/acceptance", "--rover-models",
    "rover-rgb-unet2-ground,rover-rgb-unet2-flight", "--gray-models", "orbital-gray-unet2-ground",
    "--default-model", "rover-rgb-unet2-ground", "--flight-model", "rover-rgb-unet2-flight",
    "--cross-check", "linear", "--threads", "2",
)  # fmt: skip
XCHECK_GREY: Command = (PY, "benchmarks/grey_rates.py", "--out", "{out}/grey_rates", "--cross-check", "linear")
# the two-context kNN candidate, 8 views per patch, with the fp32 checkpoint and with the shipped int8 ONNX file
HIRISE_CONTEXT: Command = (PY, "-m", "edgeae", "evaluate", "--dataset", "hirise_landmarks", "--views", "8",
                           "--no-plots", "--no-progress")  # fmt: skip
GRAY_VAE_INT8 = "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"
# default models per dataset: orbital-gray-vae (LROC, HiRISE), rover-rgb-vae (MSL validation benchmark)
EVALUATE: Command = (PY, "-m", "edgeae", "evaluate", "--dataset", "all", "--out", "{out}")
MSL_FULL: Command = (PY, "-m", "edgeae", "evaluate", "--dataset", "msl_surface", "--no-plots", "--no-progress", "--out",
                     "{out}")  # fmt: skip

# fmt: off
STAGES: dict[str, Stage] = {
    "speed": Stage(
        "Speed and memory per model and runtime",
        (SPEED,),
        ((*SPEED, "--benchmark-min-rounds=50"),),
        data=True, timed=True,
    ),
    "ratios": Stage(
        "Each runtime vs PyTorch eager, interleaved round by round (the reproducible form of the speed suite's ratios)",
        ((PY, "benchmarks/runtime_ratios.py", "--out", "{out}"),),
        ((PY, "benchmarks/runtime_ratios.py", "--out", "{out}", "--rounds-b1", "300", "--rounds-b32", "30"),),
        data=True, timed=True,
    ),
    "export": Stage(
        "Export parity, sizes and latency of the zoo artifacts",
        ((PY, "-m", "edgeae", "export", "rover-rgb-gtcae", "--format", "all", "--precision", "all",
          "--out", "{out}/rover-rgb-gtcae"),
         (PY, "-m", "edgeae", "export", "orbital-gray-vae", "--format", "all", "--precision", "all",
          "--out", "{out}/orbital-gray-vae")),
        ((PY, "-m", "edgeae", "export", "rover-rgb-gtcae", "--format", "all", "--precision", "all",
          "--out", "{out}/rover-rgb-gtcae"),
         (PY, "-m", "edgeae", "export", "orbital-gray-vae", "--format", "all", "--precision", "all",
          "--out", "{out}/orbital-gray-vae")),
        data=True, timed=True,
    ),
    "reconstruction": Stage(
        "Reconstruction: every model vs the best classical fill per image (issue 11 acceptance), Fig. 4 sweep",
        (RECON_ACCEPT,
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-unet2-ground",
          "--model", "rover-rgb-unet2-ground", "--methods", "cae,normconv,linear", "--sweep-methods",
          "cae,normconv,linear,telea", "--crop", "512"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-unet2-flight",
          "--model", "rover-rgb-unet2-flight", "--methods", "cae", "--sweep-methods", "cae", "--crop", "512"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-gtcae", "--model", "rover-rgb-gtcae",
          "--methods", "cae", "--sweep-methods", "cae", "--crop", "512"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-gtcae-v2", "--model",
          "rover-rgb-gtcae-v2", "--methods", "cae", "--sweep-methods", "cae", "--crop", "512")),
        ((*RECON_ACCEPT,),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-unet2-ground",
          "--model", "rover-rgb-unet2-ground", "--methods", "cae,telea,ns,linear,nearest,normconv",
          "--sweep-methods", "cae,telea,linear,normconv"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-unet2-flight",
          "--model", "rover-rgb-unet2-flight", "--methods", "cae", "--sweep-methods", "cae"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-gtcae", "--model", "rover-rgb-gtcae",
          "--methods", "cae", "--sweep-methods", "cae"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-gtcae-v2", "--model",
          "rover-rgb-gtcae-v2", "--methods", "cae", "--sweep-methods", "cae")),
        data=True, timed=True,
    ),
    "model_costs": Stage(
        "Zoo reconstruction models: parameters, MACs per pixel, tile latency vs the seed CAE (flight budget)",
        ((PY, "benchmarks/model_costs.py", "--out", "{out}", "--models", RECON_MODELS, "--rounds", "30"),),
        ((PY, "benchmarks/model_costs.py", "--out", "{out}", "--models", RECON_MODELS, "--rounds", "100"),),
        data=True, timed=True,
    ),
    "gt_vs_fixed": Stage(
        "One gt-CAE vs CAEs trained at a fixed masking level (equal training budget)",
        ((PY, "benchmarks/gt_vs_fixed.py", "--out", "{out}", "--gt-model", "rover-rgb-gtcae", "--crops", "2000",
          "--val-crops", "300", "--epochs", "5", "--seed", "1", "--levels", "0.5", "0.9", "0.99",
          "--extra-model", "rover-rgb-gtunet"),),
        ((PY, "benchmarks/gt_vs_fixed.py", "--out", "{out}", "--gt-model", "rover-rgb-gtcae", "--crops", "2000",
          "--val-crops", "300", "--epochs", "5", "--seed", "1", "--fixed", "0.5", "0.7", "0.9", "0.99",
          "--levels", "0.5", "0.7", "0.9", "0.99", "--extra-model", "rover-rgb-gtunet"),),
        data=True,
    ),
    "rate_distortion": Stage(
        "Rate-distortion: sparse pixels, latents and JPEG / JPEG 2000 / WebP / JPEG XL at matched sizes",
        ((PY, "benchmarks/rate_distortion.py", "--out", "{out}", "--quick"),),
        ((PY, "benchmarks/rate_distortion.py", "--out", "{out}"),),
        data=True, timed=True,
    ),
    "link": Stage(
        "Downlink over a lossy link: sparse pixels vs codecs at equal bytes",
        ((*LINK, "--limit", "4", "--seeds", "1"),),
        ((*LINK, "--seeds", "3"),),
        data=True,
    ),
    "lossless": Stage(
        "Lossless sample coding on the wire: none vs delta+deflate vs CCSDS 121 on every test image",
        ((PY, "benchmarks/lossless_coding.py", "--out", "{out}"),),
        ((PY, "benchmarks/lossless_coding.py", "--out", "{out}"),),
        data=True, timed=True,
    ),
    "science": Stage(
        "Science per byte: JPEG 2000 vs sparse + CAE vs prioritised patches at 2/5/10% of the raw frame",
        ((PY, "benchmarks/science_per_byte.py", "--out", "{out}", "--quick"),),
        ((PY, "benchmarks/science_per_byte.py", "--out", "{out}"),),
        data=True,
    ),
    "science_oracle": Stage(
        "Science per byte with a perfect anomaly ranking (labels rank the patches): the bound for any scorer",
        ((PY, "benchmarks/science_per_byte.py", "--out", "{out}", "--quick", "--oracle",
          "--methods", "jpeg2000,j2k-tiled,prioritised,prioritised-j2k"),),
        ((PY, "benchmarks/science_per_byte.py", "--out", "{out}", "--oracle",
          "--methods", "jpeg2000,j2k-tiled,prioritised,prioritised-j2k"),),
        data=True,
    ),
    "quantisation": Stage(
        "fp32 vs int8 artifacts: reconstruction quality and anomaly ranking",
        ((PY, "benchmarks/quantisation_quality.py", "--out", "{out}", "--quick"),),
        ((PY, "benchmarks/quantisation_quality.py", "--out", "{out}"),),
        data=True,
        timed=True,  # its tables give seconds per image
    ),
    "anomaly": Stage(
        "Anomaly ranking on labelled data (the lunar paper's table; issue-12 targets in summary.md)",
        ((*EVALUATE, "--limit", "400"),),  # all 10 LROC mosaics, 400 random HiRISE crops / MSL images
        (EVALUATE,),
        data=True,
    ),
    # the MSL target on every image of the held-out sols (the anomaly stage's quick size samples 400 of 1,201)
    "msl_full": Stage(
        "MSL hardware and calibration targets vs ground on every validation-sol image (the issue-12 MSL target)",
        (MSL_FULL,),
        (MSL_FULL,),
        data=True,
    ),
    # the two-context kNN candidate with each patch's 8 rotations and flips, on the HiRISE dev split: the 400-crop
    # sample (quick) or every dev crop, the split the issue-12 ROC AUC target names (full: ~11 min fp32 + ~4 min int8)
    "hirise_context": Stage(
        "HiRISE craters: the two-context kNN candidate with 8 views per patch (crop and product contexts)",
        ((*HIRISE_CONTEXT, "--limit", "400", "--out", "{out}"),
         (*HIRISE_CONTEXT, "--limit", "400", "--model", GRAY_VAE_INT8, "--out", "{out}/int8")),
        ((*HIRISE_CONTEXT, "--out", "{out}"), (*HIRISE_CONTEXT, "--model", GRAY_VAE_INT8, "--out", "{out}/int8")),
        data=True,
    ),
    # the two-context ranking over an archive (edgeae scan --score context-knn on the HiRISE dev crops, 8 views) and
    # how far its kNN reference may be a sample of the set (full: ~3 + ~2 + ~9 min)
    "context_scale": Stage(
        "HiRISE craters: the two-context kNN as an archive scan, and with a sample of the set as its kNN reference",
        ((PY, "-m", "benchmarks.scan_context", "--limit", "400", "--out", "{out}/scan"),),
        ((PY, "-m", "benchmarks.scan_context", "--out", "{out}/scan"),
         (PY, "-m", "benchmarks.scan_context", "--views", "1", "--out", "{out}/scan_1view"),
         (PY, "-m", "benchmarks.context_bank", "--out", "{out}/bank")),
        data=True, timed=True,
    ),
    "nodata_fill": Stage(
        "No-data filled before the evaluation scores (HiRISE craters): the crop's median (tried, not adopted) and "
        "each patch's own mean (what edgeae score and scan do)",
        ((PY, "-m", "benchmarks.nodata_fill", "--limit", "400", "--out", "{out}"),),
        ((PY, "-m", "benchmarks.nodata_fill", "--out", "{out}"),
         (PY, "-m", "benchmarks.nodata_fill", "--modes", "as read,patch mean", "--out", "{out}/session28")),
        data=True,
    ),
    "frame": Stage(
        "Whole-frame costs in the flight runtime",
        ((PY, "-m", "benchmarks.frame_costs", "--out", "{out}", "--quick"),),
        ((PY, "-m", "benchmarks.frame_costs", "--out", "{out}"),),
        data=True, timed=True,
    ),
    "vae_form": Stage(
        "The VAE's decoder as trained vs its exact sub-pixel export form (int8 TFLite and ONNX, interleaved)",
        ((PY, "benchmarks/vae_form.py", "--out", "{out}"),),
        ((PY, "benchmarks/vae_form.py", "--out", "{out}", "--rounds", "60"),),
        data=True, timed=True,
    ),
    "grey_rates": Stage(
        "The grey ground CAE vs classical fills at the orbital mission's sampling rate (keep 0.02) and above",
        ((PY, "benchmarks/grey_rates.py", "--out", "{out}", "--adapt-steps", "100", "--adapt-keeps", "0.02"),),
        ((PY, "benchmarks/grey_rates.py", "--out", "{out}", "--adapt-steps", "100", "--adapt-keeps", "0.02"),),
        data=True,
    ),
    "adapt": Stage(
        "Per-frame adaptation of the ground CAEs to each image's own samples (edgeae.adapt), keep 0.1",
        (ADAPT,),
        (ADAPT,),
        data=True,
    ),
    "crosscheck": Stage(
        "The ground CAEs mixed with linear interpolation region by region by a held-out cross-check",
        (XCHECK, XCHECK_GREY),
        (XCHECK, XCHECK_GREY),
        data=True,
    ),
    "planted_blocks": Stage(
        "Planted bright / checkerboard / noise blocks in real grey frames: where each VAE score ranks them",
        ((PY, "-m", "benchmarks.planted_blocks", "--split", "val", "--out", "{out}/val"),
         (PY, "-m", "benchmarks.planted_blocks", "--split", "test", "--out", "{out}/test")),
        ((PY, "-m", "benchmarks.planted_blocks", "--split", "val", "--out", "{out}/val"),
         (PY, "-m", "benchmarks.planted_blocks", "--split", "test", "--out", "{out}/test")),
        data=True,
    ),
    "local_z_int8": Stage(
        "local z (mu, rec) from the int8 VAE vs the fp32 one: top-k overlap, with and without the resolution floor",
        ((PY, "-m", "benchmarks.local_z_int8", "--out", "{out}"),),
        ((PY, "-m", "benchmarks.local_z_int8", "--out", "{out}", "--strip", "runs/frames/nac_52224x5064.tif"),
         (PY, "-m", "benchmarks.local_z_int8", "--out", "{out}/onnx", "--runtime", "onnx", "--strip",
          "runs/frames/nac_52224x5064.tif")),
        data=True,
    ),
    "flight_planted": Stage(
        "The rover mission's flight scorer on planted MSL hardware (firmware-sim, int8), against the rover VAE",
        ((PY, "benchmarks/flight_planted.py", "--out", "{out}"),),
        ((PY, "benchmarks/flight_planted.py", "--out", "{out}", "--seeds", "8"),),
        data=True,
    ),
    "nac": Stage(
        "The lunar paper's headline: a NAC-size strip through firmware-sim and edgeae scan, scorer rates vs peak",
        ((PY, "-m", "benchmarks.nac_headline", "--out", "{out}", "--quick"),),
        ((PY, "-m", "benchmarks.nac_headline", "--out", "{out}"),),
        data=True, timed=True,
    ),
    "scan": Stage(
        "Archive scan throughput, local engine vs Ray",
        ((PY, "-m", "edgeae.scan.synth", "--out", "runs/archive-quick", "--n", "60"),
         (PY, "benchmarks/scan_throughput.py", "--archive", "runs/archive-quick", "--out", "{out}")),
        ((PY, "-m", "edgeae.scan.synth", "--out", "runs/archive", "--n", "300"),
         (PY, "benchmarks/scan_throughput.py", "--archive", "runs/archive", "--out", "{out}", "--kill-test")),
        data=True, timed=True,
    ),
}
# fmt: on
