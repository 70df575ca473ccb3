"""A device of the sync tests: a data directory opened as a Library, synced with the test remote."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from app.services.library import Library
from app.storage import hlc
from app.storage.models import SYNCED_MODELS
from app.storage.sync import config, engine
from app.storage.sync.remote import RetryPolicy, Timeouts

FAST_RETRY = dict(attempts=4, base_s=0.01, cap_s=0.05)


class Device:
    def __init__(self, data_dir: Path, name: str, endpoint: str, bucket: str, prefix: str, configure: bool,
                 engine_kw: dict):
        self.data_dir = data_dir
        self.name = name
        self.lib = Library(data_dir)
        self.cfg = config.validate(endpoint, bucket, prefix)
        if configure:
            engine.set_remote(self.lib.db, self.cfg)
        self.engine_kw = {"retry": RetryPolicy(**FAST_RETRY), "timeouts": Timeouts(connect_s=2, read_s=5),
                          **engine_kw}

    @property
    def db(self):
        return self.lib.db

    @property
    def device_id(self) -> str:
        return self.lib.db.device_id

    def engine(self, **kw) -> engine.SyncEngine:
        eng = engine.SyncEngine.for_db(self.lib.db, self.lib.media, **{**self.engine_kw, **kw})
        assert eng is not None, "no remote configured"
        return eng

    def sync(self, fetch_media: bool = False, **kw) -> engine.CycleResult:
        return self.engine(**kw).run_cycle(fetch_media=fetch_media)

    def sync_ok(self, **kw) -> engine.CycleResult:
        r = self.sync(**kw)
        assert r.ok, (self.name, r.error, r.problems)
        return r

    def status(self) -> dict:
        return engine.status(self.lib.db)

    def conflicts(self) -> list[dict]:
        return self.status()["conflicts"]

    def dump(self) -> dict:
        """All synced data (tombstones included): what must be identical on converged devices."""
        out = {}
        with self.lib.db.read() as s:
            for model in SYNCED_MODELS:
                pk = model.__table__.primary_key.columns.values()[0].key
                rows = {}
                for r in s.scalars(select(model).execution_options(include_deleted=True)):
                    rows[getattr(r, pk)] = {f: _plain(getattr(r, f)) for f in model.__synced_fields__} | {
                        "_stamps": dict(r.stamps or {})}
                out[model.__sync_table__] = rows
        return out

    def visible(self) -> dict:
        """What the user sees: projects and their names."""
        return {p["id"]: p["name"] for p in self.lib.list_projects()}

    def close(self) -> None:
        self.lib.close()


def _plain(v):
    return v.isoformat() if hasattr(v, "isoformat") else v


@contextmanager
def clock(monkeypatch, offset_ms: int):
    """This device's wall clock is ``offset_ms`` off while inside (hlc.now_ms is the one clock)."""
    real = hlc.now_ms.__wrapped__ if hasattr(hlc.now_ms, "__wrapped__") else hlc.now_ms

    def skewed() -> int:
        return real() + offset_ms

    skewed.__wrapped__ = real
    monkeypatch.setattr(hlc, "now_ms", skewed)
    try:
        yield
    finally:
        monkeypatch.setattr(hlc, "now_ms", real)
