"""Denoising networks: shapes, conditioning, gradient flow, input checks, build/describe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.config import ConfigError, ModelConfig
from core.models import (
    AttentionBlock,
    Downsample,
    MLPDenoiser,
    ModuleRow,
    ResBlock,
    SinusoidalEmbedding,
    UNet,
    Upsample,
    build_model,
    count_parameters,
    describe_model,
    feature_map_sizes,
)
from core.models.layers import group_norm

ATTENTION_AT = {8: (4,), 16: (8,), 28: (14,), 32: (16,)}


def tiny_unet(size: int, channels: int = 1, learn_sigma: bool = False,
              num_classes: int | None = None, **overrides) -> UNet:
    kwargs = dict(in_channels=channels, model_channels=16,
                  out_channels=2 * channels if learn_sigma else channels, num_res_blocks=1,
                  attention_resolutions=ATTENTION_AT[size], image_size=size,
                  channel_mult=(1, 2, 2), num_heads=2, num_classes=num_classes)
    kwargs.update(overrides)
    return UNet(**kwargs)


def perturb_zero_parameters(model: torch.nn.Module, seed: int = 0) -> int:
    """Fill every all-zero parameter (zero-initialised output layers, norm biases) with small
    random values, so gradients reach the layers before them. Returns how many were filled."""
    generator = torch.Generator().manual_seed(seed)
    filled = 0
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
                filled += 1
    return filled


def assert_every_parameter_gets_gradient(model: torch.nn.Module) -> None:
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    zero = [name for name, p in model.named_parameters() if not p.grad.any()]
    assert not zero, f"all-zero gradient for {zero}"


# -- layers ----------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [8, 9, 64])
def test_sinusoidal_embedding_matches_float64_formula(dim):
    t = torch.tensor([0, 1, 7, 999, 4000, 19999])
    emb = SinusoidalEmbedding(dim)(t).numpy()
    half = dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / half)
    angles = t.numpy().astype(np.float64)[:, None] * freqs[None, :]
    expected = np.concatenate([np.cos(angles), np.sin(angles)], axis=1)
    if dim % 2:
        expected = np.concatenate([expected, np.zeros((len(t), 1))], axis=1)
    assert emb.shape == (len(t), dim)
    # float32 angles of t ~ 2e4 carry an absolute error of ~1e-3 rad
    np.testing.assert_allclose(emb, expected, atol=3e-3)
    np.testing.assert_allclose(emb[:3], expected[:3], atol=1e-5)   # small t: exact-ish


def test_sinusoidal_embedding_separates_large_timesteps():
    emb = SinusoidalEmbedding(32)(torch.tensor([19998, 19999, 20000]))
    assert torch.cdist(emb, emb).fill_diagonal_(1.0).min() > 0.1


def test_sinusoidal_embedding_stays_float32_in_a_bfloat16_model():
    t = torch.tensor([3, 19999])
    emb = SinusoidalEmbedding(64).to(torch.bfloat16)(t)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb, SinusoidalEmbedding(64)(t))


@pytest.mark.parametrize("channels, groups", [(16, 16), (32, 32), (48, 16), (64, 32), (24, 8), (3, 1)])
def test_group_norm_groups_divide_channels(channels, groups):
    assert group_norm(channels).num_groups == groups


def test_layer_shapes():
    x = torch.randn(2, 16, 8, 8)
    emb = torch.randn(2, 40)
    assert ResBlock(16, 40, 32)(x, emb).shape == (2, 32, 8, 8)
    assert ResBlock(16, 40)(x, emb).shape == (2, 16, 8, 8)
    assert AttentionBlock(16, num_heads=4)(x).shape == (2, 16, 8, 8)
    assert Downsample(16)(x).shape == (2, 16, 4, 4)
    assert Upsample(16)(x).shape == (2, 16, 16, 16)


def test_resblock_and_attention_are_identity_at_init():
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(ResBlock(16, 40)(x, torch.randn(2, 40)), x)
    torch.testing.assert_close(AttentionBlock(16, 4)(x), x)


def test_attention_matches_explicit_softmax_in_float64():
    torch.manual_seed(0)
    block = AttentionBlock(8, num_heads=2).double()
    perturb_zero_parameters(block)
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    tokens = block.norm(x).flatten(2).transpose(1, 2)             # (B, N, C)
    q, k, v = block.qkv(tokens).chunk(3, dim=-1)
    heads = []
    for h in range(2):                                            # independent per-head loop
        sl = slice(4 * h, 4 * h + 4)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(4), dim=-1)
        heads.append(weights @ v[..., sl])
    expected = x + block.proj_out(torch.cat(heads, -1)).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(block(x), expected)


def test_attention_rejects_heads_not_dividing_channels():
    with pytest.raises(ValueError, match="num_heads=3"):
        AttentionBlock(16, num_heads=3)


# -- UNet -------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [None, 10])
@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 16, 28, 32])
def test_unet_output_shape(size, channels, learn_sigma, num_classes):
    model = tiny_unet(size, channels, learn_sigma, num_classes)
    x = torch.randn(2, channels, size, size)
    t = torch.tensor([0, 19999])
    y = torch.tensor([3, 10]) if num_classes else None
    out = model(x, t, y)
    assert out.shape == (2, (2 if learn_sigma else 1) * channels, size, size)
    assert torch.isfinite(out).all()


def test_unet_output_is_zero_at_init_and_not_after_perturbation():
    model = tiny_unet(16, 3)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 500])
    assert torch.count_nonzero(model(x, t)) == 0
    perturb_zero_parameters(model)
    assert model(x, t).abs().mean() > 1e-3


def test_unet_channels_last_input_gives_same_output():
    model = tiny_unet(16, 3)
    perturb_zero_parameters(model)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 500])
    expected = model(x, t)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last), t)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("num_classes", [None, 4])
def test_unet_gradients_reach_every_parameter(num_classes):
    torch.manual_seed(0)
    model = tiny_unet(8, 3, learn_sigma=True, num_classes=num_classes)
    assert perturb_zero_parameters(model) > 0
    x = torch.randn(3, 3, 8, 8)
    y = torch.tensor([0, 1, 4]) if num_classes else None
    model(x, torch.tensor([1, 50, 900]), y).square().mean().backward()
    assert_every_parameter_gets_gradient(model)


def test_unet_time_and_class_change_the_output():
    torch.manual_seed(0)
    model = tiny_unet(8, 1, num_classes=3)
    perturb_zero_parameters(model)
    x = torch.randn(1, 1, 8, 8).expand(4, -1, -1, -1)
    out = model(x, torch.tensor([10, 10, 10, 11]), torch.tensor([3, 0, 1, 3]))
    assert (out[0] - out[1]).abs().max() > 1e-4      # null class vs class 0
    assert (out[1] - out[2]).abs().max() > 1e-4      # class 0 vs class 1
    assert (out[0] - out[3]).abs().max() > 1e-4      # t = 10 vs t = 11
    torch.testing.assert_close(model(x[:1], torch.tensor([10])), out[:1])  # y=None is null


def test_unet_has_null_class_row():
    model = tiny_unet(8, 1, num_classes=10)
    assert model.label_embed.num_embeddings == 11


@pytest.mark.parametrize("size, channel_mult, needle", [
    (28, (1, 2, 2, 2), "divisible by 8"),
    (8, (1, 2, 2, 2), "1x1"),
    (12, (1, 1, 1, 1), "divisible by 8"),
])
def test_unet_rejects_sizes_it_cannot_handle(size, channel_mult, needle):
    with pytest.raises(ValueError, match="channel_mult") as info:
        UNet(1, 16, 1, 1, (), size, channel_mult=channel_mult)
    message = str(info.value)
    assert needle in message
    assert "at most 3 levels" in message
    assert "e.g. channel_mult=" in message


def test_feature_map_sizes():
    assert feature_map_sizes(28, (1, 2, 2)) == [28, 14, 7]
    assert feature_map_sizes(32, (1, 2, 2, 2)) == [32, 16, 8, 4]
    assert feature_map_sizes(8, (1, 2, 2)) == [8, 4, 2]
    with pytest.raises(ValueError, match="image_size"):
        feature_map_sizes(1, (1,))


def test_unet_rejects_attention_at_a_size_that_never_occurs():
    with pytest.raises(ValueError, match=r"attention_resolutions.*\[28, 14, 7\]"):
        UNet(1, 16, 1, 1, (16,), 28)


def test_unet_rejects_heads_not_dividing_attention_channels():
    with pytest.raises(ValueError, match=r"num_heads=3.*\[16, 32\]"):
        UNet(1, 16, 1, 1, (8,), 8, num_heads=3)


@pytest.mark.parametrize("shape, needle", [
    ((2, 1, 16, 8), "square"),
    ((2, 1, 8, 8), "image_size=16"),
    ((2, 3, 16, 16), "1 input channel"),
    ((1, 16, 16), "image batches"),
])
def test_unet_forward_rejects_bad_inputs(shape, needle):
    model = tiny_unet(16, 1)
    with pytest.raises(ValueError, match=needle):
        model(torch.randn(shape), torch.zeros(shape[0], dtype=torch.long))


def test_unet_rejects_labels_when_unconditional():
    with pytest.raises(ValueError, match="unconditional"):
        tiny_unet(8)(torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long),
                     torch.zeros(2, dtype=torch.long))


# -- MLP --------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [None, 5])
@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("data_dim", [2, 7])
def test_mlp_output_shape(data_dim, learn_sigma, num_classes):
    model = MLPDenoiser(data_dim, hidden=32, num_blocks=2, learn_sigma=learn_sigma,
                        num_classes=num_classes)
    y = torch.tensor([0, 5, 2]) if num_classes else None
    out = model(torch.randn(3, data_dim), torch.tensor([0, 1, 19999]), y)
    assert out.shape == (3, 2 * data_dim if learn_sigma else data_dim)
    assert torch.count_nonzero(out) == 0   # zero-initialised output layer


def test_mlp_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = MLPDenoiser(2, hidden=32, num_blocks=2, learn_sigma=True, num_classes=3)
    assert perturb_zero_parameters(model) > 0
    model(torch.randn(4, 2), torch.tensor([0, 5, 50, 500]),
          torch.tensor([0, 1, 3, 2])).square().mean().backward()
    assert_every_parameter_gets_gradient(model)


def test_mlp_time_and_class_change_the_output():
    torch.manual_seed(0)
    model = MLPDenoiser(2, hidden=32, num_blocks=2, num_classes=3)
    perturb_zero_parameters(model)
    x = torch.randn(1, 2).expand(3, -1)
    out = model(x, torch.tensor([10, 10, 11]), torch.tensor([3, 0, 3]))
    assert (out[0] - out[1]).abs().max() > 1e-4      # null class vs class 0
    assert (out[0] - out[2]).abs().max() > 1e-4      # t = 10 vs 11
    torch.testing.assert_close(model(x[:1], torch.tensor([10])), out[:1])
    assert model.label_embed.num_embeddings == 4


@pytest.mark.parametrize("shape", [(4, 3), (4,), (4, 2, 1)])
def test_mlp_rejects_bad_inputs(shape):
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        MLPDenoiser(2, hidden=16)(torch.randn(shape), torch.zeros(4, dtype=torch.long))


# -- build_model, count_parameters, describe_model ----------------------------------------

def small_config(**overrides) -> ModelConfig:
    values = dict(channels=16, channel_mult=(1, 2), num_res_blocks=1,
                  attention_resolutions=(4,), num_heads=2, hidden=32, mlp_blocks=2)
    values.update(overrides)
    return ModelConfig(**values)


@pytest.mark.parametrize("kind", ["auto", "unet"])
def test_build_model_images_give_unet(kind):
    model = build_model(small_config(kind=kind), (3, 8, 8), num_classes=10, learn_sigma=True)
    assert isinstance(model, UNet)
    assert model.out_channels == 6 and model.label_embed.num_embeddings == 11
    out = model(torch.randn(2, 3, 8, 8), torch.tensor([0, 3]), torch.tensor([1, 10]))
    assert out.shape == (2, 6, 8, 8)


@pytest.mark.parametrize("kind", ["auto", "mlp"])
def test_build_model_vectors_give_mlp(kind):
    model = build_model(small_config(kind=kind), (2,), learn_sigma=False)
    assert isinstance(model, MLPDenoiser)
    assert model(torch.randn(5, 2), torch.arange(5)).shape == (5, 2)
    assert len(model.blocks) == 2


def test_build_model_rejects_mismatched_kind():
    with pytest.raises(ValueError, match="'mlp' is for vector data"):
        build_model(small_config(kind="mlp"), (1, 8, 8))
    with pytest.raises(ValueError, match="'unet' is for images"):
        build_model(small_config(kind="unet"), (2,))
    with pytest.raises(ValueError, match="square"):
        build_model(small_config(), (1, 8, 16))
    with pytest.raises(ValueError, match=r"\(C, H, W\).*\(D,\)"):
        build_model(small_config(), (4, 4))


@pytest.mark.parametrize("overrides, field", [
    (dict(attention_resolutions=(16,)), "model.attention_resolutions"),
    (dict(channel_mult=(1, 2, 2, 2)), "model.channel_mult"),
    (dict(num_heads=3, attention_resolutions=()), "model.num_heads"),
    (dict(kind="resnet"), "model.kind"),
])
def test_build_model_names_the_config_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        build_model(small_config(**overrides), (1, 28, 28))
    assert info.value.field == field
    assert field in str(info.value)


def test_count_parameters_counts_by_hand():
    model = ResBlock(4, 6, 8)
    # in: GN(4) 8 + conv 4*8*9+8; emb: Linear(6,16) 6*16+16; out: GN(8) 16 + conv 8*8*9+8;
    # skip: 1x1 conv 4*8+8
    expected = 8 + (288 + 8) + (96 + 16) + 16 + (576 + 8) + (32 + 8)
    assert count_parameters(model) == expected
    model.skip.weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == expected - 32


@pytest.mark.parametrize("model, shape, out_shape", [
    (tiny_unet(8, 3, learn_sigma=True, num_classes=4), (3, 8, 8), (6, 8, 8)),
    (tiny_unet(8, 3), (1, 3, 8, 8), (3, 8, 8)),
    (MLPDenoiser(2, hidden=16, num_blocks=2, num_classes=2), (2,), (2,)),
])
def test_describe_model_covers_every_module(model, shape, out_shape):
    model.train()
    rows = describe_model(model, shape)
    assert model.training                            # mode restored
    assert all(isinstance(r, ModuleRow) for r in rows)
    assert [r.name for r in rows] == [name for name, _ in model.named_modules()]
    total = count_parameters(model)
    assert rows[0].name == "" and rows[0].depth == 0 and rows[0].params == total
    assert rows[0].output_shape == out_shape
    assert sum(r.own_params for r in rows) == total
    leaves = {name for name, module in model.named_modules() if not list(module.children())}
    assert sum(r.params for r in rows if r.name in leaves) == total
    by_name = {r.name: r for r in rows}
    for row in rows[1:]:
        parent = by_name[row.name.rpartition(".")[0]]
        assert row.depth == parent.depth + 1
    ran = [r for r in rows if r.output_shape is not None]
    assert len(ran) > len(rows) // 2


def test_describe_model_records_downsampling_shapes():
    rows = {r.name: r for r in describe_model(tiny_unet(16, 1), (1, 16, 16))}
    shapes = {r.output_shape for r in rows.values() if r.type == "Downsample"}
    assert shapes == {(16, 8, 8), (32, 4, 4)}
    assert rows["time_features"].output_shape == (16,)


def test_describe_model_rejects_wrong_rank():
    with pytest.raises(ValueError, match="example_input_shape"):
        describe_model(tiny_unet(8), (8, 8))
