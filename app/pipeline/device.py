"""Which device renders, and how to say so truthfully.

Devices are plain strings ("cpu", "cuda", "cuda:1", "mps") so that callers that never touch a GPU
never import torch. torch is imported only when a GPU might be present or was asked for.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import platform
import sys

from app.pipeline.plan import RenderError

log = logging.getLogger(__name__)

PREFERENCES = ("auto", "cpu", "cuda", "mps")


def _cuda_may_exist() -> bool:
    """Cheap check (no torch import) that an NVIDIA driver could be present."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")
    if sys.platform == "win32":
        return ctypes.util.find_library("nvcuda") is not None
    return False


def _mps_may_exist() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver answers with an exception: treat as absent
        log.warning("CUDA check failed", exc_info=True)
        return False


def _torch_mps() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(pref: str = "auto") -> str:
    """Resolve a preference (auto | cpu | cuda | cuda:N | mps) to the device that will really run.

    ``auto`` takes CUDA, then MPS, then the CPU. An explicit GPU that is not available falls back
    to the CPU (with a warning); :func:`describe` of the result then says "CPU", never a GPU that
    did not run.
    """
    pref = (pref or "auto").strip().lower()
    if pref == "cpu":
        return "cpu"
    if pref.startswith("cuda"):
        if _cuda_may_exist() and _torch_cuda():
            return pref
        log.warning("CUDA was asked for but is not available; rendering on the CPU")
        return "cpu"
    if pref == "mps":
        if _mps_may_exist() and _torch_mps():
            return "mps"
        log.warning("MPS was asked for but is not available; rendering on the CPU")
        return "cpu"
    if pref != "auto":
        raise RenderError(f"unknown device preference {pref!r} (expected one of {', '.join(PREFERENCES)})")
    if _cuda_may_exist() and _torch_cuda():
        return "cuda"
    if _mps_may_exist() and _torch_mps():
        return "mps"
    return "cpu"


def is_gpu(device: str) -> bool:
    return device.startswith("cuda") or device == "mps"


def describe(device: str) -> str:
    """Human words for what runs: "CPU", "CUDA: NVIDIA H100 80GB HBM3", "MPS: Apple GPU"."""
    if device.startswith("cuda"):
        import torch

        return f"CUDA: {torch.cuda.get_device_name(torch.device(device))}"
    if device == "mps":
        return "MPS: Apple GPU"
    return "CPU"
