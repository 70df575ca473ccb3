"""Everything read from the remote is untrusted (SYNC.md 10): garbage, truncated gzip, oversized
objects, gzip bombs, schema violations, path traversal in keys or ids, stamps from the far
future, a corrupt manifest, tampered media. Each is rejected with a recorded error; the valid
objects around them are still applied; nothing is written outside the data directory."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid

import boto3

from app.storage import hlc
from app.storage.sync import schema
from tests.sync.conftest import BUCKET


def stamp(device: str, ahead_ms: int = 0) -> str:
    return hlc.format_stamp(hlc.now_ms() + ahead_ms, 0, device)


def project_entry(device: str, pid: str, name: str, ahead_ms: int = 0) -> dict:
    st = stamp(device, ahead_ms)
    return {"t": "project", "id": pid, "b": {}, "f": {
        "name": [name, st], "aspect_ratio": ["9:16", st], "created_at": ["2026-01-02T03:04:05+00:00", st],
        "working_video_id": [None, st], "final_video_id": [None, st], "deleted": [False, st]}}


def project_rows(device: str, pid: str, name: str, ahead_ms: int = 0) -> list[dict]:
    """A whole new project as a device writes it: the project and its three settings rows."""
    st = stamp(device, ahead_ms)
    return [project_entry(device, pid, name, ahead_ms),
            *({"t": t, "id": pid, "b": {}, "f": {"deleted": [False, st]}}
              for t in ("transition", "export_settings", "overlay_settings"))]


def batch(device: str, rows: list, first: int = 1, last: int | None = None, prev: int = 0) -> bytes:
    doc = {"format": 1, "kind": "changes", "device": device, "first": first, "last": last or first,
           "prev": prev, "created_at": "2026-01-02T03:04:05+00:00", "digest": "0" * 64, "media": [],
           "rows": rows}
    return gzip.compress(json.dumps(doc).encode())


def test_hostile_objects_are_rejected_and_the_valid_ones_applied(make_device, s3, prefix, monkeypatch, tmp_path,
                                                                 run_sync_cli):
    monkeypatch.setattr(schema, "MAX_BATCH_GZ", 64 * 1024)
    monkeypatch.setattr(schema, "MAX_BATCH_JSON", 1024 * 1024)
    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Legit")
    a.sync_ok()
    raw = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1")

    def put(rel: str, body: bytes) -> str:
        key = f"{prefix}/{rel}"
        raw.put_object(Bucket=BUCKET, Key=key, Body=body)
        return key

    devs = [str(uuid.uuid4()) for _ in range(16)]
    huge = json.dumps({"format": 1, "kind": "changes", "device": devs[12], "first": 1, "last": 1, "prev": 0,
                       "created_at": "2026-01-02T03:04:05+00:00", "digest": "0" * 64, "media": [],
                       "rows": [{"t": "export_settings", "id": str(uuid.uuid4()), "b": {},
                                 "f": {"crf": ["HUGE", stamp(devs[12])]}}]}).replace('"HUGE"', "1" * 6001)
    good = str(uuid.uuid4())
    good_pid = str(uuid.uuid4())
    valid = batch(good, project_rows(good, good_pid, "Also legit"))
    hostile = {
        put(f"changes/{devs[0]}/000000000001.json.gz", b"\x00garbage\xff" * 50): "not gzip",
        put(f"changes/{devs[1]}/000000000001.json.gz", valid[: len(valid) // 2]): "truncated",
        put(f"changes/{devs[2]}/000000000001.json.gz", bytes(100 * 1024)): "too large",
        put(f"changes/{devs[3]}/000000000001.json.gz", gzip.compress(b"{" + b" " * (8 * 1024 * 1024))):
            "inflates to more than",
        put(f"changes/{devs[4]}/000000000001.json.gz",
            batch(devs[4], [{"t": "users", "id": str(uuid.uuid4()), "f": {"x": [1, stamp(devs[4])]}}])):
            "unknown table",
        put(f"changes/{devs[5]}/000000000001.json.gz",
            batch(devs[5], [{**project_entry(devs[5], "../../../etc/passwd", "x")}])): "bad row id",
        put(f"changes/{devs[6]}/000000000001.json.gz",
            batch(devs[6], [{**project_entry(devs[6], str(uuid.uuid4()), "x"),
                             "f": {"name": [12345, stamp(devs[6])]}}])): "expected a string",
        put(f"changes/{devs[8]}/000000000001.json.gz",
            batch(devs[8], [{"t": "clip", "id": str(uuid.uuid4()), "b": {}, "f": {
                "media_sha256": ["../../../../tmp/evil", stamp(devs[8])]}}])): "not a sha256",
        put(f"changes/{devs[9]}/000000000001.json.gz", batch(devs[10], [])): "another device",
        put(f"changes/{devs[11]}/000000000001.json.gz", gzip.compress(b"[1, 2, NaN]")): "invalid number",
        # well-formed values a project may not hold: it would become one that cannot be edited
        put(f"changes/{devs[12]}/000000000001.json.gz", gzip.compress(huge.encode())): "unreadable JSON number",
        put(f"changes/{devs[13]}/000000000001.json.gz",
            batch(devs[13], [{**project_entry(devs[13], str(uuid.uuid4()), "x"),
                              "f": {"aspect_ratio": ["banana", stamp(devs[13])]}}])): "aspect_ratio: must be one of",
        put(f"changes/{devs[14]}/000000000001.json.gz",
            batch(devs[14], [{"t": "export_settings", "id": str(uuid.uuid4()), "b": {},
                              "f": {"crf": [999, stamp(devs[14])]}}])): "crf: must be 0 to 51",
        put(f"changes/{devs[15]}/000000000001.json.gz",
            batch(devs[15], [{"t": "clip", "id": str(uuid.uuid4()), "b": {},
                              "f": {"rotation": [1000.0, stamp(devs[15])]}}])): "rotation: must be within",
        put("changes/../../escape/000000000001.json.gz", valid): "not a device",
        put("changes/not-a-device/000000000001.json.gz", valid): "not a device",
        put(f"changes/{good}/../../000000000009.json.gz", valid): "",
        put(f"changes/{good}/1.json.gz", valid): "unexpected name",
    }
    put(f"changes/{good}/000000000001.json.gz", valid)

    # from a clock ten days fast: not garbage, so not rejected; it waits (test_sync_parked)
    future = put(f"changes/{devs[7]}/000000000001.json.gz",
                 batch(devs[7], project_rows(devs[7], str(uuid.uuid4()), "from the future", ahead_ms=10 * 86400_000)))

    r = b.sync()
    assert not r.ok and r.state == "error"
    assert future not in {x["key"] for x in r.rejected}
    assert any(devs[7][:8] in p and "ahead of this device's clock" in p for p in r.problems), r.problems
    reasons = {x["key"]: x["error"] for x in r.rejected}
    for key, words in hostile.items():
        if not words:
            continue
        hit = [why for k, why in reasons.items() if k == key or key.startswith(k)]
        assert hit, f"{key} was not rejected: {reasons}"
        assert any(words in why for why in hit), (key, hit)
    assert b.visible() == {pid: "Legit", good_pid: "Also legit"}  # the valid ones were applied
    st = b.status()
    assert st["state"] == "error" and "rejected" in st["error"] and st["rejected_objects"] >= len(reasons)
    assert not any("evil" in p.name or "passwd" in p.name for p in tmp_path.rglob("*"))
    raw.delete_object(Bucket=BUCKET, Key=future)  # (it would wait ten days)
    # known rejections are not downloaded or reported again: the next run is clean
    again = b.sync()
    assert again.ok, again.error
    assert b.status()["state"] == "synced"

    # the CLI reports a new rejection with exit 1 and the words
    put(f"changes/{str(uuid.uuid4())}/000000000001.json.gz", b"more garbage")
    b.close()
    cli = run_sync_cli(b, "sync", "run", "--json")
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines()[-1].startswith("error: sync failed")
    assert len(json.loads(cli.stdout)["rejected"]) == 1


def test_a_corrupt_manifest_and_a_tampered_media_object_are_not_used(make_device, s3, prefix, sample_video):
    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Media")
    a.lib.add_clip(pid, sample_video, 0.0, 1.0)
    a.sync_ok()
    raw = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1")
    raw.put_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json", Body=b'{"format": 1, "snapshot": "../../x"}')
    sha = hashlib.sha256(sample_video.read_bytes()).hexdigest()
    raw.put_object(Bucket=BUCKET, Key=f"{prefix}/media/{sha}", Body=b"not the video at all")
    r = b.sync(fetch_media=True)
    assert not r.ok
    assert any("manifest.json rejected" in p for p in r.problems)
    assert any("corrupt" in p for p in r.problems)
    assert b.visible() == {pid: "Media"}  # rows from the batches all the same
    assert not b.lib.media.has(sha, ".mp4")
    assert not any(b.lib.media.tmp.glob("*")) if b.lib.media.tmp.exists() else True


def test_every_settings_field_of_the_document_has_a_rule_for_remote_rows():
    """The named values (aspects, presets, speeds, rotation) come from app.limits for both; the
    settings' numeric bounds are repeated in the sync schema, so a new field must get a rule."""
    from app.services.document import ExportSettingsIn, OverlaySettingsIn, TransitionIn

    for model, table in ((ExportSettingsIn, "export_settings"), (OverlaySettingsIn, "overlay_settings"),
                         (TransitionIn, "transition")):
        for name in model.model_fields:
            assert (table, name) in schema.DOMAINS, f"{table}.{name} has no value rule for remote rows"
