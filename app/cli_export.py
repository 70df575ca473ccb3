"""`reelforge export framing|overlay|list|cancel|save|clear`: runs exports in the foreground, and saves a
copy of an exported video under a human name."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from app.cli import EXIT_FAILED, EXIT_OK, Parser, UsageError, error_line, open_library, out_json

log = logging.getLogger(__name__)


def add_export_parser(sub) -> None:
    exp = sub.add_parser("export", help="run, list and cancel exports")
    es = exp.add_subparsers(dest="cmd", metavar="SUBCOMMAND", required=True, parser_class=Parser)
    for kind in ("framing", "overlay"):
        c = es.add_parser(kind, help=f"run the {kind} export of a project until it ends")
        c.add_argument("project_id")
        c.add_argument("--json", action="store_true")
        c.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
        c.add_argument("--ai-weights", default=None, help="realesr-general-x4v3.pth for the 'ai' upscaler")
        c.set_defaults(kind=kind)
    c = es.add_parser("list", help="list export jobs")
    c.add_argument("--json", action="store_true")
    c = es.add_parser("cancel", help="cancel a queued or running export (also in another process)")
    c.add_argument("job_id")
    c.add_argument("--json", action="store_true")
    c = es.add_parser("clear", help="forget the ended exports in `export list` (their videos stay)")
    c.add_argument("--json", action="store_true")
    c = es.add_parser("save", help="save a copy of a project's exported video (default: the final video)")
    c.add_argument("project_id")
    c.add_argument("dest", help="the file to write (a folder: the project's name in it)")
    c.add_argument("--working", action="store_true", help="the working video instead of the final video")
    exp.set_defaults(handler=cmd_export)


class Progress:
    """A bar when stderr is a terminal, else plain percentage lines: one a second (the same
    percentage again while a slow export stays on it, from a ticker thread, so a stretch with no
    progress call, such as the encoder's flush, still says something) and the last at 100 %."""

    EVERY_S = 0.85  # plain lines: at most this far apart, plus the ticker's step
    TICK_S = 0.05

    def __init__(self, label: str, after: float = 0.0, ticker: bool = True):
        """``after``: show nothing for work that ends within that many seconds."""
        self.label, self.after = label, after
        self.tty = sys.stderr.isatty()
        self.last_pct = -1
        self.last_t = 0.0
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._ticker = None
        if ticker and not self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="progress-lines")
            self._ticker.start()

    def __call__(self, pct: float) -> None:
        t = time.monotonic()
        ipct = int(pct)
        if t - self.t0 < self.after:
            return
        with self._lock:
            if self.tty:
                if ipct != self.last_pct:
                    filled = ipct * 30 // 100
                    sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {ipct:3d}%"
                                     f"{self.eta(pct, t)}")
                    sys.stderr.flush()
            elif t - self.last_t >= self.EVERY_S or (ipct == 100 and self.last_pct != 100):
                self._line(ipct, t)
            self.last_pct = ipct

    def _line(self, ipct: int, t: float) -> None:
        sys.stderr.write(f"{self.label} {ipct}%\n")
        sys.stderr.flush()
        self.last_t = t

    def _tick(self) -> None:
        while not self._done.wait(self.TICK_S):
            with self._lock:
                t = time.monotonic()
                if 0 <= self.last_pct < 100 and t - self.last_t >= self.EVERY_S:
                    self._line(self.last_pct, t)

    def eta(self, pct: float, t: float) -> str:
        """"  0:37 left" once the rate is known (2 s and 2 % in), padded so a shorter one overwrites it."""
        spent = t - self.t0
        if pct >= 100 or pct < 2 or spent < 2:
            return " " * 12
        left = round(spent * (100 - pct) / pct)
        return f"  {left // 60}:{left % 60:02d} left".ljust(12)

    def close(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.tty and self.last_pct >= 0:
            sys.stderr.write("\n")


def require_device(pref: str) -> None:
    """A GPU named with --device must be there: a render box's script that asks for CUDA is not
    quietly given the CPU (``auto`` is the flag that falls back)."""
    if pref in ("auto", "cpu"):
        return
    from app.pipeline.device import pick_device

    if pick_device(pref) != pref:
        raise UsageError(f"--device {pref}: no {pref.upper()} device is available here "
                         "(--device auto renders on the best device there is)")


def cmd_export(args) -> int:
    from app.jobs.service import ExportService, Settings

    lib = open_library(args)
    try:
        settings = Settings(device=getattr(args, "device", "auto"), ai_weights=getattr(args, "ai_weights", None))
        svc = ExportService(lib, settings)
        if args.cmd == "list":
            jobs = svc.list_jobs()
            if args.json:
                out_json(jobs)
            elif not jobs:
                print("no exports yet")
            else:
                for j in jobs:
                    err = f"  {j['error']}" if j["error"] else ""
                    print(f"{j['id']}  {j['type']:8} {j['status']:11} {j['progress']:5.1f}%  {j['project_id']}{err}")
            return EXIT_OK
        if args.cmd == "cancel":
            svc.cancel(args.job_id)
            deadline = time.monotonic() + 5.0
            job = svc.get(args.job_id)
            while job["status"] in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(0.1)
                job = svc.get(args.job_id)
            out_json(job) if args.json else print(f"{args.job_id} {job['status']}")
            return EXIT_OK
        if args.cmd == "clear":
            n = svc.clear_finished()
            out_json({"cleared": n}) if args.json else print(f"{n} ended export(s) cleared")
            return EXIT_OK
        if args.cmd == "save":
            return save_export(lib, args)
        require_device(args.device)
        return run_export(svc, args)
    finally:
        lib.close()


def save_export(lib, args) -> int:
    from app.services.outputs import save_project_output

    bar = Progress("save")
    try:
        path = save_project_output(lib, args.project_id, "framing" if args.working else "overlay", args.dest,
                                   lambda f: bar(f * 100))
    finally:
        bar.close()
    print(path)
    return EXIT_OK


def run_export(svc, args) -> int:
    job_id = svc.enqueue(args.project_id, args.kind)
    stop = threading.Event()

    def on_signal(signum, frame):  # Ctrl-C / SIGTERM: cancel cleanly, exit 1
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = Progress(f"export {args.kind}")
    try:
        job = svc.run(job_id, bar, stop)
    finally:
        bar.close()
        for s, h in old.items():
            signal.signal(s, h)
    warnings = job.pop("warnings", [])
    if job["status"] == "complete":  # a failure's stderr is progress and its `error:` line alone (CLI.md)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    elif warnings:
        log.info("export %s of %s ended %s; warnings: %s", args.kind, args.project_id, job["status"], warnings)
    if args.json:
        out_json(job)
    elif job["status"] == "complete":
        print(job["output"])
    if job["status"] != "complete":
        error_line(f"export {args.kind} of {args.project_id} {job['status']}: {job['error']}")
        return EXIT_FAILED
    return EXIT_OK
