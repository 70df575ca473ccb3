"""Real media for the tests, generated with PyAV (small H.264 files, no fixtures on disk)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

BITS = 10  # frame-index stripes of the "binary" pattern


def frame_index(rgb: np.ndarray) -> int:
    """The frame index a "binary" pattern frame shows (read back from a decoded picture)."""
    h, w = rgb.shape[:2]
    mids = ((np.arange(BITS) + 0.5) * w / BITS).astype(int)
    bits = rgb[h // 4: 3 * h // 4, mids].mean(axis=(0, 2)) > 127
    return int(sum(int(b) << (BITS - 1 - k) for k, b in enumerate(bits)))


def _frame_rgb(pattern: str, w: int, h: int, i: int, fps: float) -> np.ndarray:
    if pattern == "gray":
        return np.full((h, w, 3), 128, np.uint8)
    if pattern == "coords":
        # red = x / 8, green = y / 8 (so the crop origin can be read back), blue = frame index
        xs = (np.arange(w) // 8 % 256).astype(np.uint8)
        ys = (np.arange(h) // 8 % 256).astype(np.uint8)
        img = np.empty((h, w, 3), np.uint8)
        img[:, :, 0] = xs[None, :]
        img[:, :, 1] = ys[:, None]
        img[:, :, 2] = i % 256
        return img
    if pattern == "flash":
        # black, with a white frame once a second (at t = 1, 2, ...)
        on = i > 0 and i % round(fps) == 0
        return np.full((h, w, 3), 255 if on else 0, np.uint8)
    if pattern == "scenes":
        # a hard cut every second (so the encoder starts a GOP there): a new colour gradient each
        # second, with a bar that moves across it
        k = int(i // fps)
        c0 = np.array([(k * 97) % 200 + 30, (k * 53 + 80) % 200 + 30, (k * 151 + 160) % 200 + 30], np.float32)
        ramp = np.linspace(0.4, 1.0, w, dtype=np.float32)[None, :, None]
        img = np.broadcast_to(c0 * ramp, (h, w, 3)).astype(np.uint8)
        x = int(i % fps) * w // int(fps)
        img[:, x:x + max(w // 16, 2)] = 255 - c0.astype(np.uint8)
        return img
    if pattern == "binary":
        # the frame index in binary, most significant bit left: BITS black / white stripes
        bits = (i >> np.arange(BITS - 1, -1, -1)) & 1
        cols = np.minimum(np.arange(w) * BITS // w, BITS - 1)
        return np.repeat((bits[cols] * 255).astype(np.uint8)[None, :, None], h, 0).repeat(3, 2)
    # "bars": moving colour bars with the frame number's parity, cheap to encode
    img = np.zeros((h, w, 3), np.uint8)
    bar = max(w // 8, 1)
    for k in range(8):
        img[:, k * bar:(k + 1) * bar] = ((k * 37 + i * 3) % 256, (k * 91) % 256, (k * 53 + i) % 256)
    return img


def make_video(
    path: Path | str,
    *,
    width: int = 320,
    height: int = 180,
    fps: int = 30,
    duration: float = 2.0,
    audio: bool = False,
    pattern: str = "bars",
    rotation: int = 0,
    ten_bit: bool = False,
    vfr: bool = False,
    gop: int | None = None,
    click_every: float | None = None,
    video_delay: float = 0.0,
    audio_layout: str = "mono",
    tone: float = 0.2,
) -> Path:
    """Write an H.264 MP4 (optionally with AAC audio) and return its path.

    ``rotation`` sets the display-matrix rotation that phones write (90 for portrait);
    ``vfr`` makes frame spacing alternate 1x/2x; ``click_every`` puts a short click in the
    audio once per that many seconds (at the same instants as the ``flash`` pattern).
    ``video_delay``: the video starts that many seconds after the audio (as an MP4 edit list
    writes it for some cameras and screen recorders); the clicks stay on their flashes.
    ``audio_layout`` (e.g. "5.1"): every channel carries the same sound; ``tone``: the 440 Hz
    tone's peak.
    """
    path = Path(path)
    n = max(1, round(duration * fps))
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p10le" if ten_bit else "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "23"}
        # BT.709, said in the file, as a phone's: the export has no colours to convert (the
        # colour tests use make_patches)
        vs.codec_context.colorspace = vs.codec_context.color_primaries = vs.codec_context.color_trc = 1
        vs.codec_context.color_range = 1
        if gop:
            vs.codec_context.gop_size = gop
        vs.codec_context.time_base = Fraction(1, fps * 2)
        if rotation:
            vs.set_display_rotation(rotation)
        astream = None
        if audio:
            astream = out.add_stream("aac", rate=48000)
            astream.layout = audio_layout
        t2 = round(video_delay * fps * 2)  # time in 1/(2*fps) units
        for i in range(n):
            img = _frame_rgb(pattern, width, height, i, fps)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
                format="yuv420p10le" if ten_bit else "yuv420p", dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG)
            frame.pts = t2
            frame.time_base = Fraction(1, fps * 2)
            t2 += (1 if i % 2 else 3) if vfr else 2
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if astream is not None:
            sr = 48000
            total = round((t2 / (fps * 2)) * sr)
            samples = np.zeros(total, np.float32)
            if click_every:
                k = 1
                while k * click_every * sr < total:
                    s = round((k * click_every + video_delay) * sr)
                    samples[s:s + 240] = 0.8
                    k += 1
            else:
                tt = np.arange(total) / sr
                samples[:] = tone * np.sin(2 * np.pi * 440 * tt)
            pos = 0
            while pos < total:
                chunk = samples[pos:pos + 1024]
                channels = len(av.AudioLayout(audio_layout).channels)
                af = av.AudioFrame.from_ndarray(np.repeat(chunk[None, :], channels, 0), format="fltp",
                                                layout=audio_layout)
                af.sample_rate = sr
                af.pts = pos
                af.time_base = Fraction(1, sr)
                pos += len(chunk)
                for pkt in astream.encode(af):
                    out.mux(pkt)
            for pkt in astream.encode():
                out.mux(pkt)
    return path


PATCHES = ((0, 255, 0), (200, 120, 40), (128, 128, 128), (255, 0, 0))  # RGB, one vertical band each


def make_patches(path: Path | str, *, width: int, height: int, colour: str | None, duration: float = 0.5,
                 fps: int = 30) -> Path:
    """An H.264 MP4 of four colour bands (:data:`PATCHES`, left to right) in the colours of
    ``colour``: "bt601" (SD video), "hlg" (10-bit BT.2020 HLG, as phones film HDR), or None
    (BT.709 matrix, untagged). The bands' RGB is in that colour space's own primaries."""
    matrix, tags, pix = {
        "bt601": (Colorspace.ITU601, (6, 6, 6), "yuv420p"),
        "hlg": (Colorspace.BT2020, (9, 9, 18), "yuv420p10le"),
        None: (Colorspace.ITU709, None, "yuv420p"),
    }[colour]
    img = np.zeros((height, width, 3), np.uint8)
    for k, rgb in enumerate(PATCHES):
        img[:, k * width // 4:(k + 1) * width // 4] = rgb
    path = Path(path)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, pix
        vs.options = {"preset": "ultrafast", "crf": "8"}
        cc = vs.codec_context
        if tags:
            cc.colorspace, cc.color_primaries, cc.color_trc = tags
            cc.color_range = 1
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
            format=pix, dst_colorspace=matrix, dst_color_range=ColorRange.MPEG)
        encode_all(out, vs, (frame for _ in range(max(1, round(duration * fps)))))
    return path


def encode_all(out, stream, frames) -> None:
    """Encode ``frames`` into ``stream`` of ``out`` (numbered 0, 1, ... in 1/rate), then flush."""
    for i, frame in enumerate(frames):
        frame.pts, frame.time_base = i, 1 / stream.codec_context.framerate
        for pkt in stream.encode(frame):
            out.mux(pkt)
    for pkt in stream.encode():
        out.mux(pkt)


def make_gif(path: Path | str, frames: int = 1) -> Path:
    """An animated GIF of ``frames`` pictures (one: a still image in a video's clothes)."""
    path = Path(path)
    with av.open(str(path), "w", format="gif") as out:
        s = out.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "rgb8"
        encode_all(out, s, (av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i % 256, np.uint8), format="rgb24")
                            for i in range(frames)))
    return path


def make_audio_only(path: Path | str, duration: float = 1.0) -> Path:
    path = Path(path)
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000)
        a.layout = "mono"
        total = int(48000 * duration)
        pos = 0
        while pos < total:
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            af.sample_rate = 48000
            af.pts = pos
            pos += 1024
            for pkt in a.encode(af):
                out.mux(pkt)
        for pkt in a.encode():
            out.mux(pkt)
    return path


def truncate(src: Path | str, dst: Path | str, fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


# --- inputs that are not (usable) videos, for the probe tests ---------------------------------


def make_faststart(src: Path | str, dst: Path | str) -> Path:
    """Remux ``src`` (no re-encode) with the index ('moov' box) at the front of the file."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for pkt in inp.demux():
            if pkt.dts is None:
                continue
            pkt.stream = streams[pkt.stream.index]
            out.mux(pkt)
    return Path(dst)


def corrupt_payload(src: Path | str, dst: Path | str, seed: int = 0) -> Path:
    """Copy an MP4 with the contents of its 'mdat' box replaced by random bytes.

    The box structure and the index stay intact, so the file opens and demuxes normally but
    no packet holds a decodable frame.
    """
    data = bytearray(Path(src).read_bytes())
    rng = np.random.default_rng(seed)
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = bytes(data[pos + 4:pos + 8])
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            start, end = pos + header, min(pos + size, len(data))
            data[start:end] = rng.bytes(end - start)
        pos += size
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def make_garbage(path: Path | str, size: int = 200_000, seed: int = 0) -> Path:
    Path(path).write_bytes(np.random.default_rng(seed).bytes(size))
    return Path(path)


def make_text(path: Path | str, text: str = "These are the match notes, not a video.\n" * 50) -> Path:
    Path(path).write_text(text)
    return Path(path)


def make_pdf(path: Path | str) -> Path:
    """A minimal (valid) one-page PDF."""
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    Path(path).write_bytes(bytes(out))
    return Path(path)


def make_wav(path: Path | str, duration: float = 1.0, rate: int = 16000) -> Path:
    """A PCM WAV file (audio only)."""
    total = int(rate * duration)
    with av.open(str(path), "w") as out:
        a = out.add_stream("pcm_s16le", rate=rate)
        a.layout = "mono"
        af = av.AudioFrame.from_ndarray(np.zeros((1, total), np.int16), format="s16", layout="mono")
        af.sample_rate = rate
        af.pts = 0
        for pkt in a.encode(af):
            out.mux(pkt)
        for pkt in a.encode():
            out.mux(pkt)
    return Path(path)


def make_image(path: Path | str, width: int = 64, height: int = 48) -> Path:
    """A still PNG picture."""
    with av.open(str(path), "w", format="image2") as out:
        s = out.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = width, height, "rgb24"
        frame = av.VideoFrame.from_ndarray(_frame_rgb("bars", width, height, 0, 1), format="rgb24")
        frame.pts = 0
        for pkt in s.encode(frame):
            out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return Path(path)


def trim_edit_list(src: Path | str, dst: Path | str, start: float, length: float) -> Path:
    """Copy a single-track MP4 from :func:`make_video`, its edit list changed to show only
    ``length`` seconds from ``start`` (as phone galleries "trim" without re-encoding).

    The samples all stay in the file: a correct reader shows the shorter clip, not a truncated one.
    """
    data = bytearray(Path(src).read_bytes())

    def timescale(box: bytes, after: int = 0) -> int:
        i = data.index(box, after)
        return int.from_bytes(data[i + 16:i + 20] if data[i + 4] == 0 else data[i + 24:i + 28], "big")

    movie_scale = timescale(b"mvhd")
    media_scale = timescale(b"mdhd")
    i = data.index(b"elst")
    if data[i + 4] != 0 or int.from_bytes(data[i + 8:i + 12], "big") != 1:
        raise ValueError("expected a version-0 edit list with one entry")
    data[i + 12:i + 16] = round(length * movie_scale).to_bytes(4, "big")
    data[i + 16:i + 20] = round(start * media_scale).to_bytes(4, "big")
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def slices_per_picture(path: Path) -> set[int]:
    """How many slice NAL units (types 1 and 5) each H.264 packet of an MP4 holds (AVCC framing)."""
    counts = set()
    with av.open(str(path)) as c:
        for pkt in c.demux(video=0):
            data, i, n = bytes(pkt), 0, 0
            while i + 5 <= len(data):
                size = int.from_bytes(data[i:i + 4], "big")
                n += (data[i + 4] & 0x1F) in (1, 5)
                i += 4 + size
            if pkt.size:
                counts.add(n)
    return counts


def damage_packets(src: Path | str, dst: Path | str, packets: range, seed: int = 0, kind: str = "video") -> Path:
    """Copy a video with the bytes of some of its ``kind`` ("video" or "audio") packets (by decode
    order) replaced by random ones: the index stays intact, those packets no longer decode (a
    damaged stretch)."""
    data = bytearray(Path(src).read_bytes())
    rng = np.random.default_rng(seed)
    with av.open(str(src)) as c:
        stream = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        spans = [(p.pos, p.size) for p in c.demux(stream) if p.size and p.pos is not None]
    for i in packets:
        pos, size = spans[i]
        data[pos:pos + size] = rng.bytes(size)
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def make_two_streams(path: Path | str, duration: float = 1.0, fps: int = 30) -> Path:
    """An MP4 with two video streams: first a small flat grey one (160x90), then the larger
    one (320x180) showing the "binary" frame index."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        streams = []
        for w, h in ((160, 90), (320, 180)):
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"preset": "ultrafast", "crf": "18"}
            streams.append(vs)
        for i in range(max(1, round(duration * fps))):
            for vs, pattern in zip(streams, ("gray", "binary"), strict=True):
                frame = av.VideoFrame.from_ndarray(_frame_rgb(pattern, vs.width, vs.height, i, fps), format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                for pkt in vs.encode(frame):
                    out.mux(pkt)
        for vs in streams:
            for pkt in vs.encode():
                out.mux(pkt)
    return path
