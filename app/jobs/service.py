"""Export jobs: the lifecycle shared by the CLI and the GUI (no Qt here).

queued -> running -> complete | failed | cancelled; a job whose process died is shown as
``interrupted`` (pid + heartbeat, see app.storage.status) and can be restarted.

Commit order, so that a crash at any point leaves the old state or the new one:
render to a temporary file in the data directory -> fsync -> hash -> rename to its content
address -> ONE transaction: output row + project pointer + job complete -> announce.
Old outputs are never touched at the start of a re-export.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from app.pipeline.keyframes import CropKey, EllipseKey, keyframes_of_ratio, parse_ratio
from app.pipeline.plan import (
    Cancelled,
    ClipPlan,
    FramingPlan,
    OverlayPlan,
    RegionPlan,
    RenderError,
    RenderResult,
    disk_full,
    file_of,
)
from app.pipeline.timeline import Segment
from app.services.errors import NotFound, UserError
from app.services.library import Library
from app.storage.models import (
    ExportJob,
    ExportSettings,
    FinalVideo,
    Media,
    OverlaySettings,
    Project,
    Transition,
    WorkingVideo,
    iso,
)
from app.storage.procs import HOST
from app.storage.status import ACTIVE, effective_job_status, job_alive, project_status

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.5
JOB_TYPES = ("framing", "overlay")
Renderer = Callable[..., RenderResult]


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Settings:
    """Device-local export settings (QSettings/CLI flags feed these)."""

    device: str = "auto"  # auto | cpu | cuda
    max_gpu_jobs: int = 1
    ai_weights: str | None = None


def job_dict(job: ExportJob, t: datetime | None = None, current: bool | None = None) -> dict:
    """``current``: for a complete job, whether its video is still the project's (a later export
    replaces it); None when not known or not complete."""
    return {
        "id": job.id,
        "project_id": job.project_id,
        "type": job.type,
        "status": effective_job_status(job, t),
        "progress": round(job.progress, 1),
        "error": job.error,
        "output": job.output,
        "device": job.device,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "current": current if job.status == "complete" else None,
    }


def default_renderer(kind: str) -> Renderer:
    if kind == "framing":
        from app.pipeline.framing import render_framing

        return render_framing
    from app.pipeline.overlay_render import render_overlay

    return render_overlay


def cancel_if_project_deleted(s, job: ExportJob) -> bool:
    """Whether ``job`` is to stop: a cancel was asked for, or its project was deleted meanwhile
    (here, in another process or by a sync merge); a delete is recorded as the job's cancel reason."""
    if not job.cancel_requested and s.get(Project, job.project_id) is None:
        job.cancel_requested = True
        job.error = job.error or "the project was deleted"
    return bool(job.cancel_requested)


class ProjectDeleted(Cancelled):
    """The project was deleted while its output was being committed: the export is cancelled,
    as when its heartbeat sees the delete first."""


class ExportService:
    def __init__(self, lib: Library, settings: Settings | None = None,
                 renderers: dict[str, Renderer] | None = None):
        self.lib = lib
        self.settings = settings or Settings()
        self._renderers = renderers or {}

    # ------------------------------------------------------------------ queries
    def list_jobs(self, project_id: str | None = None, active_only: bool = False) -> list[dict]:
        """The jobs, newest first: of one project, or only those queued or running."""
        self.reap()
        with self.lib.db.read() as s:
            stmt = select(ExportJob).order_by(ExportJob.created_at.desc())
            if project_id:
                stmt = stmt.where(ExportJob.project_id == project_id)
            if active_only:
                stmt = stmt.where(ExportJob.status.in_(ACTIVE))
            t = now()
            jobs = list(s.scalars(stmt))
            held = self._held_outputs(s, {j.project_id for j in jobs if j.status == "complete"})
            return [job_dict(j, t, (j.project_id, j.type, j.output) in held if j.status == "complete" else None)
                    for j in jobs]

    def _held_outputs(self, s, project_ids: set[str]) -> set[tuple[str, str, str]]:
        """(project id, job type, path) of the videos the projects hold now."""
        if not project_ids:
            return set()
        held = set()
        rows = s.execute(select(Project.id, WorkingVideo.sha256, FinalVideo.sha256)
                         .outerjoin(WorkingVideo, WorkingVideo.id == Project.working_video_id)
                         .outerjoin(FinalVideo, FinalVideo.id == Project.final_video_id)
                         .where(Project.id.in_(project_ids)))
        for pid, wsha, fsha in rows:
            for kind, sha in (("framing", wsha), ("overlay", fsha)):
                if sha:
                    held.add((pid, kind, str(self.lib.output_path(sha))))
        return held

    def clear_finished(self) -> int:
        """Forget the ended jobs (complete, failed, cancelled, interrupted); their videos stay.
        Returns how many were forgotten."""
        self.reap()
        with self.lib.db.write() as s:
            ended = list(s.scalars(select(ExportJob).where(ExportJob.status.not_in(ACTIVE))))
            for j in ended:
                s.delete(j)
            return len(ended)

    def get(self, job_id: str) -> dict:
        with self.lib.db.read() as s:
            job = s.get(ExportJob, job_id) if isinstance(job_id, str) else None
            if job is None:
                raise NotFound(f"no export job with id {job_id!r}")
            return job_dict(job)

    def reap(self) -> int:
        """Persist 'interrupted' for active jobs whose process is gone; remove their temp files."""
        n = 0
        with self.lib.db.read() as s:
            t = now()
            dead = [j.id for j in s.scalars(select(ExportJob).where(ExportJob.status.in_(ACTIVE)))
                    if not job_alive(j, t)]
        if dead:
            with self.lib.db.write() as s:
                t = now()
                for jid in dead:
                    j = s.get(ExportJob, jid)
                    if j.status in ACTIVE and not job_alive(j, t):
                        j.status = "interrupted"
                        j.error = j.error or "the export's process ended before it finished"
                        j.finished_at = t
                        n += 1
        for jid in dead:
            for f in self.lib.media.tmp.glob(f"{jid}.*"):
                f.unlink(missing_ok=True)
        return n

    # ------------------------------------------------------------------ commands
    def enqueue(self, project_id: str, kind: str) -> str:
        """Create a queued job owned by this process (it heartbeats while it waits)."""
        return self._enqueue(project_id, kind, join=False)[0]

    def enqueue_unless_in_flight(self, project_id: str, kind: str) -> tuple[str, bool]:
        """(job id, True) for a new queued job, or (id, False) of a live job of this project and type,
        in any process, that already renders what a new one would: a queued job (it takes the
        edits as they are when it starts) or a running one started from the current edits. The
        check and the new row are one transaction, so two quick requests make one job."""
        return self._enqueue(project_id, kind, join=True)

    def _enqueue(self, project_id: str, kind: str, join: bool) -> tuple[str, bool]:
        if kind not in JOB_TYPES:
            raise UserError(f"export type must be framing or overlay, not {kind!r}")
        with self.lib.db.write() as s:
            p = self.lib.get_project(s, project_id)
            if join and (same := self._in_flight(s, project_id, kind)) is not None:
                return same, False
            if kind == "framing":
                if not self.lib.clips_of(s, project_id):
                    raise UserError("the project has no clips to export: add one with `clip add`")
            elif p.working_video_id is None:
                raise UserError("the project has no working video yet: run `export framing` first")
            job = ExportJob(project_id=project_id, type=kind, status="queued", pid=os.getpid(), host=HOST,
                            heartbeat_at=now(), gpu=self._wants_gpu())
            s.add(job)
            s.flush()
            return job.id, True

    def _in_flight(self, s, project_id: str, kind: str) -> str | None:
        t = now()
        jobs = [j for j in s.scalars(select(ExportJob).where(
            ExportJob.project_id == project_id, ExportJob.type == kind, ExportJob.status.in_(ACTIVE)))
            if job_alive(j, t) and not j.cancel_requested]
        if not jobs:
            return None
        current = project_status(s, project_id).inputs_hash(kind)
        return next((j.id for j in jobs if j.status == "queued" or j.inputs_hash == current), None)

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued or running job, also one running in another process."""
        with self.lib.db.write() as s:
            job = s.get(ExportJob, job_id) if isinstance(job_id, str) else None
            if job is None:
                raise NotFound(f"no export job with id {job_id!r}")
            if job.status not in ACTIVE:
                raise UserError(f"job {job_id} is {effective_job_status(job)}, not queued or running")
            job.cancel_requested = True
            if not job_alive(job):
                job.status, job.finished_at = "interrupted", now()
        return self.get(job_id)

    def restart(self, job_id: str) -> str:
        """A new job for the same project and type (the one-click restart of an interrupted job)."""
        info = self.get(job_id)
        return self.enqueue(info["project_id"], info["type"])

    def run(self, job_id: str, progress: Callable[[float], None] | None = None,
            cancel_event: threading.Event | None = None) -> dict:
        """Run a job in this process until it ends; returns the final job dict."""
        stop = cancel_event or threading.Event()
        state = {"progress": 0.0, "cancel": False}
        hb = threading.Thread(target=self._heartbeat, args=(job_id, state, stop), daemon=True,
                              name=f"export-heartbeat-{job_id[:8]}")
        hb.start()
        tmp: Path | None = None
        try:
            self.reap()  # what an export killed before this one left in tmp/
            if not self._wait_for_slot(job_id, state, stop):
                return self._finish(job_id, "cancelled", "cancelled before it started")
            self._fetch_inputs(job_id)
            kind, plan, inputs_hash, extra = self._claim(job_id)
            self.lib.media.tmp.mkdir(parents=True, exist_ok=True)
            tmp = self.lib.media.tmp / f"{job_id}.{os.getpid()}.part.mp4"

            def on_progress(f: float) -> None:
                state["progress"] = max(0.0, min(100.0, f * 100.0))
                if progress:
                    progress(state["progress"])

            def should_cancel() -> bool:
                return stop.is_set() or state["cancel"]

            renderer = self._renderers.get(kind) or default_renderer(kind)
            result = renderer(plan, str(tmp), on_progress, should_cancel)
            if should_cancel():
                raise Cancelled()
            out = self._commit(job_id, kind, tmp, result, inputs_hash, extra)
            if progress:
                progress(100.0)
            if result.warnings:  # for this run's caller to show; not part of the stored job
                for w in result.warnings:
                    log.warning("export %s: %s", job_id, w)
                out["warnings"] = list(result.warnings)
            return out
        except Cancelled as exc:
            why = "the project was deleted" if isinstance(exc, ProjectDeleted) else "cancelled by the user"
            return self._finish(job_id, "cancelled", why)
        except (RenderError, UserError) as exc:
            return self._finish(job_id, "failed", str(exc))
        except OSError as exc:
            if full := disk_full(exc):
                return self._finish(job_id, "failed", str(full))
            where = f" ({name})" if (name := file_of(exc)) else ""
            return self._finish(job_id, "failed", f"{exc.strerror or exc}{where}")
        except Exception as exc:  # a bug: record it, never leave the job 'running'
            log.exception("export %s failed", job_id)
            return self._finish(job_id, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            stop.set()
            hb.join(timeout=2)
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def export(self, project_id: str, kind: str, progress=None, cancel_event=None) -> dict:
        return self.run(self.enqueue(project_id, kind), progress, cancel_event)

    # ------------------------------------------------------------------ internals
    def _wants_gpu(self) -> bool:
        if self.settings.device == "cpu":
            return False
        try:
            from app.pipeline.device import pick_device

            return pick_device(self.settings.device) != "cpu"
        except Exception:  # pragma: no cover - no torch / no device module
            return False

    def beat(self, job_ids: list[str]) -> None:
        """Heartbeat for queued jobs of this process that wait for a thread to run them (the GUI's
        export pool): without it a long wait would read as a process gone (``interrupted``)."""
        if not job_ids:
            return
        with self.lib.db.write(passing=True) as s:
            for job in s.scalars(select(ExportJob).where(ExportJob.id.in_(job_ids), ExportJob.status == "queued")):
                job.heartbeat_at = now()

    def _heartbeat(self, job_id: str, state: dict, stop: threading.Event) -> None:
        """Every 0.5 s: heartbeat + progress out, cancel request in (works across processes)."""
        while not stop.wait(HEARTBEAT_S):
            try:
                with self.lib.db.write(passing=True) as s:
                    job = s.get(ExportJob, job_id)
                    if job is None or job.status not in ACTIVE:  # reaped as gone: stop working
                        state["cancel"] = True
                        return
                    job.heartbeat_at = now()
                    if job.status == "running":
                        job.progress = state["progress"]
                    if cancel_if_project_deleted(s, job):
                        state["cancel"] = True
            except Exception:  # a busy database must not kill the export; try again next beat
                log.warning("heartbeat of %s failed", job_id, exc_info=True)

    def _wait_for_slot(self, job_id: str, state: dict, stop: threading.Event) -> bool:
        """Queued until fewer than max_gpu_jobs GPU exports run (on any process of this data dir)."""
        while True:
            with self.lib.db.read() as s:
                job = s.get(ExportJob, job_id)
                if s.get(Project, job.project_id) is None:
                    break  # deleted before it started
                if job.cancel_requested or stop.is_set() or state["cancel"]:
                    return False
                if not job.gpu:
                    return True
                t = now()
                running = [j for j in s.scalars(select(ExportJob).where(
                    ExportJob.status == "running", ExportJob.gpu.is_(True), ExportJob.id != job_id))
                    if job_alive(j, t)]
                if len(running) < max(1, self.settings.max_gpu_jobs):
                    return True
            time.sleep(0.25)
        with self.lib.db.write() as s:  # the job says why it stops
            cancel_if_project_deleted(s, s.get(ExportJob, job_id))
        return False

    def _fetch_inputs(self, job_id: str) -> None:
        """Media this device has not downloaded yet (a project made on another device) are
        fetched and verified now, before the job claims anything and outside any write lock."""
        with self.lib.db.read() as s:
            job = s.get(ExportJob, job_id)
            p = self.lib.get_project(s, job.project_id)
            if job.type == "framing":  # (sha256, ext) -> what the user knows it as
                wanted = {(m.sha256, m.ext): f"the video '{m.filename}'" for c in self.lib.clips_of(s, p.id)
                          if (m := s.get(Media, c.media_sha256)) is not None}
            else:
                wv = s.get(WorkingVideo, p.working_video_id) if p.working_video_id else None
                wanted = {(wv.sha256, ".mp4"): "the working video"} if wv else {}
        missing = [(key, name) for key, name in wanted.items() if not self.lib.media.has(*key)]
        if not missing:
            return
        from app.storage.sync.engine import MediaUnavailable, ensure_local

        for (sha, ext), name in missing:
            try:
                ensure_local(self.lib, sha, ext)
            except MediaUnavailable as exc:
                raise RenderError(f"{name} is missing from this device's data directory "
                                  f"({self.lib.media.path_for(sha, ext)}): {exc}") from None

    def _claim(self, job_id: str):
        """queued -> running, and snapshot the plan and its inputs fingerprint in one transaction."""
        with self.lib.db.write() as s:
            job = s.get(ExportJob, job_id)
            if job.status != "queued":
                raise UserError(f"job {job_id} is {job.status}, not queued")
            inputs_hash = project_status(s, job.project_id).inputs_hash(job.type)
            if job.type == "framing":
                plan, extra = self._framing_plan(s, job.project_id), {}
            else:
                plan, extra = self._overlay_plan(s, job.project_id)
            job.status, job.started_at, job.heartbeat_at = "running", now(), now()
            job.pid, job.host, job.inputs_hash = os.getpid(), HOST, inputs_hash
            return job.type, plan, inputs_hash, extra

    def _framing_plan(self, s, project_id: str) -> FramingPlan:
        p = self.lib.get_project(s, project_id)
        clips = self.lib.clips_of(s, project_id)
        if not clips:
            raise UserError("the project has no clips")
        ex = s.get(ExportSettings, project_id)
        tr = s.get(Transition, project_id)
        ratio = parse_ratio(p.aspect_ratio)
        plans = []
        for c in clips:
            m = s.get(Media, c.media_sha256)
            path = self.lib.media_path(m)
            if not path.is_file():
                raise RenderError(f"the media of clip {c.id} ('{m.filename}') is missing from the data directory")
            trim = c.trim
            plans.append(ClipPlan(
                media_path=str(path), width=m.width, height=m.height, fps=m.fps, has_audio=m.has_audio,
                source_start=c.source_start, source_end=c.source_end, trim_start=trim[0],
                trim_end=trim[1], segments=tuple(Segment(x["start"], x["end"], x["speed"]) for x in c.segments),
                rotation=c.rotation, crop_keyframes=tuple(keyframes_of_ratio(
                    [CropKey(**k) for k in c.crop_keyframes], m.width, m.height, ratio)),
                audio=c.audio, display_rotation=m.rotation, vfr=m.vfr, name=m.filename or "",
            ))
        return FramingPlan(
            clips=tuple(plans), ratio=ratio, width=ex.width, height=ex.height,
            fps=ex.fps, crf=ex.crf, preset=ex.preset, upscaler=ex.upscaler, ai_weights=self.settings.ai_weights,
            transition=tr.type if tr else "cut", transition_duration=tr.duration if tr else 0.5,
            device=self.settings.device,
        )

    def _overlay_plan(self, s, project_id: str) -> tuple[OverlayPlan, dict]:
        p = self.lib.get_project(s, project_id)
        wv = s.get(WorkingVideo, p.working_video_id) if p.working_video_id else None
        if wv is None:
            raise UserError("the project has no working video yet: run `export framing` first")
        path = self.lib.output_path(wv.sha256)
        if not path.is_file():
            raise RenderError("the working video is not on this device yet (sync will fetch it)")
        ov = s.get(OverlaySettings, project_id)
        ex = s.get(ExportSettings, project_id)
        regions = tuple(
            RegionPlan(start, end, tuple(EllipseKey(**k) for k in keys))
            for start, end, keys in (r.span for r in self.lib.regions_of(s, project_id))
        )
        plan = OverlayPlan(
            working_path=str(path), color=ov.color, shape=ov.shape, stroke_width=ov.stroke_width,
            fill_opacity=ov.fill_opacity, dim=ov.dim, regions=regions, crf=ex.crf, preset=ex.preset,
            device=self.settings.device,
        )
        return plan, {"working_video_id": wv.id, "fps": wv.fps}

    def _commit(self, job_id: str, kind: str, tmp: Path, result: RenderResult, inputs_hash: str,
                extra: dict) -> dict:
        from app.services.media import hash_flushed

        with self.lib.db.read() as s:
            if s.get(ExportJob, job_id).cancel_requested:
                raise Cancelled()
        sha = hash_flushed(tmp)  # on the disk before the write transaction, so its rename waits for nothing
        size = tmp.stat().st_size
        fps = extra.get("fps") or 0.0
        final_path, placed = None, False
        try:
            with self.lib.db.write() as s:
                # the output goes into the store inside this transaction: a cancel (a write) waits
                # for it, and a failure to commit takes the file back out
                job = s.get(ExportJob, job_id)
                if job.cancel_requested:
                    raise Cancelled()
                p = s.get(Project, job.project_id)
                if p is None or p.deleted:  # a cancel, as when the heartbeat sees it first
                    raise ProjectDeleted()
                placed = not self.lib.media.has(sha, ".mp4")
                final_path = self.lib.media.ingest(tmp, sha, ".mp4", move=True)
                return self._register(s, job, p, kind, sha, size, fps, result, inputs_hash, extra, final_path)
        except BaseException:
            if placed and final_path is not None:
                final_path.unlink(missing_ok=True)
            raise

    def _register(self, s, job: ExportJob, p: Project, kind: str, sha: str, size: int, fps: float,
                  result: RenderResult, inputs_hash: str, extra: dict, final_path: Path) -> dict:
        """The output's row, the project's pointer and the job's end, in the caller's transaction."""
        # an export that started before an edit and ends after a newer export of that edit:
        # its output is kept (the job opens it) but the project keeps the newer one
        st = project_status(s, p.id)
        held_current = st.working_current if kind == "framing" else st.final_current
        fresh = inputs_hash == st.inputs_hash(kind)
        publish = fresh or not held_current
        if not publish:
            log.info("export %s finished after a newer one of the same project; the project keeps that", job.id)
        if kind == "framing":
            ex = s.get(ExportSettings, job.project_id)
            row = WorkingVideo(project_id=p.id, sha256=sha, size=size, width=result.width,
                               height=result.height, fps=ex.fps if ex else fps, duration=result.duration,
                               inputs_hash=inputs_hash)
            s.add(row)
            s.flush()
            if publish:
                p.working_video_id = row.id
        else:
            row = FinalVideo(project_id=p.id, working_video_id=extra["working_video_id"], sha256=sha,
                             size=size, width=result.width, height=result.height, fps=fps,
                             duration=result.duration, inputs_hash=inputs_hash)
            s.add(row)
            s.flush()
            if publish:
                p.final_video_id = row.id
        if publish:
            self.lib.touch(p)
        job.status, job.progress, job.finished_at = "complete", 100.0, now()
        job.output, job.device, job.error = str(final_path), result.device, None
        return job_dict(job, current=publish)

    def _finish(self, job_id: str, status: str, error: str) -> dict:
        with self.lib.db.write() as s:
            job = s.get(ExportJob, job_id)
            if job.status in ACTIVE:
                if status == "cancelled" and job.error:
                    error = job.error  # the reason given with the cancel request (the project was deleted)
                job.status, job.error, job.finished_at = status, error, now()
            return job_dict(job)
