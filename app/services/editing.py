"""Edit operations behind the editors' undo commands (Qt-free).

Each function is one short write transaction that builds a partial project document and hands
it to :func:`app.services.document.apply_document`, so every edit is validated by exactly the
rules of ``project apply`` and an invalid edit changes nothing.

:func:`apply_edit` is what the GUI's undo stack calls with a snapshot of the editable fields.
Snapshots may be older than the database (a clip added since, a region deleted and re-created
by an undo), so it first reconciles them: clips the project no longer has are dropped, clips
the snapshot does not name keep their place at the end, and region ids the project no longer
has become new regions.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from app.pipeline import timeline
from app.pipeline.keyframes import EllipseKey, ellipse_at
from app.pipeline.timeline import MAX_SPEED, MIN_SPEED
from app.services.document import apply_document, region_doc
from app.services.errors import NotFound, ProjectNotFound, UserError
from app.storage.models import Change, Clip, ExportJob, FinalVideo, Media, Project, Region, WorkingVideo
from app.storage.status import ACTIVE, job_alive
from app.storage.tombstones import set_deleted

if TYPE_CHECKING:
    from app.services.library import Library

EDITABLE_CLIP_FIELDS = ("trim", "segments", "rotation", "crop_keyframes", "audio")


def editable(doc: dict) -> dict:
    """The editable part of a project document (what an undo snapshot holds)."""
    out: dict = {}
    if "aspect_ratio" in doc:
        out["aspect_ratio"] = doc["aspect_ratio"]
    if "clips" in doc:
        out["clips"] = [{"id": c["id"], **{k: copy.deepcopy(c[k]) for k in EDITABLE_CLIP_FIELDS if k in c}}
                        for c in doc["clips"]]
    if "transition" in doc:
        out["transition"] = dict(doc["transition"])
    if doc.get("export_settings") is not None:
        out["export_settings"] = dict(doc["export_settings"])
    if doc.get("overlay") is not None:
        ov = doc["overlay"]
        out["overlay"] = {}
        if ov.get("settings") is not None:
            out["overlay"]["settings"] = dict(ov["settings"])
        if ov.get("regions") is not None:
            out["overlay"]["regions"] = copy.deepcopy(ov["regions"])
    return out


def changes(old: dict, new: dict) -> dict:
    """What editable snapshot ``new`` changes from ``old``, as a document to apply: an edit (or its
    undo) writes only the fields it touches. The rest of the snapshot is the editor's copy, which
    may be older than the database (a sync pull, `project apply` from another process): writing
    it back would quietly undo those changes. Clips, when any changed, are all named, in order."""
    out: dict = {}
    if "aspect_ratio" in new and new["aspect_ratio"] != old.get("aspect_ratio"):
        out["aspect_ratio"] = new["aspect_ratio"]
    if "clips" in new:
        before = {c["id"]: c for c in old.get("clips", [])}
        clips = [{"id": c["id"], **{k: copy.deepcopy(v) for k, v in c.items()
                                    if k != "id" and before.get(c["id"], {}).get(k) != v}} for c in new["clips"]]
        if any(len(c) > 1 for c in clips) or [c["id"] for c in clips] != list(before):
            out["clips"] = clips
    if "transition" in new and new["transition"] != old.get("transition"):
        out["transition"] = dict(new["transition"])
    if new.get("export_settings") is not None:
        was = old.get("export_settings") or {}
        if diff := {k: v for k, v in new["export_settings"].items() if was.get(k) != v}:
            out["export_settings"] = diff
    ov, was_ov = new.get("overlay") or {}, old.get("overlay") or {}
    overlay: dict = {}
    if ov.get("settings") is not None:
        was = was_ov.get("settings") or {}
        if diff := {k: v for k, v in ov["settings"].items() if was.get(k) != v}:
            overlay["settings"] = diff
    if ov.get("regions") is not None and ov["regions"] != was_ov.get("regions"):
        overlay["regions"] = copy.deepcopy(ov["regions"])
    if overlay:
        out["overlay"] = overlay
    return out


def _reconcile(lib: Library, s, project_id: str, doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    live = [c.id for c in lib.clips_of(s, project_id)]
    if doc.get("clips") is not None:
        named = [c for c in doc["clips"] if c.get("id") in live]
        seen = {c["id"] for c in named}
        doc["clips"] = named + [{"id": cid} for cid in live if cid not in seen]
    ov = doc.get("overlay")
    if ov and ov.get("regions") is not None:
        live_regions = {r.id for r in lib.regions_of(s, project_id)}
        wanted = {r.get("id") for r in ov["regions"]} - live_regions - {None}
        gone = {g.id: g for g in s.scalars(
            select(Region).where(Region.project_id == project_id, Region.id.in_(wanted), Region.deleted.is_(True))
            .execution_options(include_deleted=True))} if wanted else {}
        for r in ov["regions"]:
            if r.get("id") in gone:
                set_deleted(s, gone[r["id"]], False)  # an undone delete brings back the same region
            elif r.get("id") not in live_regions:
                r["id"] = None  # gone for good (purged) or never here: a new region
    return doc


def apply_edit(lib: Library, project_id: str, doc: dict) -> list[str]:
    """Apply an editable snapshot in one transaction; returns the project's region ids by start."""
    with lib.db.write() as s:
        apply_document(lib, s, project_id, _reconcile(lib, s, project_id, doc))
        s.flush()
        return [r.id for r in lib.regions_of(s, project_id)]


def _clip_edit(lib: Library, clip_id: str, **fields) -> None:
    """Set fields of one clip, validated as `project apply` does, in one transaction."""
    with lib.db.write() as s:
        project_id = lib.get_clip(s, clip_id).project_id
        clips = [{"id": c.id, **(fields if c.id == clip_id else {})} for c in lib.clips_of(s, project_id)]
        apply_document(lib, s, project_id, {"clips": clips})


def _clip_row(lib: Library, clip_id: str) -> Clip:
    with lib.db.read() as s:
        return lib.get_clip(s, clip_id)


def set_crop_keyframes(lib: Library, clip_id: str, keys: list[dict]) -> None:
    _clip_edit(lib, clip_id, crop_keyframes=keys)


def set_segments(lib: Library, clip_id: str, segments: list[dict]) -> None:
    _clip_edit(lib, clip_id, segments=segments)


def split_segments(segments: list[dict], at: float) -> list[dict]:
    """``segments`` with the one that contains ``at`` cut in two there (both keep its speed);
    UserError when ``at`` is not inside a segment (or within 1 ms of an edge)."""
    out: list[dict] = []
    for x in segments:
        # each dict is cut on its own so that its pieces keep every key it has (speed included)
        pieces = timeline.split_segments([timeline.Segment(x["start"], x["end"], x.get("speed", 1.0))], at, margin=1e-3)
        out += [{**x, "start": p.start, "end": p.end} for p in pieces]
    if len(out) == len(segments):
        raise UserError(f"cannot split at {at:g} s: not inside a segment (or too close to an edge)")
    return out


def split_segment(lib: Library, clip_id: str, at: float) -> list[dict]:
    out = split_segments(_clip_row(lib, clip_id).segments, at)
    set_segments(lib, clip_id, out)
    return out


def set_segment_speed(lib: Library, clip_id: str, index: int, speed: float) -> None:
    if not (MIN_SPEED <= speed <= MAX_SPEED):
        raise UserError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}")
    c = _clip_row(lib, clip_id)
    segs = [dict(x) for x in c.segments]
    if not 0 <= index < len(segs):
        raise UserError(f"clip has no segment {index}")
    segs[index]["speed"] = float(speed)
    set_segments(lib, clip_id, segs)


def set_rotation(lib: Library, clip_id: str, degrees: float) -> None:
    _clip_edit(lib, clip_id, rotation=float(degrees))


def add_region(lib: Library, project_id: str, start: float, end: float, keyframes: list[dict]) -> str:
    with lib.db.write() as s:
        regions = [region_doc(r) for r in lib.regions_of(s, project_id)]
        before = {r["id"] for r in regions}
        regions.append({"start": start, "end": end, "keyframes": keyframes})
        apply_document(lib, s, project_id, {"overlay": {"regions": regions}})
        s.flush()
        return next(r.id for r in lib.regions_of(s, project_id) if r.id not in before)


def region_keys_within(keys: list[dict], start: float, end: float) -> list[dict]:
    """A region's keyframes after its span is changed to [start, end]: those inside are kept, and
    where keyframes fall outside, one keyframe at the new bound holds the spotlight as it was
    shown at that time (the same spline as preview and export), so the picture inside does not
    change. A new region's first keyframe sits on its start: without this the start could not be
    moved on at all."""
    inside = [k for k in keys if start - 1e-6 <= k["time"] <= end + 1e-6]
    spline = [EllipseKey(**k) for k in keys]

    def held(t: float) -> dict:
        e = ellipse_at(spline, t)
        return {"time": round(t, 6), "x": round(e.x, 2), "y": round(e.y, 2), "rx": round(e.rx, 2),
                "ry": round(e.ry, 2)}

    out = list(inside)
    if any(k["time"] < start - 1e-6 for k in keys) and not any(abs(k["time"] - start) <= 1e-6 for k in inside):
        out.insert(0, held(start))
    if any(k["time"] > end + 1e-6 for k in keys) and not any(abs(k["time"] - end) <= 1e-6 for k in inside):
        out.append(held(end))
    return out


def restore_clip(lib: Library, clip_id: str) -> None:
    """Undo of `clip remove`: the tombstoned clip comes back at its old position."""
    with lib.db.write() as s:
        clip = s.get(Clip, clip_id, execution_options={"include_deleted": True})
        if clip is None:
            raise NotFound(f"no clip with id {clip_id!r}")
        p = s.get(Project, clip.project_id)
        if p is None or p.deleted:
            raise ProjectNotFound(f"the project of clip {clip_id!r} was deleted")
        set_deleted(s, clip, False)
        lib.touch(p)


def change_signature(lib: Library) -> tuple:
    """A cheap fingerprint of everything the project grid shows (polled about once a second):
    it changes when any project, clip, output or export job changes, in any process. The last
    outbox entry covers every local synced write, also those that leave ``updated_at`` alone (a
    restored sync conflict, say)."""
    with lib.db.read() as s:
        last_write = s.scalar(select(func.max(Change.seq)))
        row = s.execute(select(Project.updated_at).order_by(Project.updated_at.desc()).limit(1).execution_options(
            include_deleted=True)).first()
        n = s.scalar(select(func.count()).select_from(Project).where(Project.deleted.is_(False)))
        jobs = s.scalars(select(ExportJob).where(ExportJob.status.in_(ACTIVE))).all()
        last_done = s.scalar(select(ExportJob.finished_at).order_by(ExportJob.finished_at.desc()).limit(1))
        active = tuple(sorted((j.id, j.status, round(j.progress, 1), job_alive(j)) for j in jobs))
        return (str(row[0]) if row else None, n, active, str(last_done), last_write)


def only_progress_changed(before: tuple, after: tuple) -> bool:
    """Whether two :func:`change_signature` differ only in the progress of running exports (the
    same jobs, statuses and projects): the grid then needs the jobs, not the library again."""
    if before[:2] != after[:2] or before[3:] != after[3:]:
        return False
    return [(j[0], j[1], j[3]) for j in before[2]] == [(j[0], j[1], j[3]) for j in after[2]]


def poster_source(lib: Library, project_id: str) -> tuple[str, float] | None:
    """Where a project card's poster frame comes from: the final video, else the working
    video, else the first clip (a second in); None when there is nothing local to show."""
    with lib.db.read() as s:
        p = s.get(Project, project_id)
        if p is None or p.deleted:
            return None
        for model, vid in ((FinalVideo, p.final_video_id), (WorkingVideo, p.working_video_id)):
            if vid:
                row = s.get(model, vid)
                if row is not None:
                    path = lib.output_path(row.sha256)
                    if path.is_file():
                        return str(path), min(1.0, row.duration / 3)
        clips = lib.clips_of(s, project_id)
        if not clips:
            return None
        c = clips[0]
        m = s.get(Media, c.media_sha256)
        if m is None:
            return None
        path = lib.media_path(m)
        if not path.is_file():
            return None
        start, end = c.trim
        return str(path), c.source_start + start + min(1.0, (end - start) / 3)


def live_media_paths(lib: Library) -> list[str]:
    """Local paths of the media that some clip of a live project uses (a project's delete takes
    its clips along, so a live clip means a live project)."""
    with lib.db.read() as s:
        used = select(Clip.media_sha256).where(Clip.deleted.is_(False))
        return [str(lib.media_path(m)) for m in s.scalars(select(Media).where(Media.sha256.in_(used)))]


def media_paths(lib: Library, project_id: str) -> dict[str, str]:
    """clip id -> local path of its media (the preview opens these)."""
    with lib.db.read() as s:
        out = {}
        for c in lib.clips_of(s, project_id):
            m = s.get(Media, c.media_sha256)
            if m is not None:
                out[c.id] = str(lib.media_path(m))
        return out
