"""AI upscaling: SRVGGNetCompact (Real-ESRGAN compact), loaded from the user's weights file.

The network matches the public ``realesr-general-x4v3.pth`` exactly (num_feat=64, num_conv=32,
x4, PReLU): ``body`` is an ``nn.ModuleList`` of Conv2d/PReLU modules, so the state-dict keys are
``body.0.weight``, ``body.0.bias``, ``body.1.weight`` (PReLU), ... ``body.66.bias``. The file
holds the state dict under ``params`` (or ``params_ema``, preferred when present, as
Real-ESRGAN's own loader does), or is a bare state dict.

There are no bundled weights and no fallback: without a usable weights file
:func:`load_upscaler` raises :class:`RenderError` with a message the user can act on.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.pipeline.plan import WEIGHTS_NAME, RenderError


class SRVGGNetCompact(nn.Module):
    """Compact VGG-style super-resolution network (Real-ESRGAN's SRVGGNetCompact)."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 32,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        self.num_in_ch, self.num_out_ch = num_in_ch, num_out_ch
        self.num_feat, self.num_conv = num_feat, num_conv
        self.upscale, self.act_type = upscale, act_type

        def act() -> nn.Module:
            if act_type == "prelu":
                return nn.PReLU(num_parameters=num_feat)
            if act_type == "relu":
                return nn.ReLU(inplace=True)
            if act_type == "leakyrelu":
                return nn.LeakyReLU(negative_slope=0.1, inplace=True)
            raise ValueError(f"unknown activation {act_type!r}")

        self.body = nn.ModuleList()
        self.body.append(nn.Conv2d(num_in_ch, num_feat, 3, 1, 1))
        self.body.append(act())
        for _ in range(num_conv):
            self.body.append(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
            self.body.append(act())
        self.body.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        # learn the residual on top of the nearest-upsampled input
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


class Upscaler:
    """Callable x4 upscaler: float RGB in 0..1, (N, 3, H, W) or (3, H, W), any device ->
    float32 RGB in 0..1, (N, 3, 4H, 4W) or (3, 4H, 4W), on the upscaler's device."""

    def __init__(self, net: SRVGGNetCompact, device: torch.device, half: bool) -> None:
        self.net = net
        self.device = device
        self.half = half
        self.scale = net.upscale

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != self.net.num_in_ch:
            raise ValueError(f"expected an (N, {self.net.num_in_ch}, H, W) tensor, got {tuple(x.shape)}")
        x = x.to(self.device, dtype=torch.float16 if self.half else torch.float32, non_blocking=True)
        y = self.net(x).clamp_(0.0, 1.0).float()
        return y[0] if single else y


def _resolve_device(device: str | torch.device) -> torch.device:
    d = str(device or "auto").lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise RenderError("AI upscaling was asked to run on CUDA, but no CUDA GPU is available")
    try:
        return torch.device(d)
    except RuntimeError as exc:
        raise RenderError(f"unknown device {device!r} for AI upscaling") from exc


def _state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("params_ema", "params"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RenderError(
            f"{path} is not a Real-ESRGAN weights file: expected a state dict (under 'params' or "
            f"'params_ema') of SRVGGNetCompact tensors"
        )
    # checkpoints saved from DataParallel carry a 'module.' prefix
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def _architecture(sd: dict[str, torch.Tensor], path: str) -> dict[str, int]:
    """num_in_ch, num_feat, num_conv, num_out_ch, upscale read off the state dict's shapes."""
    try:
        first = sd["body.0.weight"]
        idx = sorted(int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.endswith(".weight"))
        last = sd[f"body.{idx[-1]}.weight"]
        if "body.1.weight" not in sd:
            raise KeyError("body.1.weight (PReLU)")
    except (KeyError, ValueError, IndexError) as exc:
        raise RenderError(
            f"{path} does not hold SRVGGNetCompact weights ({WEIGHTS_NAME} layout); missing {exc}"
        ) from exc
    if first.dim() != 4 or last.dim() != 4:
        raise RenderError(f"{path} does not hold SRVGGNetCompact weights: unexpected tensor shapes")
    num_conv = (idx[-1] - 2) // 2
    out_ch = last.shape[0]
    num_out_ch = 3
    scale2 = out_ch // num_out_ch
    upscale = round(scale2 ** 0.5)
    if upscale * upscale * num_out_ch != out_ch or num_conv < 0:
        raise RenderError(f"{path} does not hold SRVGGNetCompact weights: last layer has {out_ch} channels")
    return {"num_in_ch": first.shape[1], "num_feat": first.shape[0], "num_conv": num_conv,
            "num_out_ch": num_out_ch, "upscale": upscale}


def load_upscaler(weights_path: str | None, device: str | torch.device = "auto") -> Upscaler:
    """Load the AI upscaler from ``weights_path`` onto ``device`` (auto | cpu | cuda[:n]).

    Raises RenderError with a user-facing message when no path is set, the file is missing or
    unreadable, or it does not hold SRVGGNetCompact weights. fp16 on CUDA, fp32 elsewhere.
    """
    if not weights_path:
        raise RenderError(
            f"AI upscaling needs a weights file ({WEIGHTS_NAME}); none is set. "
            "Choose one in the settings or use the lanczos upscaler."
        )
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
        raise RenderError(f"AI upscaler weights file not found: {path}")
    dev = _resolve_device(device)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or torch errors all mean "not a weights file"
        raise RenderError(
            f"cannot read the AI upscaler weights {path}: not a PyTorch weights file "
            f"({exc.__class__.__name__})"
        ) from exc
    sd = _state_dict(obj, path)
    arch = _architecture(sd, path)
    net = SRVGGNetCompact(**arch, act_type="prelu")
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first_line[:3])
        raise RenderError(f"{path} does not match the SRVGGNetCompact layout: {detail}") from exc
    half = dev.type == "cuda"
    net = net.to(dev).eval()
    if half:
        net = net.half()
    return Upscaler(net, dev, half)
