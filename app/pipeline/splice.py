"""Splicing H.264: copy the GOPs a render leaves alone, re-encode only the ones it changes.

A final video differs from its working video only where a spotlight is drawn. Re-encoding the
rest costs time and a generation of quality for nothing, so the overlay export copies every
closed GOP (an IDR picture and the pictures up to the next one) that has nothing to draw, and
re-encodes only the runs of GOPs that do, each run with a fresh libx264 encoder that starts on an
IDR and is flushed at the run's end. The result is one H.264 stream, valid only when:

- the source is H.264 in an MP4 (``avcC`` extradata) whose key pictures are IDRs and whose GOPs
  are closed (no picture of a GOP is shown before that GOP's IDR or after the next one);
- its timestamps are whole frames at a constant rate;
- the re-encoding libx264, with the export's settings, writes the very same SPS and PPS as the
  source's ``avcC`` (so the copied and the re-encoded pictures decode with one set of headers).

:func:`plan_gops` checks the first two and decides which GOPs to copy; :func:`same_headers` the
last one. Anything else (another encoder's video, other settings, an open GOP) is re-encoded
whole, as before. Pure functions, no Qt, no storage.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

NAL_IDR = 5
NAL_SPS, NAL_PPS, NAL_AUD = 7, 8, 9
_START = re.compile(b"\x00\x00\x01")


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F if nal else -1


def avcc_parameter_sets(extradata: bytes | None) -> tuple[int, list[bytes], list[bytes]] | None:
    """(NAL length size, SPS list, PPS list) of an ``avcC`` record, or None if it is not one."""
    d = bytes(extradata or b"")
    if len(d) < 7 or d[0] != 1:
        return None
    try:
        length_size = (d[4] & 3) + 1
        i, sps, pps = 6, [], []
        for count, out in ((d[5] & 0x1F, sps), (None, pps)):
            if count is None:
                count = d[i]
                i += 1
            for _ in range(count):
                n = int.from_bytes(d[i:i + 2], "big")
                out.append(d[i + 2:i + 2 + n])
                if len(out[-1]) != n:
                    return None
                i += 2 + n
    except IndexError:
        return None
    return length_size, sps, pps


def annexb_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes and trailing zero bytes removed)."""
    parts = _START.split(bytes(data))
    return [p.rstrip(b"\x00") for p in parts[1:] if p.rstrip(b"\x00")]


def sample_nals(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of one MP4 sample (length-prefixed); [] when the lengths do not add up."""
    d, i, out = bytes(data), 0, []
    while i < len(d):
        n = int.from_bytes(d[i:i + length_size], "big")
        i += length_size
        if n <= 0 or i + n > len(d):
            return []
        out.append(d[i:i + n])
        i += n
    return out


def to_sample(annexb: bytes, length_size: int) -> bytes:
    """An encoder's Annex B picture as an MP4 sample: length-prefixed NALs, parameter sets and
    access unit delimiters dropped (they live in the ``avcC`` record)."""
    return b"".join(len(n).to_bytes(length_size, "big") + n for n in annexb_nals(annexb)
                    if nal_type(n) not in (NAL_SPS, NAL_PPS, NAL_AUD))


def same_headers(avcc: bytes | None, encoder_extradata: bytes | None) -> bool:
    """Whether an encoder's global headers (Annex B) are the SPS and PPS of an ``avcC`` record."""
    parsed = avcc_parameter_sets(avcc)
    if parsed is None or not encoder_extradata:
        return False
    _, sps, pps = parsed
    nals = annexb_nals(encoder_extradata)
    return ([n for n in nals if nal_type(n) == NAL_SPS] == sps
            and [n for n in nals if nal_type(n) == NAL_PPS] == pps)


@dataclass(frozen=True)
class Packet:
    """What the plan needs of a demuxed video packet."""

    pts: int
    keyframe: bool
    idr: bool


def scan(packets: Iterable[Any], length_size: int) -> list[Packet]:
    """The video packets of a demux in decode order (PyAV packets; flush packets skipped).
    ValueError for a picture without a time (it could be neither placed in a GOP nor copied)."""
    out = []
    for p in packets:
        if not p.size:
            continue
        if p.pts is None:
            raise ValueError("a picture without a presentation time")
        idr = p.is_keyframe and any(nal_type(n) == NAL_IDR for n in sample_nals(bytes(p), length_size))
        out.append(Packet(int(p.pts), bool(p.is_keyframe), idr))
    return out


@dataclass(frozen=True)
class GopPlan:
    """GOP ``k`` shows the pictures with ``bounds[k] <= pts < bounds[k + 1]``; ``copy[k]``: whether
    it is copied as it is (else re-encoded)."""

    bounds: tuple[int, ...]
    copy: tuple[bool, ...]

    def gop(self, pts: int) -> int:
        """The GOP that shows ``pts`` (-1 before the first, len(copy) after the last)."""
        return bisect.bisect_right(self.bounds, pts) - 1

    def copies(self, pts: int) -> bool:
        k = self.gop(pts)
        if not 0 <= k < len(self.copy):
            raise ValueError(f"pts {pts} is outside the GOPs that were scanned")
        return self.copy[k]


def plan_gops(packets: list[Packet], step: int, drawn: Callable[[int], bool]) -> GopPlan | None:
    """Which GOPs are copied and which re-encoded.

    ``packets``: the video packets in decode order (:func:`scan`); ``step``: one frame in the
    stream's time base; ``drawn(pts)``: whether the render changes the picture shown at ``pts``.
    None when the stream cannot be spliced (see the module's rules) or when there is nothing to
    gain (every GOP drawn, or none).
    """
    if not packets or step <= 0 or not packets[0].idr:
        return None
    if any(p.pts % step for p in packets) or any(p.keyframe and not p.idr for p in packets):
        return None
    gops: list[list[int]] = []
    for p in packets:
        if p.keyframe:
            gops.append([])
        gops[-1].append(p.pts)
    bounds = [min(g) for g in gops] + [max(gops[-1]) + step]
    for k, g in enumerate(gops):  # closed and in order: the GOP shows [its IDR, the next IDR)
        if g[0] != bounds[k] or not all(bounds[k] <= t < bounds[k + 1] for t in g):
            return None
        if len(set(g)) != len(g) or len(g) != (bounds[k + 1] - bounds[k]) // step:
            return None  # a gap or a repeat: not a plain constant-rate stream
    copy = [not any(drawn(t) for t in g) for g in gops]
    if all(copy) or not any(copy):
        return None
    return GopPlan(tuple(bounds), tuple(copy))
