"""app.pipeline.probe on real (generated) media: good files described correctly, bad ones refused clearly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.pipeline.probe import MAX_DIMENSION, MediaInfo, ProbeError, probe, sha256_file
from tests import media


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("good")
    files = {
        "plain": media.make_video(d / "plain.mp4"),
        "audio": media.make_video(d / "audio.mp4", audio=True),
        "rot90": media.make_video(d / "rot90.mp4", rotation=90),
        "rot180": media.make_video(d / "rot180.mp4", rotation=180),
        "rot270": media.make_video(d / "rot270.mp4", rotation=270),
        "rot-90": media.make_video(d / "rot-90.mp4", rotation=-90),
        "ten": media.make_video(d / "ten.mp4", ten_bit=True),
        "vfr": media.make_video(d / "vfr.mp4", vfr=True, duration=3.0),
        "pal": media.make_video(d / "pal.mp4", fps=25, duration=3.0, width=192, height=108),
    }
    files["faststart"] = media.make_faststart(files["audio"], d / "faststart.mp4")
    files["mkv"] = media.make_video(d / "game.mkv", audio=True)
    files["trimmed"] = media.trim_edit_list(
        media.make_video(d / "untrimmed.mp4", duration=4.0, gop=30), d / "trimmed.mp4", 1.0, 1.5)
    return files


# --- good inputs -----------------------------------------------------------------------------


def test_plain_video(good):
    info = probe(good["plain"])
    assert isinstance(info, MediaInfo)
    assert (info.width, info.height) == (320, 180)
    assert (info.coded_width, info.coded_height) == (320, 180)
    assert info.rotation == 0
    assert info.fps == pytest.approx(30.0, rel=1e-3)
    assert info.duration == pytest.approx(2.0, abs=1 / 30)
    assert info.frame_count == 60
    assert info.vfr is False
    assert (info.codec, info.pix_fmt, info.bit_depth) == ("h264", "yuv420p", 8)
    assert info.has_audio is False
    assert info.audio_codec is None and info.audio_sample_rate is None and info.audio_channels is None
    assert info.container == "mp4"


def test_accepts_str_path(good):
    assert probe(str(good["plain"])).frame_count == 60


def test_video_with_audio(good):
    info = probe(good["audio"])
    assert info.has_audio is True
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("aac", 48000, 1)
    assert info.duration == pytest.approx(2.0, abs=1 / 30)  # video duration, not the audio's
    assert info.frame_count == 60


def test_other_rate_and_size(good):
    info = probe(good["pal"])
    assert (info.width, info.height) == (192, 108)
    assert info.fps == pytest.approx(25.0, rel=1e-3)
    assert info.duration == pytest.approx(3.0, abs=1 / 25)
    assert info.frame_count == 75
    assert info.vfr is False


@pytest.mark.parametrize(
    ("key", "rotation", "size"),
    [("rot90", 90, (180, 320)), ("rot180", 180, (320, 180)), ("rot270", 270, (180, 320)),
     ("rot-90", 270, (180, 320))],
)
def test_rotation_gives_display_size(good, key, rotation, size):
    info = probe(good[key])
    assert info.rotation == rotation
    assert (info.width, info.height) == size
    assert (info.coded_width, info.coded_height) == (320, 180)


def test_ten_bit(good):
    info = probe(good["ten"])
    assert info.bit_depth == 10
    assert info.pix_fmt == "yuv420p10le"


def test_vfr_detected(good):
    info = probe(good["vfr"])
    assert info.vfr is True
    assert info.frame_count == 90
    assert info.fps == pytest.approx(30.0, rel=0.02)
    assert info.duration == pytest.approx(3.0, abs=0.05)


def test_faststart_file_is_fine(good):
    info = probe(good["faststart"])
    assert info.frame_count == 60 and info.has_audio and not info.vfr


def test_matroska(good):
    info = probe(good["mkv"])
    assert info.container == "matroska"
    assert info.frame_count == 60 and info.has_audio and not info.vfr
    assert info.fps == pytest.approx(30.0, rel=1e-3)
    assert info.duration == pytest.approx(2.0, abs=1 / 30)


def test_edit_list_trim_is_not_truncation(good):
    # all 120 samples are in the file but the edit list shows 1.5 s of them: that is the clip
    info = probe(good["trimmed"])
    assert info.duration == pytest.approx(1.5, abs=1 / 30)
    assert info.frame_count == 45
    assert info.fps == pytest.approx(30.0, rel=1e-3)


def test_name_with_colon_is_not_a_protocol(good, tmp_path):
    weird = tmp_path / "match:final.mp4"
    weird.write_bytes(good["plain"].read_bytes())
    assert probe(weird).frame_count == 60


# --- bad inputs ------------------------------------------------------------------------------


def _bad(tmp_path: Path, good: dict[str, Path], case: str) -> Path:
    if case == "missing":
        return tmp_path / "game.mp4"
    if case == "directory":
        d = tmp_path / "clips.mp4"
        d.mkdir()
        return d
    if case == "empty":
        p = tmp_path / "empty.mp4"
        p.write_bytes(b"")
        return p
    if case == "pdf":
        return media.make_pdf(tmp_path / "lineup.pdf")
    if case == "text":
        return media.make_text(tmp_path / "notes.txt")
    if case == "text_as_mp4":
        return media.make_text(tmp_path / "notes.mp4")
    if case == "wav":
        return media.make_wav(tmp_path / "commentary.wav")
    if case == "m4a":
        return media.make_audio_only(tmp_path / "commentary.m4a")
    if case == "aac":
        return media.make_audio_only(tmp_path / "commentary.aac")
    if case == "audio_only_mp4":
        return media.make_audio_only(tmp_path / "game.mp4")
    if case == "truncated":
        return media.truncate(good["audio"], tmp_path / "cut.mp4", 0.5)
    if case == "truncated_faststart":
        return media.truncate(good["faststart"], tmp_path / "cut_fs.mp4", 0.5)
    if case == "truncated_mkv":
        return media.truncate(good["mkv"], tmp_path / "cut.mkv", 0.5)
    if case == "garbage":
        return media.make_garbage(tmp_path / "noise.mp4")
    if case == "garbage_bin":
        return media.make_garbage(tmp_path / "noise.bin", seed=4)
    if case == "undecodable":
        return media.corrupt_payload(good["plain"], tmp_path / "scrambled.mp4")
    if case == "image":
        return media.make_image(tmp_path / "poster.png")
    if case == "huge":
        return media.make_video(tmp_path / "huge.mp4", width=MAX_DIMENSION + 16, height=16, duration=1 / 30)
    if case == "one_frame":
        return media.make_video(tmp_path / "one.mp4", duration=1 / 30)
    if case == "one_frame_gif":
        return media.make_gif(tmp_path / "one.gif", frames=1)
    raise AssertionError(case)


BAD = [
    # case, kind, words the message must contain
    ("missing", "missing", ["does not exist"]),
    ("directory", "not_a_file", ["folder"]),
    ("empty", "empty", ["empty"]),
    ("pdf", "not_video", ["PDF", "not a video file"]),
    ("text", "not_video", ["not a video file"]),
    ("text_as_mp4", "not_video", ["not a video file"]),
    ("wav", "no_video", ["no video stream", "audio only"]),
    ("m4a", "no_video", ["no video stream", "audio only"]),
    ("aac", "no_video", ["no video stream", "audio only"]),
    ("audio_only_mp4", "no_video", ["no video stream", "audio only"]),
    ("truncated", "truncated", ["truncated"]),
    ("truncated_faststart", "truncated", ["truncated", "of its 2.0 s"]),
    ("truncated_mkv", "truncated", ["truncated", "of its 2.0 s"]),
    ("garbage", "not_video", ["not a video file"]),
    ("garbage_bin", "not_video", ["not a video file"]),
    ("undecodable", "undecodable", ["could be decoded"]),
    ("image", "image", ["still image"]),
    ("one_frame", "image", ["single picture", "still image"]),
    ("one_frame_gif", "image", ["single picture", "still image"]),
    ("huge", "too_large", ["larger than 8K", f"{MAX_DIMENSION + 16}x16"]),
]


@pytest.mark.parametrize(("case", "kind", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_clearly(tmp_path, good, capfd, case, kind, words):
    path = _bad(tmp_path, good, case)
    capfd.readouterr()
    with pytest.raises(ProbeError) as exc:
        probe(path)
    msg = str(exc.value)
    assert f"'{path.name}'" in msg  # names the file
    for w in words:
        assert w in msg
    assert exc.value.kind == kind
    assert exc.value.path == str(path)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # FFmpeg's own logging is silenced


# --- hashing ---------------------------------------------------------------------------------


def test_sha256_file_streams_with_progress(tmp_path):
    data = bytes(range(256)) * 4099  # not a multiple of the chunk
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    seen: list[tuple[int, int]] = []
    digest = sha256_file(p, chunk=4096, progress=lambda done, total: seen.append((done, total)))
    assert digest == hashlib.sha256(data).hexdigest()
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == 1 + -(-len(data) // 4096)


def test_sha256_file_empty_and_cancel(tmp_path):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    assert sha256_file(p) == hashlib.sha256(b"").hexdigest()
    q = tmp_path / "big"
    q.write_bytes(b"x" * 10_000)

    def cancel(done, total):
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sha256_file(q, chunk=1000, progress=cancel)


def test_relative_name_with_colon_is_not_a_protocol(good, tmp_path, monkeypatch):
    (tmp_path / "match:final.mp4").write_bytes(good["plain"].read_bytes())
    monkeypatch.chdir(tmp_path)
    assert probe("match:final.mp4").frame_count == 60
