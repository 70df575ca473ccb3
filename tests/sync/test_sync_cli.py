"""The `sync` commands of CLI.md through the real entry point in a child process: remote
settings, run exit codes, the status JSON, and credentials that never reach the database."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.sync.conftest import BUCKET

STATUS_KEYS = {"state", "pending_changes", "last_synced_at", "error", "conflicts"}


def ok(r):
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def usage(r, words=""):
    assert r.returncode == 2, (r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in r.stderr
    assert words.lower() in last.lower(), last
    return last


def test_remote_settings_status_and_run_exit_codes(tmp_path, s3, prefix):
    d = tmp_path / "cli"
    st = json.loads(ok(run_cli("sync", "status", "--json", data_dir=d)).stdout)
    assert STATUS_KEYS <= set(st) and st["state"] == "disabled" and st["conflicts"] == []
    usage(run_cli("sync", "run", data_dir=d), "no sync remote")
    usage(run_cli("sync", "remote", "set", "--endpoint", "ftp://x", "--bucket", BUCKET, data_dir=d), "endpoint")
    usage(run_cli("sync", "remote", "set", "--endpoint", "https://key:secret@example.com", "--bucket", BUCKET,
                  data_dir=d), "credentials")
    usage(run_cli("sync", "remote", "set", "--endpoint", s3.url, "--bucket", "No_Such", data_dir=d), "bucket")
    usage(run_cli("sync", "remote", "set", "--endpoint", s3.url, "--bucket", BUCKET, "--prefix", "a/../b",
                  data_dir=d), "prefix")
    assert json.loads(ok(run_cli("sync", "status", "--json", data_dir=d)).stdout)["state"] == "disabled"

    r = ok(run_cli("sync", "remote", "set", "--endpoint", s3.url + "/", "--bucket", BUCKET, "--prefix",
                   prefix + "/", "--json", data_dir=d))
    assert json.loads(r.stdout) | {"new_remote": False} == {
        "endpoint": s3.url, "bucket": BUCKET, "prefix": prefix, "region": "auto", "new_remote": False}
    st = json.loads(ok(run_cli("sync", "status", "--json", data_dir=d)).stdout)
    assert st["state"] == "pending" and st["last_synced_at"] is None
    # nothing to push, but the remote was never read: said in words, not only as "0 pending"
    assert ok(run_cli("sync", "status", data_dir=d)).stdout.startswith("pending: 0 change(s) pending, never synced")

    pid = json.loads(ok(run_cli("project", "create", "From the CLI", "--json", data_dir=d)).stdout)["id"]
    assert json.loads(ok(run_cli("sync", "status", "--json", data_dir=d)).stdout)["pending_changes"] == 4
    r = ok(run_cli("sync", "run", "--json", data_dir=d))
    res = json.loads(r.stdout)  # exactly one JSON document
    assert res["ok"] is True and res["pushed_changes"] == 4
    st = json.loads(ok(run_cli("sync", "status", "--json", data_dir=d)).stdout)
    assert st["state"] == "synced" and st["pending_changes"] == 0 and st["error"] is None
    assert st["last_synced_at"] and "+00:00" in st["last_synced_at"]
    human = ok(run_cli("sync", "status", data_dir=d)).stdout
    assert human.startswith("synced") and s3.url in human

    # a second device, CLI only
    e = tmp_path / "cli2"
    ok(run_cli("sync", "remote", "set", "--endpoint", s3.url, "--bucket", BUCKET, "--prefix", prefix, data_dir=e))
    ok(run_cli("sync", "run", data_dir=e))
    rows = json.loads(ok(run_cli("project", "list", "--json", data_dir=e)).stdout)
    assert [(r["id"], r["name"]) for r in rows] == [(pid, "From the CLI")]

    # nothing secret in the database, the remote or the output
    secret = "testing-secret-key"
    for f in d.glob("reelforge.db*"):
        assert secret.encode() not in f.read_bytes()
    show = ok(run_cli("sync", "remote", "show", "--json", data_dir=d)).stdout
    assert secret not in show and "testing-key-id" not in show

    ok(run_cli("sync", "remote", "clear", data_dir=d))
    st = json.loads(ok(run_cli("sync", "status", "--json", data_dir=d)).stdout)
    assert st["state"] == "disabled"
    usage(run_cli("sync", "run", data_dir=d), "no sync remote")
    usage(run_cli("sync", "restore", "nope", data_dir=d), "no open conflict")
