"""`reelforge sync remote set|clear|show`, `sync run`, `sync status`, `sync restore|dismiss` (CLI.md)."""

from __future__ import annotations

from app.cli import EXIT_FAILED, EXIT_OK, Parser, UsageError, error_line, open_library, out_json


def add_sync_parser(sub) -> None:
    sync = sub.add_parser("sync", help="sync with Cloudflare R2 / S3: remote, run, status, conflicts")
    ss = sync.add_subparsers(dest="cmd", metavar="SUBCOMMAND", required=True, parser_class=Parser)

    remote = ss.add_parser("remote", help="set, clear or show the remote")
    rs = remote.add_subparsers(dest="remote_cmd", metavar="ACTION", required=True, parser_class=Parser)
    c = rs.add_parser("set", help="store the remote (nothing is contacted yet; credentials are never stored)")
    c.add_argument("--endpoint", required=True, help="e.g. https://ACCOUNT.r2.cloudflarestorage.com")
    c.add_argument("--bucket", required=True)
    c.add_argument("--prefix", default="", help="folder in the bucket (kept without a trailing slash)")
    c.add_argument("--region", default="auto")
    c.add_argument("--json", action="store_true")
    c = rs.add_parser("clear", help="forget the remote (sync is disabled)")
    c.add_argument("--json", action="store_true")
    c = rs.add_parser("show", help="print the remote")
    c.add_argument("--json", action="store_true")

    c = ss.add_parser("run", help="one complete sync cycle: push, pull, media")
    c.add_argument("--json", action="store_true")
    c.add_argument("--no-media", action="store_true", help="do not download the source media of pulled clips")
    c = ss.add_parser("status", help="state, pending changes, last sync, error, conflicts")
    c.add_argument("--json", action="store_true")
    c = ss.add_parser("restore", help="make the losing value of a conflict the newest edit")
    c.add_argument("conflict_id")
    c.add_argument("--json", action="store_true")
    c = ss.add_parser("dismiss", help="forget a conflict")
    c.add_argument("conflict_id")
    c.add_argument("--json", action="store_true")
    sync.set_defaults(handler=cmd_sync)


def cmd_sync(args) -> int:
    from app.services.errors import UserError
    from app.storage.sync import engine
    from app.storage.sync.config import ConfigError

    lib = open_library(args)
    try:
        if args.cmd == "remote":
            return _remote(lib, args)
        if args.cmd == "status":
            st = engine.status(lib.db)
            out_json(st) if args.json else _print_status(st)
            return EXIT_OK
        if args.cmd == "run":
            return _run(lib, args)
        try:
            if args.cmd == "restore":
                c = engine.restore_conflict(lib.db, args.conflict_id)
                out_json(c) if args.json else print(f"restored the losing value of {c['table']}.{c['field']} "
                                                    f"({c['row_id']})")
            else:
                c = engine.dismiss_conflict(lib.db, args.conflict_id)
                out_json(c) if args.json else print(f"dismissed {args.conflict_id}")
        except engine.SyncUserError as exc:
            raise UserError(str(exc)) from None
        return EXIT_OK
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    finally:
        lib.close()


def _remote(lib, args) -> int:
    from app.storage.sync import config, engine

    if args.remote_cmd == "set":
        cfg = config.validate(args.endpoint, args.bucket, args.prefix, args.region)
        changed = engine.set_remote(lib.db, cfg)
        if args.json:
            out_json(cfg.as_dict() | {"new_remote": changed})
        else:
            print(f"sync remote: {cfg.describe()} (region {cfg.region})")
            if changed:
                print("another remote than before: all local data will be uploaded to it on the next sync")
    elif args.remote_cmd == "clear":
        cleared = engine.clear_remote(lib.db)
        out_json({"cleared": cleared}) if args.json else print("sync remote cleared" if cleared else "no remote was set")
    else:
        cfg = engine.get_remote(lib.db)
        if args.json:
            out_json(cfg.as_dict() if cfg else None)
        else:
            print(f"{cfg.describe()} (region {cfg.region})" if cfg else "no sync remote is set")
    return EXIT_OK


def _run(lib, args) -> int:
    from app.cli_export import Progress
    from app.storage.sync import engine

    eng = engine.SyncEngine.for_db(lib.db, lib.media)
    if eng is None:
        raise UsageError("no sync remote is set: reelforge sync remote set --endpoint URL --bucket NAME")
    bars: dict[str, Progress] = {}

    def progress(label: str, done: int, total: int) -> None:
        bar = bars.get(label)
        if bar is None:
            bar = bars[label] = Progress(label, ticker=False)  # items follow one another: no repeats
        bar(100.0 * done / total if total else 100.0)

    try:
        result = eng.run_cycle(fetch_media=not args.no_media, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    if args.json:
        out_json(result.as_dict())
    else:
        print(f"sync {'done' if result.ok else 'failed'}: pushed {result.pushed_changes} change(s), applied "
              f"{result.applied_objects} batch(es) ({result.applied_rows} row(s)), {result.conflicts} "
              f"conflict(s), media up {result.media_uploaded} / down {result.media_downloaded}")
    if not result.ok:
        error_line(f"sync failed ({result.state}): {result.error}")
        return EXIT_FAILED
    return EXIT_OK


def _print_status(st: dict) -> None:
    from app.storage.sync.config import RemoteConfig

    line = f"{st['state']}: {st['pending_changes']} change(s) pending"
    if st["last_synced_at"]:
        line += f", last synced {st['last_synced_at']}"
    elif st["state"] == "pending":
        line += ", never synced"
    print(line)
    if st.get("waiting_rows"):
        print(f"waiting: {st['waiting_rows']} row(s) from the remote wait for rows they need, not arrived yet")
    if st["remote"]:
        print(f"remote: {RemoteConfig(**st['remote']).describe()}")
    if st["error"]:
        print(f"error: {st['error']}")
    for c in st["conflicts"]:
        print(f"conflict {c['id']}: {c['table']} {c['row_id']} {c['field']}: kept the {c['winner']} value "
              f"{c['local_value' if c['winner'] == 'local' else 'remote_value']!r}, lost "
              f"{c['remote_value' if c['winner'] == 'local' else 'local_value']!r}")
