"""The merge rules alone (no database, no network): whatever the order and the grouping into
batches in which the same writes arrive, the rows end up the same (SYNC.md 4, 7), and the
tombstone rules do what the spec says."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.storage import hlc
from app.storage.sync.merge import RowState, Write, apply_writes, normalize

DEVS = ["00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b",
        "00000000-0000-4000-8000-00000000000c"]
ROWS = {("project", "P"): ("name",), ("transition", "P"): ("duration",), ("clip", "C"): ("trim_start", "project_id")}
ME = "00000000-0000-4000-8000-0000000000ff"


def merge(batches: list[list[tuple[tuple[str, str], Write]]]) -> dict:
    """Apply batches as the engine does: one merge per batch, then save and reload the rows."""
    saved: dict = {}
    for batch in batches:
        states = {k: RowState.load(k[0], k[1], *v) for k, v in saved.items()}
        by_row: dict = {}
        for key, w in batch:
            by_row.setdefault(key, []).append(w)
        for key, ws in by_row.items():
            st_ = states.setdefault(key, RowState.new(*key))
            apply_writes(st_, ws, ME, [])
        head = states.get(("project", "P"))
        kids = [s for k, s in states.items() if k != ("project", "P")]
        if head is None:
            for k in kids:
                normalize(k, [], ME, [])
        else:
            normalize(head, kids, ME, [])
        for key, s in states.items():
            values = {f: v for f, v in s.values.items() if f != "deleted"}
            saved[key] = (values, dict(s.stamps), s.deleted_col, s.tomb, dict(s.base))
    return {k: (v[0], v[1], v[2]) for k, v in saved.items()}


@st.composite
def writes(draw):
    out = []
    used = set()
    for _ in range(draw(st.integers(1, 14))):
        key = draw(st.sampled_from(sorted(ROWS)))
        field = draw(st.sampled_from(["deleted", *ROWS[key]]))
        ms = draw(st.integers(1, 40))
        dev = draw(st.sampled_from(DEVS))
        if (ms, dev) in used:
            continue
        used.add((ms, dev))
        stamp = hlc.format_stamp(1_700_000_000_000 + ms, 0, dev)
        value = draw(st.booleans()) if field == "deleted" else ("P" if field == "project_id" else f"{field}{ms}")
        out.append((key, Write(field, value, stamp, {})))
    return out


@settings(max_examples=300, deadline=None)
@given(ws=writes(), data=st.data())
def test_any_order_and_batching_of_the_same_writes_gives_the_same_rows(ws, data):
    order = data.draw(st.permutations(ws))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    batches, last = [], 0
    for c in [*cuts, len(order)]:
        if order[last:c]:
            batches.append(order[last:c])
        last = c
    assert merge([ws]) == merge(batches)


def stamp(ms: int, dev: str) -> str:
    return hlc.format_stamp(1_700_000_000_000 + ms, 0, dev)


def test_a_project_and_the_rows_deleted_with_it_come_back_together_after_a_newer_edit():
    a, b = DEVS[0], DEVS[1]
    create = [(("project", "P"), Write("name", "x", stamp(1, a), {})),
              (("project", "P"), Write("deleted", False, stamp(1, a), {})),
              (("transition", "P"), Write("duration", 0.5, stamp(2, a), {})),
              (("transition", "P"), Write("deleted", False, stamp(2, a), {})),
              (("clip", "C"), Write("project_id", "P", stamp(3, a), {})),
              (("clip", "C"), Write("deleted", False, stamp(3, a), {}))]
    cascade = [(("project", "P"), Write("deleted", True, stamp(10, a), {})),
               (("transition", "P"), Write("deleted", True, stamp(11, a), {})),
               (("clip", "C"), Write("deleted", True, stamp(12, a), {}))]
    removed_before = [(("clip", "C"), Write("deleted", True, stamp(5, b), {}))]
    rows = merge([create, cascade])
    assert all(r[2] for r in rows.values())  # all deleted
    edit = [(("project", "P"), Write("name", "y", stamp(20, b), {}))]
    rows = merge([create, cascade, edit])
    assert not any(r[2] for r in rows.values())  # all back
    rows = merge([create, removed_before, edit, cascade])
    assert rows[("project", "P")][2] is False
    assert rows[("clip", "C")][2] is False  # its own earlier delete lost to the cascade's newer one
    older_edit = [(("project", "P"), Write("name", "old", stamp(7, b), {}))]
    rows = merge([create, older_edit, cascade])
    assert rows[("project", "P")][2] is True  # a delete wins over older edits
