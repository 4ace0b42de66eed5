"""The request logic of the emulated Gemini API, independent of HTTP framing.

`Emulator.handle` turns one parsed request (a `Call`) into a reply to send: a
`Plain` body, a `Stream` of chunks or a `Reset`. The checks run in the order the
real service applies them: API key, key state, request body, replay queue, model,
billing, injected server faults, free-tier availability, quota.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import os
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from . import answers, errors, prompt as prompts
from . import clock as clk
from .faults import FaultBook, FaultPlan, Gates, ReplayEntry, ReplayQueue
from .keyring import Key, Keyring
from .quota import QuotaBook
from .reqlog import RequestLog

JSON_TYPE = "application/json; charset=UTF-8"
SSE_TYPE = "text/event-stream"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
GENERATE_ACTIONS = ("generateContent", "streamGenerateContent")
EMBED_ACTIONS = ("embedContent", "batchEmbedContents")
MIN_REDACTED_LEN = 8  # a presented unknown key shorter than this is not scrubbed
NOT_FOUND_HTML = ("<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 "
                  "(Not Found)!!1</title>\n  <p><b>404.</b> <ins>That\u2019s an error.</ins>\n"
                  "  <p>The requested URL <code>{path}</code> was not found on this server.  "
                  "<ins>That\u2019s all we know.</ins>\n")


@dataclass
class Call:
    """One API request as the logic sees it, and what the log records about it."""

    method: str
    raw_path: str
    headers: dict                    # lower-case names
    body: bytes = b""
    body_error: errors.ApiError | None = None   # the body could not be read
    path: str = ""
    query: dict = field(default_factory=dict)
    version: str = "v1beta"
    model: str | None = None
    action: str | None = None
    key: Key | None = None
    secret: str | None = field(default=None, repr=False)  # never logged
    key_in_url: bool = False
    stream: bool = False
    sse: bool = False
    prompt_tokens: int | None = None
    seq: int = 0
    plan: FaultPlan = field(default_factory=FaultPlan)
    started: float = field(default_factory=time.monotonic)
    recorded: bool = False

    def __post_init__(self) -> None:
        self.path, _, qs = self.raw_path.partition("?")
        self.query = parse_qs(qs, keep_blank_values=True)
        self.key_in_url = "key" in self.query

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Plain:
    status: int
    body: bytes
    kind: str
    content_type: str = JSON_TYPE
    faultable: bool = False          # a success body: truncate / malformed may apply


@dataclass
class Stream:
    chunks: list
    sse: bool
    kind: str
    replay_tail: bytes | None = None  # a mid-stream replay body, sent after chunk 1


@dataclass
class Reset:
    kind: str = "reset"


class Emulator:
    """All state of one emulator: keys, clock, quota, faults, replay queue, log."""

    def __init__(self, keyring: Keyring, clock: clk.Clock, faults: FaultBook,
                 log: RequestLog, fixtures_dir: str, control_token: str | None = None) -> None:
        self.keyring = keyring
        self.catalog = keyring.catalog
        self.clock = clock
        self.faults = faults
        self.log = log
        self.quota = QuotaBook()
        self.replay = ReplayQueue()
        self.gates = Gates()
        self.fixtures_dir = fixtures_dir
        self.control_token = control_token
        self.started = time.time()
        self._seq_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._key_re = self._compile_key_re()
        self._initial_states = {k.name: k.state for k in keyring.keys}

    # --- secrets ------------------------------------------------------------------

    def _compile_key_re(self):
        secrets = sorted(self.keyring.secrets(), key=len, reverse=True)
        return re.compile("|".join(re.escape(s) for s in secrets)) if secrets else None

    def redact(self, text: str, presented: str | None = None) -> str:
        """`text` with every known key, and the key this request presented (known or
        not, if it is long enough to be a key), replaced by REDACTED."""
        if not text:
            return text
        if presented and len(presented) >= MIN_REDACTED_LEN:
            text = text.replace(presented, "REDACTED")
        if self._key_re is None:
            return text
        return self._key_re.sub("REDACTED", text)

    def loggable_path(self, raw_path: str, presented: str | None = None) -> str:
        """The raw path and query, exactly as received but for key values."""
        path, sep, qs = raw_path.partition("?")
        qs = re.sub(r"(^|&)(key=)[^&]*", r"\1\2REDACTED", qs)
        return self.redact(path + sep + qs, presented)

    # --- bookkeeping --------------------------------------------------------------

    def next_seq(self) -> int:
        with self._seq_lock:
            return next(self._seq)

    def reset(self) -> None:
        self.quota.reset()
        self.faults.reset()
        self.replay.clear()
        self.gates.reset()
        self.log.clear()
        for key in self.keyring.keys:
            key.state = self._initial_states[key.name]
        with self._seq_lock:
            self._seq = itertools.count(1)

    def record(self, call: Call, status: int, kind: str) -> dict:
        """Add one request to the log (never with a key in it)."""
        headers = call.headers
        secret = call.secret
        entry = {
            "ts": round(self.clock.now(), 6), "seq": call.seq, "method": call.method,
            "path": self.loggable_path(call.raw_path, secret), "key_in_url": call.key_in_url,
            "key_name": call.key.name if call.key else None,
            "project": call.key.project if call.key else None,
            "model": self.redact(call.model, secret) if call.model else None,
            "action": call.action, "status": status, "kind": kind,
            "prompt_tokens": call.prompt_tokens, "stream": call.stream, "sse": call.sse,
            "user_agent": self.redact(headers.get("user-agent", ""), secret) or None,
            "x_goog_api_client": self.redact(headers.get("x-goog-api-client", ""),
                                             secret) or None,
            "ms": round((time.monotonic() - call.started) * 1000, 1),
            "body_sha256": hashlib.sha256(call.body).hexdigest() if call.body else None,
        }
        self.log.add(entry)
        call.recorded = True
        return entry

    # --- routing ------------------------------------------------------------------

    def handle(self, call: Call):
        """The reply to one API request (errors become their Google bodies)."""
        try:
            return self._dispatch(call)
        except errors.ApiError as exc:
            return self.error_reply(call, exc)

    def error_reply(self, call: Call, exc: errors.ApiError) -> Plain:
        """The error's body, array-framed for non-SSE streams as Google does; any key
        the request smuggled into a message (a model name, say) is scrubbed."""
        render = errors.render_array if call.stream and not call.sse else errors.render
        body = self.redact(render(exc.doc).decode("utf-8"), call.secret).encode("utf-8")
        return Plain(exc.code, body, exc.kind)

    def _route(self, call: Call) -> bool:
        """Fill version, model and action from the path; False for an unknown URL."""
        match = re.fullmatch(r"/(v1beta|v1)/models(?:/([^/:]+)(?::([A-Za-z]+))?)?/?",
                             unquote(call.path))
        if not match:
            return False
        call.version = match.group(1)
        call.model = match.group(2)
        action = match.group(3)
        if call.model is None:
            call.action = "list"
            return call.method == "GET"
        if action is None:
            call.action = "get"
            return call.method == "GET"
        call.action = action
        call.stream = action == "streamGenerateContent"
        call.sse = call.stream and call.param("alt") == "sse"
        return call.method == "POST"

    def _dispatch(self, call: Call):
        known_url = self._route(call)
        secret = call.headers.get("x-goog-api-key") or call.param("key")
        call.secret = secret
        call.key = self.keyring.by_secret(secret) if secret else None
        project = call.key.project if call.key else None
        call.seq = self.next_seq()
        call.plan = self.faults.plan(call.seq, project, call.key.name if call.key else None,
                                     call.stream)
        if not known_url:
            path = html.escape(self.loggable_path(call.path, secret))
            body = NOT_FOUND_HTML.format(path=path).encode("utf-8")
            return Plain(404, body, "not_found", "text/html; charset=UTF-8")
        if call.body_error is not None:
            raise call.body_error
        self._authenticate(call, secret)
        if call.action == "list":
            return self._list_models(call)
        if call.action == "get":
            return self._get_model(call)
        return self._model_action(call)

    def _authenticate(self, call: Call, secret: str | None) -> None:
        if not secret:
            raise errors.unregistered()
        key = call.key
        if key is None:
            raise errors.invalid_key()
        if key.state == "leaked":
            raise errors.leaked()
        if key.state == "suspended":
            raise errors.suspended(key.name, key.project)

    def _server_fault(self, call: Call) -> Reset | None:
        """Raise the injected 5xx of this request; return a Reset for a plain one."""
        kind = call.plan.kind
        if kind in ("500", "503", "504"):
            raise errors.server_error(int(kind))
        if kind == "reset" and not call.stream:
            return Reset()
        return None

    # --- models.list / models.get -------------------------------------------------

    def _list_models(self, call: Call):
        reset = self._server_fault(call)
        if reset:
            return reset
        size_text = call.param("pageSize")
        try:
            size = int(size_text) if size_text not in (None, "") else DEFAULT_PAGE_SIZE
        except ValueError:
            raise errors.invalid_json(f"Invalid value at 'page_size' (TYPE_INT32), "
                                      f"\"{self.redact(size_text)[:40]}\"") from None
        size = DEFAULT_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)
        models = self.catalog.all()
        start = _decode_page_token(call.param("pageToken"), len(models))
        page = {"models": [m.resource() for m in models[start:start + size]]}
        if start + size < len(models):
            page["nextPageToken"] = _encode_page_token(start + size)
        return Plain(200, errors.render(page), "ok", faultable=True)

    def _get_model(self, call: Call):
        reset = self._server_fault(call)
        if reset:
            return reset
        spec = self.catalog.get(call.model)
        if spec is None:
            raise errors.model_not_found(call.model, call.version, "get")
        return Plain(200, errors.render(spec.resource()), "ok", faultable=True)

    # --- generateContent / streamGenerateContent / countTokens ----------------------

    def _model_action(self, call: Call):
        key = call.key
        doc = prompts.parse_json(call.body)
        embeds = None
        if call.action == "countTokens":
            prompt = prompts.parse_count_tokens(doc)
        elif call.action in EMBED_ACTIONS:
            spec = self.catalog.get(call.model)
            if spec is None or not spec.supports(call.action):
                raise errors.model_not_found(call.model, call.version, call.action)
            embeds = ([prompts.parse_embed(doc)] if call.action == "embedContent"
                      else prompts.parse_batch_embed(doc))
            prompt = prompts.Prompt(text="\n".join(e.text for e in embeds),
                                    text_bytes=sum(e.text_bytes for e in embeds))
        elif call.action in GENERATE_ACTIONS:
            prompt = prompts.parse_generate(doc)
        else:
            prompt = None
        if prompt is not None:
            call.prompt_tokens = prompt.tokens
        entry = self.replay.take(key.name, key.project, call.model, call.action)
        if entry is not None:
            return self._replay_reply(call, entry, prompt)
        spec = self.catalog.get(call.model)
        if spec is None or not spec.supports(call.action) or prompt is None:
            raise errors.model_not_found(call.model, call.version, call.action)
        if call.action == "countTokens":
            reset = self._server_fault(call)
            if reset:
                return reset
            body = {"totalTokens": prompt.tokens, "promptTokensDetails": prompt.token_details()}
            return Plain(200, errors.render(body), "ok", faultable=True)
        if key.state == "billing":
            raise errors.billing(key.billing_status)
        reset = self._server_fault(call)
        if reset:
            return reset
        now = self.clock.now()
        limits = self.keyring.projects[key.project].limits_for(call.model, self.catalog)
        if limits is None or limits.no_free_tier():
            self.quota.note_no_free_tier(key.project, call.model)
            raise errors.no_free_tier(call.model, now)
        violations = self.quota.admit(key.project, call.model, prompt.tokens, limits, now)
        if violations:
            raise errors.quota_exceeded(call.model, violations, now)
        if embeds is not None:
            vectors = [{"values": answers.embedding(e.text, e.max_output_tokens)} for e in embeds]
            body = ({"embedding": vectors[0]} if call.action == "embedContent"
                    else {"embeddings": vectors})
            return Plain(200, errors.render(body), "ok", faultable=True)
        answer = answers.build_answer(prompt, spec, key.name, key.project,
                                      call.plan.answer_bytes, self.redact,
                                      call.plan.image_count, call.plan.image_bytes)
        response_id = self._response_id(call, prompt)
        if call.stream:
            chunks = answers.stream_chunks(answer, prompt, spec.id, response_id)
            return Stream(chunks, call.sse, answer.kind)
        body = answers.full_response(answer, prompt, spec.id, response_id)
        return Plain(200, errors.render(body), answer.kind, faultable=True)

    def _response_id(self, call: Call, prompt: prompts.Prompt) -> str:
        digest = hashlib.sha256(f"{self.faults.seed}:{call.seq}:{prompt.text}".encode()).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii")[:22]

    def _replay_reply(self, call: Call, entry: ReplayEntry, prompt):
        if not entry.midstream:
            return Plain(entry.status, entry.body, "replay", entry.content_type)
        spec = self.catalog.get(call.model)
        first = {"candidates": [{"content": {"parts": [{"text": "[fake-gemini replay] "}],
                                             "role": "model"}, "index": 0}],
                 "usageMetadata": {"promptTokenCount": prompt.tokens if prompt else 1,
                                   "totalTokenCount": prompt.tokens if prompt else 1},
                 "modelVersion": spec.id if spec else call.model,
                 "responseId": self._response_id(call, prompt or prompts.Prompt())}
        return Stream([first], call.sse, "replay", replay_tail=entry.body)

    # --- the control API's views --------------------------------------------------

    def usage(self) -> dict:
        now = self.clock.now()
        projects: dict = {}
        pairs = set(self.quota.pairs())
        for project in self.keyring.projects.values():
            names = project.models.keys() if project.models is not None else \
                [m.id for m in self.catalog.all() if m.supports("generateContent")]
            pairs.update((project.name, name) for name in names)
        totals = {"quota_429": 0, "over_limit": 0}
        for project_name, model in sorted(pairs):
            project = self.keyring.projects.get(project_name)
            limits = project.limits_for(model, self.catalog) if project else None
            snap = self.quota.snapshot(project_name, model, limits, now)
            projects.setdefault(project_name, {})[model] = snap
            totals["quota_429"] += snap["quota_429"]
            totals["over_limit"] += snap["over_limit"]
        return {"now": now, "now_utc": clk.iso_utc(now), "now_pacific": clk.iso_pacific(now),
                "day_start": clk.day_start(now), "next_midnight": clk.next_midnight(now),
                "quota_429_total": totals["quota_429"], "over_limit_total": totals["over_limit"],
                "projects": projects}

    def health(self, port: int) -> dict:
        now = self.clock.now()
        uptime = round(time.time() - self.started, 3)
        return {"ok": True, "pid": os.getpid(), "port": port, "uptime_s": uptime,
                "now": now, "now_utc": clk.iso_utc(now), "offset_s": self.clock.offset,
                "keys": len(self.keyring.keys), "projects": len(self.keyring.projects),
                "requests": len(self.log)}

    def keys_view(self) -> list:
        return [{"name": k.name, "project": k.project, "state": k.state}
                for k in self.keyring.keys]


def _encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"fake-gemini:{offset}".encode()).decode().rstrip("=")


def _decode_page_token(token: str | None, total: int) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        offset = int(number)
        if prefix != "fake-gemini" or not 0 <= offset <= total:
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise errors.bad_request("Invalid page token.") from None
    return offset
