"""A large media upload cut off part-way (crash, kill, lost network) resumes with the parts the
remote does not hold yet, and the object that lands is byte-identical."""

from __future__ import annotations

import hashlib
import os

import pytest

from app.storage.sync import engine
from app.storage.sync.remote import Remote, RemoteError

PART = 5 * 1024 * 1024  # S3's smallest part


def sha_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_interrupted_upload_resumes_where_it_stopped(make_device, monkeypatch, tmp_path):
    monkeypatch.setattr(Remote, "multipart_bytes", PART)
    a, b = make_device("a"), make_device("b")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * PART + 1234))  # four parts
    sha = sha_of(src)
    a.lib.media.ingest(src, sha, ".bin")

    # first attempt: the connection dies for good while part 3 is on its way
    eng = a.engine()
    real_upload_part = eng.remote.client.upload_part
    sent: list[int] = []

    def dying_upload_part(**kw):
        if kw["PartNumber"] == 3:
            raise ConnectionResetError("connection reset by peer")  # injected: the network goes away
        sent.append(kw["PartNumber"])
        return real_upload_part(**kw)

    eng.remote.client.upload_part = dying_upload_part
    try:
        with pytest.raises(RemoteError):
            eng._ensure_media({sha: ".bin"}, engine.CycleResult(), None)
    finally:
        del eng.remote.client.upload_part  # the network is back
    assert sent == [1, 2]
    assert eng.remote.head(f"{a.cfg.prefix}/media/{sha}") is None  # nothing half-published

    # the app restarts (a new engine, a new client): only the missing parts travel
    eng2 = a.engine()
    before = eng2.remote.counters.parts_up
    result = engine.CycleResult()
    eng2._ensure_media({sha: ".bin"}, result, None)
    assert result.media_uploaded == 1
    assert eng2.remote.counters.parts_up - before == 2  # parts 3 and 4, not 1 and 2 again
    path = b.engine().fetch_media(sha, ".bin")
    assert sha_of(path) == sha  # verified by sha256 on the way down too
