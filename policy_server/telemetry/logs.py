"""Logging of the entry points: text or JSON lines, and quiet third-party start-up chatter.

Nothing here runs on import: `policy-server` (cli.py) and the demos
(examples/) call these functions first, before TensorFlow, TF-Agents, gym or
Reverb are imported, because what they print at import time can only be
silenced beforehand. Library code (PolicyServer, BackgroundServer) changes no
global setting.

What is quiet, and how:

- TensorFlow's C++ logs (the CUDA/cuDNN "Unable to register" errors on
  machines without a GPU, oneDNN and CPU-feature notes):
  TF_CPP_MIN_LOG_LEVEL=3, unless the environment asks for more (0 or 1);
- TF-Agents' and TensorFlow's Python warnings (absl and "tensorflow" loggers):
  ERROR and above only;
- gym's "Gym has been unmaintained" banner, printed on import: gym is imported
  once with sys.stderr captured; gym's own `warnings` are ignored;
- Reverb's C++ INFO lines (written to fd 2 unconditionally, with no level):
  `native_stderr_silenced` around the calls that print them (the demo);
- gRPC's spurious BlockingIOError reports when several event loops of one
  process share its poller: `quiet_poller_races(loop)`, on the loops it is
  given (BackgroundServer's).

`verbose=True` (e.g. --log-level DEBUG) leaves everything as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.util
import io
import json
import logging
import os
import sys
import warnings
from typing import Any, Iterator, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
# Attributes every LogRecord has; anything else came through `extra=` and goes into the JSON object.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the record's extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": _utc(record.created), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def _utc(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_line(message: str, *, level: str = "INFO", logger: str = "policy_server", **fields: Any) -> str:
    """A line in JsonFormatter's format, for what an entry point prints itself (e.g. on stdout)."""
    record = logging.LogRecord(logger, logging.getLevelName(level), "", 0, message, (), None)
    record.__dict__.update(fields)
    return JsonFormatter().format(record)


def configure(level: str | int = "INFO", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Sends every log record at `level` or above to `stream` (default stderr) as text or JSON lines.

    Replaces the root logger's handlers; returns the one handler.

    Raises:
      ValueError: an unknown level or format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    return handler


def quiet_libraries(verbose: bool = False) -> None:
    """Keeps TensorFlow's, TF-Agents', gym's and absl's start-up chatter off the terminal (see the module doc).

    Call it before those libraries are imported; with `verbose`, it does nothing.
    """
    if verbose:
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() not in ("0", "1"):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"gym(\.|$)")
    import_gym_quietly()


def import_gym_quietly() -> None:
    """Imports gym (if installed and not yet imported) with sys.stderr captured: gym prints a banner on import."""
    if "gym" in sys.modules or importlib.util.find_spec("gym") is None:
        return
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            importlib.import_module("gym")
        except Exception:  # pylint: disable=broad-except  # the real import, later, says what is wrong
            pass


def separate_python_stderr() -> None:
    """Points sys.stderr at a duplicate of fd 2, so that `native_stderr_silenced` silences C/C++ code alone.

    Call it before any logging handler is made (handlers keep the stream they got).
    """
    if getattr(sys.stderr, "_tfa_policy_separate", False):
        return
    sys.stderr.flush()
    stream = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    stream._tfa_policy_separate = True  # type: ignore[attr-defined]
    sys.stderr = stream


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Meanwhile, what C/C++ code writes to fd 2 goes nowhere (processes started meanwhile inherit that).

    Python's own output goes on when `separate_python_stderr` ran first.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_poller_races(loop: asyncio.AbstractEventLoop) -> None:
    """Drops gRPC's spurious BlockingIOError reports when several event loops share its poller.

    Every grpc.aio object binds its thread's loop to gRPC's one process-wide
    completion-queue socket, so with several servers (or aio clients) in one
    process each event wakes every loop and all but one find nothing to read
    (grpc/grpc#25364). Nothing is lost; the reports are noise, thousands per
    run. Everything else goes to the loop's usual handler.
    """
    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if isinstance(context.get("exception"), BlockingIOError) and \
                "PollerCompletionQueue" in repr(context.get("handle") or context.get("message", "")):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
