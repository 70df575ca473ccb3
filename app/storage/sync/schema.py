"""Everything read from the remote is untrusted: this module decodes and validates it.

- Object keys are built here only, from validated ids (UUIDs, sha256, sequence numbers), so no
  remote data can name a path (``../``) in the bucket or in the data directory.
- Objects are size-limited before and while they are read, gzip is inflated with a ceiling
  (bomb guard), and the JSON must match the schema: known tables, known fields, the right type
  and size for each value, well-formed HLC stamps not far in the future.

The field types come from the models (column types), with the JSON fields and id fields spelled
out below, so a synced field added to a model is validated without a second list to maintain.

Remote layout under PREFIX/ ::

    changes/DEVICE/SEQ.json.gz      one device's change batch (immutable, If-None-Match: *)
    snapshots/MS-DEVICE.json.gz     a compacted snapshot of every synced row
    manifest.json                   {snapshot, cursors}: updated by compare-and-swap (If-Match)
    media/SHA256                    content-addressed media (sources, working and final videos)
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text

from app.limits import ASPECTS, MAX_NAME, MAX_ROTATION, MAX_SPEED, MIN_SPEED, PRESETS
from app.storage.models import SYNCED_MODELS, IsoDateTime

FORMAT = 1

MAX_BATCH_GZ = 16 * 1024 * 1024  # compressed size of one change batch
MAX_BATCH_JSON = 64 * 1024 * 1024  # inflated
MAX_SNAPSHOT_GZ = 256 * 1024 * 1024
MAX_SNAPSHOT_JSON = 1024 * 1024 * 1024
MAX_MANIFEST = 1024 * 1024
MAX_ROWS = 200_000  # entries in one batch
MAX_LIST = 100_000  # elements of one JSON list field
MAX_FUTURE_MS = 24 * 3600 * 1000  # a stamp further ahead of our clock than this is rejected

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHA_RE = re.compile(r"[0-9a-f]{64}")
STAMP_RE = re.compile(r"(\d{13})\.(\d{6})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
EXT_RE = re.compile(r"(\.[a-z0-9]{1,9})?")
CHANGE_KEY_RE = re.compile(r"changes/(" + UUID_RE.pattern + r")/(\d{12})\.json\.gz")
SNAPSHOT_KEY_RE = re.compile(r"snapshots/(\d{13})-(" + UUID_RE.pattern + r")\.json\.gz")
MAX_SEQ = 10**12 - 1


class SchemaError(ValueError):
    """A remote object that does not match the schema (the message says where and why)."""


AHEAD_WORDS = "ahead of this device's clock"


class AheadError(SchemaError):
    """A remote object stamped more than ``MAX_FUTURE_MS`` ahead of this device's clock. Not
    garbage: the writer's clock (or ours) is wrong. It is left on the remote and read again
    later, when the clocks agree, rather than rejected for good."""


# --------------------------------------------------------------------------- keys


def join(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


def is_uuid(v) -> bool:
    return isinstance(v, str) and UUID_RE.fullmatch(v) is not None


def is_sha(v) -> bool:
    return isinstance(v, str) and SHA_RE.fullmatch(v) is not None


def change_key(prefix: str, device: str, seq: int) -> str:
    if not is_uuid(device) or not (0 < seq <= MAX_SEQ):
        raise SchemaError(f"cannot build a change key from {device!r}/{seq!r}")
    return join(prefix, f"changes/{device}/{seq:012d}.json.gz")


def changes_dir(prefix: str, device: str | None = None) -> str:
    if device is None:
        return join(prefix, "changes/")
    if not is_uuid(device):
        raise SchemaError(f"not a device id: {device!r}")
    return join(prefix, f"changes/{device}/")


def media_key(prefix: str, sha256: str) -> str:
    if not is_sha(sha256):
        raise SchemaError(f"not a sha256: {sha256!r}")
    return join(prefix, f"media/{sha256}")


def media_touch_key(prefix: str, sha256: str) -> str:
    """A small marker a device rewrites when it publishes a row that needs an old media object:
    its date tells the media garbage collector that the object is in use again."""
    if not is_sha(sha256):
        raise SchemaError(f"not a sha256: {sha256!r}")
    return join(prefix, f"media-touched/{sha256}")


def parse_media_key(prefix: str, key: str, folder: str = "media") -> str | None:
    """The sha256 of a well-formed ``media/SHA`` (or ``media-touched/SHA``) key, else None."""
    rel = strip_prefix(prefix, key)
    if rel is None or not rel.startswith(folder + "/"):
        return None
    sha = rel[len(folder) + 1:]
    return sha if is_sha(sha) else None


def snapshot_name(ms: int, device: str) -> str:
    if not is_uuid(device):
        raise SchemaError(f"not a device id: {device!r}")
    return f"snapshots/{ms:013d}-{device}.json.gz"


def manifest_key(prefix: str) -> str:
    return join(prefix, "manifest.json")


def strip_prefix(prefix: str, key: str) -> str | None:
    head = f"{prefix}/" if prefix else ""
    return key[len(head):] if key.startswith(head) else None


def parse_change_key(prefix: str, key: str) -> tuple[str, int] | None:
    """(device, seq) of a well-formed change key under ``prefix``, else None."""
    rel = strip_prefix(prefix, key)
    m = CHANGE_KEY_RE.fullmatch(rel) if rel is not None else None
    if m is None:
        return None
    seq = int(m.group(2))
    return (m.group(1), seq) if seq > 0 else None


def parse_device_dir(prefix: str, common_prefix: str) -> str | None:
    rel = strip_prefix(prefix, common_prefix)
    if rel is None or not rel.startswith("changes/") or not rel.endswith("/"):
        return None
    device = rel[len("changes/"):-1]
    return device if is_uuid(device) else None


# --------------------------------------------------------------------------- decoding


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Inflate gzip ``data``; refuses more than ``limit`` bytes of output (a gzip bomb) and
    anything that is not one complete gzip member (garbage, truncation)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise SchemaError(f"not gzip data ({exc})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise SchemaError(f"inflates to more than {limit} bytes")
    if not d.eof:
        raise SchemaError("truncated gzip data")
    if d.unused_data.strip(b"\0"):
        raise SchemaError("trailing data after the gzip stream")
    return out


def gzip_json(obj) -> bytes:
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _no_constants(name: str):
    raise SchemaError(f"invalid number {name}")


def parse_json(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"not JSON ({exc})") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise SchemaError(f"unreadable JSON number ({str(exc)[:80]})") from None
    except RecursionError:
        raise SchemaError("JSON nested too deeply") from None


# --------------------------------------------------------------------------- field types


@dataclass(frozen=True)
class FieldSpec:
    kind: str  # str | int | float | bool | iso | uuid | sha | hex64 | ext | list
    nullable: bool = False
    max_len: int = 0
    item_keys: tuple[str, ...] = ()


_LISTS = {
    ("clip", "segments"): ("start", "end", "speed"),
    ("clip", "crop_keyframes"): ("time", "x", "y", "width", "height"),
    ("region", "keyframes"): ("time", "x", "y", "rx", "ry"),
}
_IDS = {
    "project_id": "uuid", "working_video_id": "uuid", "final_video_id": "uuid",
    "media_sha256": "sha", "sha256": "sha", "inputs_hash": "hex64", "ext": "ext",
}


def _spec_for(table: str, field: str, column) -> FieldSpec:
    nullable = bool(column.nullable)
    if field in _IDS:
        return FieldSpec(_IDS[field], nullable)
    t = column.type
    if isinstance(t, IsoDateTime):
        return FieldSpec("iso", nullable)
    if isinstance(t, Boolean):
        return FieldSpec("bool", nullable)
    if isinstance(t, Integer):
        return FieldSpec("int", nullable)
    if isinstance(t, Float):
        return FieldSpec("float", nullable)
    if isinstance(t, JSON):
        keys = _LISTS.get((table, field))
        if keys is None:
            raise RuntimeError(f"no sync schema for the JSON field {table}.{field}: add it to _LISTS")
        return FieldSpec("list", nullable, MAX_LIST, keys)
    if isinstance(t, String | Text):
        return FieldSpec("str", nullable, getattr(t, "length", None) or 100_000)
    raise RuntimeError(f"no sync schema for {table}.{field} ({t!r})")


MODELS: dict[str, type] = {m.__sync_table__: m for m in SYNCED_MODELS}
FIELDS: dict[str, dict[str, FieldSpec]] = {
    name: {f: _spec_for(name, f, m.__table__.c[f]) for f in m.__synced_fields__} for name, m in MODELS.items()
}
ID_KIND = {name: ("sha" if name == "media" else "uuid") for name in MODELS}


def _num(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SchemaError(f"{where}: expected a number, got {type(v).__name__}")
    if isinstance(v, float) and not math.isfinite(v):
        raise SchemaError(f"{where}: not a finite number")
    if abs(v) > 1e15:
        raise SchemaError(f"{where}: number out of range")
    return v


# --------------------------------------------------------------------------- field values
# What a row may hold, as `project apply` and the editors allow it: the named values come from
# app.limits as the document's do; the numeric bounds repeat the document's fields (tests/sync
# checks that every settings field has a rule). A value outside them is refused with its whole batch, so a
# remote can never leave a project that cannot be edited or exported.

COLOR_RE = re.compile(r"#[0-9A-Fa-f]{6}")
SLACK = 1e-3  # the document's own tolerances on starts and box edges are smaller than this


def _within(lo: float, hi: float, lo_open: bool = False):
    return lambda v: (lo < v if lo_open else lo <= v) and v <= hi


def _even_size(v) -> bool:
    return 16 <= v <= 7680 and v % 2 == 0


def _items(rule):
    return lambda items: all(rule(i) for i in items)


DOMAINS: dict[tuple[str, str], tuple[object, str]] = {
    ("project", "name"): (lambda v: 1 <= len(v) <= MAX_NAME, f"1 to {MAX_NAME} characters"),
    ("project", "aspect_ratio"): (lambda v: v in ASPECTS, "one of " + ", ".join(ASPECTS)),
    ("transition", "type"): (lambda v: v in ("cut", "fade", "dissolve"), "cut, fade or dissolve"),
    ("transition", "duration"): (_within(0, 5, lo_open=True), "over 0 and at most 5 s"),
    ("export_settings", "width"): (_even_size, "an even number of pixels, 16 to 7680"),
    ("export_settings", "height"): (_even_size, "an even number of pixels, 16 to 7680"),
    ("export_settings", "fps"): (_within(1, 120), "1 to 120"),
    ("export_settings", "crf"): (_within(0, 51), "0 to 51"),
    ("export_settings", "preset"): (lambda v: v in PRESETS, "an x264 preset"),
    ("export_settings", "upscaler"): (lambda v: v in ("lanczos", "ai"), "lanczos or ai"),
    ("overlay_settings", "color"): (lambda v: bool(COLOR_RE.fullmatch(v)), "a colour like #FFEB3B"),
    ("overlay_settings", "shape"): (lambda v: v in ("body", "ground"), "body or ground"),
    ("overlay_settings", "stroke_width"): (_within(0, 50), "0 to 50"),
    ("overlay_settings", "fill_opacity"): (_within(0, 1), "0 to 1"),
    ("overlay_settings", "dim"): (_within(0, 1), "0 to 1"),
    ("clip", "rotation"): (_within(-MAX_ROTATION, MAX_ROTATION), f"within ±{MAX_ROTATION:g} degrees"),
    ("clip", "segments"): (_items(lambda i: MIN_SPEED <= i["speed"] <= MAX_SPEED and -SLACK <= i["start"] < i["end"]),
                           f"segments forward in time at speeds {MIN_SPEED:g} to {MAX_SPEED:g}"),
    ("clip", "crop_keyframes"): (_items(lambda i: i["time"] >= 0 and i["width"] >= 16 and i["height"] >= 16
                                        and i["x"] >= -SLACK and i["y"] >= -SLACK), "boxes of 16 px or more, in the frame"),
    ("region", "keyframes"): (_items(lambda i: i["time"] >= 0 and i["rx"] > 0 and i["ry"] > 0),
                              "ellipses with radii over 0"),
}


def check_value(table: str, field: str, v, where: str = ""):
    """The value, validated against the field's type and, where it has one, the values the
    field may hold (raises SchemaError)."""
    v = _check_type(table, field, v, where)
    rule = DOMAINS.get((table, field))
    if rule is not None and v is not None and not rule[0](v):
        raise SchemaError(f"{where or f'{table}.{field}'}: must be {rule[1]}")
    return v


def _check_type(table: str, field: str, v, where: str = ""):
    spec = FIELDS[table][field]
    where = where or f"{table}.{field}"
    if v is None:
        if spec.nullable:
            return None
        raise SchemaError(f"{where}: must not be null")
    k = spec.kind
    if k == "bool":
        if not isinstance(v, bool):
            raise SchemaError(f"{where}: expected true/false")
        return v
    if k == "int":
        if isinstance(v, bool) or not isinstance(v, int) or abs(v) > 2**53:
            raise SchemaError(f"{where}: expected an integer")
        return v
    if k == "float":
        return float(_num(v, where))
    if k in ("uuid", "sha", "hex64", "ext", "str", "iso"):
        if not isinstance(v, str):
            raise SchemaError(f"{where}: expected a string")
        if k == "uuid" and not is_uuid(v):
            raise SchemaError(f"{where}: not a UUID")
        if k in ("sha", "hex64") and not is_sha(v):
            raise SchemaError(f"{where}: not a sha256")
        if k == "ext" and not EXT_RE.fullmatch(v):
            raise SchemaError(f"{where}: not a file extension")
        if k == "str" and (len(v) > spec.max_len or "\x00" in v):
            raise SchemaError(f"{where}: text too long or with a NUL")
        if k == "iso":
            try:
                dt = datetime.fromisoformat(v)
            except ValueError:
                raise SchemaError(f"{where}: not an ISO 8601 time") from None
            if dt.tzinfo is None or len(v) > 40:
                raise SchemaError(f"{where}: an ISO 8601 time with a UTC offset is required")
        return v
    if k == "list":
        if not isinstance(v, list) or len(v) > spec.max_len:
            raise SchemaError(f"{where}: expected a list of at most {spec.max_len} items")
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict) or set(item) != set(spec.item_keys):
                raise SchemaError(f"{where}[{i}]: expected an object with keys {', '.join(spec.item_keys)}")
            out.append({key: _num(item[key], f"{where}[{i}].{key}") for key in spec.item_keys})
        return out
    raise SchemaError(f"{where}: unknown type")  # pragma: no cover


def check_stamp(s, where: str, max_ms: int | None, allow_empty: bool = False) -> str:
    if allow_empty and s == "":
        return s
    if not isinstance(s, str):
        raise SchemaError(f"{where}: stamp must be a string")
    m = STAMP_RE.fullmatch(s)
    if m is None:
        raise SchemaError(f"{where}: malformed stamp")
    if max_ms is not None and int(m.group(1)) > max_ms:
        raise AheadError(f"{where}: stamp is more than a day {AHEAD_WORDS}")
    return s


def check_row_id(table: str, row_id, where: str) -> str:
    ok = is_sha(row_id) if ID_KIND[table] == "sha" else is_uuid(row_id)
    if not ok:
        raise SchemaError(f"{where}: bad row id for {table}")
    return row_id


@dataclass
class Entry:
    """One row's incoming writes: field -> (value, stamp), and the writer's agreed stamps."""

    table: str
    row_id: str
    fields: dict[str, tuple[object, str]]
    base: dict[str, str] | None  # None: unknown (snapshot)


def check_entries(rows, where: str, max_ms: int | None, with_base: bool) -> list[Entry]:
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        raise SchemaError(f"{where}: expected a list of at most {MAX_ROWS} rows")
    out = []
    for i, r in enumerate(rows):
        w = f"{where}[{i}]"
        if not isinstance(r, dict) or not {"t", "id", "f"} <= set(r) or set(r) - {"t", "id", "f", "b"}:
            raise SchemaError(f"{w}: expected an object with t, id, f")
        table = r["t"]
        if not isinstance(table, str) or table not in FIELDS:
            raise SchemaError(f"{w}: unknown table {str(table)[:40]!r}")
        row_id = check_row_id(table, r["id"], w)
        f = r["f"]
        if not isinstance(f, dict) or not f:
            raise SchemaError(f"{w}.f: expected a non-empty object")
        fields = {}
        for name, pair in f.items():
            if name not in FIELDS[table]:
                raise SchemaError(f"{w}: unknown field {table}.{str(name)[:40]}")
            if not isinstance(pair, list) or len(pair) != 2:
                raise SchemaError(f"{w}.{name}: expected [value, stamp]")
            fields[name] = (check_value(table, name, pair[0], f"{w}.{name}"),
                            check_stamp(pair[1], f"{w}.{name}", max_ms))
        base = None
        if with_base:
            b = r.get("b", {})
            if not isinstance(b, dict):
                raise SchemaError(f"{w}.b: expected an object")
            base = {}
            for name, stamp in b.items():
                if name not in FIELDS[table]:
                    raise SchemaError(f"{w}.b: unknown field {table}.{str(name)[:40]}")
                base[name] = check_stamp(stamp, f"{w}.b.{name}", max_ms, allow_empty=True)
        out.append(Entry(table, row_id, fields, base))
    return out


def _int(v, where: str, lo: int = 0, hi: int = MAX_SEQ) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi):
        raise SchemaError(f"{where}: expected an integer in [{lo}, {hi}]")
    return v


def _cursors(v, where: str) -> dict[str, int]:
    if not isinstance(v, dict) or len(v) > 10_000:
        raise SchemaError(f"{where}: expected an object of device -> seq")
    out = {}
    for device, seq in v.items():
        if not is_uuid(device):
            raise SchemaError(f"{where}: bad device id")
        out[device] = _int(seq, f"{where}.{device}")
    return out


@dataclass
class Batch:
    device: str
    first: int
    last: int
    prev: int
    digest: str
    media: list[str]
    entries: list[Entry]


def parse_batch(data: bytes, device: str, seq: int, max_ms: int | None) -> Batch:
    """Decode and validate a change batch read from ``changes/DEVICE/SEQ.json.gz``."""
    if len(data) > MAX_BATCH_GZ:
        raise SchemaError(f"object is larger than {MAX_BATCH_GZ} bytes")
    doc = parse_json(gunzip_limited(data, MAX_BATCH_JSON))
    if not isinstance(doc, dict):
        raise SchemaError("expected a JSON object")
    if doc.get("format") != FORMAT or doc.get("kind") != "changes":
        raise SchemaError(f"unknown format {str(doc.get('format'))[:20]}/{str(doc.get('kind'))[:20]}")
    if doc.get("device") != device:
        raise SchemaError("the batch names another device than its key")
    first = _int(doc.get("first"), "first", 1)
    last = _int(doc.get("last"), "last", first)
    prev = _int(doc.get("prev"), "prev", 0, first - 1)
    if first != seq:
        raise SchemaError("the batch's first sequence number is not its key's")
    digest = doc.get("digest")
    if not is_sha(digest):
        raise SchemaError("digest: not a sha256")
    media = doc.get("media", [])
    if not isinstance(media, list) or not all(is_sha(m) for m in media) or len(media) > MAX_ROWS:
        raise SchemaError("media: expected a list of sha256")
    entries = check_entries(doc.get("rows"), "rows", max_ms, with_base=True)
    return Batch(device, first, last, prev, digest, media, entries)


@dataclass
class Manifest:
    snapshot: str  # key relative to the prefix
    cursors: dict[str, int]
    device: str
    previous: str | None


def parse_manifest(data: bytes) -> Manifest:
    if len(data) > MAX_MANIFEST:
        raise SchemaError("manifest too large")
    doc = parse_json(data)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SchemaError("manifest: unknown format")
    snap = doc.get("snapshot")
    if not isinstance(snap, str) or SNAPSHOT_KEY_RE.fullmatch(snap) is None:
        raise SchemaError("manifest: bad snapshot key")
    prev = doc.get("previous")
    if prev is not None and (not isinstance(prev, str) or SNAPSHOT_KEY_RE.fullmatch(prev) is None):
        raise SchemaError("manifest: bad previous snapshot key")
    device = doc.get("device")
    if not is_uuid(device):
        raise SchemaError("manifest: bad device id")
    return Manifest(snap, _cursors(doc.get("cursors"), "manifest.cursors"), device, prev)


@dataclass
class Snapshot:
    cursors: dict[str, int]
    entries: list[Entry]


def parse_snapshot(data: bytes, max_ms: int | None) -> Snapshot:
    if len(data) > MAX_SNAPSHOT_GZ:
        raise SchemaError("snapshot too large")
    doc = parse_json(gunzip_limited(data, MAX_SNAPSHOT_JSON))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("kind") != "snapshot":
        raise SchemaError("snapshot: unknown format")
    return Snapshot(_cursors(doc.get("cursors"), "snapshot.cursors"),
                    check_entries(doc.get("rows"), "rows", max_ms, with_base=False))
