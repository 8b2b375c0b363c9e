"""improved-/guided-diffusion state dicts opened with their flags. The state dicts are
built here from a layout of improved-diffusion's UNetModel written for this test (its
parameter names and shapes, block by block), and the explorer's output is compared with a
functional re-implementation of that network's forward pass that reads those names: the
explorer's module mapping and qkv conversion are checked against an independent reference,
never against themselves."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from core.interop import InteropError, open_model
from core.interop.improved import guess_flags, guess_flags_of
from core.interop.improved_flags import flags_text, parse_flags

# README flags, pasted as published (improved-diffusion's CIFAR-10 model with learned sigmas)
CIFAR_FLAGS = ('MODEL_FLAGS="--image_size 32 --num_channels 128 --num_res_blocks 3 '
               '--learn_sigma True --dropout 0.3"\nDIFFUSION_FLAGS="--diffusion_steps 4000 '
               '--noise_schedule cosine"')
# the class-conditional ImageNet-64 flags of the README, narrower (32 channels, 2 blocks)
IMAGENET64_FLAGS = {"image_size": 64, "num_channels": 32, "num_res_blocks": 2,
                    "learn_sigma": True, "class_cond": True, "diffusion_steps": 4000,
                    "noise_schedule": "cosine", "rescale_learned_sigmas": False,
                    "rescale_timesteps": False}
# guided-diffusion's options: heads of fixed width, the new qkv order, res-block resampling,
# additive time conditioning
GUIDED_FLAGS = ("--image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 "
                "--attention_resolutions 16,8 --num_head_channels 16 --use_new_attention_order "
                "True --resblock_updown True --use_scale_shift_norm False --diffusion_steps 100")
MULTS = {32: (1, 2, 2, 2), 64: (1, 2, 3, 4)}


def layout(f: dict) -> dict:
    """improved-diffusion's UNetModel for flags f, as lists of layers per block:
    ("conv", c_in, c_out), ("res", c_in, c_out), ("res_down"/"res_up", c), ("attn", c),
    ("down", c), ("up", c)."""
    ch, size = f["num_channels"], f["image_size"]
    mult = tuple(int(m) for m in f["channel_mult"].split(",")) if f.get("channel_mult") \
        else MULTS[size]
    rates = {size // int(r) for r in f.get("attention_resolutions", "16,8").split(",")}
    inputs, widths, width, rate = [[("conv", 3, ch)]], [ch], ch, 1
    for level, m in enumerate(mult):
        for _ in range(f["num_res_blocks"]):
            block = [("res", width, m * ch)]
            width = m * ch
            if rate in rates:
                block.append(("attn", width))
            inputs.append(block)
            widths.append(width)
        if level < len(mult) - 1:
            inputs.append([("res_down", width) if f.get("resblock_updown") else ("down", width)])
            widths.append(width)
            rate *= 2
    middle = [("res", width, width), ("attn", width), ("res", width, width)]
    outputs = []
    for level, m in list(enumerate(mult))[::-1]:
        for i in range(f["num_res_blocks"] + 1):
            block = [("res", width + widths.pop(), m * ch)]
            width = m * ch
            if rate in rates:
                block.append(("attn", width))
            if level and i == f["num_res_blocks"]:
                block.append(("res_up", width) if f.get("resblock_updown") else ("up", width))
                rate //= 2
            outputs.append(block)
    return {"input_blocks": inputs, "middle_block": middle, "output_blocks": outputs,
            "width": ch}


def state_shapes(f: dict) -> dict[str, tuple]:
    """Every parameter name of improved-diffusion's UNetModel for flags f, with its shape."""
    ch, emb = f["num_channels"], 4 * f["num_channels"]
    shift = f.get("use_scale_shift_norm", True)
    shapes = {"time_embed.0.weight": (emb, ch), "time_embed.0.bias": (emb,),
              "time_embed.2.weight": (emb, emb), "time_embed.2.bias": (emb,)}
    if f.get("class_cond"):
        shapes["label_emb.weight"] = (1000, emb)

    def add(name, weight, bias):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = weight, bias

    def res(name, i, o):
        add(f"{name}.in_layers.0", (i,), (i,))
        add(f"{name}.in_layers.2", (o, i, 3, 3), (o,))
        add(f"{name}.emb_layers.1", (2 * o if shift else o, emb), (2 * o if shift else o,))
        add(f"{name}.out_layers.0", (o,), (o,))
        add(f"{name}.out_layers.3", (o, o, 3, 3), (o,))
        if i != o:
            add(f"{name}.skip_connection", (o, i, 1, 1), (o,))

    net = layout(f)
    for section in ("input_blocks", "middle_block", "output_blocks"):
        blocks = net[section] if section != "middle_block" else [net[section]]
        for k, block in enumerate(blocks):
            for m, (kind, *sizes) in enumerate(block):
                name = f"{section}.{k}.{m}" if section != "middle_block" else f"{section}.{m}"
                if kind == "conv":
                    add(name, (sizes[1], sizes[0], 3, 3), (sizes[1],))
                elif kind == "res":
                    res(name, *sizes)
                elif kind in ("res_down", "res_up"):
                    res(name, sizes[0], sizes[0])
                elif kind == "attn":
                    c = sizes[0]
                    add(f"{name}.norm", (c,), (c,))
                    add(f"{name}.qkv", (3 * c, c, 1), (3 * c,))
                    add(f"{name}.proj_out", (c, c, 1), (c,))
                elif kind == "down":
                    add(f"{name}.op", (sizes[0], sizes[0], 3, 3), (sizes[0],))
                else:
                    add(f"{name}.conv", (sizes[0], sizes[0], 3, 3), (sizes[0],))
    out = 6 if f.get("learn_sigma") else 3
    add("out.0", (ch,), (ch,))
    add("out.2", (out, ch, 3, 3), (out,))
    return shapes


def random_state(f: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded float32 tensors of state_shapes(f): norms near 1, small biases, weights of
    fan-in scale (no zero-initialised layer: every path counts)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in state_shapes(f).items():
        noise = torch.randn(shape, generator=generator)
        if name.endswith("bias"):
            state[name] = 0.02 * noise
        elif len(shape) == 1:                             # GroupNorm weights
            state[name] = 1 + 0.1 * noise
        else:
            state[name] = noise / math.sqrt(math.prod(shape[1:]))
    return state


def reference_forward(state: dict, f: dict, x, t, y=None, dtype=torch.float64):
    """improved-diffusion's forward pass, written out here (in float64 unless asked) on its
    own names."""
    s = {k: v.to(dtype) for k, v in state.items()}
    net, shift = layout(f), f.get("use_scale_shift_norm", True)
    steps = f["diffusion_steps"]
    scaled = t.float() * (1000.0 / steps) if f.get("rescale_timesteps") else t.float()

    def norm(h, p):
        return F.group_norm(h, 32, s[f"{p}.weight"], s[f"{p}.bias"], eps=1e-5)

    def conv(h, p, stride=1, padding=1):
        return F.conv2d(h, s[f"{p}.weight"], s[f"{p}.bias"], stride=stride, padding=padding)

    def res(h, e, p, resample=None):
        inner = F.silu(norm(h, f"{p}.in_layers.0"))
        if resample is not None:
            inner, h = resample(inner), resample(h)
        inner = conv(inner, f"{p}.in_layers.2")
        e = F.linear(F.silu(e), s[f"{p}.emb_layers.1.weight"], s[f"{p}.emb_layers.1.bias"])
        if shift:
            scale, bias = e[:, :, None, None].chunk(2, dim=1)
            inner = norm(inner, f"{p}.out_layers.0") * (1 + scale) + bias
        else:
            inner = norm(inner + e[:, :, None, None], f"{p}.out_layers.0")
        inner = conv(F.silu(inner), f"{p}.out_layers.3")
        skip = conv(h, f"{p}.skip_connection", padding=0) if f"{p}.skip_connection.weight" in s \
            else h
        return skip + inner

    def attn(h, p):
        b, c, height, width = h.shape
        heads = c // f["num_head_channels"] if f.get("num_head_channels", -1) > 0 \
            else f.get("num_heads", 4)
        d = c // heads
        flat = h.reshape(b, c, -1)
        qkv = F.conv1d(norm(flat, f"{p}.norm"), s[f"{p}.qkv.weight"], s[f"{p}.qkv.bias"])
        if f.get("use_new_attention_order"):
            q, k, v = (part.reshape(b * heads, d, -1) for part in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * heads, 3 * d, -1).split(d, dim=1)
        weights = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(d), dim=-1)
        out = torch.einsum("bts,bcs->bct", weights, v).reshape(b, c, -1)
        out = F.conv1d(out, s[f"{p}.proj_out.weight"], s[f"{p}.proj_out.bias"])
        return (flat + out).reshape(b, c, height, width)

    def run(block, h, e, prefix):
        for m, (kind, *_) in enumerate(block):
            p = f"{prefix}.{m}"
            if kind == "conv":
                h = conv(h, p)
            elif kind == "res":
                h = res(h, e, p)
            elif kind == "res_down":
                h = res(h, e, p, lambda z: F.avg_pool2d(z, 2))
            elif kind == "res_up":
                h = res(h, e, p, lambda z: F.interpolate(z, scale_factor=2, mode="nearest"))
            elif kind == "attn":
                h = attn(h, p)
            elif kind == "down":
                h = conv(h, f"{p}.op", stride=2)
            else:
                h = conv(F.interpolate(h, scale_factor=2, mode="nearest"), f"{p}.conv")
        return h

    half = net["width"] // 2           # the sinusoid in float32, as improved-diffusion has it
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angles = scaled[:, None] * freqs[None]
    e = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).to(dtype)
    e = F.linear(F.silu(F.linear(e, s["time_embed.0.weight"], s["time_embed.0.bias"])),
                 s["time_embed.2.weight"], s["time_embed.2.bias"])
    if y is not None:
        e = e + s["label_emb.weight"][y]
    h, skips = x.to(dtype), []
    for k, block in enumerate(net["input_blocks"]):
        h = run(block, h, e, f"input_blocks.{k}")
        skips.append(h)
    h = run(net["middle_block"], h, e, "middle_block")
    for k, block in enumerate(net["output_blocks"]):
        h = run(block, torch.cat([h, skips.pop()], dim=1), e, f"output_blocks.{k}")
    return conv(F.silu(norm(h, "out.0")), "out.2")


def save_state(tmp_path, f: dict, name: str = "model.pt", seed: int = 0):
    state = random_state(f, seed)
    torch.save(state, tmp_path / name)
    return tmp_path / name, state


def test_the_cifar10_flags_load_and_compute_improved_diffusions_network(tmp_path):
    flags = parse_flags(CIFAR_FLAGS).values
    path, state = save_state(tmp_path, flags)
    opened = open_model(path, flags=CIFAR_FLAGS)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([2345])
    with torch.no_grad():
        ours = opened.model(x, t)
        reference = reference_forward(state, flags, x, t, dtype=torch.float32)
    assert ours.shape == (1, 6, 32, 32)               # [eps, variance v]
    scale = reference.abs().max().item()
    assert (ours - reference).abs().max().item() < 1e-4 * max(scale, 1.0)
    d = opened.config.diffusion
    assert (d.schedule, d.timesteps, d.variance_type, d.loss_type, d.lambda_vlb) == (
        "cosine", 4000, "learned_range", "hybrid", 0.001)
    assert opened.config.model.time_scale == 0.25      # improved-diffusion's rescale_timesteps
    assert opened.config.model.dropout == 0.3


@pytest.mark.parametrize("flags, y", [(IMAGENET64_FLAGS, [999]), (GUIDED_FLAGS, None)],
                         ids=["imagenet64-class-cond", "guided-options"])
def test_flag_sets_match_the_float64_reference(tmp_path, flags, y):
    values = parse_flags(flags).values
    path, state = save_state(tmp_path, values, seed=2)
    json_flags = tmp_path / "flags.json"                     # the flags file beside the .pt
    json_flags.write_text(json.dumps(flags if isinstance(flags, dict) else values))
    model = open_model(path).model.double()
    size = values["image_size"]
    batch = 1 if y is not None else 2
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64)
    t = torch.tensor([0, 77][:batch] if batch == 2 else [77])
    labels = torch.tensor(y) if y is not None else None
    with torch.no_grad():
        ours = model(x, t, labels)
        reference = reference_forward(state, values, x, t, labels)
    assert (ours - reference).abs().max() < 1e-9


def test_the_guess_from_tensor_shapes_recovers_what_they_show(tmp_path):
    for flags in (parse_flags(CIFAR_FLAGS).values, parse_flags(IMAGENET64_FLAGS).values,
                  parse_flags(GUIDED_FLAGS).values):
        guess = guess_flags({k: torch.empty(s) for k, s in state_shapes(flags).items()})
        for name in ("num_channels", "num_res_blocks", "learn_sigma", "class_cond",
                     "use_scale_shift_norm"):
            assert guess.flags[name] == flags[name], name
        assert bool(guess.flags.get("resblock_updown")) == bool(flags.get("resblock_updown"))
    cifar = guess_flags({k: torch.empty(s) for k, s in
                         state_shapes(parse_flags(CIFAR_FLAGS).values).items()}).flags
    assert (cifar["image_size"], cifar["attention_resolutions"]) == (32, "16,8")


def test_without_flags_the_error_shows_the_guess(tmp_path):
    path, _ = save_state(tmp_path, parse_flags(IMAGENET64_FLAGS).values)
    with pytest.raises(InteropError) as info:
        open_model(path)
    message = str(info.value)
    assert "needs the flags" in message
    assert "--image_size 64 --in_channels 3 --num_channels 32 --num_res_blocks 2" in message
    opened = open_model(path, flags=None, guess_flags=True)
    assert opened.flags_guessed and "guessed" in opened.notes[0]
    guess = guess_flags_of(path)                        # what the app's dialog prefills
    assert guess.flags["num_channels"] == 32 and "image_size" not in guess.determined
    with pytest.raises(InteropError, match="not an improved-/guided-diffusion UNet state dict"):
        torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
        guess_flags_of(tmp_path / "other.pt")


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("middle_block.1.qkv.weight"), "lacks the key 'middle_block.1.qkv.weight'"),
    (lambda s: s.update({"input_blocks.1.0.skip_connection.weight": torch.zeros(64, 32, 1, 1)}),
     "unexpected key 'input_blocks.1.0.skip_connection.weight'"),
    (lambda s: s.update({"out.2.weight": torch.zeros(3, 32, 3, 3)}),
     "'out.2.weight' has shape (3, 32, 3, 3), the architecture needs (6, 32, 3, 3)"),
    (lambda s: s.update({"label_emb.weight": torch.zeros(10, 128)}),
     "'label_emb.weight' has shape (10, 128), the architecture needs (1000, 128)"),
])
def test_a_malformed_state_dict_is_refused_naming_the_key(tmp_path, change, words):
    flags = dict(IMAGENET64_FLAGS, image_size=16, num_channels=32, channel_mult="1,2",
                 attention_resolutions="8")
    state = random_state(parse_flags(flags).values)
    change(state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(InteropError) as info:
        open_model(tmp_path / "bad.pt", flags=flags)
    assert str(info.value).startswith(str(tmp_path / "bad.pt")) and words in str(info.value)


@pytest.mark.parametrize("flags, words", [
    ("--image_size 32 --num_channel 128", "--num_channel is not an improved-/guided-diffusion"),
    ("--image_size 32 $MODEL_FLAGS", "'$MODEL_FLAGS' follows no --flag (a shell variable"),
    ("--image_size 32 --learn_sigma maybe", "--learn_sigma 'maybe': expected True or False"),
    ("--image_size 32 --num_heads 4 --num_heads_upsample 2", "--num_heads_upsample 2 is not"),
    ("--image_size 48", "--image_size 48 has no default channel_mult"),
    ("--image_size 32 --num_channels 48", "--num_channels 48 is not supported"),
    ("--image_size 32 --noise_schedule sqrt", "--noise_schedule 'sqrt' is not supported"),
    ("--image_size 32 --channel_mult 0.5,1", "--channel_mult '0.5,1' is not supported"),
])
def test_bad_flags_are_refused_naming_the_flag(tmp_path, flags, words):
    torch.save({"input_blocks.0.0.weight": torch.zeros(1)}, tmp_path / "model.pt")
    path = tmp_path / "model.pt"      # flags are checked before the weights are read
    with pytest.raises(InteropError) as info:
        open_model(path, flags=flags)
    assert str(info.value).startswith("--model-flags: ") and words in str(info.value)


def test_pasted_text_json_and_dict_flags_agree(tmp_path):
    text = ("python scripts/image_sample.py --model_path m.pt --image_size=64 --num_channels 64 "
            "--learn_sigma True --class_cond True --rescale_timesteps False")
    parsed = parse_flags(text)
    (tmp_path / "f.json").write_text(json.dumps({"image_size": 64, "num_channels": "64",
                                                 "learn_sigma": True, "class_cond": "true",
                                                 "rescale_timesteps": False}))
    assert parse_flags(str(tmp_path / "f.json")).values == parsed.values
    assert any("--model_path is a training or sampling flag" in n for n in parsed.notes)
    assert parse_flags(flags_text(parsed.values)).values == parsed.values
    guided = parse_flags("--image_size 64 --num_head_channels 64")
    assert guided.guided and guided.values["rescale_timesteps"] is False
    assert parse_flags("--image_size 64").values["rescale_timesteps"] is True
