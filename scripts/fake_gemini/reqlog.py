"""The request log: one JSON object per API request, in memory and as JSON lines.

Fields: ts (emulator clock), seq, method, path (raw, query string included, with the
value of any ``key=`` parameter and every known key replaced by ``REDACTED``),
key_in_url, key_name, project, model, action, status, kind, prompt_tokens, stream,
sse, user_agent, x_goog_api_client, ms, body_sha256 (of the request body as received,
so a test can tell it arrived byte for byte). Requests to ``/_emu/`` are not logged.
No key string ever enters the log.
"""

from __future__ import annotations

import json
import sys
import threading

LOG_FIELDS = ("ts", "seq", "method", "path", "key_in_url", "key_name", "project", "model",
              "action", "status", "kind", "prompt_tokens", "stream", "sse", "user_agent",
              "x_goog_api_client", "ms", "body_sha256")


class RequestLog:
    def __init__(self, path: str | None, echo: bool) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict] = []
        self._file = open(path, "a", encoding="utf-8") if path else None
        self._echo = echo

    def add(self, entry: dict) -> None:
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock:
            self._entries.append(entry)
            if self._file:
                self._file.write(line + "\n")
                self._file.flush()
        if self._echo:
            sys.stderr.write(f"fake-gemini: {entry['method']} {entry['path']} "
                             f"key={entry['key_name']} -> {entry['status']} {entry['kind']}\n")
            sys.stderr.flush()

    def entries(self, since: int = 0) -> list:
        with self._lock:
            return list(self._entries[since:])

    def clear(self) -> None:
        """Empty the in-memory log (the --log file is an append-only record)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
