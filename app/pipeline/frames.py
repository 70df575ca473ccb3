"""Per-frame work of the framing export: crop (keyframed box), rotate, resize, blend.

A *framer* turns one decoded source frame plus the crop box of that instant (display pixels,
from :func:`app.pipeline.keyframes.crop_at`) into one output frame (``yuv420p``, export size,
limited range). Frames stay planar YUV from decoder to encoder; nothing goes through RGB unless
the AI upscaler needs it.

CPU path (measured, 1920x1080 -> crop 608x1080 -> 1080x1920, 600 frames, 2 cores, FFmpeg 8.1):
  - numpy views of the decoded YUV planes, one copy of the crop (0.16 ms), swscale lanczos via
    ``VideoReformatter.reformat`` single-threaded: 2.0 ms/frame; a changing crop size (zoom
    keyframes) re-initialises swscale: 2.8 ms/frame. With ``threads=0`` the re-init costs
    5.5 ms/frame, so sws runs single-threaded (the encoder and decoder threads use the cores).
    A lanczos re-init is the expensive part (1.5 ms under load vs 0.16 ms for bicubic), so the
    framer keeps an LRU of swscale contexts per crop size (128 x ~0.4 MB): a zoom that comes back
    to sizes it passed (in and out again) re-uses them.
  - PyAV filter graph crop+scale(lanczos): same speed end to end (8.0 s vs 8.3 s at veryfast,
    within run-to-run noise), but a keyframed crop then needs a ``process_command`` per frame
    and the crop origin is forced even; numpy slicing gives per-pixel origins.
  - torch on the CPU (dense lanczos matrices): ~30-60 ms/frame, far slower; used on GPUs only.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from app.pipeline.decode import display_rotation_of
from app.pipeline.filters import chain
from app.pipeline.keyframes import Box

# planar formats whose planes can be cropped with numpy directly (one component per plane)
_PLANAR = re.compile(r"^(yuvj?4(20|22|44)p(9|10|12|14|16)?(le)?|gray(9|10|12|14|16)?(le)?)$")
LANCZOS = Interpolation.LANCZOS
MPEG = ColorRange.MPEG  # limited range, what the output is
SWS_CACHE = 128  # swscale contexts kept per clip, one per crop size (~0.4 MB each at 1080x1920)
JPEG = ColorRange.JPEG
# the export's colours (tagged so in the file: see encode._x264_settings), and those of every
# frame a framer works on (Colour.prepare). Said to swscale each time: it would take an untagged
# frame for BT.601 and convert it.
BT709 = Colorspace.ITU709


def _even(v: float, lo: int, hi: int) -> int:
    n = int(round(v / 2.0)) * 2
    return max(lo, min(n, hi))


def plane_view(frame: av.VideoFrame, i: int) -> np.ndarray:
    """Plane ``i`` of a planar frame as a (rows, cols) numpy view, without the line padding."""
    plane = frame.planes[i]
    dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
    item = np.dtype(dtype).itemsize
    a = np.frombuffer(plane, dtype)
    return a[: plane.height * (plane.line_size // item)].reshape(plane.height, plane.line_size // item)[
        :, : plane.width
    ]


def frame_from_planes(planes: list[np.ndarray], width: int, height: int) -> av.VideoFrame:
    """A ``yuv420p`` frame holding a copy of three uint8 planes."""
    out = av.VideoFrame(width, height, "yuv420p")
    for i, p in enumerate(planes):
        dst = plane_view(out, i)
        dst[...] = p
    out.color_range = MPEG
    return out


def fade_to_black(frame: av.VideoFrame, amount: float) -> av.VideoFrame:
    """``amount`` 1 = the frame as is, 0 = black (limited-range ``yuv420p``)."""
    w = int(round(max(0.0, min(1.0, amount)) * 256))
    if w >= 256:
        return frame
    planes = []
    for i, base in enumerate((16, 128, 128)):
        p = plane_view(frame, i).astype(np.int32)
        planes.append(((p - base) * w + 128 >> 8) + base)
    return frame_from_planes([p.astype(np.uint8) for p in planes], frame.width, frame.height)


def mix(a: av.VideoFrame, b: av.VideoFrame, amount: float) -> av.VideoFrame:
    """Cross-fade: ``amount`` 0 = a, 1 = b (both ``yuv420p`` of one size)."""
    w = int(round(max(0.0, min(1.0, amount)) * 256))
    if w <= 0:
        return a
    if w >= 256:
        return b
    planes = []
    for i in range(3):
        pa = plane_view(a, i).astype(np.uint16)
        pb = plane_view(b, i).astype(np.uint16)
        planes.append(((pa * (256 - w) + pb * w + 128) >> 8).astype(np.uint8))
    return frame_from_planes(planes, a.width, a.height)


def pixel_box(box: Box, frame_w: int, frame_h: int, sx: float = 1.0, sy: float = 1.0) -> tuple[int, int, int, int]:
    """The crop in whole pixels of the display frame: even width/height, centre kept, inside."""
    x, y, w, h = box.x * sx, box.y * sy, box.width * sx, box.height * sy
    iw = _even(w, 2, frame_w - frame_w % 2)
    ih = _even(h, 2, frame_h - frame_h % 2)
    ix = max(0, min(int(round(x + (w - iw) / 2)), frame_w - iw))
    iy = max(0, min(int(round(y + (h - ih) / 2)), frame_h - ih))
    return ix, iy, iw, ih


# --------------------------------------------------------------------------- colour

# a frame's AVColorSpace -> the colorspace filter's name for it (what the file says it is)
_SPACES = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020ncl", 10: "bt2020ncl"}
_PRIMARIES_BT2020 = 9  # AVColorPrimaries
_HDR_CURVES = {16: "PQ", 18: "HLG"}  # AVColorTransferCharacteristic
SD_HEIGHT = 576  # untagged pictures this tall or less are BT.601, taller ones BT.709 (as players take them)
_SWS = {"bt709": BT709, "fcc": Colorspace.FCC, "bt470bg": Colorspace.ITU601, "smpte170m": Colorspace.ITU601,
        "smpte240m": Colorspace.SMPTE240M, "bt2020ncl": Colorspace.BT2020}


def _untagged_space(height: int) -> str:
    """What players take an untagged picture for: BT.601 up to 576 lines, BT.709 above."""
    return "smpte170m" if height <= SD_HEIGHT else "bt709"


def source_space(frame: av.VideoFrame) -> str:
    """The YUV matrix a decoded frame is in: its own tag, else :func:`_untagged_space`."""
    return _SPACES.get(frame.colorspace) or _untagged_space(frame.height)


def source_matrix(frame: av.VideoFrame) -> int:
    """:func:`source_space` as swscale's constant (for a preview's conversion to RGB)."""
    return _SWS[source_space(frame)]


def untagged_matrix(height: int) -> int:
    """The matrix an untagged picture ``height`` lines tall is read by (:func:`source_space`):
    what to write one in, for it to be read back as written."""
    return _SWS[_untagged_space(height)]


class Colour:
    """How one clip's pictures become the export's colours (BT.709, limited range: what the file
    says, see ``encode._x264_settings``), decided from its first decoded frame:

    - BT.709, or untagged HD (which players take for BT.709): nothing to do, no extra pass.
    - a BT.601, SMPTE 240M or FCC matrix (SD video; untagged SD): the matrix is converted by
      FFmpeg's ``colorspace`` filter, the matrix only, as a player shows it (swscale's own
      YUV-to-YUV conversion was measured 2-4 levels off on greys).
    - BT.2020 primaries (phone HDR in HLG; BT.2020 SDR): the filter converts matrix and gamut,
      reading HLG by its SDR-compatible curve. No tone mapping: ``note`` says that HDR comes out
      as standard-range video (PQ, which the filter cannot read, looks flat).
    """

    def __init__(self, frame: av.VideoFrame, name: str = "the video"):
        space = source_space(frame)
        hdr = _HDR_CURVES.get(frame.color_trc)
        self.note = None if hdr is None else (
            f"{name} is HDR ({hdr}): it is exported as standard-range (BT.709) video, without tone mapping"
            + (", so its colours may look flat" if hdr == "PQ" else ""))
        rng = f"irange={'pc' if frame.color_range == JPEG else 'tv'}:range=tv:format=yuv420p"
        if frame.color_primaries == _PRIMARIES_BT2020 or space == "bt2020ncl":
            options = f"all=bt709:iall=bt2020:itrc=bt2020-10:{rng}"
        elif space != "bt709":
            same = "primaries=bt709:iprimaries=bt709:trc=bt709:itrc=bt709"  # the matrix only
            options = f"space=bt709:ispace={space}:{same}:{rng}"
        else:
            options = None
        self.options = options
        # the filter takes even sizes only; an odd one gets swscale's conversion (close enough)
        self._sws = _SWS[space] if options is not None and (frame.width % 2 or frame.height % 2) else None
        self._graph = None if options is None or self._sws is not None else self._build(frame, options)
        self._last: tuple[av.VideoFrame, av.VideoFrame] | None = None
        self._pushed = 0

    @staticmethod
    def _build(frame: av.VideoFrame, options: str) -> tuple:
        g = av.filter.Graph()
        src = g.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 1000))
        return (g, *chain(g, src, g.add("colorspace", options), g.add("buffersink")))

    def prepare(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` in BT.709 (the same object for the same frame, as slow motion hands the
        framer one frame several times)."""
        if self.options is None:
            return frame
        if self._last is not None and self._last[0] is frame:
            return self._last[1]
        if self._graph is None:
            # 4:4:4 holds an odd size whole; swscale converts 10-bit to 10-bit wrongly (measured)
            out = frame.reformat(format="yuv444p", src_colorspace=self._sws, dst_colorspace=BT709,
                                 dst_color_range=MPEG)
        else:
            _, src, sink = self._graph
            frame.pts = self._pushed
            self._pushed += 1
            src.push(frame)
            out = sink.pull()
        self._last = (frame, out)
        return out


class _Framer:
    """What every framer shares: the export size, the space of the crop boxes, the rotations, and
    :meth:`process`, which renders one (source frame, crop box) once.

    ``display_rotation`` is the counter-clockwise rotation from the media's metadata (the media's
    own display matrix, when the frames carry one, wins). ``rotation`` is the user's horizon fix,
    degrees clockwise on screen, about the frame centre. ``plan_w``/``plan_h`` are the display
    size the crop boxes are expressed in.
    """

    def __init__(
        self,
        out_w: int,
        out_h: int,
        plan_w: int,
        plan_h: int,
        display_rotation: int = 0,
        rotation: float = 0.0,
        name: str = "the video",
    ):
        self.out_w, self.out_h = out_w, out_h
        self.plan_w, self.plan_h = plan_w, plan_h
        self.fallback_rotation = display_rotation
        self.rotation = rotation
        self.display_rotation: int | None = None
        self.colour: Colour | None = None  # decided from the first frame (see Colour)
        self.name = name
        self._last: tuple[av.VideoFrame, Box, av.VideoFrame] | None = None

    def _display_rotation(self, frame: av.VideoFrame) -> int:
        """The display rotation, read from the first frame (it is the same for the whole file)."""
        if self.display_rotation is None:
            self.display_rotation = display_rotation_of(frame, self.fallback_rotation)
        return self.display_rotation

    def process(self, frame: av.VideoFrame, box: Box) -> av.VideoFrame:
        last = self._last
        if last is not None and last[0] is frame and last[1] == box:
            return last[2]  # slow motion: the same source frame and box again
        if self.colour is None:
            self._display_rotation(frame)  # from the decoded frame's own display matrix
            self.colour = Colour(frame, self.name)
        out = self._render(self.colour.prepare(frame), box)
        self._last = (frame, box, out)
        return out

    def _render(self, frame: av.VideoFrame, box: Box) -> av.VideoFrame:
        raise NotImplementedError


class CpuFramer(_Framer):
    """Crop with numpy plane slicing, resize with swscale lanczos (see the module's measurements).

    The horizon fix goes through the FFmpeg ``rotate`` filter (bilinear).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sws: OrderedDict[tuple[int, int, str], VideoReformatter] = OrderedDict()
        self._graph = None
        self._rotated: tuple[av.VideoFrame, av.VideoFrame] | None = None

    # -- rotation (user's horizon fix): FFmpeg filter graph on the whole display-oriented frame
    def _rotate(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self._rotated is not None and self._rotated[0] is frame:
            return self._rotated[1]
        if self._graph is None:
            g = av.filter.Graph()
            src = g.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 1000))
            turn = [g.add(*f) for f in {90: [("transpose", "cclock")], 270: [("transpose", "clock")],
                                        180: [("hflip",), ("vflip",)]}.get(self.display_rotation, [])]
            rotate = g.add("rotate", f"a={math.radians(self.rotation)!r}:ow=iw:oh=ih:c=black")
            self._graph = (g, *chain(g, src, *turn, rotate, g.add("buffersink")), 0)
        g, src, sink, n = self._graph
        frame.pts = n
        self._graph = (g, src, sink, n + 1)
        src.push(frame)
        out = sink.pull()
        self._rotated = (frame, out)
        return out

    def crop(self, frame: av.VideoFrame, box: Box) -> av.VideoFrame:
        """The crop region as its own frame (source pixel format), display-oriented."""
        rot = self._display_rotation(frame)
        if abs(self.rotation) > 1e-9:
            frame = self._rotate(frame)
            rot = 0
        name = frame.format.name
        sub_square = name.startswith("gray") or "420" in name or "444" in name
        if not _PLANAR.match(name) or (rot in (90, 270) and not sub_square):
            frame = frame.reformat(format="yuv420p", src_colorspace=BT709, dst_colorspace=BT709)
            name = "yuv420p"
        fw, fh = frame.width, frame.height
        dw, dh = (fh, fw) if rot in (90, 270) else (fw, fh)
        ix, iy, iw, ih = pixel_box(box, dw, dh, dw / self.plan_w, dh / self.plan_h)
        # the display box in coded pixels (before the display rotation)
        if rot == 90:
            cx, cy, cw, ch = fw - iy - ih, ix, ih, iw
        elif rot == 180:
            cx, cy, cw, ch = fw - ix - iw, fh - iy - ih, iw, ih
        elif rot == 270:
            cx, cy, cw, ch = iy, fh - ix - iw, ih, iw
        else:
            cx, cy, cw, ch = ix, iy, iw, ih
        k = rot // 90
        out = av.VideoFrame(iw, ih, name)
        for i, plane in enumerate(frame.planes):
            subx = max(1, round(fw / plane.width))
            suby = max(1, round(fh / plane.height))
            region = plane_view(frame, i)[cy // suby:cy // suby + ch // suby, cx // subx:cx // subx + cw // subx]
            if k:
                region = np.rot90(region, k)
            dst = plane_view(out, i)
            dst[: region.shape[0], : region.shape[1]] = region
        out.colorspace = frame.colorspace
        out.color_range = JPEG if name.startswith("yuvj") else frame.color_range
        return out

    def _render(self, frame: av.VideoFrame, box: Box) -> av.VideoFrame:
        cropped = self.crop(frame, box)
        return self._scaler(cropped).reformat(
            cropped, self.out_w, self.out_h, "yuv420p", src_colorspace=BT709, dst_colorspace=BT709,
            interpolation=LANCZOS, dst_color_range=MPEG, threads=1,
        )

    def _scaler(self, frame: av.VideoFrame) -> VideoReformatter:
        key = (frame.width, frame.height, frame.format.name)
        sws = self._sws.get(key)
        if sws is None:
            sws = self._sws[key] = VideoReformatter()
            if len(self._sws) > SWS_CACHE:
                self._sws.popitem(last=False)
        else:
            self._sws.move_to_end(key)
        return sws


# --------------------------------------------------------------------------- torch (GPU) path


def lanczos_matrix(src_len: int, start: float, length: float, n_out: int, a: int = 3) -> tuple[np.ndarray, int, int]:
    """Resampling weights mapping source samples [first, last) to ``n_out`` outputs covering
    [start, start + length) (pixel edges), lanczos-``a``, widened when downscaling (antialias),
    edges replicated. Returns (weights (n_out, last - first), first, last)."""
    scale = length / n_out
    stretch = max(scale, 1.0)
    support = a * stretch
    centres = start + (np.arange(n_out) + 0.5) * scale - 0.5
    lo = np.floor(centres - support).astype(np.int64) + 1
    taps = int(math.ceil(2 * support)) + 1
    idx = lo[:, None] + np.arange(taps)[None, :]
    x = (idx - centres[:, None]) / stretch
    w = np.sinc(x) * np.sinc(x / a) * (np.abs(x) < a)
    w /= w.sum(axis=1, keepdims=True)
    idx = np.clip(idx, 0, src_len - 1)
    first, last = int(idx.min()), int(idx.max()) + 1
    m = np.zeros((n_out, last - first), np.float64)
    np.add.at(m, (np.repeat(np.arange(n_out), taps), (idx - first).ravel()), w.ravel())
    return m.astype(np.float32), first, last


class DeviceLanczos:
    """:func:`lanczos_matrix` as tensors on a torch device, cached (a zooming crop asks for new sizes)."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self._weights: dict[tuple, tuple] = {}

    def __call__(self, src_len: int, start: float, length: float, n_out: int):
        key = (src_len, start, length, n_out)
        hit = self._weights.get(key)
        if hit is None:
            m, first, last = lanczos_matrix(src_len, start, length, n_out)
            hit = (self.torch.from_numpy(m).to(self.device), first, last)
            if len(self._weights) > 64:
                self._weights.clear()
            self._weights[key] = hit
        return hit


class TorchFramer(_Framer):
    """The same work with torch on a GPU (also runs on the CPU, slowly: used by the tests).

    Planes are uploaded as they are decoded (``yuv420p``; other formats are converted first),
    turned to the display orientation with ``rot90``, rotated by the user's angle with
    ``grid_sample`` (bicubic) and resampled with separable lanczos-3 matrices built from the
    exact (sub-pixel) crop box: ``out = Wy @ plane @ Wx.T``.
    """

    def __init__(self, device: str, *args, **kwargs):
        import torch

        super().__init__(*args, **kwargs)
        self.torch = torch
        self.device = torch.device(device)
        self._uploaded: tuple[av.VideoFrame, list] | None = None
        self._matrix = DeviceLanczos(torch, self.device)
        self._grids: dict[tuple[int, int], object] = {}  # sampling grids of the horizon fix

    def _upload(self, frame: av.VideoFrame) -> list:
        torch = self.torch
        if self._uploaded is not None and self._uploaded[0] is frame:
            return self._uploaded[1]
        k = self._display_rotation(frame) // 90
        src = frame
        if frame.format.name != "yuv420p" or frame.color_range == JPEG:
            src = frame.reformat(format="yuv420p", src_colorspace=BT709, dst_colorspace=BT709,
                                 dst_color_range=MPEG)
        planes = []
        for i in range(3):
            t = torch.from_numpy(np.ascontiguousarray(plane_view(src, i))).to(self.device, non_blocking=True)
            t = t.float()
            if k:
                t = torch.rot90(t, k, dims=(0, 1))
            planes.append(t)
        if abs(self.rotation) > 1e-9:
            planes = [self._rotate(p) for p in planes]
        self._uploaded = (frame, planes)
        return planes

    def _rotate(self, plane):
        """Rotate clockwise (on screen) by the user's angle about the centre, same size."""
        torch = self.torch
        h, w = plane.shape
        grid = self._grids.get((h, w))
        if grid is None:  # one per plane size (Y; U and V): the angle is the clip's
            th = math.radians(self.rotation)
            c, s = math.cos(th), math.sin(th)
            # output pixel p' samples the source at c + R(-theta) (p' - c), in normalised coordinates
            theta = torch.tensor([[c, s * h / w, 0.0], [-s * w / h, c, 0.0]], dtype=torch.float32, device=plane.device)
            grid = self._grids[(h, w)] = torch.nn.functional.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
        out = torch.nn.functional.grid_sample(
            plane[None, None], grid, mode="bicubic", padding_mode="border", align_corners=False
        )
        return out[0, 0]

    def resample(self, planes: list, box: Box) -> list:
        """Crop + lanczos resize of display-oriented float planes (Y, U, V) to the export size."""
        ph, pw = planes[0].shape
        sx, sy = pw / self.plan_w, ph / self.plan_h
        x, y, w, h = box.x * sx, box.y * sy, box.width * sx, box.height * sy
        outs = []
        for i, p in enumerate(planes):
            div = 1 if i == 0 else 2
            rows, cols = p.shape
            my, y0, y1 = self._matrix(rows, y / div, h / div, self.out_h // div)
            mx, x0, x1 = self._matrix(cols, x / div, w / div, self.out_w // div)
            outs.append(my @ p[y0:y1, x0:x1] @ mx.T)
        return outs

    def _render(self, frame: av.VideoFrame, box: Box) -> av.VideoFrame:
        planes = self.resample(self._upload(frame), box)
        arrays = [p.round_().clamp_(0, 255).to(self.torch.uint8).cpu().numpy() for p in planes]
        return frame_from_planes(arrays, self.out_w, self.out_h)


# --------------------------------------------------------------------------- AI upscaler


class AiFramer(CpuFramer):
    """Crop (CPU), 4x super-resolution network (torch, on the device), lanczos to the export size.

    On a GPU the lanczos runs there too (the same matrices as :class:`TorchFramer`), so only an
    export-size picture comes back: swscale's lanczos of the 4x RGB picture (2432x4320 for a
    608x1080 crop) took 50-75 ms of CPU a frame, and the picture itself is 31 MB against 6 MB.
    """

    def __init__(self, upscale: Callable, device: str, *args, **kwargs):
        import torch

        super().__init__(*args, **kwargs)
        self.torch = torch
        self.upscale = upscale
        self.device = torch.device(device)
        self._matrix = DeviceLanczos(torch, self.device)

    def resize_on_device(self) -> bool:
        return self.device.type != "cpu"

    def _render(self, frame: av.VideoFrame, box: Box) -> av.VideoFrame:
        torch = self.torch
        crop = self.crop(frame, box)
        rgb = crop.reformat(format="rgb24", src_colorspace=BT709).to_ndarray()
        t = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float().div_(255.0)
        with torch.inference_mode():
            up = self.upscale(t)[0]
            if self.resize_on_device():
                up = self._resize(up)  # float32, on this device (the upscaler is loaded on it)
            arr = up.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
        img = av.VideoFrame.from_ndarray(arr, format="rgb24")
        return self._scaler(img).reformat(
            img, self.out_w, self.out_h, "yuv420p", dst_colorspace=BT709, interpolation=LANCZOS,
            dst_color_range=MPEG, threads=1,
        )

    def _resize(self, img):
        """(3, H, W) float on the device -> (3, out_h, out_w), separable lanczos-3."""
        _, h, w = img.shape
        my, y0, y1 = self._matrix(h, 0.0, float(h), self.out_h)
        mx, x0, x1 = self._matrix(w, 0.0, float(w), self.out_w)
        return self.torch.matmul(self.torch.matmul(my, img[:, y0:y1, x0:x1]), mx.T)
