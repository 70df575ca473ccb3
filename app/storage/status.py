"""Project status: derived from the database every time it is read, by this one module.

Never cached in a column that could disagree, so a restart, a second process or a sync shows
the same thing. The rules are PRODUCT.md's "Project status"; "current" compares the
fingerprint of the inputs an output was rendered from with the inputs the project holds now.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Text, case, select, type_coerce
from sqlalchemy.orm import Session

from app.storage.models import (
    Clip,
    ExportJob,
    ExportSettings,
    FinalVideo,
    OverlaySettings,
    Project,
    Region,
    Transition,
    WorkingVideo,
    effective_region,
    effective_trim,
)
from app.storage.procs import HOST, pid_alive

ACTIVE = ("queued", "running")
HEARTBEAT_TIMEOUT_S = 10.0
STALL_TIMEOUT_S = 60.0
EPS = 1e-6


# --------------------------------------------------------------------------- jobs


def job_alive(job: ExportJob, now: datetime | None = None) -> bool:
    """An active job whose process is gone is not alive. On another host only the heartbeat
    tells (silent for 10 s: gone); on this one a process that is still there may be silent for
    a minute (paused, or kept from the database by a long lock) before it counts as gone, which
    also covers its pid being taken by another program."""
    if job.status not in ACTIVE:
        return False
    now = now or datetime.now(UTC)
    silent = (now - (job.heartbeat_at or job.created_at)).total_seconds()
    if job.pid and job.host == HOST:
        return silent <= STALL_TIMEOUT_S and pid_alive(job.pid)
    return silent <= HEARTBEAT_TIMEOUT_S


def effective_job_status(job: ExportJob, now: datetime | None = None) -> str:
    if job.status in ACTIVE and not job_alive(job, now):
        return "interrupted"
    return job.status


# --------------------------------------------------------------------------- fingerprints


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _r(v: float) -> float:
    return round(float(v), 6)


def clip_inputs(c: Clip) -> dict:
    ts, te = c.trim_start, c.trim_end
    if ts >= te:  # crossed in a merge (rare): read as the editor and the export read it
        ts, te = effective_trim(ts, te, c.source_end - c.source_start, stamps_of(c))
    return {
        "media": c.media_sha256,
        "range": [_r(c.source_start), _r(c.source_end)],
        "trim": [_r(ts), _r(te)],
        "segments": [[_r(s["start"]), _r(s["end"]), _r(s["speed"])] for s in c.segments],
        "rotation": _r(c.rotation),
        "crop": [[_r(k["time"]), _r(k["x"]), _r(k["y"]), _r(k["width"]), _r(k["height"])]
                 for k in c.crop_keyframes],
        "audio": bool(c.audio),
    }


def framing_fingerprint(
    project: Project, clips: Iterable[Clip], transition: Transition | None, settings: ExportSettings | None
) -> str:
    """Everything a working video is rendered from: clips (set, order, range, trim, segments,
    rotation, crop keyframes, audio), the transition, the aspect ratio, the export settings."""
    return _digest({
        "aspect": project.aspect_ratio,
        "clips": [[c.id, clip_inputs(c)] for c in sorted(clips, key=lambda c: (c.position, c.id))],
        "transition": [transition.type, _r(transition.duration)] if transition else None,
        "export": [settings.width, settings.height, _r(settings.fps), settings.crf, settings.preset,
                   settings.upscaler] if settings else None,
    })


def overlay_fingerprint(
    working_video_id: str | None, settings: OverlaySettings | None, regions: Iterable[Region]
) -> str:
    """Everything a final video is rendered from: its working video and the overlay. Trims and
    regions count as they are read (``effective_trim``, ``effective_region``), not as stored: a
    restored conflict can change what is read by a stamp alone."""
    spans = sorted((((r.start, r.end, r.keyframes) if r.start < r.end
                     else effective_region(r.start, r.end, r.keyframes, stamps_of(r)), r.id) for r in regions),
                   key=lambda span: (span[0][0], span[1]))
    return _digest({
        "working": working_video_id,
        "settings": [settings.color.upper(), settings.shape, _r(settings.stroke_width),
                     _r(settings.fill_opacity), _r(settings.dim)] if settings else None,
        "regions": [[_r(lo), _r(hi), [[_r(k[f]) for f in ("time", "x", "y", "rx", "ry")] for k in keys]]
                    for (lo, hi, keys), _ in spans],
    })


def has_framing_edit(c: Clip) -> bool:
    length = c.source_end - c.source_start
    if c.crop_keyframes or abs(c.rotation) > EPS:
        return True
    if abs(c.trim_start) > EPS or abs(c.trim_end - length) > EPS:
        return True
    segs = c.segments or []
    if len(segs) > 1 or any(abs(s["speed"] - 1.0) > EPS for s in segs):
        return True
    return False


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class StatusInfo:
    status: str
    progress: float | None  # 0-100 while an export of the project is active
    working_current: bool | None  # None: no working video
    final_current: bool | None
    active_job_id: str | None = None
    framing_hash: str = ""
    overlay_hash: str = ""

    def inputs_hash(self, kind: str) -> str:
        """The fingerprint an export of ``kind`` (framing | overlay) would be rendered from now."""
        return self.framing_hash if kind == "framing" else self.overlay_hash


def stamps_if_crossed(crossed, stamps):
    """A row's stamps, as JSON text, only where its ends crossed in a merge (rare): the only rows
    whose effective trim or span needs them (:func:`stamps_of`). Decoding every row's stamps made the
    grid's query 1.7x slower, and even a NULL in a JSON-typed column costs two result processors."""
    return type_coerce(case((crossed, stamps)), Text).label("stamps")


def stamps_of(row) -> dict | None:
    st = row.stamps
    return json.loads(st) if isinstance(st, str) else st


def project_statuses(session: Session, project_ids: list[str] | None = None) -> dict[str, StatusInfo]:
    """Status of many projects with a fixed number of queries (the project grid, `project list`)."""

    def rows(*cols, key="project_id"):
        """Plain rows (no ORM objects: 10x cheaper for the grid), tombstones excluded."""
        model = cols[0].class_
        stmt = select(*cols).where(model.deleted.is_(False))
        if project_ids is not None:
            stmt = stmt.where(getattr(model, key).in_(project_ids))
        return session.execute(stmt).all()

    projects = rows(Project.id, Project.aspect_ratio, Project.working_video_id, Project.final_video_id, key="id")
    clips: dict[str, list] = defaultdict(list)
    for c in rows(Clip.project_id, Clip.id, Clip.position, Clip.media_sha256, Clip.source_start, Clip.source_end,
                  Clip.trim_start, Clip.trim_end, Clip.segments, Clip.rotation, Clip.crop_keyframes, Clip.audio,
                  stamps_if_crossed(Clip.trim_start >= Clip.trim_end, Clip.stamps)):
        clips[c.project_id].append(c)
    regions: dict[str, list] = defaultdict(list)
    for r in rows(Region.project_id, Region.id, Region.start, Region.end, Region.keyframes,
                  stamps_if_crossed(Region.start >= Region.end, Region.stamps)):
        regions[r.project_id].append(r)
    transitions = {t.project_id: t for t in rows(Transition.project_id, Transition.type, Transition.duration)}
    exports = {e.project_id: e for e in rows(
        ExportSettings.project_id, ExportSettings.width, ExportSettings.height, ExportSettings.fps,
        ExportSettings.crf, ExportSettings.preset, ExportSettings.upscaler)}
    overlays = {o.project_id: o for o in rows(
        OverlaySettings.project_id, OverlaySettings.color, OverlaySettings.shape, OverlaySettings.stroke_width,
        OverlaySettings.fill_opacity, OverlaySettings.dim)}
    wv_ids = [p.working_video_id for p in projects if p.working_video_id]
    fv_ids = [p.final_video_id for p in projects if p.final_video_id]
    working = {w.id: w for w in session.execute(
        select(WorkingVideo.id, WorkingVideo.inputs_hash).where(WorkingVideo.id.in_(wv_ids)))}
    final = {f.id: f for f in session.execute(
        select(FinalVideo.id, FinalVideo.working_video_id, FinalVideo.inputs_hash).where(FinalVideo.id.in_(fv_ids)))}
    jobs: dict[str, list[ExportJob]] = defaultdict(list)
    stmt = select(ExportJob).where(ExportJob.status.in_(ACTIVE))
    if project_ids is not None:
        stmt = stmt.where(ExportJob.project_id.in_(project_ids))
    now = datetime.now(UTC)
    for j in session.scalars(stmt.order_by(ExportJob.created_at)):
        if job_alive(j, now):
            jobs[j.project_id].append(j)

    out: dict[str, StatusInfo] = {}
    for p in projects:
        pclips = clips.get(p.id, [])
        fhash = framing_fingerprint(p, pclips, transitions.get(p.id), exports.get(p.id))
        ohash = overlay_fingerprint(p.working_video_id, overlays.get(p.id), regions.get(p.id, []))
        wv = working.get(p.working_video_id) if p.working_video_id else None
        fv = final.get(p.final_video_id) if p.final_video_id else None
        working_current = None if wv is None else wv.inputs_hash == fhash
        final_current = None if fv is None else bool(
            working_current and fv.working_video_id == p.working_video_id and fv.inputs_hash == ohash
        )
        active = jobs.get(p.id, [])
        framing_job = next((j for j in active if j.type == "framing"), None)
        overlay_job = next((j for j in active if j.type == "overlay"), None)
        job = None
        if framing_job:
            status, job = "exporting_framing", framing_job
        elif overlay_job:
            status, job = "exporting_overlay", overlay_job
        elif final_current:
            status = "complete"
        elif working_current:
            status = "in_overlay"
        elif wv is not None or any(has_framing_edit(c) for c in pclips):
            status = "in_framing"
        else:
            status = "not_started"
        out[p.id] = StatusInfo(
            status=status,
            progress=round(job.progress, 1) if job else None,
            working_current=working_current,
            final_current=final_current,
            active_job_id=job.id if job else None,
            framing_hash=fhash,
            overlay_hash=ohash,
        )
    return out


def project_status(session: Session, project_id: str) -> StatusInfo:
    info = project_statuses(session, [project_id]).get(project_id)
    if info is None:
        raise KeyError(project_id)
    return info
