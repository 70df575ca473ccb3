"""What a render needs, as plain data: built by the job service from the store, read by the renderers,
and the contract of a render with its caller (progress, cancel, errors, result).

The pipeline never sees the database; the job layer turns rows into these plans.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.pipeline.keyframes import CropKey, EllipseKey
from app.pipeline.timeline import Segment


class Cancelled(Exception):
    """Raised by a renderer when its ``should_cancel`` callback answers True."""


class RenderError(Exception):
    """A render failed for a reason the user can act on (message is user-facing)."""


def disk_full(exc: BaseException) -> RenderError | None:
    """The user-facing error for a write that found the disk (or the user's quota) full, with the
    folder it was writing to; None for any other error."""
    if getattr(exc, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
        return None
    name = file_of(exc)
    where = f" in {Path(name).parent}" if name else ""
    return RenderError(f"The disk is full: no space left to write the export{where}. "
                       "Free some space, then export again.")


def write_failed(what: str, exc: BaseException, path: str | None = None) -> RenderError:
    """The user-facing error for a write of ``what`` that failed: the disk full, or why and where
    (the file the error names, else ``path``)."""
    if full := disk_full(exc):
        return full
    name = file_of(exc) or path
    return RenderError(f"writing {what} failed: {getattr(exc, 'strerror', None) or exc}" + (f" ({name})" if name else ""))


def file_of(exc: BaseException) -> str | None:
    """The file an OS or FFmpeg error names (FFmpeg's ``file:`` prefix taken off), or None."""
    name = getattr(exc, "filename", None)
    return str(name).removeprefix("file:") if name else None


WEIGHTS_NAME = "realesr-general-x4v3.pth"  # the AI upscaler's weights (FramingPlan.ai_weights), not bundled

ProgressFn = Callable[[float], None]  # fraction 0..1, called at least once a second
CancelFn = Callable[[], bool]


class Reporter:
    """A render loop's side of that contract: :meth:`tick` reports progress (never going back) at
    most every ``progress_every`` s and polls ``should_cancel`` at most every ``cancel_every`` s,
    raising :class:`Cancelled` when it answers True (``force``: both now)."""

    def __init__(
        self,
        progress: ProgressFn | None,
        should_cancel: CancelFn | None,
        *,
        progress_every: float,
        cancel_every: float,
    ):
        self._progress = progress
        self._cancel = should_cancel
        self._progress_every = progress_every
        self._cancel_every = cancel_every
        self._last_p = -1e9
        self._last_c = time.monotonic()
        self.fraction = 0.0
        self._base = 0.0  # see start_over

    def start_over(self) -> None:
        """The work starts again from its beginning (a fallback after a failed fast path): the
        fractions it now reports fill what is left of the bar, so the bar keeps moving instead of
        holding its value until the new work catches up with the old."""
        self._base = self.fraction

    def tick(self, fraction: float | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if fraction is not None:
            fraction = self._base + (1.0 - self._base) * fraction
            self.fraction = min(max(fraction, self.fraction), 1.0)
        if self._cancel is not None and (force or now - self._last_c >= self._cancel_every):
            self._last_c = now
            if self._cancel():
                raise Cancelled("export cancelled")
        if self._progress is not None and (force or now - self._last_p >= self._progress_every):
            self._last_p = now
            self._progress(self.fraction)

    def done(self) -> None:
        if self._progress is not None:
            self._progress(1.0)


@dataclass(frozen=True)
class ClipPlan:
    media_path: str
    width: int  # display size, after the phone's rotation metadata is applied
    height: int
    fps: float
    has_audio: bool
    source_start: float  # seconds in the media
    source_end: float
    trim_start: float  # clip-local seconds
    trim_end: float
    segments: tuple[Segment, ...]
    rotation: float = 0.0  # user's horizon fix, degrees
    crop_keyframes: tuple[CropKey, ...] = ()
    audio: bool = True
    display_rotation: int = 0  # 0/90/180/270 from the media's metadata
    vfr: bool = False
    name: str = ""  # the file's name as the user imported it (the store's is a hash)

    @property
    def label(self) -> str:
        """How messages name the clip's file."""
        return self.name or os.path.basename(self.media_path)


@dataclass(frozen=True)
class FramingPlan:
    clips: tuple[ClipPlan, ...]
    ratio: float  # crop aspect, width / height
    width: int
    height: int
    fps: float
    crf: int = 20
    preset: str = "veryfast"
    upscaler: str = "lanczos"  # lanczos | ai
    ai_weights: str | None = None
    transition: str = "cut"  # cut | fade | dissolve
    transition_duration: float = 0.5
    device: str = "auto"  # auto | cpu | cuda | mps


@dataclass(frozen=True)
class RegionPlan:
    start: float
    end: float
    keyframes: tuple[EllipseKey, ...]


@dataclass(frozen=True)
class OverlayPlan:
    working_path: str
    color: str = "#FFEB3B"
    shape: str = "body"  # body | ground
    stroke_width: float = 2.0
    fill_opacity: float = 0.2
    dim: float = 0.2
    regions: tuple[RegionPlan, ...] = ()
    crf: int = 20
    preset: str = "veryfast"
    device: str = "auto"


@dataclass
class RenderResult:
    path: str
    width: int
    height: int
    duration: float
    device: str  # what actually rendered, e.g. "CUDA: NVIDIA H100" or "CPU"
    extra: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # in words, for the user (damaged sources)
