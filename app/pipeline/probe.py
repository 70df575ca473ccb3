"""Probe a media file with PyAV: what it is and whether Reelforge can edit it.

Pure pipeline module (no Qt, no storage). One pass over the file: the first video frame is
decoded (so a file we accept is known to decode), every other video packet is only demuxed,
which gives the real frame count, the real end of the video (a file that stops short of what
its header promises is truncated) and the frame-timestamp spread (variable frame rate). Other
streams are discarded by the demuxer (audio is only looked at where the container states no
video duration, e.g. Matroska), so a 90-minute 1080p file costs one sequential read plus
about 1 s of CPU per 160,000 packets. MPEG-TS and raw streams state no duration, so a cut one
reads as a shorter, valid video.

Every refusal is a :class:`ProbeError` whose message is meant for the user: it names the file
and says what is wrong with it.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import numpy as np
from av.stream import Discard

from app.pipeline.decode import local_file, main_video_stream
from app.pipeline.hashing import sha256_file

__all__ = ["MAX_DIMENSION", "MediaInfo", "ProbeError", "probe", "sha256_file"]

# FFmpeg's own log lines (e.g. "moov atom not found") must never reach stderr. With PyAV's level
# at None its no-op log callback is installed; if the application configured a level on purpose
# (logs then go to Python's `logging`), leave that alone.
if av.logging.get_level() is None:
    av.logging.set_level(None)

MAX_DIMENSION = 8192  # "8K": the largest width or height Reelforge accepts

# Packets fed to the decoder while looking for the first frame (a stream cut mid-GOP can need a
# few hundred before its first keyframe); after that the file is declared undecodable.
_MAX_DECODE_PACKETS = 1000

# Demuxers that "find" a picture in any text or binary file (ANSI art, binary text).
_TEXT_FORMATS = {"tty", "bin", "xbin", "adf", "idf"}
_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}
# Containers whose header states the true duration / frame count (so a shortfall means the
# file was cut). Others (MPEG-TS, raw streams, FLV...) only estimate it.
_INDEXED_FORMATS = {"mov", "mp4", "matroska", "webm", "avi"}
# ISO base media (MP4/MOV) top-level box types, to tell a truncated MP4 from a non-video file.
_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"moof",
              b"mfra", b"meta", b"sidx", b"styp", b"pdin", b"junk"}


class ProbeError(Exception):
    """The file cannot be used. ``str(err)`` is a user-facing sentence naming the file.

    ``kind`` is a short machine-readable reason: missing, not_a_file, empty, unreadable,
    not_video, image, no_video, truncated, damaged, undecodable, unsupported, too_large.
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, kind: str = "invalid"):
        super().__init__(message)
        self.path = os.fspath(path) if path is not None else None
        self.kind = kind


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found.

    ``width``/``height`` are the display size: the coded size with width and height swapped when
    ``rotation`` is 90 or 270. ``rotation`` is the display-matrix rotation normalised to
    0/90/180/270 degrees counter-clockwise, the convention of PyAV's ``VideoFrame.rotation`` and
    ``VideoStream.set_display_rotation``: turning the decoded picture counter-clockwise by
    ``rotation`` shows it upright, i.e. ``np.rot90(img, rotation // 90)`` on an HxWxC array. (A
    portrait iPhone clip, which ffprobe lists as "rotation of -90.00 degrees", reports 270.)
    ``fps`` is the average frame rate (frames / video duration), ``duration`` the seconds of
    video from its first frame to the end of its last, ``frame_count`` the video packets in the
    file. ``container`` is the short format name (mp4, mov, matroska, ...).
    """

    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    fps: float
    vfr: bool
    duration: float
    frame_count: int
    codec: str
    pix_fmt: str
    bit_depth: int
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    container: str


# The last few files described, by path and what stat says of them: the probe reads every video
# packet (a two-hour file is gigabytes), and a drop checks a file before the import probes it again.
_SEEN: dict[tuple, MediaInfo] = {}
_SEEN_MAX = 16
_SEEN_LOCK = threading.Lock()  # imports run on pool threads


def _signature(p: Path) -> tuple | None:
    try:
        st = p.stat()
    except OSError:
        return None
    return (str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe the video file at ``path``, or raise :class:`ProbeError` saying why it is unusable.
    A file described a moment ago and unchanged since (same inode, size and times) is not read
    again."""
    p = Path(os.fspath(path))
    sig = _signature(p)
    with _SEEN_LOCK:
        seen = _SEEN.get(sig) if sig is not None else None
    if seen is not None:
        return seen
    info = _probe(p)
    if sig is not None and _signature(p) == sig:  # not written to while it was read
        with _SEEN_LOCK:
            if len(_SEEN) >= _SEEN_MAX:
                _SEEN.pop(next(iter(_SEEN)))
            _SEEN[sig] = info
    return info


def _probe(p: Path) -> MediaInfo:
    name = f"'{p.name or p}'"
    head = _check_file(p, name)
    try:
        container = av.open(local_file(p), metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise _unopenable(p, name, head) from None
    except (PermissionError, av.error.PermissionError):
        raise ProbeError(f"{name} cannot be read: permission denied", path=p, kind="unreadable") from None
    except (av.FFmpegError, OSError) as e:
        raise ProbeError(f"{name} could not be opened: {_reason(e)}", path=p, kind="damaged") from None
    with container:
        return _probe_container(container, p, name)


# --- file-level checks -----------------------------------------------------------------------


def _check_file(p: Path, name: str) -> bytes:
    where = f" ({p})" if str(p) != p.name else ""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ProbeError(f"{name} does not exist{where}", path=p, kind="missing") from None
    except NotADirectoryError:
        raise ProbeError(f"{name} does not exist{where}", path=p, kind="missing") from None
    except PermissionError:
        raise ProbeError(f"{name} cannot be read: permission denied", path=p, kind="unreadable") from None
    except OSError as e:
        raise ProbeError(f"{name} cannot be read: {_reason(e)}", path=p, kind="unreadable") from None
    if stat.S_ISDIR(st.st_mode):
        raise ProbeError(f"{name} is a folder, not a video file", path=p, kind="not_a_file")
    if not stat.S_ISREG(st.st_mode):
        raise ProbeError(f"{name} is not a regular file", path=p, kind="not_a_file")
    if st.st_size == 0:
        raise ProbeError(f"{name} is empty (0 bytes)", path=p, kind="empty")
    try:
        with open(p, "rb") as f:
            return f.read(64)
    except PermissionError:
        raise ProbeError(f"{name} cannot be read: permission denied", path=p, kind="unreadable") from None
    except OSError as e:
        raise ProbeError(f"{name} cannot be read: {_reason(e)}", path=p, kind="unreadable") from None


def _unopenable(p: Path, name: str, head: bytes) -> ProbeError:
    """FFmpeg recognised no format: explain a damaged MP4/MOV or Matroska, else "not a video"."""
    if head[4:8] in _ISO_BOXES:
        broken = _iso_damage(p)
        if broken == "truncated":
            return ProbeError(
                f"{name} is truncated: the file ends before the end of its data and has no index "
                "('moov' box); it was probably not copied completely or the recording did not finish",
                path=p, kind="truncated")
        if broken == "no_moov":
            return ProbeError(f"{name} is damaged: it has no index ('moov' box), so its video cannot be read",
                              path=p, kind="damaged")
        return ProbeError(f"{name} is damaged: its MP4/MOV structure cannot be read", path=p, kind="damaged")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ProbeError(f"{name} is a damaged or truncated Matroska/WebM file that cannot be read",
                          path=p, kind="damaged")
    if head.startswith(b"%PDF"):
        return ProbeError(f"{name} is a PDF document, not a video file", path=p, kind="not_video")
    return ProbeError(f"{name} is not a video file (its format was not recognised)", path=p, kind="not_video")


def _iso_damage(p: Path) -> str:
    """Walk the top-level boxes of an ISO-BMFF file: 'truncated', 'no_moov' or 'bad'."""
    size = p.stat().st_size
    seen = set()
    pos = 0
    with open(p, "rb") as f:
        for _ in range(100_000):
            if pos == size:
                return "bad" if b"moov" in seen else "no_moov"
            if pos + 8 > size:
                return "truncated"
            f.seek(pos)
            hdr = f.read(16)
            box, kind = int.from_bytes(hdr[:4], "big"), hdr[4:8]
            if not all(0x20 <= c < 0x7F for c in kind):
                return "bad"
            header = 8
            if box == 1:
                if len(hdr) < 16:
                    return "truncated"
                box, header = int.from_bytes(hdr[8:16], "big"), 16
            elif box == 0:  # extends to the end of the file
                box = size - pos
            if box < header:
                return "bad"
            seen.add(kind)
            if pos + box > size:
                return "truncated"
            pos += box
    return "bad"


# --- the container ----------------------------------------------------------------------------


def _probe_container(c, p: Path, name: str) -> MediaInfo:
    fmt_names = c.format.name.split(",")
    if _TEXT_FORMATS.intersection(fmt_names):
        raise ProbeError(f"{name} is not a video file", path=p, kind="not_video")

    vs = main_video_stream(c)
    audio = [s for s in c.streams.audio if s.codec_context is not None]
    if vs is None:
        if audio or c.streams.audio:
            raise ProbeError(f"{name} has no video stream (audio only)", path=p, kind="no_video")
        raise ProbeError(f"{name} is not a video file (it has no video stream)", path=p, kind="no_video")
    if "image2" in fmt_names or any(n.endswith("_pipe") for n in fmt_names):
        raise ProbeError(f"{name} is a still image, not a video", path=p, kind="image")

    cc = vs.codec_context
    if cc is None:
        codec = getattr(getattr(vs, "codec", None), "name", None) or "unknown"
        raise ProbeError(f"{name} uses the video codec '{codec}', which Reelforge cannot decode",
                         path=p, kind="unsupported")
    if cc.name in _TEXT_CODECS:
        raise ProbeError(f"{name} is not a video file", path=p, kind="not_video")
    _check_size(cc.width, cc.height, name, p)

    # The header's duration, where the container has a trustworthy one: the video stream's own
    # (exact: MP4/MOV, AVI; already shortened by an edit list) or only the whole file's (Matroska),
    # which is the longest stream's, so then the other streams' ends are tracked too.
    indexed = bool(_INDEXED_FORMATS.intersection(fmt_names))
    declared_video = float(vs.duration * vs.time_base) if indexed and vs.duration and vs.time_base else None
    declared_file = c.duration / 1_000_000 if indexed and not declared_video and c.duration else None
    others = [s for s in c.streams.audio if s is not vs] if declared_file else []
    for s in c.streams:
        if s is not vs and s not in others:
            s.discard = Discard.all

    scan = _scan(c, vs, others)
    tb = vs.time_base or Fraction(1, 90_000)
    got = float(scan.span * tb)

    # Truncation: reading failed, or the file holds less than its header says.
    declared = declared_video or declared_file
    of = f" of its {declared:.1f} s" if declared else ""
    if scan.demux_error is not None and (scan.count == 0 or not declared or got < declared - 0.5):
        raise ProbeError(
            f"{name} is truncated or damaged: reading stopped after {got:.1f} s{of} of video "
            f"({_reason(scan.demux_error)})", path=p, kind="truncated")
    if declared_video and got < declared_video - max(0.5, 0.01 * declared_video):
        raise ProbeError(
            f"{name} is truncated: its video stops after {got:.1f} s{of} ({scan.count} frames are in the file)",
            path=p, kind="truncated")
    if declared_file:
        start = c.start_time / 1_000_000 if c.start_time else 0.0
        end = max([got + float(scan.first_pts * tb) if scan.pts else got] + list(scan.other_ends.values()))
        if end - start < declared_file - max(0.5, 0.01 * declared_file):
            raise ProbeError(
                f"{name} is truncated: it stops after {end - start:.1f} s{of} ({scan.count} video frames "
                "are in the file)", path=p, kind="truncated")

    frame = scan.first_frame
    if frame is None:
        if scan.count == 0:
            raise ProbeError(f"{name} has a video stream but no video frames", path=p, kind="undecodable")
        why = f" ({_reason(scan.decode_error)})" if scan.decode_error is not None else ""
        raise ProbeError(f"{name} is damaged: none of its video frames could be decoded{why}",
                         path=p, kind="undecodable")

    if scan.count < 2:  # a one-frame GIF or video: nothing to play, trim or slow down
        raise ProbeError(f"{name} holds a single picture: a still image, not a video", path=p, kind="image")

    coded_w, coded_h = frame.width, frame.height
    _check_size(coded_w, coded_h, name, p)
    rotation = _rotation(frame, vs)
    disp_w, disp_h = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)

    fps, duration, vfr = _timing(scan, vs, tb, declared_video)
    fmt = frame.format
    bit_depth = (fmt.components[0].bits if fmt.components else 0) or 8

    a = audio[0].codec_context if audio else None
    channels = None
    if a is not None:
        layout = getattr(a, "layout", None)
        channels = int(getattr(layout, "nb_channels", 0) or getattr(a, "channels", 0) or 0) or None
    return MediaInfo(
        width=disp_w, height=disp_h, coded_width=coded_w, coded_height=coded_h, rotation=rotation,
        fps=fps, vfr=vfr, duration=duration, frame_count=scan.count,
        codec=cc.name, pix_fmt=fmt.name, bit_depth=int(bit_depth),
        has_audio=a is not None,
        audio_codec=a.name if a is not None else None,
        audio_sample_rate=int(a.sample_rate) if a is not None and a.sample_rate else None,
        audio_channels=channels,
        container=_container_name(fmt_names, p),
    )


def _check_size(w: int, h: int, name: str, p: Path) -> None:
    if w > MAX_DIMENSION or h > MAX_DIMENSION:
        raise ProbeError(
            f"{name} is {w}x{h}, which is larger than 8K ({MAX_DIMENSION}x{MAX_DIMENSION}); "
            "Reelforge does not support videos that large", path=p, kind="too_large")


class _Scan:
    __slots__ = ("count", "pts", "max_pts", "dur_at_max", "dur_sum", "first_frame", "decode_error",
                 "demux_error", "span", "first_pts", "other_ends")

    def __init__(self) -> None:
        self.count = 0
        self.pts: list[int] = []
        self.max_pts: int | None = None
        self.dur_at_max = 0
        self.dur_sum = 0
        self.first_frame = None
        self.decode_error: Exception | None = None
        self.demux_error: Exception | None = None
        self.span = 0  # time-base ticks from the first frame to the end of the last
        self.first_pts = 0
        self.other_ends: dict[int, float] = {}  # stream index -> end of its last packet, seconds


def _scan(c, vs, others: list) -> _Scan:
    """Decode until the first frame; demux (only) every video packet for count and timestamps.

    Packets of ``others`` are only looked at for where they end.
    """
    scan = _Scan()
    fed = 0
    pts = scan.pts
    append = pts.append
    vindex = vs.index
    ends: dict[int, int] = {}
    try:
        for pkt in c.demux(vs, *others):
            if pkt.stream_index != vindex:
                ts = pkt.pts if pkt.pts is not None else pkt.dts
                if ts is not None:
                    end = ts + (pkt.duration or 0)
                    if end > ends.get(pkt.stream_index, end - 1):
                        ends[pkt.stream_index] = end
                continue
            if pkt.size == 0:  # the flush packet at the end
                if scan.first_frame is None:
                    _decode(vs, None, scan)
                continue
            if scan.first_frame is None and fed < _MAX_DECODE_PACKETS:
                fed += 1
                _decode(vs, pkt, scan)
            if pkt.is_discard:  # before the edit list's start: decoded for reference, never shown
                continue
            scan.count += 1
            dur = pkt.duration or 0
            scan.dur_sum += dur
            ts = pkt.pts
            if ts is None:
                ts = pkt.dts
            if ts is not None:
                append(ts)
                if scan.max_pts is None or ts >= scan.max_pts:
                    scan.max_pts, scan.dur_at_max = ts, dur
    except av.FFmpegError as e:
        scan.demux_error = e
    if scan.first_frame is None:
        _decode(vs, None, scan)
    for s in others:
        if s.index in ends and s.time_base:
            scan.other_ends[s.index] = float(ends[s.index] * s.time_base)
    if pts:
        last = scan.dur_at_max or _median_delta(scan) or 0
        scan.first_pts = min(pts)
        scan.span = scan.max_pts - scan.first_pts + last
    else:
        scan.span = scan.dur_sum
    return scan


def _decode(vs, pkt, scan: _Scan) -> None:
    try:
        frames = vs.decode(pkt)
    except av.error.EOFError:
        return
    except (av.FFmpegError, ValueError, MemoryError) as e:  # ValueError: PyAV's own checks
        scan.decode_error = scan.decode_error or e
        return
    if frames and scan.first_frame is None:
        scan.first_frame = frames[0]


def _deltas(scan: _Scan) -> np.ndarray:
    if len(scan.pts) < 2:
        return np.empty(0, np.int64)
    arr = np.asarray(scan.pts, dtype=np.int64)
    arr.sort()
    d = np.diff(arr)
    return d[d > 0]


def _median_delta(scan: _Scan) -> int:
    d = _deltas(scan)
    return int(np.median(d)) if d.size else 0


def _timing(scan: _Scan, vs, tb: Fraction, header: float | None) -> tuple[float, float, bool]:
    """(average fps, video duration in seconds, variable frame rate?).

    ``header`` is the video stream's duration from an indexed container; it is exact where the
    demuxed end is only known to within the last frame's duration, so it wins when they agree.
    """
    duration = float(scan.span * tb) if scan.span else 0.0
    if header and duration:
        step = float(_median_delta(scan) * tb)
        if abs(header - duration) <= max(2 * step, 0.05):
            duration = header
    avg = vs.average_rate or vs.guessed_rate or vs.base_rate
    avg_f = float(avg) if avg and 0 < float(avg) < 10_000 else 0.0
    if duration > 0 and scan.count:
        fps = scan.count / duration
        if avg_f and abs(avg_f / fps - 1) < 0.005:
            fps = avg_f  # the container's exact rational (e.g. 30000/1001)
    else:
        fps = avg_f
        if fps and scan.count:
            duration = scan.count / fps
    d = _deltas(scan)
    vfr = False
    if d.size >= 2:
        med = float(np.median(d))
        tol = max(0.1 * med, 1.5)  # jitter of a coarse (e.g. millisecond) time base is not VFR
        off = int(np.count_nonzero(np.abs(d - med) > tol))
        vfr = off > max(1, 0.02 * d.size)
    return fps, duration, vfr


def _rotation(frame, vs) -> int:
    """Display rotation, counter-clockwise degrees in {0, 90, 180, 270}."""
    deg: float | None = None
    try:
        deg = frame.rotation  # av_display_rotation_get: counter-clockwise, in [-180, 180]
    except (AttributeError, ValueError, TypeError):
        deg = None
    if not deg:
        # Older FFmpeg exported the matrix as a "rotate" tag, which is clockwise.
        tag = (vs.metadata or {}).get("rotate")
        try:
            deg = -float(tag) if tag is not None else deg
        except ValueError:
            pass
    if not deg:
        return 0
    return int(round(float(deg) / 90.0)) % 4 * 90


def _container_name(fmt_names: list[str], p: Path) -> str:
    ext = p.suffix.lower().lstrip(".")
    if ext and ext in fmt_names:
        return ext
    if "mp4" in fmt_names and ext in ("m4v", "3gp", "3g2"):
        return ext
    if "mp4" in fmt_names:
        return "mp4"
    return fmt_names[0]


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(msg).rstrip(".")
