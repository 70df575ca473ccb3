"""SQLAlchemy models. Every id is a UUID string (media: its sha256).

Synced tables carry the sync stamps: ``hlc`` (the row's newest hybrid-logical-clock stamp),
``device_id`` (its last writer), ``deleted`` (tombstone) and ``stamps`` (field -> HLC stamp,
so last-write-wins can be decided per field). Stamps are written in one place only:
:mod:`app.storage.stamping`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.types import TypeDecorator

from app.limits import MIN_REGION


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """A stored time as ISO 8601 text with its UTC offset (a naive one is UTC), for JSON."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.isoformat()


class IsoDateTime(TypeDecorator):
    """Stored as ISO 8601 text with a UTC offset (sortable, readable, timezone-safe)."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def process_result_value(self, value, dialect):
        return None if value is None else datetime.fromisoformat(value)


class Base(DeclarativeBase):
    pass


class Synced:
    """Mixin for rows that sync. ``__synced_fields__`` lists the fields stamped one by one."""

    __synced_fields__: tuple[str, ...] = ()
    __sync_table__: str = ""  # the name used in change objects and conflicts

    hlc: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    device_id: Mapped[str] = mapped_column(String(36), default="", nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    stamps: Mapped[dict] = mapped_column(JSON, default=dict, nullable=False)


class Project(Synced, Base):
    __tablename__ = "projects"
    __sync_table__ = "project"
    __synced_fields__ = ("name", "aspect_ratio", "created_at", "working_video_id", "final_video_id", "deleted")

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    aspect_ratio: Mapped[str] = mapped_column(String(8), nullable=False, default="9:16")
    created_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)
    working_video_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    final_video_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class Transition(Synced, Base):
    __tablename__ = "transitions"
    __sync_table__ = "transition"
    __synced_fields__ = ("type", "duration", "deleted")

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), default="cut", nullable=False)
    duration: Mapped[float] = mapped_column(Float, default=0.5, nullable=False)


class ExportSettings(Synced, Base):
    __tablename__ = "export_settings"
    __sync_table__ = "export_settings"
    __synced_fields__ = ("width", "height", "fps", "crf", "preset", "upscaler", "deleted")

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    width: Mapped[int] = mapped_column(Integer, default=1080, nullable=False)
    height: Mapped[int] = mapped_column(Integer, default=1920, nullable=False)
    fps: Mapped[float] = mapped_column(Float, default=30.0, nullable=False)
    crf: Mapped[int] = mapped_column(Integer, default=20, nullable=False)
    preset: Mapped[str] = mapped_column(String(16), default="veryfast", nullable=False)
    upscaler: Mapped[str] = mapped_column(String(16), default="lanczos", nullable=False)


class OverlaySettings(Synced, Base):
    __tablename__ = "overlay_settings"
    __sync_table__ = "overlay_settings"
    __synced_fields__ = ("color", "shape", "stroke_width", "fill_opacity", "dim", "deleted")

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    color: Mapped[str] = mapped_column(String(9), default="#FFEB3B", nullable=False)
    shape: Mapped[str] = mapped_column(String(8), default="body", nullable=False)
    stroke_width: Mapped[float] = mapped_column(Float, default=2.0, nullable=False)
    fill_opacity: Mapped[float] = mapped_column(Float, default=0.2, nullable=False)
    dim: Mapped[float] = mapped_column(Float, default=0.2, nullable=False)


class Media(Synced, Base):
    """A source file, content-addressed: stored once in the media store however many clips use it."""

    __tablename__ = "media"
    __sync_table__ = "media"
    __synced_fields__ = (
        "filename", "ext", "size", "width", "height", "rotation", "fps", "vfr", "duration",
        "frame_count", "codec", "pix_fmt", "bit_depth", "has_audio", "created_at", "deleted",
    )

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(String(400), nullable=False)
    ext: Mapped[str] = mapped_column(String(16), default="", nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)  # display size (after rotation)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    rotation: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    fps: Mapped[float] = mapped_column(Float, nullable=False)
    vfr: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    duration: Mapped[float] = mapped_column(Float, nullable=False)
    frame_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    codec: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    pix_fmt: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    bit_depth: Mapped[int] = mapped_column(Integer, default=8, nullable=False)
    has_audio: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)

    @property
    def id(self) -> str:
        return self.sha256


class Clip(Synced, Base):
    __tablename__ = "clips"
    __sync_table__ = "clip"
    __synced_fields__ = (
        "project_id", "media_sha256", "position", "source_start", "source_end", "trim_start",
        "trim_end", "segments", "rotation", "crop_keyframes", "audio", "deleted",
    )
    __table_args__ = (Index("ix_clips_project", "project_id", "position"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), nullable=False)
    media_sha256: Mapped[str] = mapped_column(ForeignKey("media.sha256"), nullable=False)
    position: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    source_start: Mapped[float] = mapped_column(Float, nullable=False)
    source_end: Mapped[float] = mapped_column(Float, nullable=False)
    trim_start: Mapped[float] = mapped_column(Float, nullable=False)
    trim_end: Mapped[float] = mapped_column(Float, nullable=False)
    # [{"start", "end", "speed"}], clip-local seconds, covering [0, length]
    segments: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    rotation: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    # [{"time", "x", "y", "width", "height"}], sorted by time, source pixels after rotation
    crop_keyframes: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    audio: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)

    @property
    def length(self) -> float:
        return self.source_end - self.source_start

    @property
    def trim(self) -> tuple[float, float]:
        """The trim the clip is shown, exported and counted with: see :func:`effective_trim`."""
        return effective_trim(self.trim_start, self.trim_end, self.length, self.stamps)


def renumber(clips: list[Clip]) -> None:
    """Put a project's clips in this order (positions 0..n-1), every position stamped as one edit,
    changed or not. The order is then one register spread over the clips: merged field by field,
    each clip takes its position from the newer of two concurrent reorders, so the newer order
    wins whole instead of a mix of both (and the loser is one conflict, see
    ``sync.merge.order_conflicts``)."""
    for i, c in enumerate(clips):
        c.position = float(i)
        flag_modified(c, "position")


def effective_trim(start: float, end: float, length: float, stamps: dict | None) -> tuple[float, float]:
    """The trim of a clip as stored, made valid. Each device keeps start < end, but sync merges
    field by field: a start set on one device and an end set on another can cross (start 1.5 from
    here, end 0.6 from there). Then the newer of the two edits is kept and the older field is taken
    at its bound (the clip's start or end). The stored values stay the merge's registers and this
    is a function of them alone, so every device derives the same trim whatever order the writes
    came in; the next edit of the trim stores valid values again."""
    if start < end:
        return start, end
    stamps = stamps or {}
    if stamps.get("trim_start", "") > stamps.get("trim_end", "") and start < length:
        return start, length
    if end > 0.0:
        return 0.0, end
    return 0.0, length


class Region(Synced, Base):
    """A spotlight region of the overlay: [start, end] of working-video time with ellipse keyframes."""

    __tablename__ = "regions"
    __sync_table__ = "region"
    __synced_fields__ = ("project_id", "start", "end", "keyframes", "deleted")
    __table_args__ = (Index("ix_regions_project", "project_id", "start"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), nullable=False)
    start: Mapped[float] = mapped_column(Float, nullable=False)
    end: Mapped[float] = mapped_column(Float, nullable=False)
    # [{"time", "x", "y", "rx", "ry"}]
    keyframes: Mapped[list] = mapped_column(JSON, nullable=False, default=list)

    @property
    def span(self) -> tuple[float, float, list]:
        """(start, end, keyframes) as shown, rendered and edited: see :func:`effective_region`."""
        return effective_region(self.start, self.end, self.keyframes, self.stamps)


def effective_region(start: float, end: float, keyframes: list, stamps: dict | None) -> tuple[float, float, list]:
    """A region as stored, made valid. As with :func:`effective_trim`, a start moved on one device
    and an end moved on another can cross once merged (start 3.8 from here, end 2.5 from there).
    Then the newer of the two edits is kept and the region takes the shortest length from it
    (``MIN_REGION``, onwards from a kept start, back from a kept end), with the keyframes that lie
    in it. A function of the stored registers alone, so every device derives the same region; the
    next edit of the region stores valid values again."""
    if start < end:
        return start, end, keyframes
    stamps = stamps or {}
    if stamps.get("start", "") > stamps.get("end", ""):
        lo, hi = start, start + MIN_REGION
    else:
        hi = max(end, MIN_REGION)
        lo = hi - MIN_REGION
    return lo, hi, [k for k in keyframes if lo - 1e-6 <= k.get("time", lo) <= hi + 1e-6]


class WorkingVideo(Synced, Base):
    """Output of a framing export. ``inputs_hash`` is the framing fingerprint it was rendered from."""

    __tablename__ = "working_videos"
    __sync_table__ = "working_video"
    __synced_fields__ = (
        "project_id", "sha256", "size", "width", "height", "fps", "duration", "inputs_hash",
        "created_at", "deleted",
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), nullable=False, index=True)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    fps: Mapped[float] = mapped_column(Float, nullable=False)
    duration: Mapped[float] = mapped_column(Float, nullable=False)
    inputs_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)


class FinalVideo(Synced, Base):
    """Output of an overlay export, rendered from one working video and the overlay edits."""

    __tablename__ = "final_videos"
    __sync_table__ = "final_video"
    __synced_fields__ = (
        "project_id", "working_video_id", "sha256", "size", "width", "height", "fps", "duration",
        "inputs_hash", "created_at", "deleted",
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), nullable=False, index=True)
    working_video_id: Mapped[str] = mapped_column(String(36), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    fps: Mapped[float] = mapped_column(Float, nullable=False)
    duration: Mapped[float] = mapped_column(Float, nullable=False)
    inputs_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)


class ExportJob(Base):
    """Local to this device (not synced): an export's lifecycle, owner process and heartbeat."""

    __tablename__ = "export_jobs"
    __table_args__ = (Index("ix_jobs_project_status", "project_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(36), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)  # framing | overlay
    # queued | running | complete | failed | cancelled | interrupted
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    device: Mapped[str | None] = mapped_column(String(120), nullable=True)
    gpu: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    inputs_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(IsoDateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(IsoDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(IsoDateTime, nullable=True)


class Change(Base):
    """The durable outbox: every stamped local write, in commit order, until it is pushed."""

    __tablename__ = "sync_changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    table: Mapped[str] = mapped_column(String(32), nullable=False)
    row_id: Mapped[str] = mapped_column(String(64), nullable=False)
    hlc: Mapped[str] = mapped_column(String(64), nullable=False)
    # {field: value} of the fields this write changed (values as JSON)
    fields: Mapped[dict] = mapped_column(JSON, nullable=False)
    pushed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, index=True)


class Meta(Base):
    """Device-local key/value state: device id, last HLC, sync cursors."""

    __tablename__ = "local_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


SYNCED_MODELS: tuple[type, ...] = (
    Project, Transition, ExportSettings, OverlaySettings, Media, Clip, Region, WorkingVideo, FinalVideo,
)


# --------------------------------------------------------------------------- sync engine state
# Device-local (never synced): the remote, per-device cursors, conflicts, agreed stamps, the log
# of remote objects seen and of media known to be on the remote, remote writes parked until the
# rows they need exist. See app.storage.sync.


class SyncRemote(Base):
    """The configured remote (one row, id 1). Never any credential."""

    __tablename__ = "sync_remote"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint: Mapped[str] = mapped_column(Text, nullable=False)
    bucket: Mapped[str] = mapped_column(String(63), nullable=False)
    prefix: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    region: Mapped[str] = mapped_column(String(64), nullable=False, default="auto")
    updated_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)


class SyncCursor(Base):
    """The last change batch (by its device's sequence number) applied from each other device."""

    __tablename__ = "sync_cursors"

    device_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)


class SyncConflict(Base):
    """A detected conflict: both sides changed one field since they last agreed; ``winner`` kept."""

    __tablename__ = "sync_conflicts"
    __table_args__ = (Index("ix_sync_conflicts_status", "status", "detected_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tbl: Mapped[str] = mapped_column(String(32), nullable=False)
    row_id: Mapped[str] = mapped_column(String(64), nullable=False)
    field: Mapped[str] = mapped_column(String(64), nullable=False)
    local_value: Mapped[object] = mapped_column(JSON, nullable=True)
    remote_value: Mapped[object] = mapped_column(JSON, nullable=True)
    local_stamp: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    remote_stamp: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    winner: Mapped[str] = mapped_column(String(8), nullable=False)  # local | remote
    detected_at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)
    status: Mapped[str] = mapped_column(String(12), nullable=False, default="open")  # open|dismissed|restored


class SyncBase(Base):
    """Per synced row: the field stamps this device last agreed on with the remote (sent as the
    ``base`` of a pushed change, which is how the receiver tells a conflict from a follow-up
    edit), and ``tomb``: the stamp of a delete that is shown undone because a newer edit won."""

    __tablename__ = "sync_base"

    tbl: Mapped[str] = mapped_column(String(32), primary_key=True)
    row_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stamps: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    tomb: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SyncObject(Base):
    """The log of remote change objects: applied, or rejected as invalid (with the reason)."""

    __tablename__ = "sync_objects"

    key: Mapped[str] = mapped_column(String(600), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    first_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(12), nullable=False)  # applied | rejected
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)


class SyncParked(Base):
    """A remote row's writes that could not be applied: the row is not on this device and they do
    not create it, or they point at a project or media it lacks. Kept aside, so the rest of their
    batch applies and its device's later batches are not held; merged as soon as what they need
    exists (a later batch, a snapshot). ``fields`` is ``{field: [value, stamp]}``, ``base`` the
    writer's agreed stamps (None: from a snapshot), ``key`` the object they came in."""

    __tablename__ = "sync_parked"
    __table_args__ = (Index("ix_sync_parked_row", "tbl", "row_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tbl: Mapped[str] = mapped_column(String(32), nullable=False)
    row_id: Mapped[str] = mapped_column(String(64), nullable=False)
    fields: Mapped[dict] = mapped_column(JSON, nullable=False)
    base: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    device_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    key: Mapped[str] = mapped_column(String(600), nullable=False, default="")
    at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)


class SyncMedia(Base):
    """Media objects known to be on the remote (uploaded and verified, or seen there)."""

    __tablename__ = "sync_media"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    at: Mapped[datetime] = mapped_column(IsoDateTime, default=utcnow, nullable=False)
