"""Request bodies: validation with Google-style 400 messages, and token counting.

Tokens are counted the same way everywhere: ceil(UTF-8 bytes of every text part of
`contents` and `systemInstruction` / 4), plus 258 per inline-data part (an image),
at least 1. countTokens and usageMetadata.promptTokenCount therefore agree.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from . import errors

TOKENS_PER_IMAGE = 258
THINKING_LEVELS = ("THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH")
CONTENT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.Content"
GENERATE_FIELDS = ("contents", "systemInstruction", "tools", "toolConfig", "safetySettings",
                   "generationConfig", "cachedContent", "model", "labels", "serviceTier",
                   "store")
COUNT_FIELDS = ("contents", "generateContentRequest")
PART_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse",
                    "executableCode", "codeExecutionResult")
_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _get(obj: dict, camel: str, default=None):
    """A field by its camelCase or snake_case name (Google accepts both)."""
    if camel in obj:
        return obj[camel]
    return obj.get(_snake(camel), default)


def _invalid_value(where: str, type_name: str, value) -> errors.ApiError:
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return errors.invalid_json(f"Invalid value at '{where}' ({type_name}), {shown}")


def _unknown_fields(obj: dict, allowed: tuple, where: str | None) -> None:
    for name in obj:
        if _camel(name) not in allowed:
            at = f" at '{where}'" if where else ""
            raise errors.invalid_json(f'Unknown name "{name}"{at}: Cannot find field.')


@dataclass
class Image:
    mime: str
    size: int


@dataclass
class Prompt:
    """What the emulator needs from a generateContent / countTokens request."""

    text: str = ""                       # every text part of `contents`, joined by "\n"
    system: str = ""
    tools: list = field(default_factory=list)
    images: list = field(default_factory=list)
    text_bytes: int = 0                  # contents + systemInstruction text, UTF-8
    include_thoughts: bool = False
    thinking_level: str | None = None
    thinking_budget: int | None = None
    max_output_tokens: int | None = None

    @property
    def text_tokens(self) -> int:
        return (self.text_bytes + 3) // 4

    @property
    def image_tokens(self) -> int:
        return TOKENS_PER_IMAGE * len(self.images)

    @property
    def tokens(self) -> int:
        return max(1, self.text_tokens + self.image_tokens)

    def token_details(self) -> list:
        details = []
        if self.text_tokens or not self.images:
            details.append({"modality": "TEXT",
                            "tokenCount": self.text_tokens if self.images else self.tokens})
        if self.images:
            details.append({"modality": "IMAGE", "tokenCount": self.image_tokens})
        return details


def parse_json(body: bytes):
    """Decode a request body; raise the 400 Google sends for invalid JSON."""
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid_json("Invalid UTF-8 in the request body.") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise errors.invalid_json("Message nesting is too deep.") from None
    except json.JSONDecodeError as exc:
        lines = text.split("\n")
        line = lines[exc.lineno - 1] if exc.lineno <= len(lines) else ""
        line = line[max(0, exc.colno - 40):exc.colno + 40]
        caret = " " * min(exc.colno - 1, 39) + "^"
        raise errors.invalid_json(f"Unexpected token.\n{line}\n{caret}") from None
    if _LONE_SURROGATE.search(text):
        try:  # json accepts "\ud800" alone; it is not a character and has no UTF-8
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise errors.invalid_json("Invalid \\u escape: a lone UTF-16 surrogate.") from None
    return doc


def parse_generate(doc, where_prefix: str = "") -> Prompt:
    """Validate a GenerateContentRequest body and extract the Prompt."""
    if not isinstance(doc, dict):
        raise errors.invalid_json("Root element must be a message.")
    _unknown_fields(doc, GENERATE_FIELDS, where_prefix.rstrip(".") or None)
    prompt = Prompt()
    contents = _get(doc, "contents")
    if contents is None or contents == []:
        raise errors.bad_request("* GenerateContentRequest.contents: contents is not "
                                 "specified\n")
    texts = _parse_contents(contents, f"{where_prefix}contents", prompt)
    prompt.text = "\n".join(texts)
    system = _get(doc, "systemInstruction")
    if system is not None:
        scratch = Prompt()
        prompt.system = "\n".join(_parse_content(system, f"{where_prefix}system_instruction",
                                                 scratch, system=True))
        prompt.text_bytes += scratch.text_bytes
        prompt.images += scratch.images
    prompt.tools = _parse_tools(_get(doc, "tools"), f"{where_prefix}tools")
    _parse_generation_config(_get(doc, "generationConfig"),
                             f"{where_prefix}generation_config", prompt)
    return prompt


def parse_count_tokens(doc) -> Prompt:
    """Validate a CountTokensRequest: `contents` or a whole `generateContentRequest`."""
    if not isinstance(doc, dict):
        raise errors.invalid_json("Root element must be a message.")
    _unknown_fields(doc, COUNT_FIELDS, None)
    inner = _get(doc, "generateContentRequest")
    if inner is not None:
        return parse_generate(inner, "generate_content_request.")
    contents = _get(doc, "contents")
    if contents is None or contents == []:
        raise errors.bad_request("* CountTokensRequest.contents: contents is not specified\n")
    prompt = Prompt()
    prompt.text = "\n".join(_parse_contents(contents, "contents", prompt))
    return prompt


def parse_embed(doc, where_prefix: str = "") -> Prompt:
    """Validate an EmbedContentRequest: one `content`, optional taskType, title,
    outputDimensionality."""
    if not isinstance(doc, dict):
        raise errors.invalid_json("Root element must be a message.")
    content = _get(doc, "content")
    if content is None:
        raise errors.bad_request(f"* {where_prefix}content: content is not specified\n")
    prompt = Prompt()
    prompt.text = "\n".join(_parse_content(content, f"{where_prefix}content", prompt))
    dims = _get(doc, "outputDimensionality")
    prompt.max_output_tokens = dims if isinstance(dims, int) and dims > 0 else None
    return prompt


def parse_batch_embed(doc) -> list:
    """Validate a BatchEmbedContentsRequest: `requests`, each an EmbedContentRequest."""
    if not isinstance(doc, dict):
        raise errors.invalid_json("Root element must be a message.")
    requests = _get(doc, "requests")
    if not isinstance(requests, list) or not requests:
        raise errors.bad_request("* BatchEmbedContentsRequest.requests: requests is not "
                                 "specified\n")
    return [parse_embed(r, f"requests[{i}].") for i, r in enumerate(requests)]


def _parse_contents(contents, where: str, prompt: Prompt) -> list:
    if not isinstance(contents, list):
        raise _invalid_value(where, CONTENT_TYPE, contents)
    texts = []
    for i, content in enumerate(contents):
        texts += _parse_content(content, f"{where}[{i}]", prompt)
    return texts


def _parse_content(content, where: str, prompt: Prompt, system: bool = False) -> list:
    if not isinstance(content, dict):
        raise _invalid_value(where, CONTENT_TYPE, content)
    _unknown_fields(content, ("parts", "role"), where)
    role = content.get("role")
    if role not in (None, "", "user", "model", "function") and not system:
        raise errors.bad_request("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        if parts is not None and not isinstance(parts, list):
            raise _invalid_value(f"{where}.parts", "type.googleapis.com/google.ai."
                                 "generativelanguage.v1beta.Part", parts)
        gapic = where.replace("system_instruction", "GenerateContentRequest.system_instruction")
        if not gapic.startswith("GenerateContentRequest"):
            gapic = f"GenerateContentRequest.{gapic}"
        raise errors.bad_request(f"* {gapic}.parts: contents.parts must not be empty.\n")
    texts = []
    for j, part in enumerate(parts):
        here = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise _invalid_value(here, "type.googleapis.com/google.ai.generativelanguage."
                                 "v1beta.Part", part)
        if not any(_get(part, name) is not None for name in PART_DATA_FIELDS):
            raise errors.bad_request(f"* GenerateContentRequest.{here}.data: required oneof "
                                     "field 'data' must have one initialized field\n")
        text = part.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise _invalid_value(f"{here}.text", "TYPE_STRING", text)
            prompt.text_bytes += len(text.encode("utf-8"))
            if not part.get("thought"):
                texts.append(text)
        inline = _get(part, "inlineData")
        if inline is not None:
            prompt.images.append(_parse_inline(inline, f"{here}.inline_data"))
    return texts


def _parse_inline(inline, where: str) -> Image:
    if not isinstance(inline, dict):
        raise _invalid_value(where, "type.googleapis.com/google.ai.generativelanguage."
                             "v1beta.Blob", inline)
    mime = _get(inline, "mimeType")
    data = inline.get("data")
    if not isinstance(mime, str) or not mime:
        raise errors.bad_request(f"* GenerateContentRequest.{where}.mime_type: "
                                 "mime_type is not specified\n")
    if not isinstance(data, str):
        raise _invalid_value(f"{where}.data", "TYPE_BYTES", data)
    raw = _b64decode(data)
    if raw is None:
        shown = data if len(data) <= 40 else data[:40] + "..."
        raise errors.invalid_json(f"Invalid value at '{where}.data' (TYPE_BYTES), "
                                  f"Base64 decoding failed for \"{shown}\"")
    return Image(mime, len(raw))


def _b64decode(data: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional (as protobuf JSON accepts)."""
    compact = "".join(data.split())
    padded = compact + "=" * (-len(compact) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def _parse_tools(tools, where: str) -> list:
    """Tool names for the answer: googleSearch, codeExecution, function:NAME, ..."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _invalid_value(where, "type.googleapis.com/google.ai.generativelanguage."
                             "v1beta.Tool", tools)
    names = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _invalid_value(f"{where}[{i}]", "type.googleapis.com/google.ai."
                                 "generativelanguage.v1beta.Tool", tool)
        for kind, value in tool.items():
            kind = _camel(kind)
            if kind == "functionDeclarations" and isinstance(value, list):
                names += [f"function:{d.get('name')}" for d in value if isinstance(d, dict)]
            else:
                names.append(kind)
    return names


def _parse_generation_config(config, where: str, prompt: Prompt) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise _invalid_value(where, "type.googleapis.com/google.ai.generativelanguage."
                             "v1beta.GenerationConfig", config)
    max_tokens = _get(config, "maxOutputTokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise _invalid_value(f"{where}.max_output_tokens", "TYPE_INT32", max_tokens)
        prompt.max_output_tokens = max_tokens or None
    thinking = _get(config, "thinkingConfig")
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise _invalid_value(f"{where}.thinking_config", "type.googleapis.com/google.ai."
                             "generativelanguage.v1beta.ThinkingConfig", thinking)
    include = _get(thinking, "includeThoughts", False)
    if not isinstance(include, bool):
        raise _invalid_value(f"{where}.thinking_config.include_thoughts", "TYPE_BOOL", include)
    level = _get(thinking, "thinkingLevel")
    if level is not None and (not isinstance(level, str) or level.upper() not in THINKING_LEVELS):
        raise _invalid_value(f"{where}.thinking_config.thinking_level",
                             "type.googleapis.com/google.ai.generativelanguage.v1beta."
                             "ThinkingConfig.ThinkingLevel", level)
    budget = _get(thinking, "thinkingBudget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise _invalid_value(f"{where}.thinking_config.thinking_budget", "TYPE_INT32", budget)
    if level is not None and budget is not None:
        raise errors.bad_request("You can only set only one of thinking budget and "
                                 "thinking level.")
    prompt.include_thoughts = include
    prompt.thinking_level = level.upper() if level else None
    prompt.thinking_budget = budget
