"""The emulator's clock and the Pacific-time day boundary that resets RPD.

The clock is ``time.time() + offset``: it follows faketime and can be moved with
``--time-offset`` or ``POST /_emu/clock``, so tests cross minutes and midnights
without sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta, timezone

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        PACIFIC = ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # a system without tzdata: US rules below
        PACIFIC = None
except ImportError:  # pragma: no cover - Python < 3.9
    PACIFIC = None


class Clock:
    """Thread-safe ``time.time() + offset``."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._offset = float(offset_s)
        self.initial_offset = float(offset_s)

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def set_offset(self, offset_s: float) -> None:
        with self._lock:
            self._offset = float(offset_s)


def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    first_sunday = first + timedelta(days=(6 - first.weekday()) % 7)
    return first_sunday + timedelta(weeks=n - 1)


def _us_pacific_offset_hours(day: date) -> int:
    """UTC offset at midnight of `day` under US rules since 2007 (fallback only)."""
    start = _nth_sunday(day.year, 3, 2)   # DST starts 02:00 on the 2nd Sunday of March
    end = _nth_sunday(day.year, 11, 1)    # and ends 02:00 on the 1st Sunday of November
    return -7 if start < day <= end else -8


def _pacific_date(ts: float) -> date:
    if PACIFIC is not None:
        return datetime.fromtimestamp(ts, PACIFIC).date()
    utc = datetime.fromtimestamp(ts, timezone.utc)
    guess = (utc + timedelta(hours=-8)).date()
    # Midnight of a day is never inside the 01:00-02:00 DST switch window.
    if ts >= midnight_of(guess + timedelta(days=1)):
        return guess + timedelta(days=1)
    return guess


def midnight_of(day: date) -> float:
    """Unix time of 00:00 America/Los_Angeles on `day`."""
    if PACIFIC is not None:
        return datetime(day.year, day.month, day.day, tzinfo=PACIFIC).timestamp()
    tz = timezone(timedelta(hours=_us_pacific_offset_hours(day)))
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def day_start(ts: float) -> float:
    """The last midnight Pacific at or before `ts` (the start of the RPD day)."""
    return midnight_of(_pacific_date(ts))


def next_midnight(ts: float) -> float:
    """The first midnight Pacific after `ts` (when RPD resets)."""
    return midnight_of(_pacific_date(ts) + timedelta(days=1))


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def iso_pacific(ts: float) -> str:
    if PACIFIC is not None:
        return datetime.fromtimestamp(ts, PACIFIC).isoformat(timespec="seconds")
    day = _pacific_date(ts)
    tz = timezone(timedelta(hours=_us_pacific_offset_hours(day)))
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")
