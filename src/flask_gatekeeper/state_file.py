"""Bans that survive a restart with the memory storage: the optional ``state_file``.

The memory storage forgets everything when its process ends, and a deploy or a crash
would set every banned client free. With a state file, the bans in force (and the ban
history that escalation reads, and each client's recent reports) are written to one JSON
file and read back when the app starts:

- at start-up (``init_app``) the file is read: a missing file is an empty start; a file
  that is not a state file (corrupt, foreign, of a newer format) is logged as a warning
  naming the path and moved aside to ``<path>.bad``, and the app starts with no bans;
- once this process serves its first request (or exits), it takes the file's lock and a
  writer thread saves, at most every ``SAVE_INTERVAL`` seconds, whenever bans or reports
  changed: a ``kill -9`` loses at most that much; a clean exit saves at once;
- every write goes to a temporary file in the same directory, then replaces the file
  (``os.replace``): a reader never sees half a file.

One process writes a file. The memory storage's bans are each process's own, so several
processes writing one file would overwrite each other's bans: the process that holds the
lock (``<path>.lock``, ``fcntl.lockf``) writes; another one logs an error that points to the
Redis storage, which shares bans between processes, and does not write.

Times are written as Unix microseconds, so the monotonic clock of the process that wrote
them can differ from the one that reads them.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Optional

from .decision import DEFAULT_OFFENCE
from .errors import ConfigError, ConfigTypeError
from .storage.base import Clock
from .storage.memory import MemoryStorage, Saved, SavedBan
from .units import instant

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock between processes
    fcntl = None  # type: ignore[assignment]

__all__ = ["FORMAT", "SAVE_INTERVAL", "StateFile", "parse_state_file"]

logger = logging.getLogger("flask_gatekeeper")

FORMAT = "flask-gatekeeper state"
"""The ``format`` field of every state file; ``version`` is ``_VERSION``."""
_VERSION = 1

SAVE_INTERVAL = 2.0
"""Seconds between two saves at most: what a ``kill -9`` may lose of bans and reports."""

_HELD: dict[Path, int] = {}
"""Files whose lock this process holds, and the ``id`` of the ``StateFile`` holding each:
two apps of one process must not write one file either."""
_HELD_LOCK = threading.Lock()


def _forget_locks() -> None:
    """In a forked child, which holds none of its parent's locks (``lockf`` locks belong
    to a process), with a fresh mutex (another thread may have held the parent's)."""
    global _HELD_LOCK
    _HELD.clear()
    _HELD_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks)


def parse_state_file(value: object, name: str) -> Path:
    """The ``state_file`` option: a path (text or ``os.PathLike``) in a directory that
    exists and can be written (checked at start-up: a typo would leave bans unsaved)."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigTypeError(f"{name}: expected a file path, got {value!r}")
    path = Path(value)
    if not str(value):
        raise ConfigError(f"{name}: the path is empty")
    directory = path.parent.resolve()
    if not directory.is_dir():
        raise ConfigError(f"{name}: the directory {str(directory)!r} does not exist")
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"{name}: cannot write in the directory {str(directory)!r}")
    if path.is_dir():
        raise ConfigError(f"{name}: {str(path)!r} is a directory, not a file")
    return path.resolve()


class _NotAStateFile(ValueError):
    """The file's content is not a state file of this library."""


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _NotAStateFile(f"{what} is not text")
    return value


def _number(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _NotAStateFile(f"{what} is not a whole number")
    return value


def _offence(item: dict[str, Any], what: str) -> Optional[str]:
    """An entry's offence: absent in files written before jails (the default offence's
    reports, a ban's offence as its reason says)."""
    offence = item.get("offence")
    return None if offence is None else _text(offence, f"{what}'s offence")


def _items(document: dict[str, Any], field: str) -> list[Any]:
    items = document.get(field)
    if not isinstance(items, list):
        raise _NotAStateFile(f"{field!r} is not a list")
    return items


class StateFile:
    """One app's state file, for its memory storage (see the module's docstring).

    ``wall`` is the clock written to the file (Unix time); tests replace it, and the
    storage's own clock, to move time instead of sleeping.
    """

    def __init__(
        self,
        path: Path,
        storage: MemoryStorage,
        *,
        wall: Clock = time.time,
        interval: float = SAVE_INTERVAL,
    ) -> None:
        self.path = path
        self.storage = storage
        storage.track_reports()
        self.wall = wall
        self.interval = interval
        self.saved_changes = storage.changes
        self._lock_file: Optional[int] = None
        self._started = False
        self._refused = False
        self._writing = False
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._save_lock = threading.Lock()
        finalizer = weakref.WeakMethod(self.close)
        atexit.register(lambda: (method := finalizer()) is not None and method())
        if hasattr(os, "register_at_fork"):
            forked = weakref.WeakMethod(self._forked)
            os.register_at_fork(after_in_child=lambda: (m := forked()) is not None and m())

    # -- reading --------------------------------------------------------------------------

    def load(self) -> int:
        """Restore the file's bans and reports into the storage; how many bans. Never
        raises: a file that is not a state file is moved aside and logged."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            return self._bad(f"cannot be read ({exc})")
        try:
            saved = self._parse(text)
        except _NotAStateFile as exc:
            return self._bad(str(exc))
        self.storage.restore(saved)
        self.saved_changes = self.storage.changes
        return len(saved.bans)

    def _bad(self, why: str) -> int:
        aside = self.path.with_name(self.path.name + ".bad")
        try:
            os.replace(self.path, aside)
            kept = f"; it was moved to {str(aside)!r}"
        except OSError as exc:
            kept = f"; it could not be moved aside ({exc}) and will be replaced at the next save"
        logger.warning(
            "state_file %r is not a flask-gatekeeper state file (%s): starting with no bans%s",
            str(self.path),
            why,
            kept,
        )
        return 0

    def _parse(self, text: str) -> Saved:
        """The file's content on the storage's clock; ``_NotAStateFile`` says why not."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise _NotAStateFile(f"not JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise _NotAStateFile(f"no 'format': {FORMAT!r} field")
        if document.get("version") != _VERSION:
            raise _NotAStateFile(f"version {document.get('version')!r}, expected {_VERSION}")
        now = instant(self.storage.clock())
        shift = now - instant(self.wall())  # a Unix microsecond -> the storage's clock
        bans = []
        for index, item in enumerate(_items(document, "bans")):
            if not isinstance(item, dict):
                raise _NotAStateFile(f"ban {index} is not an object")
            what = f"ban {index}"
            bans.append(
                SavedBan(
                    _text(item.get("client"), f"{what}'s client"),
                    _number(item.get("start"), f"{what}'s start") + shift,
                    _number(item.get("end"), f"{what}'s end") + shift,
                    _number(item.get("strikes"), f"{what}'s strikes"),
                    _number(item.get("forget_at"), f"{what}'s forget_at") + shift,
                    _text(item.get("reason"), f"{what}'s reason"),
                    _offence(item, what),
                )
            )
        reports = []
        for index, item in enumerate(_items(document, "reports")):
            if not isinstance(item, dict) or not isinstance(item.get("times"), list):
                raise _NotAStateFile(f"report log {index} is not an object with 'times'")
            client = _text(item.get("client"), f"report log {index}'s client")
            times = [_number(stamp, f"a time of report log {index}") for stamp in item["times"]]
            offence = _offence(item, f"report log {index}") or DEFAULT_OFFENCE
            reports.append((client, tuple(stamp + shift for stamp in times), offence))
        return Saved(now, 0, tuple(bans), tuple(reports))

    # -- writing --------------------------------------------------------------------------

    def start(self) -> bool:
        """Take the file for this process and start the writer; True when this process
        writes the file. Called at the first request, never before: a server's parent
        process that forks workers never takes it."""
        with self._start_lock:
            if not self._claim():
                return False
            if not self._writing:
                self._writing = True
                thread = threading.Thread(
                    target=self._run, name="gatekeeper-state-file", daemon=True
                )
                thread.start()
            return True

    def _claim(self) -> bool:
        """Take the file's lock for this process, once; False (logged once) when another
        process or app holds it."""
        if self._started or self._refused:
            return self._started
        holder = self._take_lock()
        if holder is not None:
            self._refused = True
            logger.error(
                "state_file %r is written by %s, so this process's bans will not be saved: "
                "the memory storage keeps each process's bans apart, and one file cannot "
                "hold them all. Several processes share bans with the Redis storage "
                '(storage="redis://..." or GATEKEEPER_STORAGE_URI); otherwise give each '
                "app and process a file of its own",
                str(self.path),
                holder,
            )
            return False
        self._started = True
        return True

    def _take_lock(self) -> Optional[str]:
        """None when this ``StateFile`` now holds the file; else who holds it."""
        with _HELD_LOCK:
            if _HELD.get(self.path, id(self)) != id(self):
                return "another app of this process"
            if fcntl is not None:
                lock_path = self.path.with_name(self.path.name + ".lock")
                descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(descriptor)
                    return "another process"
                self._lock_file = descriptor
            _HELD[self.path] = id(self)
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.storage.changes != self.saved_changes:
                self.save()

    def save(self) -> bool:
        """Write the storage's bans and reports now (temporary file, then rename); True
        when written. A failure (disk full, permissions) is logged, never raised."""
        with self._save_lock:
            saved = self.storage.saved()
            shift = instant(self.wall()) - saved.now  # the storage's clock -> Unix
            document = {
                "format": FORMAT,
                "version": _VERSION,
                "saved_at": instant(self.wall()),
                "bans": [
                    {
                        "client": ban.client,
                        "start": ban.start + shift,
                        "end": ban.end + shift,
                        "strikes": ban.strikes,
                        "forget_at": ban.forget_at + shift,
                        "reason": ban.reason,
                        **({} if ban.offence is None else {"offence": ban.offence}),
                    }
                    for ban in saved.bans
                ],
                "reports": [
                    {
                        "client": client,
                        "times": [stamp + shift for stamp in times],
                        "offence": offence,
                    }
                    for client, times, offence in saved.reports
                ],
            }
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                with open(temporary, "w", encoding="utf-8") as file:
                    json.dump(document, file, separators=(",", ":"))
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self.path)
            except OSError as exc:
                logger.error("state_file %r could not be written: %s", str(self.path), exc)
                return False
            self.saved_changes = saved.changes
            return True

    def close(self) -> None:
        """At exit: save what changed since the last save (taking the file first when no
        request did: no thread is started, which the interpreter refuses at exit), stop
        the writer and let the file go."""
        with self._start_lock:
            claimed = self.storage.changes != self.saved_changes and self._claim()
        if claimed:
            self.save()
        self._stop.set()
        self._writing = False
        with _HELD_LOCK:
            if _HELD.get(self.path) == id(self):
                del _HELD[self.path]
            if self._lock_file is not None:
                os.close(self._lock_file)  # the lock goes with it
                self._lock_file = None
        self._started = False

    def _forked(self) -> None:
        """In a forked child: the parent's writer thread and lock did not come along (and
        its mutexes may have been held by another thread)."""
        self._started = self._refused = self._writing = False
        self._stop = threading.Event()
        self._start_lock, self._save_lock = threading.Lock(), threading.Lock()
        self._lock_file = None
