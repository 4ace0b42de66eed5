"""Deterministic answers: text, thought summaries, PNG images, and their responses.

An answer depends only on the request, the model, the key's name and the project,
and says who served it::

    [fake-gemini model=M key=NAME project=P sha=<12 hex of sha256(prompt)>] You asked: ...

The API key itself never appears: echoed request text has every known key scrubbed.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from dataclasses import dataclass, field

from .models import ModelSpec
from .prompt import Prompt

DEFAULT_ANSWER_BYTES = 400
IMAGE_OUTPUT_TOKENS = 1290  # what Google bills for one generated image
BLOCK_MAGIC = "FAKE-BLOCK"
SAFETY_MAGIC = "FAKE-SAFETY"

FILLER = (
    "This answer was written by the local Gemini emulator, not by a model.",
    "Its text depends only on the request, the model and the key that served it.",
    "Tests can therefore compare it byte for byte across runs.",
    "A stream splits exactly this text into several chunks.",
    "Quota is counted per project and per model, as on the real service.",
    "Nothing in this reply was sent over the network to Google.",
    "The emulator can also inject latency, resets and truncated bodies.",
    "Every request is recorded in the emulator's request log.",
)

SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
]


@dataclass
class Answer:
    """What the model 'said'; `block_reason` set means no candidate at all."""

    text: str = ""
    thought: str | None = None
    images: list = field(default_factory=list)  # PNG images, in order
    finish_reason: str | None = "STOP"
    block_reason: str | None = None

    @property
    def kind(self) -> str:
        """The request log's `kind` for a 200 carrying this answer."""
        if self.block_reason:
            return "blocked"
        if self.finish_reason == "SAFETY":
            return "safety"
        return "ok"


def prompt_sha(prompt: Prompt) -> str:
    return hashlib.sha256(prompt.text.encode("utf-8")).hexdigest()[:12]


def _collapse(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


def build_answer(prompt: Prompt, model: ModelSpec, key_name: str, project: str,
                 answer_bytes: int | None, redact, image_count: int = 1,
                 image_bytes: int = 0) -> Answer:
    """The deterministic answer to `prompt` from `model` through key `key_name`."""
    if BLOCK_MAGIC in prompt.text:
        return Answer(finish_reason=None, block_reason="SAFETY")
    if SAFETY_MAGIC in prompt.text:
        return Answer(finish_reason="SAFETY")
    sha = prompt_sha(prompt)
    asked = redact(_collapse(prompt.text, 120))
    lines = [f"[fake-gemini model={model.id} key={key_name} project={project} sha={sha}] "
             f"You asked: {asked}"]
    if prompt.system:
        lines.append(f'system="{redact(_collapse(prompt.system, 60))}"')
    if prompt.tools:
        lines.append("tools=" + redact(",".join(prompt.tools)))
    for image in prompt.images:
        lines.append(f"I see an image of {image.size} bytes, mime {redact(image.mime)}.")
    text = _pad("\n".join(lines), answer_bytes or DEFAULT_ANSWER_BYTES, int(sha, 16))
    answer = Answer(text=text)
    if prompt.max_output_tokens and _tokens(text) > prompt.max_output_tokens:
        cut = text.encode("utf-8")[:prompt.max_output_tokens * 4]
        answer.text = cut.decode("utf-8", errors="ignore")
        answer.finish_reason = "MAX_TOKENS"
    if prompt.include_thoughts and model.thinking:
        level = prompt.thinking_level or (f"budget {prompt.thinking_budget}"
                                          if prompt.thinking_budget is not None else "default")
        answer.thought = (f"**Reading the request**\n\nThe question (sha {sha}) is "
                          f"\"{_collapse(asked, 60)}\". Thinking level: {level}. "
                          f"I will answer deterministically through key {key_name}.")
    if model.makes_images():
        seed = bytes.fromhex(sha)
        # Image i differs from image 0 by its first colour.
        answer.images = [make_png(bytes(((seed[0] + 37 * i) & 0xFF,)) + seed[1:], pad=image_bytes)
                         for i in range(image_count)]
    return answer


def _pad(head: str, target: int, start: int) -> str:
    """`head`, a blank line and filler sentences, cut to `target` UTF-8 bytes."""
    room = target - len(head.encode("utf-8")) - 2
    if room <= 0:
        return head
    filler, i, size = [], start, 0
    while size < room:  # a running total: linear in the answer's size
        filler.append(FILLER[i % len(FILLER)])
        size += len(filler[-1]) + 1
        i += 1
    text = " ".join(filler)
    body = text[:room]
    if room < len(text) and text[room] != " ":
        # Keep the exact size but do not end on half a word: "... the real ...".
        space = body.rfind(" ")
        body = body[:space + 1] + "." * (len(body) - space - 1)
    if body.endswith(" "):
        body = body[:-1] + "."
    return head + "\n\n" + body


def _tokens(text: str) -> int:
    return (len(text.encode("utf-8")) + 3) // 4


# --- responses ---------------------------------------------------------------------


def _usage(prompt: Prompt, candidates: int, thoughts: int) -> dict:
    usage = {"promptTokenCount": prompt.tokens}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt.tokens + candidates + thoughts
    usage["promptTokensDetails"] = prompt.token_details()
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _envelope(body: dict, model_id: str, response_id: str) -> dict:
    body["modelVersion"] = model_id
    body["responseId"] = response_id
    return body


def _blocked(answer: Answer, prompt: Prompt, model_id: str, response_id: str) -> dict:
    return _envelope({"promptFeedback": {"blockReason": answer.block_reason,
                                         "safetyRatings": SAFETY_RATINGS},
                      "usageMetadata": _usage(prompt, 0, 0)}, model_id, response_id)


def _candidate(parts: list, finish_reason: str | None) -> dict:
    cand: dict = {}
    if parts:
        cand["content"] = {"parts": parts, "role": "model"}
    if finish_reason:
        cand["finishReason"] = finish_reason
        if finish_reason == "SAFETY":
            cand["safetyRatings"] = SAFETY_RATINGS
    cand["index"] = 0
    return cand


def _image_part(png: bytes) -> dict:
    return {"inlineData": {"mimeType": "image/png",
                           "data": base64.b64encode(png).decode("ascii")}}


def full_response(answer: Answer, prompt: Prompt, model_id: str, response_id: str) -> dict:
    """The GenerateContentResponse of generateContent."""
    if answer.block_reason:
        return _blocked(answer, prompt, model_id, response_id)
    parts = []
    if answer.thought:
        parts.append({"text": answer.thought, "thought": True})
    if answer.text:
        parts.append({"text": answer.text})
    parts += [_image_part(png) for png in answer.images]
    candidates = _tokens(answer.text) if answer.text else 0
    candidates += IMAGE_OUTPUT_TOKENS * len(answer.images)
    thoughts = _tokens(answer.thought) if answer.thought else 0
    return _envelope({"candidates": [_candidate(parts, answer.finish_reason)],
                      "usageMetadata": _usage(prompt, candidates, thoughts)},
                     model_id, response_id)


def split_text(text: str) -> list:
    """Cut text into several pieces (3 to 64, about 100 characters each), preferring
    to cut after a space; the pieces joined give the text back."""
    if not text:
        return []
    count = min(64, max(3, -(-len(text) // 100)), len(text))
    size = -(-len(text) // count)
    pieces, pos = [], 0
    while pos < len(text):
        end = min(len(text), pos + size)
        space = text.find(" ", end, end + 20)
        if space != -1 and end < len(text):
            end = space + 1
        pieces.append(text[pos:end])
        pos = end
    return pieces


def stream_chunks(answer: Answer, prompt: Prompt, model_id: str, response_id: str) -> list:
    """The GenerateContentResponse chunks of streamGenerateContent: each chunk holds only
    its new text, usageMetadata carries running totals, the last has finishReason."""
    if answer.block_reason:
        return [_blocked(answer, prompt, model_id, response_id)]
    thoughts = _tokens(answer.thought) if answer.thought else 0
    chunks = []
    if answer.thought:
        chunks.append(_envelope({"candidates": [_candidate([{"text": answer.thought,
                                                              "thought": True}], None)],
                                 "usageMetadata": _usage(prompt, 0, thoughts)},
                                model_id, response_id))
    pieces = split_text(answer.text) or [""]
    sent = ""
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        sent += piece
        parts = [{"text": piece}] if piece else []
        tokens = _tokens(sent) if sent else 0
        if last and answer.images:
            parts += [_image_part(png) for png in answer.images]
            tokens += IMAGE_OUTPUT_TOKENS * len(answer.images)
        chunks.append(_envelope({"candidates": [_candidate(parts, answer.finish_reason
                                                           if last else None)],
                                 "usageMetadata": _usage(prompt, tokens, thoughts)},
                                model_id, response_id))
    return chunks


# --- PNG ---------------------------------------------------------------------------


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def make_png(seed: bytes, size: int = 32, pad: int = 0) -> bytes:
    """A small valid RGB PNG whose pixels depend on `seed` (at least 3 bytes), padded
    with a private ancillary chunk to at least `pad` bytes."""
    r0, g0, b0 = seed[0], seed[1], seed[2]
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter type: none
        for x in range(size):
            rows += bytes(((r0 + 8 * x) & 0xFF, (g0 + 8 * y) & 0xFF, (b0 ^ (x * y)) & 0xFF))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    head = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 9)))
    room = pad - len(head) - 12 - 12  # the padding chunk's and IEND's own 12 bytes
    if room > 0:
        head += _png_chunk(b"fkPd", bytes(room))
    return head + _png_chunk(b"IEND", b"")
