"""Argument parsing and terminal output for a run: `edgewatch SOURCE`, `edgewatch demo`, several cameras from a config.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from commands.parsing import SUBCOMMANDS, ArgumentParser
from commands.progress import FileProgress
from pipeline import __version__
from pipeline.errors import EdgewatchError, UsageError
from pipeline.records import Event

log = logging.getLogger("edgewatch")


DEMO_VIDEO = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "demo.mp4"


def _run_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="edgewatch",
        description="Watch a video file, image folder, webcam or stream and report events. "
        "Sub-commands: " + ", ".join(SUBCOMMANDS) + " (each with --help).",
    )
    p.add_argument("source", nargs="?", help="video file, folder of images, webcam index (0), or stream URL; 'demo' for the "
                   "bundled demo clip; omit it to watch the config's cameras: list")
    p.add_argument("--config", type=Path, help="YAML config file (see config.example.yaml)")
    p.add_argument("--out", type=Path, help="output folder (default ./edgewatch-out); a folder holding an earlier run "
                   "needs --append")
    p.add_argument("--append", action="store_true", help="add this run to the logs of an earlier run in --out (each run has "
                   "its own run id, in the decision log and the summary); without it such a folder is refused")
    p.add_argument("--camera-id", help="camera id used in events (default: config camera_id)")
    p.add_argument("--realtime", action="store_true", help="pace files to their fps instead of as fast as possible")
    p.add_argument("--display", action="store_true", help="show annotated frames (needs a display)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N sampled frames")
    p.add_argument("--zone", action="append", default=[], metavar="NAME:X,Y;X,Y;X,Y",
                   help="intrusion zone polygon as fractions of width,height (repeatable)")
    p.add_argument("--student", choices=["auto", "offline", "ollama"], help="student backend (default: config, auto)")
    p.add_argument("--teacher", choices=["auto", "offline", "ollama"], help="teacher backend (default: config, auto)")
    p.add_argument("--ollama-host", help="Ollama host for student and teacher (default: config)")
    p.add_argument("--quiet", action="store_true", help="print only the summary (no event lines, no progress bar)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"edgewatch {__version__}")
    return p


def _parse_zone(text: str) -> dict[str, object]:
    name, sep, rest = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"--zone {text!r}: expected NAME:X,Y;X,Y;X,Y")
    points = []
    for pair in rest.split(";"):
        try:
            x, y = (float(v) for v in pair.split(","))
        except ValueError:
            raise UsageError(f"--zone {text!r}: point {pair!r} is not X,Y") from None
        points.append((x, y))
    return {"name": name.strip(), "points": points}


class _JsonFormatter(logging.Formatter):
    """One JSON object per log record, for journald and containers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: bool, level: str, log_format: str = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler.setFormatter(_JsonFormatter() if use_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level))


def settings_from_args(args: argparse.Namespace):  # noqa: ANN202 - returns Settings
    from pipeline.config.loading import load_settings, settings_from_dict

    settings = load_settings(args.config)
    overrides = settings.model_dump()
    if getattr(args, "out", None) is not None:
        overrides["output"]["out_dir"] = args.out
    if getattr(args, "camera_id", None):
        overrides["camera_id"] = args.camera_id
    if getattr(args, "realtime", False):
        overrides["capture"]["realtime"] = True
    if getattr(args, "zone", None):
        overrides["zones"] = overrides["zones"] + [_parse_zone(z) for z in args.zone]
    for role in ("student", "teacher"):
        if getattr(args, role, None):
            overrides[role]["backend"] = getattr(args, role)
    if getattr(args, "ollama_host", None):
        overrides["student"]["host"] = args.ollama_host
        overrides["teacher"]["host"] = args.ollama_host
    return settings_from_dict(overrides)


class _Stdout:
    """Lines for stdout; a reader that went away (``edgewatch demo | head -3``) stops the run quietly."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
            # Python would complain again when it flushes stdout at exit: point stdout at /dev/null.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            if not self._stop.is_set():
                log.info("stdout closed by its reader: stopping")
                self._stop.set()


class _EventPrinter:
    """One line per event start, review change and end — not for every internal update."""

    def __init__(self, out: _Stdout, progress: FileProgress) -> None:
        self._out = out
        self._progress = progress
        self._shown: dict[str, tuple[str, str]] = {}

    def __call__(self, event: Event) -> None:
        if event.phase == "new":
            self._progress.event_started()
        key = (event.type, event.review.value)
        if event.phase == "update" and self._shown.get(event.id) == key:
            return
        self._shown[event.id] = key
        if event.phase == "end":
            self._shown.pop(event.id, None)
        end = f"-{event.end:.1f}s" if event.end is not None else ""
        review = f" [{event.review.value}]" if event.severity == "alert" else ""
        why = ""
        if event.phase == "new" and event.reasons:
            why = f" — {event.reasons[-1]}"
        elif event.phase == "update" and event.explanation:
            why = f" — {event.explanation.split('. ')[0].rstrip('.')}"
        self._progress.clear()
        self._out.write(
            f"{event.phase:>6} {event.severity:<8} {event.type:<8} {event.camera} t={event.start:.1f}s{end}"
            f" conf={event.peak_confidence:.2f}{review}{why}\n"
        )


def cmd_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError("--max-frames must be >= 1")
    settings = settings_from_args(args)
    setup_logging(args.verbose, settings.log_level, settings.log_format)
    source = str(DEMO_VIDEO) if args.source == "demo" else args.source
    if source is None and not settings.cameras:
        raise UsageError("no SOURCE given and the config has no cameras: try `edgewatch demo`, a video file, "
                         "a webcam index or a stream URL (see --help)")

    from pipeline.clock import SystemClock
    from pipeline.runner import Runner, is_stream_url
    from pipeline.analyzers.backends import select_backends
    from pipeline.sinks.files import earlier_run, prepare_out_dir
    from pipeline.sources.capture import open_source

    out_dir = prepare_out_dir(Path(settings.output.out_dir))  # fail on an unwritable --out before probing models
    found = earlier_run(out_dir)
    if found and not args.append:
        raise UsageError(f"{out_dir} holds an earlier run ({found}): give a new --out folder, or --append to add this run to it")
    clock = SystemClock()
    if source is not None and not is_stream_url(source):
        # A missing file is reported before anything else is said; a stream or camera that is not up
        # yet is waited for (a box may boot before its cameras).
        open_source(source, camera_id=settings.camera_id, cfg=settings.capture, clock=clock).close()
    backends = select_backends(settings, clock)
    if backends.fallback:
        sys.stderr.write(f"edgewatch: NOTICE: {backends.fallback}\n")
    for notice in backends.notices:
        log.info("%s", notice)

    display = None
    if args.display:
        from pipeline.sinks.display import open_display

        display = open_display()

    stop = threading.Event()
    stdout = _Stdout(stop)
    progress = FileProgress(enabled=not args.quiet and sys.stderr.isatty())
    runner = Runner(
        settings,
        backends,
        clock=clock,
        on_event=None if args.quiet else _EventPrinter(stdout, progress),
        on_progress=progress,
        stop=stop,
        display=display,
    )

    def _on_stop(signum: int, _frame: object) -> None:
        log.warning("received %s: stopping, draining work in flight and flushing outputs", signal.Signals(signum).name)
        stop.set()

    def _on_reload(_signum: int, _frame: object) -> None:
        # SIGHUP: thresholds, states and zones from the config file; cameras keep running.
        try:
            runner.request_reload(settings_from_args(args))
        except EdgewatchError as exc:
            log.error("SIGHUP: configuration not reloaded: %s", exc)

    handlers = {signal.SIGINT: _on_stop, signal.SIGTERM: _on_stop}
    if hasattr(signal, "SIGHUP"):
        handlers[signal.SIGHUP] = _on_reload
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        if source is not None:
            summaries = [runner.run(source, max_frames=args.max_frames)]
        else:
            summaries = runner.run_cameras(settings.cameras, max_frames=args.max_frames)
    finally:
        progress.done()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if display is not None:
            display.close()
    progress.done()
    for summary in summaries:
        stdout.write(summary.render() + "\n")
    return 0
