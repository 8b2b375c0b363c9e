"""Shared plumbing of the speed benchmarks (train_throughput, sample_speed, headless_worker_speed).

- The model pairs: our UNet at configurations matched to each peer (parameter count within
  10 %, same resolution and batch) and the peers built exactly as
  shared/reference/peer_bench.py builds them (lucidrains' denoising-diffusion-pytorch Unet,
  diffusers' UNet2DModel in the google/ddpm-cifar10-32 layout).
- Our trainer on random images (a core.data.Dataset, so the data sits on the device like any
  data set the Trainer loads) with a chosen fast path (core.fast_step).
- Timing: CUDA events per step on a GPU, perf_counter on the CPU; FLOPs from
  torch.utils.flop_counter; environment facts for the report.

Run the scripts from the repository root: `python bench/train_throughput.py --help`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")   # lucidrains' samplers wrap loops in tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

PEER_NAMES = ("lucidrains", "diffusers")

# Our UNet matched to each peer. lucidrains' Unet(dim=64, dim_mults=(1,2,4,8)) has 35.71M
# parameters: ours with 64 channels, mults (1,2,3,6), 2 blocks, attention at 8x8 has 35.45M
# (our up path has one more ResBlock per level, so the top multiplier is 6, not 8). diffusers'
# ddpm-cifar10-32 layout (128, 256, 256, 256), 2 layers, attention at 16x16, has 35.75M:
# ours in the same layout has 38.31M (+7 %: scale-shift conditioning doubles each ResBlock's
# embedding projection), with the same FLOPs per image.
MATCHES = {
    "lucidrains": {
        "full": dict(channels=64, channel_mult=(1, 2, 3, 6), num_res_blocks=2,
                     attention_resolutions=(8,)),
        "small": dict(channels=32, channel_mult=(1, 2, 3, 6), num_res_blocks=2,
                      attention_resolutions=(8,)),
        "tiny": dict(channels=8, channel_mult=(1, 2, 3, 6), num_res_blocks=2,
                     attention_resolutions=(4,)),
    },
    "diffusers": {
        "full": dict(channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                     attention_resolutions=(16,)),
        "small": dict(channels=64, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                      attention_resolutions=(16,)),
        "tiny": dict(channels=16, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                     attention_resolutions=(8,)),
    },
}
# the peers at each size (full = the configurations)
PEER_SIZES = {
    "lucidrains": {"full": dict(dim=64), "small": dict(dim=32), "tiny": dict(dim=8)},
    "diffusers": {"full": dict(channels=(128, 256, 256, 256)),
                  "small": dict(channels=(64, 128, 128, 128)),
                  "tiny": dict(channels=(32, 32, 32, 32))},
}
# size -> image side, diffusion steps T
SIZES = {"full": dict(image=32, T=1000), "small": dict(image=32, T=1000),
         "tiny": dict(image=16, T=20)}


# ---------------------------------------------------------------------------- environment
def setup_torch(device: str, threads: int | None, cudnn_benchmark: bool = True) -> None:
    """TF32 for fp32 matmuls (as peer_bench.py), cuDNN autotuning, CPU thread count."""
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: CUDA is not available (torch {torch.__version__})")


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def env_info(device: str) -> dict:
    """Machine, load, torch and peer versions for the report."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "device": device,
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if device.startswith("cuda") and torch.cuda.is_available():
        prop = torch.cuda.get_device_properties(0)
        info.update(gpu=prop.name, gpu_memory_gib=round(prop.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, driver=_nvidia_driver())
    for module in ("denoising_diffusion_pytorch", "diffusers"):
        try:
            from importlib.metadata import version
            info[module] = version(module.replace("_", "-"))
        except Exception:  # noqa: BLE001 - missing is a fact for the report
            info[module] = None
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def amp(device: str, precision: str):
    """bf16 autocast or nothing (the peers' own precision switch in peer_bench.py)."""
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def write_json(path: str | Path | None, results: dict) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (tuple, set)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# ---------------------------------------------------------------------------- timing
def time_steps(step, count: int, device: str) -> tuple[list[float], float]:
    """Run step() `count` times; (per-step seconds, wall seconds for all). On CUDA the
    per-step times come from CUDA events (no host sync between steps)."""
    if device.startswith("cuda"):
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(count)]
        sync(device)
        start = time.perf_counter()
        for begin, end in events:
            begin.record()
            step()
            end.record()
        sync(device)
        wall = time.perf_counter() - start
        return [b.elapsed_time(e) / 1e3 for b, e in events], wall
    times = []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times, time.perf_counter() - start


def median(values) -> float:
    return float(statistics.median(values))


def count_flops(fn) -> int:
    """Matmul/conv/attention FLOPs of fn() (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def reset_peak_memory(device: str) -> int:
    """Resets the peak counter; returns the bytes allocated now (0 on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    return 0


def peak_memory_gib(device: str, baseline: int) -> float | None:
    if device.startswith("cuda"):
        return round((torch.cuda.max_memory_allocated() - baseline) / 2**30, 3)
    return None


# ---------------------------------------------------------------------------- our model
def random_images(n: int, image: int, seed: int = 1):
    """A core.data.Dataset of n standard-normal 3 x image x image images clamped to [-1, 1]
    (like peer_bench.py's data), labels none."""
    from core.data import Dataset

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, image, image, generator=gen).clamp(-1, 1)
    return Dataset(name="random", kind="image", train=x, test=x[: min(8, n)],
                   shape=(3, image, image))


def our_config(match: str, size: str, batch: int, device: str, log_every: int):
    """ExperimentConfig of our UNet matched to peer `match` at `size` (cosine schedule,
    eps, simple loss, AdamW lr 2e-4, no lr warm-up, EMA 0.9999, grad clip 1)."""
    from core.config import ExperimentConfig

    model = dict(MATCHES[match][size])
    data = {
        "model": {"kind": "unet", "num_heads": 4, "dropout": 0.0,
                  "channels": model["channels"], "channel_mult": list(model["channel_mult"]),
                  "num_res_blocks": model["num_res_blocks"],
                  "attention_resolutions": list(model["attention_resolutions"])},
        "diffusion": {"schedule": "cosine", "timesteps": SIZES[size]["T"]},
        "train": {"batch_size": batch, "lr": 2e-4, "warmup_steps": 0, "grad_clip": 1.0,
                  "ema_decay": 0.9999, "steps": 10**8, "device": device.split(":")[0],
                  "log_every": log_every, "probe_every": 0, "probe_timesteps": 4,
                  "image_size": SIZES[size]["image"], "grayscale": False},
    }
    return ExperimentConfig.from_dict(data).validate()


def make_our_trainer(match: str, size: str, batch: int, device: str, *, precision: str = "auto",
                     mode: str = "auto", compile_mode: str | None = None, log_every: int = 10**6,
                     n_images: int | None = None):
    """(trainer, fast_step) on random images; fast_step is the core.fast_step object the
    trainer's step hook calls (None: the trainer's plain step)."""
    from core.fast_step import DEFAULT_COMPILE_MODE
    from core.fast_train import FastTrainStep
    from core.training import Trainer

    config = our_config(match, size, batch, device, log_every)
    dataset = random_images(n_images or 4 * batch, SIZES[size]["image"])
    trainer = Trainer(config, dataset=dataset, device=device)
    if trainer.fast_step is not None:
        trainer.fast_step.close()
    fast = None
    if mode != "eager" or precision != "auto":
        fast = FastTrainStep(trainer, path=mode, precision=precision,
                             compile_mode=compile_mode or DEFAULT_COMPILE_MODE)
    return trainer, fast


def our_flops_per_image(trainer, images: int = 2) -> float:
    """Forward + backward FLOPs per training image of our network (one eager loss)."""
    x0 = trainer._train_x[:images]
    t = torch.randint(0, trainer.diffusion.num_timesteps, (x0.shape[0],), device=x0.device)

    def run():
        loss = trainer.diffusion.training_losses(trainer.model, x0, t)["loss"].mean()
        loss.backward()

    flops = count_flops(run)
    trainer.optimizer.zero_grad(set_to_none=True)
    return flops / x0.shape[0]


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------- peers
class _StubModule(types.ModuleType):
    """Stands in for torchvision when its compiled extension does not load (a PyPI
    torchvision built for CUDA next to a CPU torch): lucidrains' package imports it only for
    its image-folder Trainer and FID code, which the benchmarks never call."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        child = _StubModule(f"{self.__name__}.{name}")
        sys.modules[child.__name__] = child
        setattr(self, name, child)
        return child


def load_peers(names) -> tuple[dict, dict]:
    """({name: module}, {name: why not available}) for the requested peers."""
    modules, missing = {}, {}
    if "diffusers" in names:       # before any torchvision stand-in: diffusers probes for it
        try:
            import diffusers
            modules["diffusers"] = diffusers
        except Exception as exc:  # noqa: BLE001
            missing["diffusers"] = f"{type(exc).__name__}: {exc}"[:200]
    if "lucidrains" in names:
        try:
            import denoising_diffusion_pytorch
            modules["lucidrains"] = denoising_diffusion_pytorch
        except ModuleNotFoundError as exc:
            if exc.name == "denoising_diffusion_pytorch":
                missing["lucidrains"] = "denoising-diffusion-pytorch is not installed"
            else:
                problem = _load_lucidrains_without_torchvision(modules)
                if problem:
                    missing["lucidrains"] = problem
        except Exception:  # noqa: BLE001 - e.g. torchvision's extension fails to register
            problem = _load_lucidrains_without_torchvision(modules)
            if problem:
                missing["lucidrains"] = problem
    return modules, missing


def _load_lucidrains_without_torchvision(modules: dict) -> str | None:
    for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")
                or k.startswith("denoising_diffusion_pytorch")]:
        del sys.modules[key]
    stubs = ("torchvision", "torchvision.transforms", "torchvision.utils", "torchvision.models")
    for name in stubs:
        sys.modules[name] = _StubModule(name)
    try:
        import denoising_diffusion_pytorch
        modules["lucidrains"] = denoising_diffusion_pytorch
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"[:200]
    finally:
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]


class DiffusersLoss(nn.Module):
    """peer_bench.py's plain DDPM epsilon-prediction MSE step for the diffusers UNet2DModel."""

    def __init__(self, unet, scheduler):
        super().__init__()
        self.unet = unet
        self.T = scheduler.config.num_train_timesteps
        acp = scheduler.alphas_cumprod.to(torch.float32)
        self.register_buffer("sqrt_acp", acp.sqrt(), persistent=False)
        self.register_buffer("sqrt_1m_acp", (1 - acp).sqrt(), persistent=False)

    def forward(self, x0):
        b = x0.shape[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.T, (b,), device=x0.device)
        xt = self.sqrt_acp[t].view(b, 1, 1, 1) * x0 + self.sqrt_1m_acp[t].view(b, 1, 1, 1) * noise
        pred = self.unet(xt, t).sample
        return F.mse_loss(pred.float(), noise)


def build_peer(name: str, size: str, device: str, modules: dict) -> dict:
    """dict(loss_mod, net, opt, fwd[, diff]) with fresh weights, as peer_bench.py builds it."""
    torch.manual_seed(0)
    image, T = SIZES[size]["image"], SIZES[size]["T"]
    if name == "lucidrains":
        lib = modules["lucidrains"]
        net = lib.Unet(dim=PEER_SIZES[name][size]["dim"], dim_mults=(1, 2, 4, 8), flash_attn=False)
        diff = lib.GaussianDiffusion(net, image_size=image, timesteps=T, sampling_timesteps=None,
                                     auto_normalize=False).to(device)
        opt = torch.optim.Adam(diff.parameters(), lr=8e-5, betas=(0.9, 0.99))
        return dict(loss_mod=diff, net=diff.model, opt=opt, fwd=lambda x, t: diff.model(x, t),
                    diff=diff)
    if name == "diffusers":
        lib = modules["diffusers"]
        net = lib.UNet2DModel(
            sample_size=image, in_channels=3, out_channels=3,
            block_out_channels=PEER_SIZES[name][size]["channels"], layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=None, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
            norm_eps=1e-6, norm_num_groups=32, act_fn="silu", mid_block_scale_factor=1,
            time_embedding_type="positional", center_input_sample=False,
        )
        scheduler = lib.DDPMScheduler(num_train_timesteps=T)
        loss_mod = DiffusersLoss(net, scheduler).to(device)
        opt = torch.optim.AdamW(loss_mod.parameters(), lr=2e-4)
        return dict(loss_mod=loss_mod, net=loss_mod.unet, opt=opt,
                    fwd=lambda x, t: loss_mod.unet(x, t).sample)
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEER_NAMES)}")


def peer_step(peer: dict, device: str, precision: str):
    """peer_bench.py's training step: zero_grad, loss under autocast, backward, step."""
    loss_mod, opt = peer["loss_mod"], peer["opt"]

    def step(x):
        opt.zero_grad(set_to_none=True)
        with amp(device, precision):
            loss = loss_mod(x)
        loss.backward()
        opt.step()
        return loss
    return step


def peer_data(batch: int, image: int, device: str, n: int = 4) -> list[torch.Tensor]:
    """peer_bench.py's data: 4 batches of clamped standard-normal noise, rotated."""
    gen = torch.Generator(device="cpu").manual_seed(1)
    return [torch.randn(batch, 3, image, image, generator=gen).clamp(-1, 1).to(device)
            for _ in range(n)]


def peer_flops_per_image(peer: dict, image: int, device: str, images: int = 2) -> float:
    x = peer_data(images, image, device, 1)[0]

    def run():
        peer["loss_mod"](x).backward()

    flops = count_flops(run)
    peer["opt"].zero_grad(set_to_none=True)
    return flops / images
