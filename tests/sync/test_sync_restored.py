"""A data directory put back from a backup (or copied) while its original went on syncing: the
remote holds later batches of its device id that it never pushed. It must read them (its own
later edits), continue under a new device id, and converge; not say "synced" without them."""

from __future__ import annotations

import shutil

from tests.sync.devices import Device


def reopen(dev: Device, data_dir) -> Device:
    return Device(data_dir, dev.name + "-restored", dev.cfg.endpoint, dev.cfg.bucket, dev.cfg.prefix, False,
                  dev.engine_kw)


def test_a_restored_backup_gets_the_edits_made_after_it(make_device, tmp_path):
    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Before the backup")
    a.sync_ok()
    b.sync_ok()
    a.close()
    backup = tmp_path / "backup"
    shutil.copytree(a.data_dir, backup)
    a = reopen(a, a.data_dir)
    a.lib.apply(pid, {"name": "After the backup", "transition": {"type": "fade", "duration": 0.5}})
    a.sync_ok()
    b.sync_ok()
    a.close()

    restored = reopen(a, backup)
    old_id = restored.device_id
    restored.sync_ok()
    doc = restored.lib.document(pid)
    assert doc["name"] == "After the backup" and doc["transition"]["type"] == "fade"
    assert restored.device_id != old_id  # it goes on under an id of its own
    assert restored.dump() == b.dump()
    # and its own edits from now on reach the others
    restored.lib.apply(pid, {"name": "Edited on the restored copy"})
    restored.sync_ok()
    b.sync_ok()
    assert b.lib.document(pid)["name"] == "Edited on the restored copy"
    assert restored.dump() == b.dump()
