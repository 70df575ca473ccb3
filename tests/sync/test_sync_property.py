"""Property-based (hypothesis, stateful): three devices make random offline edits, deletes and
syncs. After everyone syncs they hold identical data; every value that was lost without its
loser's knowledge is named in a recorded conflict; and no device ever held a field older than
one it had committed itself (SYNC.md 2, 3, 4, 7).

The oracle tracks causality exactly: a device knows its own writes and every write published
before its last pull. A write is "overwritten knowingly" when a newer write to the same field
was made by a device that knew it; any other loss must show up as a conflict somewhere.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from app.storage.models import Project, SyncConflict, Transition
from app.storage.sync import engine
from tests.sync.conftest import BUCKET
from tests.sync.devices import Device

N = 3


@dataclass(frozen=True)
class W:
    id: int
    dev: int
    table: str  # project | transition
    row: str
    field: str
    value: object
    stamp: str
    known: frozenset


def run_machine(tmp_path, template_db, s3, max_examples: int, steps: int):
    class Sync(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            base = tmp_path / uuid.uuid4().hex[:8]
            prefix = f"prop/{uuid.uuid4().hex[:10]}"
            self.devs = []
            for i in range(N):
                d = base / f"d{i}"
                d.mkdir(parents=True)
                shutil.copy(template_db, d / "reelforge.db")
                con = sqlite3.connect(d / "reelforge.db")
                con.execute("UPDATE local_meta SET value = ? WHERE key = 'device_id'", (str(uuid.uuid4()),))
                con.commit()
                con.close()
                self.devs.append(Device(d, f"d{i}", s3.url, BUCKET, prefix, True, {}))
            self.base = base
            self.projects: list[str] = []
            self.writes: list[W] = []
            self.seen = [set() for _ in range(N)]  # write ids each device knows
            self.published: set[int] = set()
            self.mine = [set() for _ in range(N)]
            self.last_committed: dict[tuple, str] = {}
            self.n = 0

        def teardown(self):
            for d in self.devs:
                d.close()
            shutil.rmtree(self.base, ignore_errors=True)

        # ------------------------------------------------------------ recording
        def stamp_of(self, dev: int, model, row: str, field: str) -> str:
            with self.devs[dev].db.read() as s:
                r = s.get(model, row, execution_options={"include_deleted": True})
                return r.stamps[field]

        def record(self, dev: int, table: str, model, row: str, field: str, value) -> None:
            stamp = self.stamp_of(dev, model, row, field)
            w = W(len(self.writes), dev, table, row, field, value, stamp, frozenset(self.seen[dev]))
            self.writes.append(w)
            self.seen[dev].add(w.id)
            self.mine[dev].add(w.id)
            self.last_committed[(dev, table, row, field)] = stamp

        def value(self) -> int:
            self.n += 1
            return self.n

        def visible(self, dev: int, pid: str) -> bool:
            with self.devs[dev].db.read() as s:
                return s.get(Project, pid) is not None

        # ------------------------------------------------------------ rules
        @rule(dev=st.integers(0, N - 1))
        def create(self, dev):
            name = f"d{dev}-v{self.value()}"
            pid = self.devs[dev].lib.create_project(name)
            self.projects.append(pid)
            self.record(dev, "project", Project, pid, "name", name)
            self.record(dev, "transition", Transition, pid, "duration", 0.5)

        @precondition(lambda self: self.projects)
        @rule(dev=st.integers(0, N - 1), data=st.data())
        def rename(self, dev, data):
            pid = data.draw(st.sampled_from(self.projects))
            if not self.visible(dev, pid):
                return
            name = f"d{dev}-v{self.value()}"
            self.devs[dev].lib.rename_project(pid, name)
            self.record(dev, "project", Project, pid, "name", name)

        @precondition(lambda self: self.projects)
        @rule(dev=st.integers(0, N - 1), data=st.data())
        def transition(self, dev, data):
            pid = data.draw(st.sampled_from(self.projects))
            if not self.visible(dev, pid):
                return
            duration = round(1.0 + self.value() / 1000.0, 3)
            self.devs[dev].lib.apply(pid, {"transition": {"duration": duration}})
            self.record(dev, "transition", Transition, pid, "duration", duration)

        @precondition(lambda self: self.projects)
        @rule(dev=st.integers(0, N - 1), data=st.data())
        def delete(self, dev, data):
            pid = data.draw(st.sampled_from(self.projects))
            if not self.visible(dev, pid):
                return
            self.devs[dev].lib.delete_project(pid)
            self.record(dev, "project", Project, pid, "deleted", True)

        @rule(dev=st.integers(0, N - 1), data=st.data())
        def restore(self, dev, data):
            open_ = [c for c in self.devs[dev].conflicts() if c["table"] in ("project", "transition")]
            if not open_:
                return
            c = data.draw(st.sampled_from(open_))
            with self.devs[dev].db.read() as s:
                row = s.get(Project if c["table"] == "project" else Transition, c["row_id"],
                            execution_options={"include_deleted": True})
                was_deleted = row.deleted
            engine.restore_conflict(self.devs[dev].db, c["id"])
            value = c["local_value"] if c["winner"] == "remote" else c["remote_value"]
            model = Project if c["table"] == "project" else Transition
            if c["field"] == "deleted":
                if c["table"] == "project":
                    self.record(dev, "project", Project, c["row_id"], "deleted", value)
                return
            self.record(dev, c["table"], model, c["row_id"], c["field"], value)
            if was_deleted and c["table"] == "project":
                self.record(dev, "project", Project, c["row_id"], "deleted", False)

        @rule(dev=st.integers(0, N - 1))
        def sync(self, dev):
            self.do_sync(dev)

        @rule(dev=st.integers(0, N - 1))
        def push_only(self, dev):
            self.devs[dev].engine().push()
            self.published |= self.mine[dev]

        def do_sync(self, dev: int) -> None:
            r = self.devs[dev].sync()
            assert r.ok, (r.error, r.problems)
            self.published |= self.mine[dev]
            self.seen[dev] |= self.published

        # ------------------------------------------------------------ invariants
        @invariant()
        def no_committed_value_is_rolled_back(self):
            for (dev, table, row, field), stamp in self.last_committed.items():
                model = Project if table == "project" else Transition
                assert self.stamp_of(dev, model, row, field) >= stamp, (dev, table, row, field)

        # ------------------------------------------------------------ the end
        def check_converged(self):
            for _ in range(2):
                for dev in range(N):
                    self.do_sync(dev)
            dumps = [d.dump() for d in self.devs]
            assert dumps[0] == dumps[1] == dumps[2]
            final = dumps[0]
            conflicts = set()
            for d in self.devs:
                with d.db.read() as s:
                    for c in s.scalars(select(SyncConflict)):
                        conflicts.add((c.tbl, c.row_id, c.field, json.dumps(c.local_value),
                                       json.dumps(c.remote_value)))

            def named(table, row, field, value=None) -> bool:
                return any(c[:3] == (table, row, field) and (value is None or json.dumps(value) in c[3:])
                           for c in conflicts)

            deletes = {}
            for w in self.writes:
                if w.field == "deleted" and w.value:
                    deletes.setdefault(w.row, []).append(w)
            for w in self.writes:
                if w.field == "deleted":  # a delete (or a restore's undelete) that did not stick
                    if final["project"][w.row]["deleted"] != w.value:
                        knowingly = any(x.row == w.row and x.stamp > w.stamp and w.id in x.known
                                        for x in self.writes)
                        assert knowingly or named("project", w.row, "deleted"), ("lost (un)delete", w)
                    continue
                if final["project"][w.row]["deleted"]:  # a later delete by someone who knew the edit, or named
                    if not any(d.stamp > w.stamp and w.id in d.known for d in deletes.get(w.row, [])):
                        assert named("project", w.row, "deleted"), ("edit lost to a delete", w)
                    continue
                row = final[w.table][w.row]
                if row["_stamps"][w.field] == w.stamp:
                    continue
                knowingly = any((x.table, x.row, x.field) == (w.table, w.row, w.field) and x.stamp > w.stamp
                                and w.id in x.known for x in self.writes)
                assert knowingly or named(w.table, w.row, w.field, w.value), ("silently lost", w)

    Sync.TestCase.settings = settings(max_examples=max_examples, stateful_step_count=steps, deadline=None,
                                      suppress_health_check=list(HealthCheck), database=None,
                                      phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
    original = Sync.teardown

    def teardown(self):
        try:
            self.check_converged()
        finally:
            original(self)

    Sync.teardown = teardown
    run_state_machine_as_test(Sync, settings=Sync.TestCase.settings)


def test_three_devices_random_offline_edits_deletes_and_syncs(tmp_path, template_db, s3):
    run_machine(tmp_path, template_db, s3, max_examples=40, steps=40)
