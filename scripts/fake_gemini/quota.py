"""Per-project, per-model quota accounting, as Google enforces the free tier.

- RPM: requests admitted in the last 60 s (a rolling window);
- input TPM: prompt tokens of the requests admitted in the last 60 s;
- RPD: requests admitted since the last midnight America/Los_Angeles.

Only admitted requests count: a request answered 429 leaves no trace but the
``quota_429`` counter. The check and the admission happen under one lock, and a
self-check counts every admission that left a window above its limit in
``over_limit`` (which must stay 0).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from . import clock as clk
from .models import Limits

WINDOW_S = 60.0
KEEP_S = 2 * 86400.0  # RPD never looks back more than 25 hours

METRIC_REQUESTS = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
METRIC_INPUT_TOKENS = ("generativelanguage.googleapis.com/"
                       "generate_content_free_tier_input_token_count")
QUOTA_ID_RPM = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
QUOTA_ID_TPM = "GenerateContentInputTokensPerModelPerMinute-FreeTier"
QUOTA_ID_RPD = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


@dataclass(frozen=True)
class Violation:
    """One exceeded limit: what Google puts in a QuotaFailure violation."""

    kind: str            # rpm | tpm | rpd
    metric: str
    quota_id: str
    limit: int
    wait_s: float        # precise time until this limit would admit the request

    @property
    def daily(self) -> bool:
        return self.kind == "rpd"


@dataclass
class _Usage:
    events: list = field(default_factory=list)  # (admitted_at, prompt_tokens)
    quota_429: int = 0
    quota_429_by_kind: Counter = field(default_factory=Counter)
    over_limit: int = 0


class QuotaBook:
    """Usage of every (project, model) pair."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage: dict[tuple[str, str], _Usage] = {}

    def reset(self) -> None:
        with self._lock:
            self._usage.clear()

    def admit(self, project: str, model: str, tokens: int, limits: Limits,
              now: float) -> list[Violation]:
        """Admit one request, or return the limits it would exceed (nothing recorded)."""
        with self._lock:
            usage = self._usage.setdefault((project, model), _Usage())
            self._prune(usage, now)
            violations = self._check(usage, tokens, limits, now)
            if violations:
                usage.quota_429 += 1
                usage.quota_429_by_kind[violations[0].kind] += 1
                return violations
            usage.events.append((now, tokens))
            if self._over(usage, limits, now):
                usage.over_limit += 1
            return []

    def note_no_free_tier(self, project: str, model: str) -> None:
        """Count a `limit: 0` answer among the quota 429s."""
        with self._lock:
            usage = self._usage.setdefault((project, model), _Usage())
            usage.quota_429 += 1
            usage.quota_429_by_kind["no_free_tier"] += 1

    def snapshot(self, project: str, model: str, limits: Limits | None, now: float) -> dict:
        """The /_emu/usage entry of one (project, model)."""
        with self._lock:
            usage = self._usage.get((project, model), _Usage())
            minute = _minute(usage.events, now)
            start = clk.day_start(now)
            return {
                "requests_last_minute": len(minute),
                "tokens_last_minute": sum(t for _, t in minute),
                "requests_today": sum(1 for ts, _ in usage.events if ts >= start),
                "limits": limits.as_json() if limits else None,
                "quota_429": usage.quota_429,
                "quota_429_by_kind": dict(usage.quota_429_by_kind),
                "over_limit": usage.over_limit,
            }

    def pairs(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._usage)

    @staticmethod
    def _prune(usage: _Usage, now: float) -> None:
        if usage.events and usage.events[0][0] < now - KEEP_S:
            usage.events = [e for e in usage.events if e[0] >= now - KEEP_S]

    @staticmethod
    def _check(usage: _Usage, tokens: int, limits: Limits, now: float) -> list[Violation]:
        minute = sorted(_minute(usage.events, now))
        found = []
        if limits.rpd is not None:
            today = sum(1 for ts, _ in usage.events if ts >= clk.day_start(now))
            if today + 1 > limits.rpd:
                found.append(Violation("rpd", METRIC_REQUESTS, QUOTA_ID_RPD, limits.rpd,
                                       clk.next_midnight(now) - now))
        if limits.rpm is not None and len(minute) + 1 > limits.rpm:
            # The request fits once the oldest (count - limit + 1) requests expire.
            oldest = minute[len(minute) - limits.rpm][0] if limits.rpm else now
            found.append(Violation("rpm", METRIC_REQUESTS, QUOTA_ID_RPM, limits.rpm,
                                   max(0.0, oldest + WINDOW_S - now)))
        if limits.tpm is not None:
            used = sum(t for _, t in minute)
            if used + tokens > limits.tpm:
                found.append(Violation("tpm", METRIC_INPUT_TOKENS, QUOTA_ID_TPM, limits.tpm,
                                       _tpm_wait(minute, used, tokens, limits.tpm, now)))
        return found

    @staticmethod
    def _over(usage: _Usage, limits: Limits, now: float) -> bool:
        minute = _minute(usage.events, now)
        today = sum(1 for ts, _ in usage.events if ts >= clk.day_start(now))
        return ((limits.rpm is not None and len(minute) > limits.rpm)
                or (limits.tpm is not None and sum(t for _, t in minute) > limits.tpm)
                or (limits.rpd is not None and today > limits.rpd))


def _minute(events: list, now: float) -> list:
    """Events inside the rolling window (events 'in the future' after the clock
    moved back count too)."""
    return [e for e in events if e[0] > now - WINDOW_S]


def _tpm_wait(minute: list, used: int, tokens: int, limit: int, now: float) -> float:
    """Seconds until enough tokens leave the window for `tokens` more to fit."""
    if tokens > limit:  # never fits; Google still answers with a per-minute retry
        return WINDOW_S if not minute else max(0.0, minute[-1][0] + WINDOW_S - now)
    for ts, t in minute:  # oldest first
        used -= t
        if used + tokens <= limit:
            return max(0.0, ts + WINDOW_S - now)
    return WINDOW_S  # pragma: no cover - the loop always ends with used == 0
