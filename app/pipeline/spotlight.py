"""The spotlight overlay, drawn on YUV420 planes (export) or RGB (preview) with one set of math.

The geometry comes from :mod:`app.pipeline.keyframes` only (``ellipse_at``, ``ground_ring``,
``region_fade``, ``stroke_thickness``): :func:`spotlight_at` turns a region list and a time
into a :class:`SpotlightShape`, and both :func:`draw_spotlight` (the overlay export: numpy
arrays on the CPU, torch tensors on a GPU, no RGB round trip) and :func:`spotlight_rgb` (the
overlay editor's preview) draw that shape with the same compositing function.

Per frame inside a region, in this order (PRODUCT.md, "Overlay: the math"):

1. dim everything outside the ellipse by ``dim``: RGB x (1 - dim), which in limited-range YUV
   is ``Y -> 16 + (Y - 16)(1 - dim)`` and ``C -> 128 + (C - 128)(1 - dim)``;
2. blend a fill of the colour at ``fill_opacity`` inside the ellipse;
3. draw a dark outline (colour x 0.3), :func:`outline_pad` px wider on each side than the stroke;
4. draw the coloured stroke, ``stroke_thickness(stroke_width, H)`` px wide, centred on the edge.

Every opacity (dim, fill, outline, stroke) is multiplied by ``region_fade``. For the ``ground``
shape the whole spotlight (dim hole, fill, stroke) uses ``ground_ring`` of the ellipse.

Edges are antialiased with a 1-pixel soft edge from an approximate signed distance to the
ellipse (exact for circles). Everything but the whole-frame dim is computed only inside the
ellipse's bounding box; the dim itself is one fixed-point pass over each plane, with
``1 - dim`` as an 8-bit multiplier (within one code value of the exact product: the rounding
of the result, plus at most 0.43 from the multiplier's 1/256 steps on a 219-level range), used by
the bounding-box maths too so the two meet without a seam.

Working-video time ``t`` is the frame's presentation time minus the video stream's start time
(0 for the MP4s that Reelforge writes).
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.pipeline.keyframes import ellipse_at, ground_ring, region_fade, stroke_thickness

# BT.709 luma coefficients
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB
OUTLINE_SHADE = 0.3  # the outline is the colour x 0.3
DIM_BAND = 1 << 18  # samples per band of the CPU dim pass (a 512 KiB uint16 buffer)


def outline_pad(thickness: float) -> float:
    """How far (px) the dark outline reaches beyond each side of the coloured stroke."""
    return max(1.0, float(round(thickness / 3)))


# --------------------------------------------------------------------------- colours


def parse_color(color: str | Sequence[int]) -> tuple[int, int, int]:
    """'#RRGGBB', 'RRGGBB', '#RGB' or an (r, g, b) triple -> (r, g, b) 0..255."""
    if not isinstance(color, str):
        r, g, b = (int(c) for c in color)
        if not all(0 <= c <= 255 for c in (r, g, b)):
            raise ValueError(f"invalid colour {color!r}")
        return r, g, b
    s = color.strip().lstrip("#")
    if len(s) == 3:
        s = "".join(c * 2 for c in s)
    if len(s) != 6:
        raise ValueError(f"invalid colour {color!r}")
    try:
        return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)
    except ValueError as exc:
        raise ValueError(f"invalid colour {color!r}") from exc


def rgb_to_yuv709(rgb: Sequence[float]) -> tuple[float, float, float]:
    """Full-range RGB (0..255) -> limited-range BT.709 Y'CbCr (unrounded floats)."""
    r, g, b = (c / 255.0 for c in rgb)
    y = KR * r + KG * g + KB * b
    cb = (b - y) / (2 * (1 - KB))
    cr = (r - y) / (2 * (1 - KR))
    return 16.0 + 219.0 * y, 128.0 + 224.0 * cb, 128.0 + 224.0 * cr


def yuv709_to_rgb(yuv: Sequence[float]) -> tuple[float, float, float]:
    """Inverse of :func:`rgb_to_yuv709` (unclipped floats)."""
    y = (yuv[0] - 16.0) / 219.0
    cb = (yuv[1] - 128.0) / 224.0
    cr = (yuv[2] - 128.0) / 224.0
    r = y + 2 * (1 - KR) * cr
    b = y + 2 * (1 - KB) * cb
    g = (y - KR * r - KB * b) / KG
    return r * 255.0, g * 255.0, b * 255.0


# --------------------------------------------------------------------------- settings & geometry


@dataclass(frozen=True)
class SpotlightStyle:
    """The overlay settings a render needs (from an OverlayPlan, a dict or any object with them)."""

    color: tuple[int, int, int] = (0xFF, 0xEB, 0x3B)
    shape: str = "body"  # body | ground
    stroke_width: float = 2.0
    fill_opacity: float = 0.2
    dim: float = 0.2

    @classmethod
    def from_settings(cls, settings: Any) -> SpotlightStyle:
        if isinstance(settings, SpotlightStyle):
            return settings
        if isinstance(settings, Mapping):
            get = settings.get
        else:
            def get(name: str, default: Any = None) -> Any:
                return getattr(settings, name, default)
        d = cls()
        shape = get("shape", d.shape) or d.shape
        if shape not in ("body", "ground"):
            raise ValueError(f"invalid spotlight shape {shape!r}")
        return cls(
            color=parse_color(get("color", d.color) or d.color),
            shape=shape,
            stroke_width=float(get("stroke_width", d.stroke_width)),
            fill_opacity=min(max(float(get("fill_opacity", d.fill_opacity)), 0.0), 1.0),
            dim=min(max(float(get("dim", d.dim)), 0.0), 1.0),
        )

    @property
    def color_yuv(self) -> tuple[float, float, float]:
        return rgb_to_yuv709(self.color)

    @property
    def outline_rgb(self) -> tuple[float, float, float]:
        return tuple(c * OUTLINE_SHADE for c in self.color)  # type: ignore[return-value]

    @property
    def outline_yuv(self) -> tuple[float, float, float]:
        return rgb_to_yuv709(self.outline_rgb)


@dataclass(frozen=True)
class SpotlightShape:
    """What to draw on one frame, in the frame's pixel coordinates (pixel (0, 0) spans [0, 1)²)."""

    x: float
    y: float
    rx: float
    ry: float
    thickness: float  # coloured stroke width, px
    pad: float  # dark outline beyond each side of the stroke, px
    fade: float  # 0..1, multiplies every opacity

    def reach(self) -> tuple[float, float]:
        """Half extents of everything but the dim (stroke and outline included, plus AA margin)."""
        m = self.thickness / 2 + self.pad + 2.0
        return self.rx + m, self.ry + m


def active_region(regions: Sequence[Any], t: float) -> Any | None:
    """The region drawn at time ``t`` (start <= t <= end with a non-zero fade), or None."""
    best, best_fade = None, 0.0
    for r in regions:
        f = region_fade(r.start, r.end, t)
        if f > best_fade and r.keyframes:
            best, best_fade = r, f
    return best


def spotlight_at(
    settings: Any, regions: Sequence[Any], t: float, frame_h: float, scale: float = 1.0
) -> SpotlightShape | None:
    """THE spotlight geometry at working-video time ``t``; None when nothing is drawn.

    ``frame_h`` is the working video's height (it sets the stroke thickness); ``scale`` maps
    working-video pixels to the pixels drawn on (preview of a resized frame).
    """
    style = SpotlightStyle.from_settings(settings)
    region = active_region(regions, t)
    if region is None:
        return None
    fade = region_fade(region.start, region.end, t)
    e = ellipse_at(region.keyframes, t)
    if style.shape == "ground":
        e = ground_ring(e)
    th = float(stroke_thickness(style.stroke_width, frame_h))
    return SpotlightShape(
        x=e.x * scale, y=e.y * scale, rx=e.rx * scale, ry=e.ry * scale,
        thickness=th * scale, pad=outline_pad(th) * scale, fade=fade,
    )


# --------------------------------------------------------------------------- drawing primitives
#
# The compositing is written once against the operations numpy and torch share (operators,
# ``sqrt``/``abs``/``clip`` with ``out=``): numpy arrays on the CPU, so that a CPU export or
# preview never imports torch, and torch tensors on a GPU.


def is_tensor(a: Any) -> bool:
    """A torch tensor (without importing torch)."""
    return type(a).__module__.startswith("torch")


def _xp(a: Any) -> Any:
    """The array namespace of ``a``: torch for tensors, else numpy."""
    return sys.modules["torch"] if is_tensor(a) else np


def _as_numpy(a: Any) -> np.ndarray:
    """A CPU tensor or ndarray as an ndarray sharing its memory."""
    return a.numpy() if is_tensor(a) else a


def _as_float(a: Any) -> Any:
    return a.to(sys.modules["torch"].float32) if is_tensor(a) else a.astype(np.float32)


def _as_u8(a: Any) -> Any:
    return a.to(sys.modules["torch"].uint8) if is_tensor(a) else a.astype(np.uint8)


def _is_u8(a: Any) -> bool:
    return str(a.dtype) in ("uint8", "torch.uint8")


_scratch = threading.local()


def _scratch_u16(shape: tuple[int, ...]) -> np.ndarray:
    """A reusable uint16 buffer of ``shape`` for the CPU dim pass (per thread)."""
    buf: np.ndarray | None = getattr(_scratch, "u16", None)
    n = math.prod(shape)
    if buf is None or buf.size < n:
        buf = _scratch.u16 = np.empty(n, np.uint16)
    return buf[:n].reshape(shape)


def quantize_keep(keep: float) -> int:
    """The dim factor ``1 - dim`` as the 8-bit fixed-point multiplier every path uses (0..256)."""
    return min(max(round(keep * 256), 0), 256)


def dim_plane(src: Any, dst: Any, keep_q: int, black: float) -> None:
    """dst = round(black + (src - black) * keep_q / 256) for uint8 planes (dst may be src).

    On CPU (ndarrays or CPU tensors) this is numpy in uint16: one thread, three passes over
    L2-sized bands of rows, no allocation. It runs beside the encoder's threads, where more
    threads would only fight them and where main memory is the scarce thing. On a GPU it is
    torch int32.
    """
    if keep_q >= 256:
        if dst is not src:
            dst[...] = src
        return
    c = int(round(black * (256 - keep_q))) + 128  # black offset and the rounding half
    if is_tensor(src) and src.device.type != "cpu":
        _dim_torch(src, dst, keep_q, c)
        return
    s, d = _as_numpy(src), _as_numpy(dst)
    rows = max(1, DIM_BAND // max(1, s[0].size))
    buf = _scratch_u16((min(rows, s.shape[0]), *s.shape[1:]))
    k, cc = np.uint16(keep_q), np.uint16(c)
    for r in range(0, s.shape[0], rows):
        bb = buf[: min(rows, s.shape[0] - r)]
        # max value: 255 * k + black * (256 - k) + 128 <= 65408, fits in uint16
        np.multiply(s[r:r + rows], k, out=bb, dtype=np.uint16)
        np.add(bb, cc, out=bb)
        np.right_shift(bb, 8, out=d[r:r + rows], casting="unsafe")


def _dim_torch(src: Any, dst: Any, keep_q: int, c: int) -> None:
    """The GPU form of :func:`dim_plane`: same fixed-point arithmetic in int32."""
    torch = sys.modules["torch"]
    buf = src.to(torch.int32)
    buf.mul_(keep_q).add_(c)
    buf.bitwise_right_shift_(8)
    dst.copy_(buf)


def _coverage(shape: SpotlightShape, xs: Any, ys: Any, px: float) -> tuple[Any, Any, Any]:
    """(inside, outline, stroke) coverages 0..1 at sample centres ``xs`` (1, w) x ``ys`` (h, 1).

    ``px`` is the sample spacing in frame pixels (1 for luma/RGB, 2 for 4:2:0 chroma): the soft
    edges are one sample wide. The signed distance to the ellipse is approximated as
    (k - 1) * k / |grad k| with k = |((x - cx)/rx, (y - cy)/ry)| (exact for circles); a tiny
    bias makes it -r (deep inside) at the very centre instead of 0/0.
    """
    xp = _xp(xs)
    rx, ry = shape.rx, shape.ry
    eps = 1e-10
    nx = (xs - shape.x) / rx
    ny = (ys - shape.y) / ry
    gx = nx * (px / rx)  # grad k * k, in samples
    gy = ny * (px / ry)
    r2 = min(rx, ry) ** 2 / (px * px)
    k2 = nx * nx + (ny * ny + eps * r2)  # (h, w): k^2 (+ a negligible bias)
    g2 = gx * gx + (gy * gy + eps)
    k = xp.sqrt(k2)
    k -= 1.0
    k2 /= g2
    k *= xp.sqrt(k2, out=k2)
    s = k  # signed distance in samples, < 0 inside
    inside = xp.clip(0.5 - s, 0.0, 1.0)
    a = xp.abs(s, out=s)
    half = shape.thickness / 2 / px
    stroke = (half + 0.5) - a
    outline = (half + shape.pad / px + 0.5) - a
    return inside, xp.clip(outline, 0.0, 1.0, out=outline), xp.clip(stroke, 0.0, 1.0, out=stroke)


def _weights(cov: tuple[Any, Any, Any], dim: float, fill: float, alpha: float) -> tuple[Any, Any, Any, Any]:
    """The four steps folded into one blend per sample: out = v*P + black*Wb + colour*Wc + dark*Wo.

    dim outside: v -> v + (black - v)*(1 - in)*dim; fill: v -> v + (colour - v)*in*fill;
    outline: v -> v + (dark - v)*outline*alpha; stroke: v -> v + (colour - v)*stroke*alpha.
    The weights are shared by every plane on the same sample grid (U and V; R, G and B).
    """
    inside, ao, as_ = cov
    fi = inside * fill
    dd = inside * -dim
    dd += dim  # (1 - in) * dim
    if alpha != 1.0:
        ao *= alpha
        as_ *= alpha
    keep_s = 1.0 - as_
    t1 = 1.0 - ao
    t1 *= keep_s  # (1 - ao)(1 - as)
    t2 = 1.0 - fi
    t2 *= t1  # (1 - fi) t1
    wb = dd * t2
    p = t2
    p -= wb  # (1 - dd) t2
    fi *= t1
    wc = as_
    wc += fi  # fi t1 + as
    wo = ao
    wo *= keep_s  # ao (1 - as)
    return p, wb, wc, wo


def _blend(v: Any, w: tuple[Any, ...], black: Any, color: Any, dark: Any) -> Any:
    """v (float, in place) -> v*P + black*Wb + colour*Wc + dark*Wo + 0.5 (ready to truncate)."""
    p, wb, wc, wo = w
    q = wc * color
    q += wb * black
    q += wo * dark
    v *= p
    v += q
    v += 0.5
    return v


def _bbox(shape: SpotlightShape, px: float, off_x: float, off_y: float, w: int, h: int) -> tuple[int, int, int, int]:
    """Sample index range [x0, x1) x [y0, y1) whose centres (i*px + off) lie within the shape's reach."""
    ex, ey = shape.reach()
    x0 = max(0, math.floor((shape.x - ex - off_x) / px))
    x1 = min(w, math.ceil((shape.x + ex - off_x) / px) + 1)
    y0 = max(0, math.floor((shape.y - ey - off_y) / px))
    y1 = min(h, math.ceil((shape.y + ey - off_y) / px) + 1)
    return x0, x1, y0, y1


def _centres(like: Any, i0: int, i1: int, px: float, off: float) -> Any:
    """Sample centres i * px + off for i in [i0, i1), float32, on ``like``'s device."""
    if is_tensor(like):
        torch = sys.modules["torch"]
        return torch.arange(i0, i1, device=like.device, dtype=torch.float32) * px + off
    return np.arange(i0, i1, dtype=np.float32) * np.float32(px) + np.float32(off)


def _draw_planes(
    src: Sequence[Any],
    dst: Sequence[Any],
    shape: SpotlightShape,
    px: float,
    off: tuple[float, float],
    blacks: Sequence[Any],
    colors: Sequence[Any],
    darks: Sequence[Any],
    style: SpotlightStyle,
) -> None:
    """Draw ``src`` planes into ``dst`` planes (may be the same) that share one sample grid.

    Planes are 2-D (Y; U and V) or 3-D channel-last (RGB, with per-channel colours), all
    ndarrays or all tensors. The dim is one fixed-point pass over the whole plane; everything
    else is computed in float inside the shape's bounding box only, from the source values
    saved before the dim.
    """
    h, w = src[0].shape[:2]
    keep_q = quantize_keep(1.0 - style.dim * shape.fade)
    dim = 1.0 - keep_q / 256
    x0, x1, y0, y1 = _bbox(shape, px, off[0], off[1], w, h)
    has_box = x1 > x0 and y1 > y0
    saved = [_as_float(p[y0:y1, x0:x1]) for p in src] if has_box else []
    for s, d, b in zip(src, dst, blacks, strict=True):
        dim_plane(s, d, keep_q, float(b))
    if not has_box:
        return
    xs = _centres(src[0], x0, x1, px, off[0])[None, :]
    ys = _centres(src[0], y0, y1, px, off[1])[:, None]
    wts = _weights(_coverage(shape, xs, ys, px), dim, style.fill_opacity * shape.fade, shape.fade)
    if src[0].ndim == 3:
        wts = tuple(t[..., None] for t in wts)  # type: ignore[assignment]
    for d, v, b, c, k in zip(dst, saved, blacks, colors, darks, strict=True):
        # a convex blend of values in 0..255, plus 0.5: truncation rounds, nothing to clamp
        d[y0:y1, x0:x1] = _as_u8(_blend(v, wts, b, c, k))


# --------------------------------------------------------------------------- public drawing API


def split_i420(frame: Any) -> tuple[Any, Any, Any]:
    """Views (Y, U, V) of a packed I420 array or tensor shaped (H * 3 / 2, W), as PyAV's
    to_ndarray gives."""
    rows, w = frame.shape
    h = rows * 2 // 3
    if not _is_u8(frame) or rows * 2 % 3 or h % 2 or w % 2:
        raise ValueError(f"not a packed 8-bit I420 frame: shape {tuple(frame.shape)}, {frame.dtype}")
    flat = frame.reshape(-1)
    n, q = h * w, (h // 2) * (w // 2)
    return flat[:n].reshape(h, w), flat[n:n + q].reshape(h // 2, w // 2), flat[n + q:n + 2 * q].reshape(h // 2, w // 2)


def _planes(frame: Any, like: Any = None) -> tuple[Any, Any, Any]:
    """(Y, U, V) of a packed frame or a plane triple; CPU tensors and ndarrays are turned into
    the kind of ``like`` (sharing memory), so that every plane of a draw is of one kind."""
    if isinstance(frame, (tuple, list)):
        y, u, v = frame
        if not _is_u8(y) or tuple(u.shape) != tuple(v.shape) or tuple(u.shape) != (y.shape[0] // 2, y.shape[1] // 2):
            raise ValueError("expected 8-bit 4:2:0 planes (Y, U, V) with U and V at half size")
        planes = (y, u, v)
    else:
        planes = split_i420(frame)
    want_tensor = is_tensor(planes[0] if like is None else like)
    if all(is_tensor(p) == want_tensor for p in planes):
        return planes  # type: ignore[return-value]
    if want_tensor:
        torch = sys.modules["torch"]
        return tuple(p if is_tensor(p) else torch.from_numpy(p) for p in planes)  # type: ignore[return-value]
    return tuple(_as_numpy(p) for p in planes)  # type: ignore[return-value]


def draw_spotlight(
    frame: Any,
    t: float,
    settings: Any,
    regions: Sequence[Any],
    *,
    shape: SpotlightShape | None = None,
    out: Any = None,
) -> bool:
    """Draw the spotlight for working-video time ``t`` on a YUV 4:2:0 frame.

    ``frame`` is either a packed I420 uint8 tensor/ndarray shaped (H*3/2, W) or a (Y, U, V)
    triple of 2-D uint8 tensors/ndarrays (U and V at half size, any strides), on CPU or CUDA.
    It is drawn on in place, or, with ``out`` (same layout and size), ``frame`` is only read
    and the result is written to ``out``. Colours are limited-range BT.709; chroma samples
    are sited left (the MPEG-2/H.264 default). ``settings``: an OverlayPlan, SpotlightStyle,
    dict or any object with color/shape/stroke_width/fill_opacity/dim; ``regions``:
    RegionPlan-like (start, end, keyframes). ``shape`` skips the geometry look-up when the
    caller already has it. Returns True when something was drawn; False when ``t`` is
    outside every region (``out``, if given, is then left unwritten).
    """
    y, u, v = _planes(frame)
    style = SpotlightStyle.from_settings(settings)
    if shape is None:
        shape = spotlight_at(style, regions, t, y.shape[0])
    if shape is None or shape.fade <= 0:
        return False
    y2, u2, v2 = (y, u, v) if out is None else _planes(out, like=y)
    if y2.shape != y.shape or u2.shape != u.shape:
        raise ValueError("out must have the same size as frame")
    cy, cu, cv = style.color_yuv
    dy, du, dv = style.outline_yuv
    _draw_planes([y], [y2], shape, 1.0, (0.5, 0.5), [16.0], [cy], [dy], style)
    # 4:2:0 left-sited chroma: sample (i, j) sits at luma position (2j + 0.5, 2i + 1)
    _draw_planes([u, v], [u2, v2], shape, 2.0, (0.5, 1.0), [128.0, 128.0], [cu, cv], [du, dv], style)
    return True


def spotlight_rgb(
    rgb: np.ndarray,
    t: float,
    settings: Any,
    regions: Sequence[Any],
    *,
    source_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Preview: a copy of the (H, W, 3) uint8 RGB frame with the spotlight of time ``t`` drawn.

    Same geometry (:func:`spotlight_at`) and compositing as the export, in RGB (dim = RGB x
    (1 - dim), outline = colour x 0.3). When the frame is a resized working-video frame, pass
    the working video's ``source_size`` (w, h) so positions and stroke thickness scale with it.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    out = np.array(rgb, copy=True, order="C")
    h, w = out.shape[:2]
    src_w, src_h = source_size if source_size else (w, h)
    style = SpotlightStyle.from_settings(settings)
    shape = spotlight_at(style, regions, t, src_h, scale=w / src_w if src_w else 1.0)
    if shape is None or shape.fade <= 0:
        return out
    color = np.array(style.color, dtype=np.float32)
    dark = np.array(style.outline_rgb, dtype=np.float32)
    _draw_planes([out], [out], shape, 1.0, (0.5, 0.5), [0.0], [color], [dark], style)  # black = RGB 0
    return out
