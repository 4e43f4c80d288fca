"""The zoo's registry: one entry per shipped model (kind, channels, weights file, parameter count, training data,
description and the exact command that reproduced the weights).

A plain dict, data only: adding a model is one entry here plus its files in ``edgeae/zoo/weights/``. Looking
models up, installing and listing them is :mod:`edgeae.zoo`.
"""

from __future__ import annotations

from typing import Any

from edgeae._optional import source_ref

_PACKED = f"the GPU fine-tune read JPEG q95 copies of the PNGs ({source_ref('scripts/gpu_pack.py')}"
_CHECKOUT = f"in a source checkout ({source_ref('scripts/')})"
"""The GPU steps of a command run scripts of the source repository."""

ZOO: dict[str, dict[str, Any]] = {
    "rover-rgb-gtcae": {
        "kind": "cae",
        "channels": 3,
        "file": "rover-rgb-gtcae.pt",
        "parameters": 342_339,
        "training_data": "rover_rgb train split (4 MarsScapes Curiosity Mastcam panoramas; val: 410_2)",
        "description": "gt-CAE: RGB 128x128 tiles masked at a random 50-99% per sample",
        "command": (
            "edgeae train cae --data rover_rgb --mode gt --epochs 5 --crops 2000 --val-crops 300 --seed 1 "
            "--threads 1 --out runs/zoo/rover-rgb-gtcae --zoo-name rover-rgb-gtcae"
        ),
    },
    "rover-rgb-gtcae-v2": {
        "kind": "cae",
        "channels": 3,
        "file": "rover-rgb-gtcae-v2.pt",
        "parameters": 342_339,
        "training_data": "rover_rgb_v2 train split (4 + 32 MarsScapes Curiosity Mastcam panoramas; val: 7 panoramas)",
        "description": (
            "the seed paper's gt-CAE exactly as published (architecture and recipe), retrained on the larger "
            "rover_rgb_v2 data: the reference the newer models are measured against"
        ),
        "command": (
            "edgeae train cae --data rover_rgb_v2 --mode gt --epochs 8 --crops 3000 --val-crops 256 --seed 1 "
            "--threads 1 --time-budget 45m --out runs/i11/rover-seed-v2 --zoo-name rover-rgb-gtcae-v2  "
            "(8 epochs, 6.3 min of training)"
        ),
    },
    "orbital-gray-gtcae": {
        "kind": "cae",
        "channels": 1,
        "file": "orbital-gray-gtcae.pt",
        "parameters": 341_761,
        "training_data": "orbital_gray train split (5 pycda tiles, 2 HiRISE browse strips; val: 1 HiRISE, Mercury)",
        "description": "gt-CAE: grey 128x128 tiles masked at a random 50-99% per sample",
        "command": (
            "edgeae train cae --data orbital_gray --mode gt --epochs 5 --crops 2000 --val-crops 300 --seed 2 "
            "--threads 1 --out runs/zoo/orbital-gray-gtcae --zoo-name orbital-gray-gtcae"
        ),
    },
    "rover-rgb-gtunet": {
        "kind": "cae",
        "channels": 3,
        "file": "rover-rgb-gtunet.pt",
        "parameters": 243_283,
        "training_data": "rover_rgb train split (4 MarsScapes Curiosity Mastcam panoramas; val: 410_2)",
        "description": (
            "gt-trained U-Net CAE variant (normalised-convolution pre-fill + U-Net residual): the previous default "
            "for sparse-pixel reconstruction of RGB frames (now rover-rgb-unet2-ground)"
        ),
        "command": (
            "edgeae train cae --data rover_rgb --mode gt --variant unet --epochs 8 --crops 2000 --val-crops 300 "
            "--seed 3 --threads 1 --out runs/zoo/rover-rgb-gtunet --zoo-name rover-rgb-gtunet"
        ),
    },
    "orbital-gray-gtunet": {
        "kind": "cae",
        "channels": 1,
        "file": "orbital-gray-gtunet.pt",
        "parameters": 242_705,
        "training_data": "orbital_gray train split (5 pycda tiles, 2 HiRISE browse strips; val: 1 HiRISE, Mercury)",
        "description": (
            "gt-trained U-Net CAE variant (normalised-convolution pre-fill + U-Net residual): the previous default "
            "for sparse-pixel reconstruction of grey frames (now orbital-gray-unet2-ground)"
        ),
        "command": (
            "edgeae train cae --data orbital_gray --mode gt --variant unet --epochs 8 --crops 2000 --val-crops 300 "
            "--seed 4 --threads 1 --out runs/zoo/orbital-gray-gtunet --zoo-name orbital-gray-gtunet"
        ),
    },
    "rover-rgb-unet2-flight": {
        "kind": "cae",
        "channels": 3,
        "file": "rover-rgb-unet2-flight.pt",
        "parameters": 321_740,
        "training_data": (
            "rover_rgb_v2 train split (4 + 32 MarsScapes Curiosity Mastcam panoramas; val: 7 panoramas; "
            f"{_PACKED}, 57-61 dB), then rover_rgb_msl (those panoramas + 661 colour MSL Mastcam/MAHLI browse "
            "images of the training sols; same val)"
        ),
        "description": (
            "flight-budget reconstruction CAE (unet2h, widths 24-32-64-64: pyramid normalised-convolution pre-fill + "
            "two-conv U-Net residual at half resolution via space-to-depth, 13.3 k MACs/pixel), gt-trained at "
            "60-97% destroyed, bf16 on 2 CPU cores, then fine-tuned on an H200 GPU (27 epochs of 12,288 crops, "
            "session 18: +0.06 dB on the gate's validation crops), then fine-tuned on rover_rgb_msl on 1 CPU core "
            "(session 42: 34 epochs; on the validation sols' MSL browse images -1.17 -> -0.21 dB against the best "
            "classical fill, -0.06 dB on the panoramas' validation crops); do-no-harm gate (tau chosen on val)"
        ),
        "command": (
            "edgeae train cae --data rover_rgb_v2 --out runs/i11/rover-flight-h24-32-64-64 --variant unet2h "
            "--widths 24,32,64,64 --mode gt --destroy-range 0.6,0.97 --epochs 36 --crops 3000 --val-crops 256 "
            "--batch-size 16 --lr 1e-3 --threads 1 --time-budget 70m --no-progress  (completed 36 epochs in 31 min "
            "of training; a stopped run continues with: edgeae train cae --resume runs/i11/rover-flight-h24-32-64-64)"
            "  &&  python -m edgeae.train.gate runs/i11/rover-flight-h24-32-64-64/best.pt --data rover_rgb_v2 "
            "--out runs/i11/rover-flight-h24-32-64-64/gated.pt --threads 2 --zoo-name rover-rgb-unet2-flight"
            f"  (the zoo model of commit d2328c7)  &&  {_CHECKOUT}: python scripts/gpu_pack.py rover_rgb_v2 "
            "orbital_gray_v2 --out "
            ".gpu/data  &&  on a lent H200 (device run, carry .gpu): bash scripts/gpu_train.sh, job rover-flight-ft: "
            "EDGEAE_DATA=.gpu/data edgeae train cae --data rover_rgb_v2 --variant unet2h --widths 24,32,64,64 --init "
            "edgeae/zoo/weights/rover-rgb-unet2-flight.pt --lr 5e-4 --batch-size 64 --mode gt --destroy-range 0.6,0.97 "
            "--val-crops 256 --seed 11 --data-workers 4 --threads 2 --device cuda --epochs 27 --crops 12288 "
            "--time-budget 420s --out runs/gpu-main/rover-flight-ft  (27 epochs, 4.6 min of training; kept as "
            "runs/gpu1/rover-flight-ft)  &&  python -m "
            "edgeae.train.gate runs/gpu1/rover-flight-ft/best.pt --data rover_rgb_v2 --out runs/gpu1/rover-flight-ft/"
            "gated.pt --threads 2 --zoo-name rover-rgb-unet2-flight"
            "  (the zoo model of commit bc9f0c6)  &&  edgeae train cae --data rover_rgb_msl --out "
            "runs/i11/rover-flight-msl --init edgeae/zoo/weights/rover-rgb-unet2-flight.pt --variant unet2h "
            "--widths 24,32,64,64 --mode gt --destroy-range 0.6,0.97 --epochs 60 --crops 3000 --val-crops 256 "
            "--batch-size 16 --lr 2e-4 --seed 11 --val-seed 5 --threads 1 --time-budget 65m --no-progress  "
            "(stopped with SIGTERM in epoch 34, 31 min of training, to fit the session)  &&  edgeae train cae "
            "--resume runs/i11/rover-flight-msl --epochs 34 --threads 1 --no-progress  (the rest of epoch 34, "
            "the learning rate's cosine ending there; best epoch 34; a stop at another batch of epoch 34 gives its "
            "remaining batches other learning rates, so the weights reproduce only closely)  &&  python -m "
            "edgeae.train.gate "
            "runs/i11/rover-flight-msl/best.pt --data rover_rgb_msl --out runs/i11/rover-flight-msl/gated.pt "
            "--threads 1 --zoo-name rover-rgb-unet2-flight"
        ),
    },
    "rover-rgb-unet2-ground": {
        "kind": "cae",
        "channels": 3,
        "file": "rover-rgb-unet2-ground.pt",
        "parameters": 1_096_395,
        "training_data": (
            "rover_rgb_v2 train split (4 + 32 MarsScapes Curiosity Mastcam panoramas; val: 7 panoramas), then "
            "rover_rgb_msl (those panoramas + 661 colour MSL Mastcam/MAHLI browse images of the training sols; "
            "same val)"
        ),
        "description": (
            "ground reconstruction CAE without a flight budget (unet2, widths 24-48-96-192), gt-trained at 60-97% "
            "destroyed, bf16 on 2 CPU cores, then fine-tuned on rover_rgb_msl (session 42: the panoramas alone left it "
            "1.1 dB below the classical fills on other cameras' images); do-no-harm gate (tau chosen on val)"
        ),
        "command": (
            "edgeae train cae --data rover_rgb_v2 --out runs/i11/rover-ground --variant unet2 --widths 24,48,96,192 "
            "--mode gt --destroy-range 0.6,0.97 --epochs 9 --crops 3000 --val-crops 256 --batch-size 16 --lr 1e-3 "
            "--threads 1 --time-budget 105m  (completed 9 epochs in 63 min of training; a stopped run continues "
            "with: edgeae train cae --resume runs/i11/rover-ground)"
            "  &&  edgeae train cae --data rover_rgb_v2 --out runs/i11/rover-ground-ft --init "
            "runs/i11/rover-ground/best.pt --variant unet2 --widths 24,48,96,192 --mode gt --destroy-range 0.6,0.97 "
            "--epochs 14 --crops 3000 --val-crops 256 --batch-size 16 --lr 3e-4 --seed 5 --val-seed 5 --threads 1 "
            "--time-budget 100m  (fine-tune on fresh crops: 14 epochs in 52 min of training)"
            "  &&  python -m edgeae.train.gate runs/i11/rover-ground-ft/best.pt --data rover_rgb_v2 "
            "--out runs/i11/rover-ground-ft/gated.pt --threads 1 --zoo-name rover-rgb-unet2-ground"
            "  (the zoo model of commit 38de71a)  &&  edgeae train cae --data rover_rgb_msl --out "
            "runs/i11/rover-ground-msl --init edgeae/zoo/weights/rover-rgb-unet2-ground.pt --variant unet2 "
            "--widths 24,48,96,192 --mode gt --destroy-range 0.6,0.97 --epochs 24 --crops 3000 --val-crops 256 "
            "--batch-size 16 --lr 2e-4 --seed 11 --val-seed 5 --threads 1 --time-budget 100m  (22 epochs in 100 "
            "min)  &&  edgeae train cae --resume runs/i11/rover-ground-msl --time-budget 20m --threads 2  (the "
            "last 2 epochs; best epoch 23)  &&  python -m edgeae.train.gate runs/i11/rover-ground-msl/best.pt "
            "--data rover_rgb_msl --out runs/i11/rover-ground-msl/gated.pt --threads 1 --zoo-name "
            "rover-rgb-unet2-ground"
        ),
    },
    "orbital-gray-unet2-ground": {
        "kind": "cae",
        "channels": 1,
        "file": "orbital-gray-unet2-ground.pt",
        "parameters": 1_095_529,
        "training_data": (
            "orbital_gray_v2 train split (5 pycda tiles, 3 HiRISE browse strips, 7 CTX tiles; val: 1 HiRISE, "
            f"Mercury, 2 CTX tiles); {_PACKED}, 44-51 dB)"
        ),
        "description": (
            "ground reconstruction CAE for grey frames (unet2, widths 24-48-96-192), gt 60-97%, 8 epochs at lr 5e-4 "
            "then a 12-epoch fine-tune at 2.5e-4 (a first run at lr 1e-3 collapsed to its pre-fill: dead ReLUs, now "
            "detected by the trainer), then fine-tuned on an H200 GPU (session 18: 26 + 13 epochs of 12,288 crops, "
            "479 k crops, 6.8 min of training; +0.42 dB on the gate's validation crops); the default for grey frames"
        ),
        "command": (
            "edgeae train cae --data orbital_gray_v2 --out runs/i11/orbital-ground2 --variant unet2 "
            "--widths 24,48,96,192 --mode gt --destroy-range 0.6,0.97 --epochs 8 --crops 3000 --val-crops 256 "
            "--batch-size 16 --lr 5e-4 --threads 1 --time-budget 60m  (8 epochs, 33 min of training)  &&  "
            "edgeae train cae --data orbital_gray_v2 --out runs/i11/orbital-ground-ft --init "
            "runs/i11/orbital-ground2/best.pt --variant unet2 --widths 24,48,96,192 --mode gt --destroy-range "
            "0.6,0.97 --epochs 12 --crops 3000 --val-crops 256 --batch-size 16 --lr 2.5e-4 --seed 7 --val-seed 7 "
            "--threads 1 "
            "--time-budget 95m  (fine-tune on fresh crops: 12 epochs in 43 min of training)  &&  "
            "python -m edgeae.train.gate runs/i11/orbital-ground-ft/best.pt --data orbital_gray_v2 "
            "--out runs/i11/orbital-ground-ft/gated.pt --threads 1 --zoo-name orbital-gray-unet2-ground"
            f"  (the zoo model of commit d2328c7)  &&  {_CHECKOUT}: python scripts/gpu_pack.py rover_rgb_v2 "
            "orbital_gray_v2 --out "
            ".gpu/data  &&  on a lent H200 (device run, carry .gpu): bash scripts/gpu_train.sh, job gray-ground-ft: "
            "EDGEAE_DATA=.gpu/data edgeae train cae --data orbital_gray_v2 --variant unet2 --widths 24,48,96,192 "
            "--init edgeae/zoo/weights/orbital-gray-unet2-ground.pt --lr 2.5e-4 --batch-size 64 --mode gt "
            "--destroy-range 0.6,0.97 --val-crops 256 --seed 11 --data-workers 4 --threads 2 --device cuda --epochs 26 "
            "--crops 12288 --time-budget 420s --out runs/gpu-main/gray-ground-ft  (26 epochs, 4.3 min; kept as "
            "runs/gpu1/gray-ground-ft)  &&  second lease (carry .gpu and that best.pt): JOBSET=continue MAIN_S=240 "
            "bash scripts/gpu_train.sh, job gray-ground-ft-2: EDGEAE_DATA=.gpu/data edgeae train cae --data "
            "orbital_gray_v2 --variant unet2 --widths 24,48,96,192 --init runs/gpu1/gray-ground-ft/best.pt --lr 1.5e-4 "
            "--batch-size 64 --seed 12 --data-workers 4 --mode gt --destroy-range 0.6,0.97 --val-crops 256 --threads 2 "
            "--device cuda --epochs 13 --crops 12288 --time-budget 300s --out runs/gpu-main/gray-ground-ft-2  (13 "
            "epochs, 2.5 min; kept as runs/gpu2/gray-ground-ft-2)  &&  python -m edgeae.train.gate "
            "runs/gpu2/gray-ground-ft-2/best.pt --data orbital_gray_v2 --out runs/gpu2/gray-ground-ft-2/gated.pt "
            "--threads 2 --zoo-name orbital-gray-unet2-ground"
        ),
    },
    "orbital-gray-vae": {
        "kind": "vae",
        "channels": 1,
        "file": "orbital-gray-vae.pt",
        "parameters": 477_985,
        "training_data": (
            "orbital_gray train split + 384 class-0 HiRISE landmark crops of 21 landmark-free products; "
            "val: orbital_gray val; λ: 2 LROC NAC mosaics (M1266003170, M1275410097)"
        ),
        "description": "β-VAE (Lesnikowski 2024) on 64x64 grey patches; score ||x - x_hat||^2 + λ||μ||^2",
        "command": (
            "edgeae train vae --out runs/vae/zoo --epochs 6 --crops 4096 --val-crops 512 --batch-size 64 "
            "--seed 0 --threads 1 --zoo-name orbital-gray-vae"
        ),
    },
    "orbital-gray-vae-lite": {
        "kind": "vae",
        "channels": 1,
        "file": "orbital-gray-vae-lite.pt",
        "parameters": 70_673,
        "training_data": "as orbital-gray-vae",
        "description": "flight variant of orbital-gray-vae: widths 8-16-32-16, latent 64, 3.7 M MACs per patch",
        "command": (
            "edgeae train vae --out runs/vae/lite --widths 8,16,32,16 --latent 64 --epochs 6 --crops 4096 "
            "--val-crops 512 --batch-size 64 --seed 0 --threads 1 --zoo-name orbital-gray-vae-lite"
        ),
    },
    "rover-rgb-vae": {
        "kind": "vae",
        "channels": 3,
        "file": "rover-rgb-vae.pt",
        "parameters": 478_563,
        "training_data": (
            "rover_rgb_v2 train split (35 MarsScapes Mastcam panoramas) + MSL surface 'ground' images of the "
            "train sols; val: rover_rgb_v2 val; λ: MSL train-sol hardware vs ground (the val sols are the benchmark)"
        ),
        "description": "RGB β-VAE for rover frames on 64x64 patches; score ||x - x_hat||^2 + λ||μ||^2",
        "command": (
            "edgeae train vae --data rover_rgb_v2 --msl-ground --out runs/vae2/rgb --epochs 10 --crops 16384 "
            "--seed 0 --threads 1 --time-budget 65m  (stopped with SIGTERM in epoch 2)  &&  "
            "edgeae train vae --resume runs/vae2/rgb --epochs 1 --threads 1 --zoo-name rover-rgb-vae"
        ),
    },
}
