"""Preview decoding off the GUI thread: a frame server with a cache, all-intra preview proxies, posters.

The decoder thread serves the latest request only (scrubbing never queues up stale frames),
decodes forward without seeking when the wanted frame is just ahead (playback, frame step),
and keeps recently shown frames in an LRU cache. When a preview proxy exists (every frame a
keyframe, at most 960 px wide, generated in the background) seeks decode one small frame
instead of up to a whole GOP of full-size ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from app.pipeline.decode import (
    decode_frames,
    display_rotation_of,
    local_file,
    main_video_stream,
    media_origin,
    quiet_ffmpeg,
)
from app.pipeline.frames import source_matrix, untagged_matrix
from app.throttle import every
from app.ui.workers import lower_this_thread

log = logging.getLogger(__name__)

PREVIEW_MAX_W = 960
PROXY_MAX_W = 960
# Longer media is previewed from the file itself: a proxy is built for the whole file (about 40
# times its size, and half an hour of a 2-core machine for a 90-minute game, started again in
# every session), where seeks in the original take a fraction of a second (0.05-0.6 s with 2-10 s
# GOPs, measured on 720p games)
PROXY_MAX_MEDIA_S = 10 * 60
PROXY_VERSION = "1"
PROXY_CACHE_MAX_BYTES = 20 * 1024**3  # about 2 h of 1080p footage as proxies
PROXY_GRACE_S = 7 * 86400  # a proxy no live clip needs is kept this long (an undone delete finds it)
PART_GRACE_S = 3600  # an unfinished proxy not written to for this long was left by a crash


def frame_to_rgb(frame: av.VideoFrame, max_w: int, rot: int) -> np.ndarray:
    """RGB array of the display-oriented frame, at most ``max_w`` wide (display width)."""
    w, h = frame.width, frame.height
    disp_w = h if rot in (90, 270) else w
    scale = min(1.0, max_w / max(disp_w, 1))
    tw, th = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    # the matrix the export reads it by (an untagged HD frame is BT.709, not swscale's BT.601)
    rgb = frame.reformat(width=tw, height=th, format="rgb24", src_colorspace=source_matrix(frame)).to_ndarray()
    if rot:
        # PyAV rotation is counter-clockwise degrees to apply for display
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rot // 90))
    return rgb


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    h, w = rgb.shape[:2]
    rgb = np.ascontiguousarray(rgb)
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


PostFn = Callable[[np.ndarray, float], np.ndarray]


def preview_image(frame: av.VideoFrame, max_w: int, rot: int, post: PostFn | None, t: float) -> QImage:
    """A decoded frame as the preview shows it (``post`` draws on the RGB array, e.g. the spotlight)."""
    rgb = frame_to_rgb(frame, max_w, rot)
    if post is not None:
        rgb = post(rgb, t)
    return rgb_to_qimage(rgb)


# --------------------------------------------------------------------------- proxies


def proxy_path(cache_dir: Path, media_path: str) -> Path:
    st = os.stat(media_path)
    key = hashlib.sha1(f"{PROXY_VERSION}:{os.path.abspath(media_path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return Path(cache_dir) / f"{key.hexdigest()[:24]}.mkv"


def prune_proxies(cache_dir: Path, wanted: list[str], max_bytes: int = PROXY_CACHE_MAX_BYTES,
                  grace_s: float = PROXY_GRACE_S, now: float | None = None) -> tuple[int, int]:
    """Keep the proxy cache from growing without end: delete the leftovers of interrupted builds,
    the proxies that no media in ``wanted`` needs once unused for ``grace_s``, then the least
    recently used ones until the cache fits in ``max_bytes``. Returns (files removed, bytes freed).
    On a worker thread: it stats every file of the cache."""
    now = time.time() if now is None else now
    keep = set()
    for media in wanted:
        try:
            keep.add(proxy_path(cache_dir, media).name)
        except OSError:  # the media file is gone: its proxy is not wanted
            pass
    removed = freed = 0
    lru: list[tuple[float, int, Path]] = []
    try:
        files = list(Path(cache_dir).iterdir())
    except OSError:
        return 0, 0

    def remove(path: Path, size: int) -> bool:
        nonlocal removed, freed
        try:
            path.unlink()
        except OSError:
            return False
        removed, freed = removed + 1, freed + size
        return True

    for f in files:
        if f.suffix != ".mkv":
            continue
        try:
            st = f.stat()
        except OSError:
            continue
        age = now - st.st_mtime
        if f.name.endswith(".part.mkv"):
            if age > PART_GRACE_S:
                remove(f, st.st_size)
        elif f.name not in keep and age > grace_s:
            remove(f, st.st_size)
        else:
            lru.append((st.st_mtime, st.st_size, f))
    total = sum(size for _, size, _ in lru)
    for _, size, path in sorted(lru, key=lambda e: e[0]):  # least recently used first
        if total <= max_bytes:
            break
        if remove(path, size):
            total -= size
    if removed:
        log.info("proxy cache: removed %d files, %.1f MB", removed, freed / 1e6)
    return removed, freed


def make_proxy(media_path: str, dest: Path, cancel: threading.Event | None = None,
               max_w: int = PROXY_MAX_W, progress: Callable[[float], None] | None = None) -> Path | None:
    """All-intra MJPEG proxy with the source's timestamps and display rotation baked in;
    ``progress(fraction)`` about four times a second."""
    quiet_ffmpeg()
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part.mkv")
    try:
        with av.open(local_file(media_path)) as src, av.open(local_file(tmp), "w", format="matroska") as out:
            vs = main_video_stream(src)
            vs.thread_type = "AUTO"
            ostream = None
            origin = media_origin(src)
            last_ms = -1
            total = float(vs.duration * vs.time_base) if vs.duration and vs.time_base else (
                src.duration / 1e6 if src.duration else 0.0)
            tell = every(0.25, progress) if progress is not None and total > 0 else None
            for frame in decode_frames(src, vs, Path(media_path).name):
                if cancel is not None and cancel.is_set():
                    raise InterruptedError
                rgb = frame_to_rgb(frame, max_w, display_rotation_of(frame, 0))
                if ostream is None:
                    ostream = out.add_stream("mjpeg", rate=30)
                    ostream.width, ostream.height = rgb.shape[1], rgb.shape[0]
                    ostream.pix_fmt = "yuvj420p"
                    ostream.codec_context.time_base = Fraction(1, 1000)
                    ostream.options = {"q:v": "4"}
                    ostream.codec_context.qmin = 2
                    ostream.codec_context.qmax = 6
                t = float(frame.pts * vs.time_base) - origin if frame.pts is not None else (last_ms + 33) / 1000
                if tell is not None:
                    tell(min(max(t / total, 0.0), 1.0))
                ms = max(round(t * 1000), last_ms + 1)
                last_ms = ms
                of = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format="yuvj420p", dst_colorspace=untagged_matrix(rgb.shape[0]))  # read back by frame_to_rgb
                of.pts = ms
                of.time_base = Fraction(1, 1000)
                for pkt in ostream.encode(of):
                    out.mux(pkt)
            if ostream is not None:
                for pkt in ostream.encode():
                    out.mux(pkt)
        os.replace(tmp, dest)
        return dest
    except InterruptedError:
        tmp.unlink(missing_ok=True)
        return None
    except Exception:
        log.warning("could not build a preview proxy for %s", media_path, exc_info=True)
        tmp.unlink(missing_ok=True)
        return None


class ProxyBuilder(QObject):
    """Builds proxies one at a time on a background thread."""

    ready = Signal(str, str)  # media path, proxy path
    progress = Signal(str, float)  # media path, fraction built (a few times a second)

    def __init__(self, cache_dir: Path, parent=None):
        super().__init__(parent)
        self.cache_dir = Path(cache_dir)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._queue: list[str] = []
        self._thread: threading.Thread | None = None

    def existing(self, media_path: str) -> str | None:
        """The proxy of ``media_path`` if it is built; using it marks it recently used (the
        cache drops the least recently used first)."""
        try:
            p = proxy_path(self.cache_dir, media_path)
            os.utime(p)
        except OSError:  # no proxy yet, or the media is gone
            return None
        return str(p)

    def request(self, media_path: str) -> None:
        if self.existing(media_path):
            return
        with self._lock:
            if media_path not in self._queue:
                self._queue.append(media_path)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True, name="reelforge-proxy")
                self._thread.start()

    def _loop(self) -> None:
        lower_this_thread()  # a background build: the preview and the GUI come first
        while not self._cancel.is_set():
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                path = self._queue.pop(0)
            try:
                dest = proxy_path(self.cache_dir, path)
            except OSError:
                continue
            out = make_proxy(path, dest, self._cancel, progress=lambda f, path=path: self._tell(path, f))
            if out is not None:
                try:
                    self.ready.emit(path, str(out))
                except RuntimeError:
                    return

    def _tell(self, path: str, fraction: float) -> None:
        try:
            self.progress.emit(path, fraction)
        except RuntimeError:  # the window is gone
            pass

    def stop(self) -> None:
        self._cancel.set()


# --------------------------------------------------------------------------- frame server


def frame_error_words(exc: BaseException) -> str:
    """Why the preview cannot show a frame, in the user's words (not "[Errno 2] ... 'file:/...'")."""
    if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == 2:
        return ("Cannot show this clip: its video is missing from the library's media folder "
                "(deleted or moved outside Reelforge). Import the file again to bring it back.")
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == 13:
        return "Cannot show this clip: its video in the library's media folder cannot be read (permission denied)."
    return f"Cannot show this frame: {exc}"


class VideoReader:
    """One file's video, decoded forward from the last seek: ``frame_at(t)`` for any t, sequential reads cheap.

    ``proxy``: the file is a preview proxy (all-intra, so seeking is cheap; display rotation baked in).
    """

    def __init__(self, path: str, proxy: bool = False):
        quiet_ffmpeg()
        self.path = path
        self.name = Path(path).name  # how a decode error names the file (in the log)
        self.proxy = proxy
        self.container = av.open(local_file(path))
        self.stream = main_video_stream(self.container)
        self.stream.thread_type = "AUTO"
        self.tb = self.stream.time_base
        self.origin = media_origin(self.container)
        rate = self.stream.average_rate or self.stream.guessed_rate or 30
        self.interval = 1.0 / float(rate)
        self.iter = None
        self.last: tuple[float, av.VideoFrame] | None = None  # last decoded
        self.pending: tuple[float, av.VideoFrame] | None = None  # decoded, not yet shown
        self.forward_limit = 0.3 if proxy else 2.0  # decode forward instead of seeking up to this far ahead

    @classmethod
    def reuse(cls, reader: VideoReader | None, path: str, src: str) -> VideoReader:
        """``reader`` if it is open on ``src`` (the file frames of ``path`` are decoded from: the
        media itself or its proxy), else ``src`` opened and ``reader`` closed."""
        if reader is not None and reader.path == src:
            return reader
        if reader is not None:
            reader.close()
        return cls(src, proxy=src != path)

    def image(self, frame: av.VideoFrame, max_w: int, post: PostFn | None = None, t: float = 0.0) -> QImage:
        """A frame of this file as the preview shows it (display-oriented, at most ``max_w`` wide)."""
        return preview_image(frame, max_w, 0 if self.proxy else display_rotation_of(frame, 0), post, t)

    def time_of(self, f: av.VideoFrame) -> float:
        return float(f.pts * self.tb) - self.origin if f.pts is not None else 0.0

    def seek(self, t: float) -> None:
        target = max(t - self.interval, 0.0)
        self.container.seek(int((target + self.origin) / self.tb), backward=True, any_frame=False,
                            stream=self.stream)
        self.iter = decode_frames(self.container, self.stream, self.name)
        self.last = None
        self.pending = None

    def _next(self):
        if self.pending is not None:
            f, self.pending = self.pending, None
            return f
        if self.iter is None:
            self.seek(0.0)
        try:
            f = next(self.iter)
        except StopIteration:
            return None
        return self.time_of(f), f

    def frame_at(self, t: float) -> tuple[float, av.VideoFrame] | None:
        """The frame shown at ``t``: the last frame whose time is <= t + half an interval."""
        half = self.interval / 2
        if self.last is None or t < self.last[0] - half or t - self.last[0] > self.forward_limit:
            self.seek(t)
            cur = self._next()
            if cur is None:
                return None
            if cur[0] > t + half and t > 0:  # landed after the target (bad index)
                self.container.seek(0, stream=self.stream)
                self.iter = decode_frames(self.container, self.stream, self.name)
                cur = self._next()
                if cur is None:
                    return None
            self.last = cur
        while True:
            nxt = self._next()
            if nxt is None:
                return self.last
            if nxt[0] > t + half:
                self.pending = nxt
                return self.last
            self.last = nxt

    def close(self) -> None:
        self.container.close()


class FrameServer(QObject):
    """Serves preview frames: ``request(path, t)`` -> ``frameReady(serial, t, QImage)``.

    Each ``owner`` (an editor) has one request slot: its newer request replaces its pending one,
    never another owner's, and the slots are served in the order they were filled. Serials are
    unique across owners, so an owner knows its frames by the serials it was given.

    ``_cond`` guards only the request slot and the proxies (the GUI thread takes it to post a
    request, so it is never held while decoding); ``_decoding`` serialises decodes (the loop's
    and ``decode_now``'s) over the open reader and the cache.
    """

    frameReady = Signal(int, float, QImage)
    error = Signal(str)

    def __init__(self, parent=None, cache_frames: int = 90, max_w: int = PREVIEW_MAX_W):
        super().__init__(parent)
        self.max_w = max_w
        self._cache: OrderedDict[tuple, QImage] = OrderedDict()
        self._cache_frames = cache_frames
        self._cond = threading.Condition()
        self._decoding = threading.Lock()
        self._req: dict[object, tuple[int, str, float, PostFn | None, object]] = {}  # owner -> its request
        self._serial = 0
        self._stop = False
        self._open: VideoReader | None = None
        self._proxies: dict[str, str] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True, name="reelforge-decoder")
        self._thread.start()

    def set_proxy(self, media_path: str, proxy: str | None) -> None:
        with self._cond:
            if proxy:
                self._proxies[media_path] = proxy
            else:
                self._proxies.pop(media_path, None)

    def source_for(self, path: str) -> str:
        """The file that frames of ``path`` are decoded from: its proxy once built, else itself
        (a plain dict read, from any thread)."""
        return self._proxies.get(path, path)

    def request(self, path: str, t: float, post: PostFn | None = None, post_key: object = None,
                owner: object = None) -> int:
        with self._cond:
            self._serial += 1
            self._req.pop(owner, None)  # to the back of the line
            self._req[owner] = (self._serial, path, float(t), post, post_key)
            self._cond.notify_all()
            return self._serial

    def decode_now(self, path: str, t: float, post: PostFn | None = None) -> QImage | None:
        """Synchronous decode on the caller's thread (benchmarks and tests; never the GUI)."""
        with self._decoding:
            return self._produce(path, t, post, None)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2)

    def _produce(self, path: str, t: float, post: PostFn | None, post_key) -> QImage | None:
        src = self.source_for(path)
        self._open = VideoReader.reuse(self._open, path, src)
        got = self._open.frame_at(t)
        if got is None:
            return None
        ft, frame = got
        key = (src, round(ft * 1000), post_key)
        img = self._cache.get(key)
        if img is not None:
            self._cache.move_to_end(key)
            return img
        img = self._open.image(frame, self.max_w, post, t)
        self._cache[key] = img
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
        return img

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._req or self._stop)
                stop = self._stop
                req = None if stop else self._req.pop(next(iter(self._req)))
            with self._decoding:
                if stop:
                    if self._open is not None:
                        self._open.close()
                    return
                serial, path, t, post, post_key = req
                try:
                    img = self._produce(path, t, post, post_key)
                except Exception as exc:  # noqa: BLE001 - shown in the preview
                    log.warning("preview decode failed", exc_info=True)
                    if self._open is not None:
                        try:
                            self._open.close()
                        except Exception:
                            pass
                        self._open = None
                    try:
                        self.error.emit(frame_error_words(exc))
                    except RuntimeError:
                        return
                    continue
            if img is not None:
                try:
                    self.frameReady.emit(serial, t, img)
                except RuntimeError:
                    return


def poster_image(path: str, t: float, box: tuple[int, int] = (320, 180)) -> QImage | None:
    """One frame for a project card, fitted in ``box`` (a portrait frame 320 px wide took 3 times
    the memory of one that fits the card's 16:9 area); runs on a pool thread."""
    quiet_ffmpeg()
    try:
        with av.open(local_file(path)) as c:
            vs = main_video_stream(c)
            vs.thread_type = "AUTO"
            origin = media_origin(c)
            if t > 0:
                c.seek(int((t + origin) / vs.time_base), backward=True, any_frame=False, stream=vs)
            frame = None
            for f in decode_frames(c, vs, Path(path).name):
                frame = f
                if f.pts is None or float(f.pts * vs.time_base) - origin >= t - 0.05:
                    break
            if frame is None:
                return None
            rot = display_rotation_of(frame, 0)
            disp_w, disp_h = (frame.height, frame.width) if rot in (90, 270) else (frame.width, frame.height)
            width = min(box[0], round(box[1] * disp_w / max(disp_h, 1)))
            return rgb_to_qimage(frame_to_rgb(frame, width, rot))
    except Exception:  # noqa: BLE001 - a card without a poster
        log.debug("poster failed for %s", path, exc_info=True)
        return None
