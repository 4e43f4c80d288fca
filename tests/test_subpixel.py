"""The sub-pixel export form of nearest upsampling + 3×3 convolution is exact, and the shipped VAE files use it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from edgeae.models.subpixel import SubpixelConv2d, fold_nearest_upsampling, is_foldable  # noqa: E402
from edgeae.models.vae import VAE, VAEConfig, export_form  # noqa: E402


def _randomise_bn(bn: nn.BatchNorm2d, g: torch.Generator) -> None:
    n = bn.num_features
    bn.running_mean.copy_(torch.randn(n, generator=g))
    bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    bn.weight.data = torch.randn(n, generator=g)
    bn.bias.data = torch.randn(n, generator=g)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_bn", [True, False])
@pytest.mark.parametrize("act", [None, nn.ReLU, nn.Sigmoid])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 8, 4, 4), (3, 1, 1, 2)])
def test_subpixel_block_equals_upsample_then_conv(bias: bool, with_bn: bool, act: type | None, shape: tuple) -> None:
    g = torch.Generator().manual_seed(sum(shape) + 7 * bias + 3 * with_bn)
    cin, cout = shape[1], 5
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    conv.weight.data = torch.randn(conv.weight.shape, generator=g)
    if bias:
        conv.bias.data = torch.randn(cout, generator=g)
    bn = nn.BatchNorm2d(cout).eval() if with_bn else None
    if bn is not None:
        _randomise_bn(bn, g)
    x = torch.randn(shape, generator=g)
    with torch.no_grad():
        want = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        if bn is not None:
            want = bn(want)
        if act is not None:
            want = act()(want)
        got = SubpixelConv2d(conv, bn, act() if act is not None else None)(x)
    assert got.shape == want.shape == (shape[0], cout, 2 * shape[2], 2 * shape[3])
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), float((got - want).abs().max())


def test_only_plain_nearest_2x_and_3x3_pad1_convolutions_fold() -> None:
    up, conv = nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(4, 4, 3, padding=1)
    assert is_foldable(up, conv)
    assert not is_foldable(nn.Upsample(scale_factor=2, mode="bilinear"), conv)
    assert not is_foldable(nn.Upsample(scale_factor=3, mode="nearest"), conv)
    assert not is_foldable(up, nn.Conv2d(4, 4, 3, padding=1, stride=2))
    assert not is_foldable(up, nn.Conv2d(4, 4, 5, padding=2))
    assert not is_foldable(up, nn.Conv2d(4, 4, 3, padding=1, groups=2))
    assert not is_foldable(up, nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))
    seq, n = fold_nearest_upsampling(nn.Sequential(conv, nn.ReLU(), nn.Upsample(scale_factor=2, mode="bilinear")))
    assert n == 0 and len(seq) == 3


def test_vae_export_form_folds_every_decoder_stage_and_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = VAE(VAEConfig(widths=(8, 16, 16, 8), latent=32)).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            _randomise_bn(m, torch.Generator().manual_seed(m.num_features))
    form = export_form(model)
    assert sum(isinstance(m, SubpixelConv2d) for m in form.decoder) == 4
    assert not any(isinstance(m, nn.Upsample) for m in form.modules())
    assert any(isinstance(m, nn.Upsample) for m in model.modules())  # the reference is left as it was
    x = torch.rand(6, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model(x), form(x)
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-6)
    assert torch.equal(a["mu"], b["mu"])
    assert torch.allclose(a["score"], b["score"], rtol=1e-5)


def test_shipped_vae_tflite_files_have_no_resize_and_one_delegate_partition() -> None:
    """The point of the sub-pixel form: LiteRT's reference resize kernel splits XNNPACK delegation."""
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")
    from edgeae.resolve import ARTIFACTS_DIR

    for name in ("orbital-gray-vae", "orbital-gray-vae-lite"):
        it = interpreter.Interpreter(model_path=str(ARTIFACTS_DIR / name / f"{name}.int8.tflite"), num_threads=1)
        it.allocate_tensors()
        ops = [o["op_name"] for o in it._get_ops_details()]
        assert "RESIZE_NEAREST_NEIGHBOR" not in ops, name
        assert ops.count("DELEGATE") == 1, (name, ops.count("DELEGATE"))
