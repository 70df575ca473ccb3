"""Fixtures of the sync tests: one moto S3 server for the session (loopback, stopped after), a
fresh prefix per test, and devices: data directories opened as Libraries that sync through it."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.sync.servers import FaultProxy, serve_bucket, use_test_credentials

use_test_credentials()

from tests.sync.devices import Device  # noqa: E402

BUCKET = "reelforge-sync"


@pytest.fixture(scope="session")
def s3():
    yield from serve_bucket(BUCKET)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """A migrated, empty database, copied for each device (migrating every time is slow)."""
    from app.services.library import Library

    d = tmp_path_factory.mktemp("template")
    Library(d).close()
    return d / "reelforge.db"


@pytest.fixture
def prefix() -> str:
    return f"t/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_device(tmp_path, template_db, s3, prefix):
    made: list[Device] = []

    def make(name: str = "", *, endpoint: str | None = None, configure: bool = True, **engine_kw) -> Device:
        d = tmp_path / f"dev-{name or len(made)}"
        d.mkdir()
        shutil.copy(template_db, d / "reelforge.db")
        con = sqlite3.connect(d / "reelforge.db")
        con.execute("UPDATE local_meta SET value = ? WHERE key = 'device_id'", (str(uuid.uuid4()),))
        con.commit()
        con.close()
        dev = Device(d, name or f"dev{len(made)}", endpoint or s3.url, BUCKET, prefix, configure, engine_kw)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()


@pytest.fixture
def proxy(s3):
    p = FaultProxy(s3.port)
    yield p
    p.close()


@pytest.fixture
def run_sync_cli():
    """The real CLI in a child process on a device's data directory (credentials from the env)."""
    from tests.conftest import run_cli

    def run(dev, *args: str, env: dict | None = None):
        return run_cli(*args, data_dir=dev.data_dir, env=env)

    return run
