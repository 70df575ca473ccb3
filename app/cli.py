"""Command line: a thin shell over the Qt-free services (CLI.md is the contract).

Imports are lazy: commands that need neither Qt nor torch never import them, and
`project list` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.logs import log_dir, redact_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def error_line(text: object) -> None:
    """The contract's last line on stderr: ``error: ...`` on one line, whatever the words hold
    (a file name with a newline in it, a multi-line library message)."""
    one = redact_text(str(text)).replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    sys.stderr.write(f"error: {one}\n")
    sys.stderr.flush()


class Parser(argparse.ArgumentParser):
    """argparse, with the contract's last line: `error: ...` and exit 2."""

    def error(self, message):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        error_line(message)
        raise SystemExit(EXIT_USAGE)


def default_data_dir() -> Path:
    env = os.environ.get("REELFORGE_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("Reelforge", appauthor=False))


def build_parser() -> Parser:
    from app import __version__
    from app.limits import ASPECTS

    p = Parser(prog="reelforge", description="Reelforge: highlight reels from long footage.",
               epilog=f"Without a command, the window opens. The log is in {log_dir()} "
                      "(REELFORGE_LOG_LEVEL=debug for more).")
    p.add_argument("--version", action="version", version=f"reelforge {__version__}")
    p.add_argument("--data-dir", type=Path, default=None, help="data directory (default: per-user data dir)")
    sub = p.add_subparsers(dest="group", metavar="COMMAND", parser_class=Parser)

    proj = sub.add_parser("project", help="create, list, show, apply, delete projects")
    ps = proj.add_subparsers(dest="cmd", metavar="SUBCOMMAND", required=True, parser_class=Parser)
    c = ps.add_parser("create", help="create a project")
    c.add_argument("name")
    c.add_argument("--aspect", default="9:16", choices=list(ASPECTS))
    c.add_argument("--json", action="store_true")
    c = ps.add_parser("list", help="list projects")
    c.add_argument("--json", action="store_true")
    c = ps.add_parser("show", help="print the project document")
    c.add_argument("id")
    c.add_argument("--json", action="store_true")
    c = ps.add_parser("apply", help="apply a project document (FILE or - for stdin)")
    c.add_argument("id")
    c.add_argument("file")
    c.add_argument("--json", action="store_true")
    c = ps.add_parser("delete", help="delete a project")
    c.add_argument("id")
    c.add_argument("--json", action="store_true")

    clip = sub.add_parser("clip", help="add or remove clips")
    cs = clip.add_subparsers(dest="cmd", metavar="SUBCOMMAND", required=True, parser_class=Parser)
    c = cs.add_parser("add", help="add a clip [START, END) of a media file to a project")
    c.add_argument("project_id")
    c.add_argument("media_file")
    c.add_argument("--start", type=float, default=None)
    c.add_argument("--end", type=float, default=None)
    c.add_argument("--json", action="store_true")
    c = cs.add_parser("remove", help="remove a clip")
    c.add_argument("clip_id")
    c.add_argument("--json", action="store_true")

    try:
        from app.cli_export import add_export_parser
    except ImportError:  # pragma: no cover - during development of the export commands
        pass
    else:
        add_export_parser(sub)
    try:
        from app.cli_sync import add_sync_parser
    except ImportError:  # pragma: no cover
        pass
    else:
        add_sync_parser(sub)
    return p


def out_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def open_library(args):
    from app.services.library import open_library as open_dir

    return open_dir(Path(args.data_dir or default_data_dir()).expanduser())


def read_document(arg: str):
    try:
        text = sys.stdin.read() if arg == "-" else Path(arg).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read '{arg}': {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"'{arg}' is not UTF-8 text") from None
    where = "standard input" if arg == "-" else f"'{arg}'"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise UsageError(f"{where} is not valid JSON: {str(exc)[:80]}") from None
    except RecursionError:
        raise UsageError(f"{where} is not a project document: it is nested too deeply") from None


def cmd_project(args) -> int:
    lib = open_library(args)
    try:
        if args.cmd == "create":
            pid = lib.create_project(args.name, args.aspect)
            out_json({"id": pid}) if args.json else print(pid)
        elif args.cmd == "list":
            rows = lib.list_projects()
            keys = ("id", "name", "aspect_ratio", "status", "progress", "clip_count",
                    "has_working_video", "has_final_video", "updated_at")
            if args.json:
                out_json([{k: r[k] for k in keys} | {"duration": r["duration"]} for r in rows])
            else:
                print_table(rows)
        elif args.cmd == "show":
            out_json(lib.document(args.id))
        elif args.cmd == "apply":
            doc = read_document(args.file)
            ignored = lib.apply(args.id, doc)
            if ignored:  # applied without them; a misspelt edit is not dropped without a word
                print(f"warning: ignored unknown field{'s' if len(ignored) > 1 else ''}: {', '.join(ignored[:10])}",
                      file=sys.stderr)
            if args.json:
                out_json(lib.document(args.id))
            else:
                print(f"applied to {args.id}")
        elif args.cmd == "delete":
            lib.delete_project(args.id)
            out_json({"id": args.id, "deleted": True}) if args.json else print(f"deleted {args.id}")
        return EXIT_OK
    finally:
        lib.close()


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("no projects yet: reelforge project create NAME")
        return
    print(f"{'ID':36}  {'STATUS':17}  {'ASPECT':6}  {'CLIPS':>5}  NAME")
    for r in rows:
        status = r["status"] + (f" {r['progress']:.0f}%" if r["progress"] is not None else "")
        print(f"{r['id']:36}  {status:17}  {r['aspect_ratio']:6}  {r['clip_count']:>5}  {r['name']}")


def cmd_clip(args) -> int:
    lib = open_library(args)
    try:
        if args.cmd == "add":
            from app.cli_export import Progress

            bar = Progress(f"importing {Path(args.media_file).name}", after=1.0)
            try:
                cid = lib.add_clip(args.project_id, args.media_file, args.start, args.end,
                                   progress=lambda done, total: bar(100.0 * done / total if total else 100.0))
            finally:
                bar.close()
            out_json({"id": cid}) if args.json else print(cid)
        elif args.cmd == "remove":
            lib.remove_clip(args.clip_id)
            out_json({"id": args.clip_id, "removed": True}) if args.json else print(f"removed {args.clip_id}")
        return EXIT_OK
    finally:
        lib.close()


def run_gui(args) -> int:
    if sys.platform.startswith("linux") and not any(
            os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        raise UsageError("no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set): "
                         "run a command instead, e.g. `reelforge project list`, or see `reelforge --help`")
    from app.ui.main import run

    return run(args.data_dir or default_data_dir())


COMMANDS = {"project": cmd_project, "clip": cmd_clip}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from app.logs import setup_logging, where_words

    setup_logging()
    handler = COMMANDS.get(args.group) if args.group else run_gui
    if handler is None:
        handler = getattr(args, "handler", None)
    from app.services.errors import OperationFailed, UserError, unexpected_words

    try:
        return handler(args)
    except (UserError, UsageError) as exc:
        error_line(exc)
        return EXIT_USAGE
    except OperationFailed as exc:
        error_line(exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        error_line("interrupted")
        return EXIT_FAILED
    except BrokenPipeError:  # the reader stopped reading (`project list | head -1`): nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the flush at exit would fail again
        return EXIT_OK
    except Exception as exc:  # the contract: one `error:` line, no traceback (the log has it)
        import logging

        logging.getLogger("reelforge").exception("command failed")
        error_line(f"{unexpected_words(exc)} ({where_words()})")
        return EXIT_FAILED
