"""The project document (CLI.md): built for `project show`, validated and applied for `project apply`.

Validation runs completely before anything is written; the whole document is applied in the
caller's one transaction, so an invalid document changes nothing.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Annotated, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)
from sqlalchemy.orm import Session

from app.limits import MAX_NAME, MAX_ROTATION, MIN_REGION, PRESETS
from app.pipeline.keyframes import CropKey, box_has_ratio, keyframes_of_ratio, parse_ratio, refit_keyframes
from app.pipeline.timeline import MAX_SPEED, MIN_SPEED, Segment, validate_segments
from app.services.errors import UserError
from app.services.library import ASPECTS, DEFAULT_SIZES, Library
from app.storage.models import (
    Clip,
    ExportSettings,
    FinalVideo,
    Media,
    OverlaySettings,
    Region,
    Transition,
    WorkingVideo,
    iso,
    renumber,
)
from app.storage.status import project_status
from app.storage.tombstones import set_deleted

TOL = 1e-6

def _json_number(v):
    """A JSON number, not a string or a boolean that a lax parser would turn into one."""
    if isinstance(v, (bool, str)):
        raise ValueError("must be a number")
    return v


Num = Annotated[float, BeforeValidator(_json_number), Field(allow_inf_nan=False)]
Int = Annotated[int, BeforeValidator(_json_number)]


class _M(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class TrimIn(_M):
    start: Num
    end: Num


class SegmentIn(_M):
    start: Num
    end: Num
    speed: Num = Field(ge=MIN_SPEED, le=MAX_SPEED)


class CropKeyIn(_M):
    time: Num = Field(ge=0)
    x: Num
    y: Num
    width: Num = Field(ge=16)
    height: Num = Field(ge=16)


class ClipIn(_M):
    id: str
    trim: TrimIn | None = None
    segments: list[SegmentIn] | None = None
    rotation: Num | None = Field(default=None, ge=-MAX_ROTATION, le=MAX_ROTATION)
    crop_keyframes: list[CropKeyIn] | None = None
    audio: StrictBool | None = None


class TransitionIn(_M):
    type: Literal["cut", "fade", "dissolve"] | None = None
    duration: Num | None = Field(default=None, gt=0, le=5)


class ExportSettingsIn(_M):
    width: Int | None = Field(default=None, ge=16, le=7680)
    height: Int | None = Field(default=None, ge=16, le=7680)
    fps: Num | None = Field(default=None, ge=1, le=120)
    crf: Int | None = Field(default=None, ge=0, le=51)
    preset: Literal[PRESETS] | None = None  # type: ignore[valid-type]
    upscaler: Literal["lanczos", "ai"] | None = None

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v):
        if v is not None and v % 2:
            raise ValueError("must be even (H.264 4:2:0)")
        return v


class OverlaySettingsIn(_M):
    color: str | None = None
    shape: Literal["body", "ground"] | None = None
    stroke_width: Num | None = Field(default=None, ge=0, le=50)
    fill_opacity: Num | None = Field(default=None, ge=0, le=1)
    dim: Num | None = Field(default=None, ge=0, le=1)

    @field_validator("color")
    @classmethod
    def _color(cls, v):
        if v is not None and not re.fullmatch(r"#[0-9A-Fa-f]{6}", v):
            raise ValueError("must be a colour like #FFEB3B")
        return v.upper() if v else v


class EllipseKeyIn(_M):
    time: Num = Field(ge=0)
    x: Num
    y: Num
    rx: Num = Field(gt=0)
    ry: Num = Field(gt=0)


class RegionIn(_M):
    id: str | None = None
    start: Num = Field(ge=0)
    end: Num
    keyframes: list[EllipseKeyIn] = Field(min_length=1)


class OverlayIn(_M):
    settings: OverlaySettingsIn | None = None
    regions: list[RegionIn] | None = None


class DocumentIn(_M):
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    aspect_ratio: Literal[ASPECTS] | None = None  # type: ignore[valid-type]
    clips: list[ClipIn] | None = None
    transition: TransitionIn | None = None
    export_settings: ExportSettingsIn | None = None
    overlay: OverlayIn | None = None


def _submodel(annotation):
    """The model a field holds (alone, in a list, or optional), and whether in a list."""
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    inner = args[0]
    if get_origin(inner) is list:
        item = get_args(inner)[0]
        return (item, True) if isinstance(item, type) and issubclass(item, _M) else (None, True)
    return (inner, False) if isinstance(inner, type) and issubclass(inner, _M) else (None, False)


def unknown_fields(raw, shown: dict, model: type[_M] = DocumentIn, where: str = "") -> list[str]:
    """The keys of a document that ``project apply`` neither edits nor finds in ``project show``'s
    output (``shown``): a misspelt edit ("crop_keyframe", "nmae") that would otherwise be dropped
    without a word. Their paths, e.g. ``clips.0.crop_keyframe``."""
    if not isinstance(raw, dict):
        return []
    shown = shown if isinstance(shown, dict) else {}
    out = [f"{where}{k}" for k in raw if k not in model.model_fields and k not in shown]
    for name, info in model.model_fields.items():
        sub, many = _submodel(info.annotation)
        if sub is None or name not in raw:
            continue
        if many:
            items = raw[name] if isinstance(raw[name], list) else []
            seen = shown.get(name) if isinstance(shown.get(name), list) else []
            union = {k: v for item in seen if isinstance(item, dict) for k, v in item.items()}
            for i, item in enumerate(items):
                out += unknown_fields(item, union, sub, f"{where}{name}.{i}.")
        else:
            out += unknown_fields(raw[name], shown.get(name), sub, f"{where}{name}.")
    return out


def _fmt_validation(exc: ValidationError, what: str = "invalid document") -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")  # our own validators' words, as they are
        parts.append(f"{loc}: {msg}")
    more = len(exc.errors()) - 5
    return f"{what}: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _check_export_size(w: int, h: int, aspect: str, what: str) -> None:
    if not math.isclose(w / h, parse_ratio(aspect), rel_tol=0.02):
        raise UserError(f"{what}: {w}x{h} is not of the aspect ratio {aspect}")


def _form_number(v):
    """The number a form field's text spells ("1080", "29.97"), else the value as it is."""
    if not isinstance(v, str):
        return v
    for kind in (int, float):
        try:
            return kind(v.strip())
        except ValueError:
            pass
    return v


def check_export_settings(raw: dict, aspect: str) -> dict:
    """A complete ``export_settings`` object (values may be the text of form fields) checked as
    `project apply` checks it for a project of ``aspect``: the typed values, or UserError."""
    raw = {k: _form_number(v) if k in ("width", "height", "fps", "crf") else v for k, v in raw.items()}
    try:
        es = ExportSettingsIn.model_validate(raw).model_dump()
    except ValidationError as exc:
        raise UserError(_fmt_validation(exc, "invalid export settings")) from None
    missing = [k for k, v in es.items() if v is None]
    if missing:
        raise UserError(f"invalid export settings: {', '.join(missing)} missing")
    _check_export_size(es["width"], es["height"], aspect, "invalid export settings")
    return es


# --------------------------------------------------------------------------- show


def refit_keyframe_dicts(keys: list[dict], width: int, height: int, ratio: float) -> list[dict]:
    """Crop keyframes (as stored) refitted to another aspect ratio, centres kept."""
    return [dataclasses.asdict(k) for k in refit_keyframes([CropKey(**k) for k in keys], width, height, ratio)]


def with_aspect(doc: dict, aspect: str, media: dict[str, dict] | None = None) -> None:
    """A project document (the dict ``project show`` gives, or its editable part) changed in
    place to ``aspect``, the way ``project apply`` changes it: every clip's keyframes refitted
    around their centres, and the export size set to the aspect's default. ``media``: clip id ->
    its media (width, height) when the clips of ``doc`` do not carry it."""
    ratio = parse_ratio(aspect)
    doc["aspect_ratio"] = aspect
    if doc.get("export_settings"):
        doc["export_settings"].update(zip(("width", "height"), DEFAULT_SIZES[aspect], strict=True))
    for c in doc["clips"]:
        m = (media or {}).get(c["id"]) or c.get("media") or {}
        if c.get("crop_keyframes") and m:
            c["crop_keyframes"] = refit_keyframe_dicts(c["crop_keyframes"], m["width"], m["height"], ratio)


def _output(lib: Library, video, current: bool | None) -> dict | None:
    if video is None:
        return None
    path = lib.output_path(video.sha256)
    return {
        "id": video.id,
        "path": str(path.resolve()),
        "width": video.width,
        "height": video.height,
        "duration": round(video.duration, 3),
        "current": bool(current),
        "local": path.is_file(),
    }


def whole(v):
    """A pixel count or a frame rate as the document shows it: 656, not 656.0 (stored as floats)."""
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53 else v


def _pixels(key: dict) -> dict:
    """A keyframe as the document shows it: its time as stored, its pixels whole where they are."""
    return {k: v if k == "time" else whole(v) for k, v in key.items()}


def shown_crop_keys(c: Clip, m: Media | None, ratio: float) -> list[dict]:
    """A clip's crop keyframes as `project show` gives them for a project of ``ratio``."""
    if m is None:
        return [_pixels(k) for k in c.crop_keyframes]
    keys = keyframes_of_ratio([CropKey(**k) for k in c.crop_keyframes], m.width, m.height, ratio)
    return [_pixels(dataclasses.asdict(k)) for k in keys]


def _as_shown(keys: list[CropKeyIn], shown: list[dict]) -> bool:
    """``keys`` (from a document) are ``shown`` (what `project show` gave), to the pixel."""
    got = sorted(keys, key=lambda k: k.time)
    return len(got) == len(shown) and all(
        abs(k.time - d["time"]) < 1e-6 and all(abs(getattr(k, f) - d[f]) < 0.5 for f in ("x", "y", "width", "height"))
        for k, d in zip(got, shown, strict=True))


def region_doc(r: Region) -> dict:
    start, end, keys = r.span
    return {"id": r.id, "start": start, "end": end, "keyframes": [_pixels(k) for k in keys]}


def build_document(lib: Library, s: Session, project_id: str) -> dict:
    p = lib.get_project(s, project_id)
    st = project_status(s, project_id)
    clips = lib.clips_of(s, project_id)
    medias = {m.sha256: m for m in s.query(Media).filter(Media.sha256.in_({c.media_sha256 for c in clips}))}
    tr = s.get(Transition, project_id)
    ex = s.get(ExportSettings, project_id)
    ov = s.get(OverlaySettings, project_id)
    wv = s.get(WorkingVideo, p.working_video_id) if p.working_video_id else None
    fv = s.get(FinalVideo, p.final_video_id) if p.final_video_id else None
    ratio = parse_ratio(p.aspect_ratio)

    def clip_doc(c: Clip) -> dict:
        m = medias.get(c.media_sha256)
        return {
            "id": c.id,
            "media": None if m is None else {
                "sha256": m.sha256, "filename": m.filename, "width": m.width, "height": m.height,
                "fps": round(m.fps, 3), "duration": round(m.duration, 3), "has_audio": m.has_audio,
                "rotation": m.rotation, "local": lib.media.has(m.sha256, m.ext),
            },
            "source_start": c.source_start,
            "source_end": c.source_end,
            "trim": dict(zip(("start", "end"), c.trim, strict=True)),
            "segments": [dict(x) for x in c.segments],
            "rotation": c.rotation,
            "crop_keyframes": shown_crop_keys(c, m, ratio),
            "audio": c.audio,
        }

    return {
        "id": p.id,
        "name": p.name,
        "aspect_ratio": p.aspect_ratio,
        "status": st.status,
        "progress": st.progress,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "clips": [clip_doc(c) for c in clips],
        "transition": {"type": tr.type, "duration": tr.duration} if tr else {"type": "cut", "duration": 0.5},
        "export_settings": {
            "width": ex.width, "height": ex.height, "fps": whole(ex.fps), "crf": ex.crf,
            "preset": ex.preset, "upscaler": ex.upscaler,
        } if ex else None,
        "overlay": {
            "settings": {
                "color": ov.color, "shape": ov.shape, "stroke_width": whole(ov.stroke_width),
                "fill_opacity": ov.fill_opacity, "dim": ov.dim,
            } if ov else None,
            "regions": [region_doc(r) for r in lib.regions_of(s, project_id)],
        },
        "working_video": _output(lib, wv, st.working_current),
        "final_video": _output(lib, fv, st.final_current),
    }


# --------------------------------------------------------------------------- apply


def parse_document(doc) -> DocumentIn:
    if not isinstance(doc, dict):
        raise UserError("invalid document: the document must be a JSON object")
    try:
        return DocumentIn.model_validate(doc)
    except ValidationError as exc:
        raise UserError(_fmt_validation(exc)) from None


def validate_crop_keyframes(keys: list[CropKeyIn], media: Media, length: float, ratio: float,
                            where: str) -> list[dict]:
    keys = sorted(keys, key=lambda k: k.time)
    min_gap = 1.0 / max(media.fps, 1.0)
    for i, k in enumerate(keys):
        if k.time > length + TOL:
            raise UserError(f"invalid document: {where}.crop_keyframes: time {k.time:g} is after the clip's end "
                            f"({length:g} s)")
        if i and k.time - keys[i - 1].time < min_gap - TOL:
            raise UserError(f"invalid document: {where}.crop_keyframes: keyframes at {keys[i - 1].time:g} and "
                            f"{k.time:g} are closer than one frame")
        if not box_has_ratio(k.width, k.height, ratio):
            raise UserError(f"invalid document: {where}.crop_keyframes: {k.width:g}x{k.height:g} at {k.time:g} s is "
                            f"not of the project's aspect ratio")
        if k.x < -TOL or k.y < -TOL or k.x + k.width > media.width + TOL or k.y + k.height > media.height + TOL:
            raise UserError(f"invalid document: {where}.crop_keyframes: the box at {k.time:g} s is outside the "
                            f"{media.width}x{media.height} frame")
    return [{"time": k.time, "x": k.x, "y": k.y, "width": k.width, "height": k.height} for k in keys]


def _region_keys(r: RegionIn) -> list[dict]:
    return [k.model_dump() for k in sorted(r.keyframes, key=lambda k: k.time)]


def _region_as_stored(r: RegionIn, row: Region) -> bool:
    start, end, keys = row.span
    return (r.start, r.end) == (start, end) and _region_keys(r) == keys


def apply_document(lib: Library, s: Session, project_id: str, raw) -> None:
    doc = parse_document(raw)
    p = lib.get_project(s, project_id)
    clips = lib.clips_of(s, project_id)
    by_id = {c.id: c for c in clips}
    medias = {m.sha256: m for m in s.query(Media).filter(Media.sha256.in_({c.media_sha256 for c in clips}))}
    new_aspect = doc.aspect_ratio or p.aspect_ratio
    ratio, old_ratio = parse_ratio(new_aspect), parse_ratio(p.aspect_ratio)
    aspect_changed = new_aspect != p.aspect_ratio

    # ---- validate everything first
    clip_updates: dict[str, dict] = {}
    order: list[str] | None = None
    if doc.clips is not None:
        ids = [c.id for c in doc.clips]
        if len(set(ids)) != len(ids):
            raise UserError("invalid document: clips: a clip is named twice")
        if set(ids) != set(by_id):
            missing = set(by_id) - set(ids)
            unknown = set(ids) - set(by_id)
            what = (f"unknown clip id {sorted(unknown)[0]!r}" if unknown
                    else f"clip {sorted(missing)[0]!r} is missing (use `clip remove` to remove a clip)")
            raise UserError(f"invalid document: clips must name exactly the project's clips: {what}")
        order = ids
        for i, cin in enumerate(doc.clips):
            c = by_id[cin.id]
            m = medias[c.media_sha256]
            length = c.source_end - c.source_start
            where = f"clips.{i}"
            upd: dict = {}
            if cin.trim is not None:
                if not (-TOL <= cin.trim.start < cin.trim.end <= length + TOL):
                    raise UserError(f"invalid document: {where}.trim must satisfy 0 <= start < end <= {length:g}")
                upd["trim_start"], upd["trim_end"] = max(cin.trim.start, 0.0), min(cin.trim.end, length)
                frame = 1.0 / m.fps if m.fps > 0 else 0.0
                if upd["trim_end"] - upd["trim_start"] < frame - 1e-9:  # as `clip add` refuses
                    raise UserError(f"invalid document: {where}.trim keeps {cin.trim.end - cin.trim.start:g} s, "
                                    f"less than one frame ({frame:.4g} s)")
            if cin.segments is not None:
                segs = [Segment(x.start, x.end, x.speed) for x in cin.segments]
                problem = validate_segments(segs, length)
                if problem:
                    raise UserError(f"invalid document: {where}.segments: {problem}")
                upd["segments"] = [{"start": x.start, "end": x.end, "speed": x.speed} for x in cin.segments]
                upd["segments"][-1]["end"] = length
            if cin.rotation is not None:
                upd["rotation"] = cin.rotation
            if cin.crop_keyframes is not None and not (
                    aspect_changed and _as_shown(cin.crop_keyframes, shown_crop_keys(c, m, old_ratio))):
                # (keyframes restated as shown with a new ratio: the ratio's change refits them below,
                # as when the document leaves them out; the shown document can be edited at its ratio)
                upd["crop_keyframes"] = validate_crop_keyframes(cin.crop_keyframes, m, length, ratio, where)
            if cin.audio is not None:
                upd["audio"] = cin.audio
            clip_updates[c.id] = upd

    region_rows = {r.id: r for r in lib.regions_of(s, project_id)}
    new_regions: list[RegionIn] | None = None
    if doc.overlay is not None and doc.overlay.regions is not None:
        new_regions = sorted(doc.overlay.regions, key=lambda r: r.start)
        seen: set[str] = set()
        # Regions drawn on two devices can overlap once merged (each was valid where it was
        # drawn), and an edit elsewhere restates them (the editor sends its whole snapshot): an
        # overlap of two regions that already overlapped is let be, and a region restated exactly
        # as stored is not checked again. Whatever an edit adds or changes is checked in full.
        old = {id(r): region_rows[r.id] for r in new_regions if r.id in region_rows}
        stored = {id(r) for r in new_regions if id(r) in old and _region_as_stored(r, old[id(r)])}

        def overlapped_before(a: RegionIn, b: RegionIn) -> bool:
            oa, ob = old.get(id(a)), old.get(id(b))
            if oa is None or ob is None:
                return False
            (sa, ea, _), (sb, eb, _) = oa.span, ob.span
            return sa < eb - TOL and sb < ea - TOL

        for i, r in enumerate(new_regions):
            if r.id is not None:
                if r.id not in region_rows:
                    raise UserError(f"invalid document: overlay.regions: unknown region id {r.id!r}")
                if r.id in seen:
                    raise UserError(f"invalid document: overlay.regions: region {r.id!r} is named twice")
                seen.add(r.id)
            if any(r.start < q.end - TOL and not overlapped_before(q, r) for q in new_regions[:i]):
                raise UserError(f"invalid document: overlay.regions: regions overlap at {r.start:g} s")
            if id(r) in stored:
                continue
            if r.end - r.start < MIN_REGION - TOL:
                raise UserError(f"invalid document: overlay.regions: a region is at least {MIN_REGION} s long "
                                f"({r.start:g}-{r.end:g})")
            for k in r.keyframes:
                if not (r.start - TOL <= k.time <= r.end + TOL):
                    raise UserError(f"invalid document: overlay.regions: keyframe at {k.time:g} s is outside its "
                                    f"region {r.start:g}-{r.end:g}")
            times = sorted(k.time for k in r.keyframes)
            if any(b - a < 1e-3 for a, b in zip(times, times[1:], strict=False)):
                raise UserError("invalid document: overlay.regions: two keyframes at the same time")

    ex = s.get(ExportSettings, project_id)
    size_given = doc.export_settings is not None and (
        doc.export_settings.width is not None or doc.export_settings.height is not None)
    if size_given and aspect_changed and (doc.export_settings.width or ex.width,
                                          doc.export_settings.height or ex.height) == (ex.width, ex.height):
        size_given = False  # the old size restated with a new ratio: the ratio's default size, as if left out
    if size_given:
        _check_export_size(doc.export_settings.width or ex.width, doc.export_settings.height or ex.height,
                           new_aspect, "invalid document: export_settings")

    # ---- apply (one transaction: the caller's)
    changed = False
    if doc.name is not None and doc.name.strip() != p.name:
        if not doc.name.strip():
            raise UserError("invalid document: name must not be blank")
        p.name = doc.name.strip()
        changed = True
    if aspect_changed:
        p.aspect_ratio = new_aspect
        changed = True
        for c in clips:
            if c.crop_keyframes and "crop_keyframes" not in clip_updates.get(c.id, {}):
                m = medias[c.media_sha256]
                c.crop_keyframes = refit_keyframe_dicts(c.crop_keyframes, m.width, m.height, ratio)
        if not size_given:
            ex.width, ex.height = DEFAULT_SIZES[new_aspect]
    for cid, upd in clip_updates.items():
        c = by_id[cid]
        for k, v in upd.items():
            if getattr(c, k) != v:
                setattr(c, k, v)
                changed = True
    # a new order only when it is one: positions left with gaps (a clip removed) are the same
    # order, and renumbering them would stamp a reorder that beats a real one from another device
    if order is not None and order != [c.id for c in sorted(by_id.values(), key=lambda c: (c.position, c.id))]:
        renumber([by_id[cid] for cid in order])
        changed = True
    if doc.transition is not None:
        tr = s.get(Transition, project_id)
        for k, v in doc.transition.model_dump(exclude_none=True).items():
            if getattr(tr, k) != v:
                setattr(tr, k, v)
                changed = True
    if doc.export_settings is not None:
        for k, v in doc.export_settings.model_dump(exclude_none=True).items():
            if k in ("width", "height") and not size_given:
                continue
            if getattr(ex, k) != v:
                setattr(ex, k, v)
                changed = True
    if doc.overlay is not None and doc.overlay.settings is not None:
        ov = s.get(OverlaySettings, project_id)
        for k, v in doc.overlay.settings.model_dump(exclude_none=True).items():
            if getattr(ov, k) != v:
                setattr(ov, k, v)
                changed = True
    if new_regions is not None:
        keep = {r.id for r in new_regions if r.id}
        for rid, row in region_rows.items():
            if rid not in keep:
                set_deleted(s, row, True)
                changed = True
        for r in new_regions:
            keys = _region_keys(r)
            if r.id:
                row = region_rows[r.id]
                for k, v in (("start", r.start), ("end", r.end), ("keyframes", keys)):
                    if getattr(row, k) != v:
                        setattr(row, k, v)
                        changed = True
            else:
                s.add(Region(project_id=project_id, start=r.start, end=r.end, keyframes=keys))
                changed = True
    if changed:
        lib.touch(p)
