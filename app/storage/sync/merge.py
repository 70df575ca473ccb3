"""Merging incoming writes into local rows: per-field last-write-wins, conflicts, tombstones.

Pure functions over :class:`RowState` (plain values and stamps): the engine loads the rows inside
its write transaction, runs these, and writes the states back in the same transaction, so a
local commit made at any moment is either seen here (and kept if newer) or made after.

**Last write wins, per field.** An incoming value is applied only if its stamp is greater than
the local stamp of that field (stamps are HLC strings: time, then counter, then device id).

**Conflicts.** Every write in a batch carries ``base``: the stamp of that field its writer last
*agreed* on with the remote (the stamp it last pulled or pushed for it). Both sides changed a
field since they last agreed when:

- the incoming value wins (newer) and the local value is this device's own write which the
  writer had not agreed on (``base != local stamp``): our value is the loser;
- the local value wins (newer) and is this device's own write: the incoming write is seen here
  for the first time (each batch is applied once, by its cursor), and an HLC stamp lower than
  ours means its writer had not seen our value either: the incoming value is the loser.

Values that are equal are no conflict. Only conflicts that involve this device's own writes
are recorded here; the other device records its side when it pulls ours.

**Tombstones.** ``deleted`` is a last-write-wins register like any field. A row whose register
says deleted is shown deleted unless an edit newer than the delete exists (an edit newer than
the delete brings the row back). A project and the rows deleted with it (same device, from
the project's delete stamp until the first newer edit) come back together. What is stored is a
pure function of the registers, so every device ends up with the same rows whatever the order
the writes arrived in; ``tomb`` remembers a register that says deleted on a row shown alive.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from app.storage.models import effective_region, effective_trim

LOCAL, REMOTE = "local", "remote"


def device_of(stamp: str) -> str:
    return stamp.split(".", 2)[2] if stamp and stamp.count(".") >= 2 else ""


def same_value(a, b) -> bool:
    if a == b:
        return True
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


@dataclass
class Conflict:
    table: str
    row_id: str
    field: str
    local_value: object
    remote_value: object
    local_stamp: str
    remote_stamp: str
    winner: str


@dataclass
class RowState:
    table: str
    row_id: str
    values: dict  # synced field -> value (JSON form); values["deleted"] is the delete *register*
    stamps: dict
    base: dict  # agreed stamps
    exists: bool
    deleted_col: bool  # what the ``deleted`` column holds (shown deleted)
    tomb: str | None = None
    was_visible: bool | None = None  # before this merge; None for a new row
    dirty: bool = False
    base_dirty: bool = False
    incoming_edits: list[tuple[str, str]] = field(default_factory=list)
    incoming_delete: bool = False
    delete_base: dict | None = None  # the deleter's agreed stamps (None: unknown)
    unpushed: frozenset = frozenset()  # fields with a local change not pushed yet

    @classmethod
    def load(cls, table: str, row_id: str, values: dict, stamps: dict, deleted_col: bool,
             tomb: str | None, base: dict) -> RowState:
        values = dict(values)
        st_del = stamps.get("deleted", "")
        values["deleted"] = bool(deleted_col) or (tomb is not None and tomb == st_del)
        return cls(table, row_id, values, dict(stamps), dict(base), True, bool(deleted_col),
                   tomb if (tomb is not None and tomb == st_del and not deleted_col) else None,
                   was_visible=not deleted_col)

    @classmethod
    def new(cls, table: str, row_id: str) -> RowState:
        return cls(table, row_id, {"deleted": False}, {}, {}, False, False, None, None)

    @property
    def delete_stamp(self) -> str:
        return self.stamps.get("deleted", "")

    def edit_stamps(self) -> list[str]:
        return [s for f, s in self.stamps.items() if f != "deleted" and s]

    @property
    def hlc(self) -> str:
        return max(self.stamps.values(), default="")

    def set_visible(self, visible: bool) -> None:
        deleted = not visible
        tomb = self.delete_stamp if (visible and self.values.get("deleted")) else None
        if deleted != self.deleted_col or not self.exists:
            self.deleted_col = deleted
            self.dirty = True
        if tomb != self.tomb:
            self.tomb = tomb
            self.base_dirty = True


@dataclass
class Write:
    field: str
    value: object
    stamp: str
    base: dict | None  # the entry's agreed stamps (None: unknown, from a snapshot)


def apply_writes(st: RowState, writes: list[Write], me: str, out: list[Conflict]) -> None:
    """Apply one row's incoming writes in stamp order (per-field LWW, conflict detection)."""
    applied: dict[str, Write] = {}
    for w in sorted(writes, key=lambda w: (w.field, w.stamp)):
        f, local_s = w.field, st.stamps.get(w.field, "")
        if w.stamp == local_s:
            continue  # the same write again (a snapshot after the batch, a retry)
        if f != "deleted":
            st.incoming_edits.append((f, w.stamp))
        mine = bool(local_s) and device_of(local_s) == me
        if w.stamp > local_s:
            if f != "deleted" and mine and not same_value(st.values.get(f), w.value):
                unknown = (f in st.unpushed) if w.base is None else (w.base.get(f, "") != local_s)
                if unknown:
                    out.append(Conflict(st.table, st.row_id, f, st.values.get(f), w.value, local_s, w.stamp, REMOTE))
            st.values[f] = w.value
            st.stamps[f] = w.stamp
            applied[f] = w
            if w.stamp > st.base.get(f, ""):
                st.base[f] = w.stamp
                st.base_dirty = True
            st.dirty = True
            if f == "deleted" and w.value:
                st.incoming_delete = True
                st.delete_base = w.base
        elif f != "deleted" and mine and w.base is not None and not same_value(st.values.get(f), w.value):
            out.append(Conflict(st.table, st.row_id, f, st.values.get(f), w.value, local_s, w.stamp, LOCAL))
    if st.table in ORDERED_PAIRS and applied:
        _crossed_pair(st, applied, me, out)


# Pairs of fields each device keeps in order (lo < hi). Merged field by field, an edit of one end
# here and of the other end there can cross; the row is then read as the newer edit (see
# ``models.effective_trim`` and ``models.effective_region``) and the older edit is lost: a conflict
# on that field, recorded like any other (SYNC.md 3), although the two devices wrote different fields.
ORDERED_PAIRS = {"clip": ("trim_start", "trim_end"), "region": ("start", "end")}


def _crossed_pair(st: RowState, applied: dict[str, Write], me: str, out: list[Conflict]) -> None:
    lo, hi = ORDERED_PAIRS[st.table]
    a, b = st.values.get(lo), st.values.get(hi)
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float))) or a < b:
        return
    won, lost = (lo, hi) if st.stamps.get(lo, "") > st.stamps.get(hi, "") else (hi, lo)
    s_won, s_lost = st.stamps.get(won, ""), st.stamps.get(lost, "")
    shown = effective_value(st, lost)
    if shown is None:
        return
    if won in applied and device_of(s_lost) == me and lost not in applied:
        w = applied[won]  # their newer edit crossed ours: did they know of ours?
        unknown = (lost in st.unpushed) if w.base is None else (w.base.get(lost, "") != s_lost)
        if unknown:
            out.append(Conflict(st.table, st.row_id, lost, st.values[lost], shown, s_lost, s_won, REMOTE))
    elif lost in applied and device_of(s_won) == me and won not in applied:
        w = applied[lost]  # their older edit crossed our newer one
        if w.base is not None and w.base.get(won, "") != s_won:
            out.append(Conflict(st.table, st.row_id, lost, shown, w.value, s_won, s_lost, LOCAL))


ORDER_FIELD = "clip_order"  # a project's clip order: the order of the document's ``clips``


def order_conflicts(states: dict[tuple[str, str], RowState], conflicts: list[Conflict]) -> list[Conflict]:
    """Two concurrent reorders of a project's clips lose and win whole (``models.renumber``
    stamps every position), so the per-clip ``position`` conflicts of one merge are one conflict:
    on the project's clip order, with both orders as lists of clip ids. ``states`` must hold all
    the project's clips (the engine loads the group of every project it touches)."""
    moves: dict[tuple[str, str], list[Conflict]] = defaultdict(list)
    out = []
    for c in conflicts:
        st = states.get(("clip", c.row_id)) if (c.table, c.field) == ("clip", "position") else None
        pid = st.values.get("project_id") if st else None
        if pid:
            moves[(pid, c.winner)].append(c)
        else:
            out.append(c)
    for (pid, winner), cs in moves.items():
        now = {st.row_id: st.values.get("position") or 0.0 for (t, _), st in states.items()
               if t == "clip" and st.values.get("project_id") == pid and not st.deleted_col}
        lost = dict(now)
        for c in cs:
            if c.row_id in lost:
                lost[c.row_id] = c.local_value if winner == REMOTE else c.remote_value
        kept, lost_order = _order(now), _order(lost)
        if kept == lost_order:
            continue  # other numbers, the same order: nothing the user could tell apart
        local, remote = (lost_order, kept) if winner == REMOTE else (kept, lost_order)
        out.append(Conflict("project", pid, ORDER_FIELD, local, remote, max(c.local_stamp for c in cs),
                            max(c.remote_stamp for c in cs), winner))
    return out


def _order(positions: dict[str, float]) -> list[str]:
    return sorted(positions, key=lambda cid: (positions[cid] if isinstance(positions[cid], (int, float)) else 0.0,
                                              cid))


def effective_value(st: RowState, f: str):
    """The value of one end of an ordered pair as the row is read (None when unknown)."""
    v = st.values
    try:
        if st.table == "clip":
            pair = effective_trim(v["trim_start"], v["trim_end"], v["source_end"] - v["source_start"], st.stamps)
            return pair[0] if f == "trim_start" else pair[1]
        lo, hi, _ = effective_region(v["start"], v["end"], v.get("keyframes") or [], st.stamps)
        return lo if f == "start" else hi
    except (KeyError, TypeError):
        return None


def _known_by_deleter(r: RowState, f: str, s: str) -> bool:
    if r.incoming_delete:
        if r.delete_base is None:
            return f not in r.unpushed
        return r.delete_base.get(f, "") >= s
    return bool(r.values.get("deleted"))  # deleted earlier on its own: not this delete's doing


def normalize(head: RowState, children: list[RowState], me: str, out: list[Conflict]) -> None:
    """Derive what is shown deleted for ``head`` (a project, or any row on its own) and, for a
    project, the rows that belong to it; record the delete conflicts that involve this device."""
    if not head.values.get("deleted"):
        head.set_visible(True)
        for c in children:
            normalize(c, [], me, out)
        return
    s_d = head.delete_stamp
    rows = [head, *children]
    later = [s for r in rows for s in r.edit_stamps() if s > s_d]
    t_first = min(later) if later else None
    back = t_first is not None
    dev = device_of(s_d)
    members = [head] + [
        c for c in children
        if c.values.get("deleted") and device_of(c.delete_stamp) == dev and s_d <= c.delete_stamp
        and (t_first is None or c.delete_stamp < t_first)
    ]
    ids = {id(m) for m in members}
    for m in members:
        m.set_visible(back)
    for c in children:
        if id(c) not in ids:
            normalize(c, [], me, out)

    def record(local_value, remote_value, winner, local_stamp, remote_stamp):
        out.append(Conflict(head.table, head.row_id, "deleted", local_value, remote_value,
                            local_stamp, remote_stamp, winner))

    incoming_edits = [s for r in rows for _, s in r.incoming_edits]
    if dev == me:
        if back and head.was_visible is False and any(s > s_d for s in incoming_edits):
            record(True, False, REMOTE, s_d, t_first)  # our delete was undone by a newer edit there
        elif not back and incoming_edits and head.was_visible is not None:
            record(True, False, LOCAL, s_d, max(incoming_edits))  # their edits lost to our delete
        return
    if not any(m.incoming_delete for m in members):
        return
    mine = [(r, f, s) for r in rows for f, s in r.stamps.items() if f != "deleted" and device_of(s) == me]
    if back:
        ours = [s for _, _, s in mine if s > s_d]
        if ours and head.was_visible is not None:
            record(False, True, LOCAL, max(ours), s_d)  # our newer edit undid their delete
    elif head.was_visible:
        unknown = [s for r, f, s in mine if not _known_by_deleter(r, f, s)]
        if unknown:
            record(False, True, REMOTE, max(unknown), s_d)  # their delete removed edits they had not seen
