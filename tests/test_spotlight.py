"""Spotlight drawing (YUV planes, RGB preview) and the overlay export, on small real videos."""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest
import torch

from app.pipeline import overlay_render
from app.pipeline.keyframes import Ellipse, EllipseKey, ground_ring, stroke_thickness
from app.pipeline.overlay_render import render_overlay
from app.pipeline.plan import Cancelled, OverlayPlan, RegionPlan, RenderError
from app.pipeline.spotlight import (
    SpotlightStyle,
    draw_spotlight,
    parse_color,
    rgb_to_yuv709,
    split_i420,
    spotlight_at,
    spotlight_rgb,
    yuv709_to_rgb,
)
from tests.media import make_video, slices_per_picture

W, H = 320, 180
GREY_Y = 16 + 219 * 128 / 255  # RGB 128 grey in limited-range BT.709 (125.9)
DIM, FILL = 0.5, 0.25
KEY = EllipseKey(0.0, 160.0, 90.0, 40.0, 60.0)


def _plan(path: str = "unused.mp4", **kw) -> OverlayPlan:
    base = dict(working_path=str(path), color="#FFEB3B", dim=DIM, fill_opacity=FILL, stroke_width=2.0,
                regions=(RegionPlan(0.5, 1.5, (dataclasses.replace(KEY, time=0.5),)),))
    base.update(kw)
    return OverlayPlan(**base)


def _grey_i420(y: int = 126, c: int = 128) -> np.ndarray:
    a = np.empty((H * 3 // 2, W), np.uint8)
    a[:H] = y
    a[H:] = c
    return a


def _planes(a: np.ndarray):
    y, u, v = split_i420(torch.from_numpy(a))
    return y.numpy(), u.numpy(), v.numpy()


# --------------------------------------------------------------------------- pure drawing


def test_colour_conversion_is_limited_range_bt709():
    assert rgb_to_yuv709((0, 0, 0)) == pytest.approx((16, 128, 128))
    assert rgb_to_yuv709((255, 255, 255)) == pytest.approx((235, 128, 128))
    y, u, v = rgb_to_yuv709((255, 0, 0))
    assert (y, u, v) == pytest.approx((62.56, 102.34, 240.0), abs=0.01)  # BT.709 red (63, 102, 240)
    assert yuv709_to_rgb(rgb_to_yuv709((12, 200, 90))) == pytest.approx((12, 200, 90), abs=1e-6)
    assert parse_color("#ffeb3b") == parse_color("FFEB3B") == (255, 235, 59)
    assert parse_color("#fff") == (255, 255, 255)
    with pytest.raises(ValueError):
        parse_color("#12345")


def test_dim_fill_and_stroke_on_grey_planes():
    plan = _plan()
    a = _grey_i420()
    assert draw_spotlight(a, 1.0, plan, plan.regions)
    y, u, v = _planes(a)
    cy, cu, cv = SpotlightStyle.from_settings(plan).color_yuv
    # outside: Y -> 16 + (Y - 16)(1 - dim), chroma -> 128 + (C - 128)(1 - dim)
    assert y[5, 5] == round(16 + (126 - 16) * (1 - DIM))
    assert y[170, 310] == round(16 + (126 - 16) * (1 - DIM))
    assert u[2, 2] == 128 and v[2, 2] == 128
    # inside (well away from the edge): the fill blend of the colour, chroma too
    assert abs(int(y[90, 160]) - (126 + FILL * (cy - 126))) <= 1
    assert abs(int(u[45, 80]) - (128 + FILL * (cu - 128))) <= 1
    assert abs(int(v[45, 80]) - (128 + FILL * (cv - 128))) <= 1
    # the stroke sits on the edge (x = 160 + 40): a full-colour pixel within 1 px of it
    row = y[90, 195:206].astype(int)
    assert np.abs(row - cy).min() <= 3
    # without dim: the dark outline (colour x 0.3) borders the stroke on both sides
    a = _grey_i420()
    draw_spotlight(a, 1.0, _plan(dim=0.0), plan.regions)
    row = a[90, 190:210].astype(int)
    dark_y = rgb_to_yuv709([c * 0.3 for c in parse_color(plan.color)])[0]
    peak = int(np.argmax(row))
    assert abs(row[peak] - cy) <= 3
    assert abs(row[peak + 1:peak + 4].min() - dark_y) <= 8  # outer side of the stroke
    assert abs(row[peak - 3:peak].min() - dark_y) <= 8  # inner side
    assert row[-1] == 126 and a[5, 5] == 126  # no dim: untouched beyond the outline


def test_outside_regions_nothing_is_drawn_and_out_leaves_source_alone():
    plan = _plan()
    a = _grey_i420()
    before = a.copy()
    assert not draw_spotlight(a, 0.2, plan, plan.regions)
    assert not draw_spotlight(a, 1.5, plan, plan.regions)  # fade is 0 at the very end
    assert np.array_equal(a, before)
    out = np.zeros_like(a)
    assert draw_spotlight(a, 1.0, plan, plan.regions, out=out)
    assert np.array_equal(a, before)
    b = a.copy()
    draw_spotlight(b, 1.0, plan, plan.regions)
    assert np.array_equal(out, b)


def test_planes_with_strides_like_pyav_frames():
    plan = _plan()
    packed = _grey_i420()
    draw_spotlight(packed, 1.0, plan, plan.regions)
    # the same image in padded planes (line size > width), as decoded frames have
    ys = np.full((H, W + 64), 126, np.uint8)[:, :W]
    us = np.full((H // 2, W // 2 + 32), 128, np.uint8)[:, : W // 2]
    vs = np.full((H // 2, W // 2 + 32), 128, np.uint8)[:, : W // 2]
    draw_spotlight((ys, us, vs), 1.0, plan, plan.regions)
    y, u, v = _planes(packed)
    assert np.array_equal(ys, y) and np.array_equal(us, u) and np.array_equal(vs, v)


def test_ground_shape_is_the_flattened_ring_at_the_feet():
    plan = _plan(shape="ground", dim=0.6)
    e = ground_ring(Ellipse(KEY.x, KEY.y, KEY.rx, KEY.ry))
    shape = spotlight_at(plan, plan.regions, 1.0, H)
    assert (shape.x, shape.y, shape.rx, shape.ry) == pytest.approx((e.x, e.y, e.rx, e.ry))
    assert shape.y == pytest.approx(90 + 60 / 1.3) and shape.ry == pytest.approx(18)
    a = _grey_i420()
    draw_spotlight(a, 1.0, plan, plan.regions)
    y, _, _ = _planes(a)
    dimmed = round(16 + 110 * 0.4)
    cy = SpotlightStyle.from_settings(plan).color_yuv[0]
    assert y[90, 160] == dimmed  # the body centre is outside the ring: dimmed
    assert abs(int(y[int(e.y), 160]) - (126 + FILL * (cy - 126))) <= 1  # ring centre: fill
    assert abs(int(y[int(e.y), int(e.x + e.rx)]) - cy) <= 30  # the stroke at the ring's edge


def test_fade_in_the_last_quarter_second():
    plan = _plan(regions=(RegionPlan(0.0, 2.0, (KEY,)),))
    full = 16 + 110 * (1 - DIM)

    def outside_y(t: float) -> int:
        a = _grey_i420()
        draw_spotlight(a, t, plan, plan.regions)
        return int(a[5, 5])

    assert outside_y(1.70) == round(full)  # before the fade window
    frac = ((2.0 - 1.875) / 0.25) ** 2  # square of the remaining fraction
    assert abs(outside_y(1.875) - (126 - 110 * DIM * frac)) <= 1
    assert outside_y(1.99) >= 125
    assert outside_y(1.875) > outside_y(1.80) > outside_y(1.70)


def test_stroke_thickness_follows_frame_height():
    plan = _plan(stroke_width=6)
    assert spotlight_at(plan, plan.regions, 1.0, 1080).thickness == stroke_thickness(6, 1080) == 6
    assert spotlight_at(plan, plan.regions, 1.0, 180).thickness == 2  # at least 2 px


def test_rgb_preview_matches_yuv_export_math():
    plan = _plan()
    rgb = np.full((H, W, 3), 128, np.uint8)
    out = spotlight_rgb(rgb, 1.0, plan, plan.regions)
    assert np.all(rgb == 128)  # the input is not modified
    assert tuple(out[5, 5]) == (64, 64, 64)  # RGB x (1 - dim)
    col = np.array(parse_color(plan.color))
    assert np.abs(out[90, 160].astype(float) - (128 + FILL * (col - 128))).max() <= 1
    # same pixel through the YUV path, converted back to RGB
    a = _grey_i420(round(GREY_Y))
    draw_spotlight(a, 1.0, plan, plan.regions)
    y, u, v = _planes(a)
    back = np.array(yuv709_to_rgb((y[90, 160], u[45, 80], v[45, 80])))
    assert np.abs(back - out[90, 160]).max() <= 3
    # a preview at half size draws the same spotlight, scaled
    half = spotlight_rgb(np.full((H // 2, W // 2, 3), 128, np.uint8), 1.0, plan, plan.regions,
                         source_size=(W, H))
    assert tuple(half[2, 2]) == (64, 64, 64)
    assert np.abs(half[45, 80].astype(int) - out[90, 160].astype(int)).max() <= 1


def test_dim_is_exact_and_the_gpu_arithmetic_matches(monkeypatch):
    from app.pipeline import spotlight

    rng = np.random.default_rng(3)
    src = torch.from_numpy(rng.integers(0, 256, (64, 96), dtype=np.uint8))
    for keep_q, black in ((205, 16.0), (128, 128.0), (0, 16.0), (255, 128.0)):
        a, b = torch.empty_like(src), torch.empty_like(src)
        spotlight.dim_plane(src, a, keep_q, black)
        spotlight._dim_torch(src, b, keep_q, round(black * (256 - keep_q)) + 128)
        expect = np.floor(black + (src.numpy() - black) * keep_q / 256 + 0.5)
        assert np.array_equal(a.numpy(), expect) and torch.equal(a, b)
    # the whole draw through torch tensors and the torch-only arithmetic (as on a GPU) equals
    # the CPU one (numpy arrays)
    plan = _plan()
    cpu = _grey_i420(110)
    cpu[5:40, 5:60] = 200
    gpu_like = cpu.copy()
    draw_spotlight(cpu, 1.0, plan, plan.regions)

    def torch_dim(src, dst, keep_q, black):
        if keep_q >= 256:
            dst.copy_(src)
        else:
            spotlight._dim_torch(src, dst, keep_q, round(black * (256 - keep_q)) + 128)

    monkeypatch.setattr(spotlight, "dim_plane", torch_dim)
    draw_spotlight(torch.from_numpy(gpu_like), 1.0, plan, plan.regions)
    assert np.array_equal(cpu, gpu_like)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draw_matches_cpu():
    plan = _plan()
    rng = np.random.default_rng(1)
    a = rng.integers(16, 236, (H * 3 // 2, W), dtype=np.uint8)
    g = torch.from_numpy(a.copy()).cuda()
    draw_spotlight(a, 1.0, plan, plan.regions)
    draw_spotlight(g, 1.0, plan, plan.regions)
    assert np.abs(g.cpu().numpy().astype(int) - a.astype(int)).max() <= 1


# --------------------------------------------------------------------------- the export


@pytest.fixture(scope="module")
def grey_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("ov") / "grey.mp4", width=W, height=H, duration=2.0,
                      pattern="gray", audio=True)


@pytest.fixture(scope="module")
def bars_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("ov") / "bars.mp4", width=W, height=H, duration=2.0,
                      pattern="bars", audio=True)


def _frames(path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(f.time, f.to_ndarray()) for f in c.decode(video=0)]


def _packets(path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        s = next(s for s in c.streams if s.type == kind)
        return [bytes(p) for p in c.demux(s) if p.size]


def test_export_draws_inside_regions(grey_video, tmp_path):
    out = tmp_path / "final.mp4"
    seen: list[float] = []
    res = render_overlay(_plan(grey_video), str(out), seen.append, lambda: False)
    assert res.path == str(out) and (res.width, res.height) == (W, H)
    assert res.device == ("CPU" if not torch.cuda.is_available() else res.device)
    assert res.extra["reencoded"] and res.extra["drawn_frames"] == 30
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    cy, cu, _ = SpotlightStyle.from_settings(_plan()).color_yuv
    frames = _frames(out)
    assert len(frames) == 60
    src_y = int(_frames(grey_video)[0][1][5, 5])
    t, f = frames[30]  # t = 1.0, inside the region
    assert t == pytest.approx(1.0)
    assert abs(int(f[5, 5]) - (16 + (src_y - 16) * (1 - DIM))) <= 2  # dimmed, after the codec
    assert abs(int(f[150, 300]) - (16 + (src_y - 16) * (1 - DIM))) <= 2
    assert abs(int(f[90, 160]) - (src_y + FILL * (cy - src_y))) <= 2  # fill blend
    u = f[H:H + H // 4].reshape(H // 2, W // 2)
    assert abs(int(u[45, 80]) - (128 + FILL * (cu - 128))) <= 2
    # before the region and at its very end: passed through (re-encoded, within codec tolerance)
    for i in (0, 10, 45, 59):
        assert abs(int(frames[i][1][5, 5]) - src_y) <= 1
    # audio packets are copied unchanged
    assert _packets(out, "audio") == _packets(grey_video, "audio")
    # faststart: the index comes before the media data
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    # x264 frame threads, as the ffmpeg CLI runs it (sliced threads leave cores idle)
    assert slices_per_picture(out) == {1}


def test_frames_outside_regions_pass_through(bars_video, tmp_path):
    out = tmp_path / "final.mp4"
    plan = _plan(bars_video, regions=(RegionPlan(1.0, 1.6, (KEY,)),))
    render_overlay(plan, str(out))
    src, dst = _frames(bars_video), _frames(out)
    assert [round(t, 4) for t, _ in src] == [round(t, 4) for t, _ in dst]
    for (t, a), (_, b) in zip(src, dst, strict=True):
        diff = np.abs(a.astype(int) - b.astype(int))
        if t < 1.0 or t >= 1.6:
            assert diff.mean() < 1.5, t
        elif 1.1 < t < 1.3:
            assert diff.mean() > 10, t  # drawn


def test_no_regions_copies_packets_without_reencoding(bars_video, tmp_path):
    out = tmp_path / "final.mp4"
    res = render_overlay(_plan(bars_video, regions=()), str(out))
    assert res.extra["reencoded"] is False
    assert _packets(out, "video") == _packets(bars_video, "video")
    assert _packets(out, "audio") == _packets(bars_video, "audio")
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    # a region entirely after the video's end draws nothing either
    late = _plan(bars_video, regions=(RegionPlan(5.0, 6.0, (KEY,)),))
    assert render_overlay(late, str(tmp_path / "late.mp4")).extra["reencoded"] is False


def test_cancel_raises_and_leaves_no_file(bars_video, tmp_path, monkeypatch):
    out = tmp_path / "final.mp4"
    with pytest.raises(Cancelled):
        render_overlay(_plan(bars_video), str(out), None, lambda: True)
    assert not out.exists()
    monkeypatch.setattr(overlay_render, "CANCEL_POLL", 0.0)
    calls = []

    def later() -> bool:
        calls.append(1)
        return len(calls) > 20  # mid-way through the frames

    with pytest.raises(Cancelled):
        render_overlay(_plan(bars_video), str(out), None, later)
    assert not out.exists()


def test_bad_input_is_a_render_error(tmp_path):
    with pytest.raises(RenderError, match="not found"):
        render_overlay(_plan(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(RenderError):
        render_overlay(_plan(junk), str(tmp_path / "o.mp4"))
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_export_on_cuda_says_so(grey_video, tmp_path):
    res = render_overlay(_plan(grey_video, device="cuda"), str(tmp_path / "g.mp4"))
    assert res.device.startswith("CUDA: ")
    f = _frames(tmp_path / "g.mp4")[30][1]
    assert abs(int(f[5, 5]) - (16 + 110 * (1 - DIM))) <= 2
