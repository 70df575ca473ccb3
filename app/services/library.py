"""The library of projects on one data directory: the service behind the CLI and the GUI.

Every method opens its own short transaction (committed at once: no save button, nothing
lost on a crash) and returns plain data, so the GUI can call it from any thread.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.limits import ASPECTS as RATIOS
from app.limits import MAX_NAME
from app.services.errors import NotFound, OperationFailed, ProjectNotFound, UserError
from app.storage.db import Database
from app.storage.media_store import MediaStore
from app.storage.models import (
    Clip,
    ExportSettings,
    FinalVideo,
    Media,
    OverlaySettings,
    Project,
    Region,
    Transition,
    WorkingVideo,
    effective_trim,
    iso,
    utcnow,
)
from app.storage.status import project_status, project_statuses, stamps_if_crossed, stamps_of
from app.storage.tombstones import set_deleted

log = logging.getLogger(__name__)

ASPECTS = tuple(RATIOS)
DEFAULT_SIZES = {"9:16": (1080, 1920), "16:9": (1920, 1080), "1:1": (1080, 1080), "4:5": (1080, 1350)}


def open_library(data_dir: Path | str) -> Library:
    """The library of ``data_dir``, or a UserError (the folder is unusable) / OperationFailed
    (its database cannot be opened) that says why in words, for the CLI's ``error:`` line and
    the window's dialog alike."""
    import sqlite3

    from sqlalchemy.exc import DatabaseError

    d = Path(data_dir)
    if d.exists() and not d.is_dir():
        raise UserError(f"the data directory '{d}' is a file, not a folder")
    try:
        return Library(d)
    except OSError as exc:
        raise UserError(f"cannot use the data directory '{d}': {exc.strerror or exc}") from None
    except (DatabaseError, sqlite3.DatabaseError) as exc:
        words = str(exc.orig) if getattr(exc, "orig", None) is not None else str(exc).splitlines()[0]
        raise OperationFailed(f"the database in '{d}' cannot be opened: {words}") from None


LEFTOVER_AGE_S = 24 * 3600  # a file untouched this long is no other process's work in progress
SWEEP_EVERY_S = 24 * 3600


class Library:
    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self.db = Database(self.data_dir)
        self.media = MediaStore(self.data_dir)
        self.sweep_leftovers()

    def sweep_leftovers(self, *, force: bool = False) -> int:
        """Remove what a process killed mid-way left behind, at most once a day (``force``: now):
        files in ``tmp/`` (a copy, a download or an export that never finished) and files in the
        media store under a name no row knows (stored, then killed before the commit that records
        them). Only files untouched for a day: never another process's work in progress, nor a
        file stored a moment before its commit. Returns how many were removed."""
        marker = self.data_dir / ".swept"  # when it last ran (not in tmp/, which it sweeps)
        try:
            if not force and marker.is_file() and time.time() - marker.stat().st_mtime < SWEEP_EVERY_S:
                return 0
            old = time.time() - LEFTOVER_AGE_S
            stale = [p for p in self.media.tmp.glob("*") if p.is_file() and p.stat().st_mtime < old] \
                if self.media.tmp.is_dir() else []
            stored = {p.name.split(".", 1)[0]: p for p in self.media.root.glob("??/*")
                      if p.is_file() and p.stat().st_mtime < old} if self.media.root.is_dir() else {}
            if stored:
                with self.db.read() as s:
                    known = set()
                    for col in (Media.sha256, WorkingVideo.sha256, FinalVideo.sha256):
                        known.update(s.scalars(select(col).execution_options(include_deleted=True)))
                stale += [p for sha, p in stored.items() if sha not in known]
            for p in stale:
                size = p.stat().st_size
                p.unlink(missing_ok=True)
                log.info("removed a leftover of an interrupted operation: %s (%d bytes)",
                         p.relative_to(self.data_dir), size)
            marker.touch()
            return len(stale)
        except OSError:  # a read-only data directory, a vanished file: next time
            log.debug("could not sweep leftovers", exc_info=True)
            return 0

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ lookups
    @staticmethod
    def get_project(session: Session, project_id: str) -> Project:
        project = session.get(Project, project_id) if isinstance(project_id, str) else None
        if project is None or project.deleted:
            raise ProjectNotFound(f"no project with id {project_id!r}")
        return project

    @staticmethod
    def get_clip(session: Session, clip_id: str) -> Clip:
        clip = session.get(Clip, clip_id) if isinstance(clip_id, str) else None
        if clip is None or clip.deleted:
            raise NotFound(f"no clip with id {clip_id!r}")
        return clip

    @staticmethod
    def clips_of(session: Session, project_id: str) -> list[Clip]:
        return list(session.scalars(
            select(Clip).where(Clip.project_id == project_id).order_by(Clip.position, Clip.id)
        ))

    @staticmethod
    def regions_of(session: Session, project_id: str) -> list[Region]:
        return list(session.scalars(
            select(Region).where(Region.project_id == project_id).order_by(Region.start, Region.id)
        ))

    @staticmethod
    def touch(project: Project) -> None:
        project.updated_at = utcnow()

    # ------------------------------------------------------------------ projects
    def create_project(self, name: str, aspect: str = "9:16") -> str:
        name = (name or "").strip()
        if not name:
            raise UserError("a project needs a name")
        if len(name) > MAX_NAME:
            raise UserError(f"a project name has at most {MAX_NAME} characters")
        if aspect not in ASPECTS:
            raise UserError(f"aspect must be one of {', '.join(ASPECTS)}, not {aspect!r}")
        w, h = DEFAULT_SIZES[aspect]
        with self.db.write() as s:
            p = Project(name=name, aspect_ratio=aspect)
            s.add(p)
            s.flush()
            s.add(Transition(project_id=p.id))
            s.add(ExportSettings(project_id=p.id, width=w, height=h))
            s.add(OverlaySettings(project_id=p.id))
            return p.id

    def rename_project(self, project_id: str, name: str) -> None:
        name = (name or "").strip()
        if not name:
            raise UserError("a project needs a name")
        if len(name) > MAX_NAME:
            raise UserError(f"a project name has at most {MAX_NAME} characters")
        with self.db.write() as s:
            p = self.get_project(s, project_id)
            p.name = name
            self.touch(p)

    def delete_project(self, project_id: str) -> None:
        """Tombstones the project and everything that belongs to it (syncs as a delete)."""
        with self.db.write() as s:
            p = self.get_project(s, project_id)
            set_deleted(s, p, True)
            self.touch(p)  # its running exports see it at their next heartbeat and stop

    def restore_project(self, project_id: str) -> None:
        """Undo of :meth:`delete_project`: the project comes back with what its delete took
        (not the clips removed before it)."""
        with self.db.write() as s:
            p = s.get(Project, project_id, execution_options={"include_deleted": True}) \
                if isinstance(project_id, str) else None
            if p is None:
                raise NotFound(f"no project with id {project_id!r}")
            if p.deleted:
                set_deleted(s, p, False)
                self.touch(p)

    def duplicate_project(self, project_id: str, name: str | None = None) -> str:
        """A new project with the same clips and edits (outputs are not copied)."""
        with self.db.write() as s:
            src = self.get_project(s, project_id)
            p = Project(name=(name or f"{src.name} (copy)")[:MAX_NAME], aspect_ratio=src.aspect_ratio)
            s.add(p)
            s.flush()
            for model in (Transition, ExportSettings, OverlaySettings):
                row = s.get(model, project_id)
                values = {f: getattr(row, f) for f in model.__synced_fields__ if f != "deleted"}
                s.add(model(project_id=p.id, **values))
            for c in self.clips_of(s, project_id):
                values = {f: getattr(c, f) for f in Clip.__synced_fields__ if f not in ("deleted", "project_id")}
                s.add(Clip(project_id=p.id, **values))
            return p.id

    def list_projects(self) -> list[dict]:
        from app.pipeline.timeline import Segment, joined_duration, output_duration

        with self.db.read() as s:
            projects = s.execute(
                select(Project.id, Project.name, Project.aspect_ratio, Project.working_video_id,
                       Project.final_video_id, Project.updated_at, Project.created_at)
                .where(Project.deleted.is_(False)).order_by(Project.updated_at.desc())
            ).all()
            statuses = project_statuses(s)
            counts: dict[str, int] = {}
            durations: dict[str, float] = {}
            # a dissolve overlaps each pair of clips: those projects sum their clips in order
            joins = {t.project_id: (t.type, t.duration) for t in s.execute(
                select(Transition.project_id, Transition.type, Transition.duration)
                .where(Transition.deleted.is_(False), Transition.type == "dissolve"))}
            ordered: dict[str, list[tuple[float, str, float]]] = {}
            # a crossed trim (rare, from a merge) needs the clip's length and stamps: only its row
            # reads them (decoding every clip's stamps made this loop 1.7x slower)
            crossed = Clip.trim_start >= Clip.trim_end
            for c in s.execute(select(Clip.project_id, Clip.id, Clip.position, Clip.trim_start, Clip.trim_end,
                                      Clip.segments,
                                      case((crossed, Clip.source_end - Clip.source_start)).label("length"),
                                      stamps_if_crossed(crossed, Clip.stamps))
                               .where(Clip.deleted.is_(False))):
                counts[c.project_id] = counts.get(c.project_id, 0) + 1
                segs = [Segment(x["start"], x["end"], x["speed"]) for x in c.segments]
                trim = (c.trim_start, c.trim_end) if c.length is None else \
                    effective_trim(c.trim_start, c.trim_end, c.length, stamps_of(c))
                d = output_duration(*trim, segs)
                if c.project_id in joins:
                    ordered.setdefault(c.project_id, []).append((c.position, c.id, d))
                else:
                    durations[c.project_id] = durations.get(c.project_id, 0.0) + d
            for pid, clips in ordered.items():
                durations[pid] = joined_duration([d for *_, d in sorted(clips)], *joins[pid])
            out = []
            for p in projects:
                st = statuses[p.id]
                out.append({
                    "id": p.id,
                    "name": p.name,
                    "aspect_ratio": p.aspect_ratio,
                    "status": st.status,
                    "progress": st.progress,
                    "clip_count": counts.get(p.id, 0),
                    "has_working_video": p.working_video_id is not None,
                    "has_final_video": p.final_video_id is not None,
                    "updated_at": iso(p.updated_at),
                    "created_at": iso(p.created_at),
                    "duration": round(durations.get(p.id, 0.0), 3),
                })
            return out

    def status(self, project_id: str):
        with self.db.read() as s:
            self.get_project(s, project_id)
            return project_status(s, project_id)

    # ------------------------------------------------------------------ clips
    def add_clip(self, project_id: str, media_path: str | os.PathLike,
                 start: float | None = None, end: float | None = None, progress=None) -> str:
        """``progress(done_bytes, total_bytes)``: the media file being read into the store."""
        from app.services.media import import_media

        with self.db.read() as s:  # fail fast on an unknown project, before hashing a big file
            self.get_project(s, project_id)
        span: dict[str, float] = {}

        def check_range(info) -> None:
            duration = float(info.duration)
            s0 = 0.0 if start is None else float(start)
            e0 = duration if end is None else float(end)
            if not (0.0 <= s0 < duration):
                raise UserError(f"--start {s0:g} is outside the media (0 to {duration:g} s)")
            if not math.isfinite(e0) or e0 > duration + 1e-3 or e0 <= s0:
                raise UserError(f"--end {e0:g} must be after --start and at most the media's duration {duration:g} s")
            frame = 1.0 / float(info.fps) if info.fps else 1.0 / 30
            if min(e0, duration) - s0 < frame - 1e-6:
                raise UserError(f"the clip from {s0:g} to {e0:g} s is shorter than one frame ({frame:.4g} s)")
            span["start"], span["end"] = s0, min(e0, duration)

        media_row = import_media(self, media_path, progress=progress, check=check_range)
        s0, e0 = span["start"], span["end"]
        length = e0 - s0
        with self.db.write() as s:
            p = self.get_project(s, project_id)
            last = s.scalar(select(func.max(Clip.position)).where(Clip.project_id == project_id))
            clip = Clip(
                project_id=project_id, media_sha256=media_row["sha256"],
                position=(last + 1.0) if last is not None else 0.0,
                source_start=s0, source_end=e0, trim_start=0.0, trim_end=length,
                segments=[{"start": 0.0, "end": length, "speed": 1.0}],
                rotation=0.0, crop_keyframes=[], audio=bool(media_row["has_audio"]),
            )
            s.add(clip)
            self.touch(p)
            s.flush()
            return clip.id

    def remove_clip(self, clip_id: str) -> None:
        with self.db.write() as s:
            clip = self.get_clip(s, clip_id)
            set_deleted(s, clip, True)
            p = s.get(Project, clip.project_id)
            if p is not None:
                self.touch(p)

    # ------------------------------------------------------------------ documents
    def document(self, project_id: str) -> dict:
        from app.services.document import build_document

        with self.db.read() as s:
            return build_document(self, s, project_id)

    def apply(self, project_id: str, doc: dict) -> list[str]:
        """Apply a project document; returns the paths of the keys it ignored as unknown (see
        ``document.unknown_fields``), for the caller to tell."""
        from app.services.document import apply_document, build_document, unknown_fields

        with self.db.write() as s:
            shown = build_document(self, s, project_id)
            apply_document(self, s, project_id, doc)
        return unknown_fields(doc, shown)

    # ------------------------------------------------------------------ files
    def media_path(self, media: Media) -> Path:
        return self.media.path_for(media.sha256, media.ext)

    def output_path(self, sha256: str) -> Path:
        return self.media.path_for(sha256, ".mp4")
