"""Google's error bodies, built the way the real Gemini API sends them.

Every body is ``{"error": {"code", "message", "status", "details"?}}``,
pretty-printed with two spaces and ending with a newline.
"""

from __future__ import annotations

import json

from .quota import METRIC_INPUT_TOKENS, METRIC_REQUESTS, QUOTA_ID_RPD, QUOTA_ID_RPM, \
    QUOTA_ID_TPM, Violation

RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

TYPE_PREFIX = "type.googleapis.com/google.rpc."
RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"
QUOTA_MESSAGE = ("You exceeded your current quota, please check your plan and billing "
                 "details. For more information on this error, head to: "
                 f"{RATE_LIMITS_URL}. To monitor your current usage, head to: "
                 "https://ai.dev/rate-limit. ")
MSG_UNREGISTERED = ("Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity "
                    "to call this API.")
MSG_INVALID_KEY = "API key not valid. Please pass a valid API key."
MSG_LEAKED = "Your API key was reported as leaked. Please use another API key."
MSG_PREPAY = ("Your prepayment credits are depleted. Please go to AI Studio at "
              "https://ai.studio/projects to manage your project and billing. Learn more at "
              "https://ai.google.dev/gemini-api/docs/billing#prepay. ")
MSG_INTERNAL = ("An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting")
MSG_OVERLOADED = "The model is overloaded. Please try again later."
MSG_DEADLINE = "Deadline expired before operation could complete."


class ApiError(Exception):
    """An error answer: HTTP status, body document and the log's `kind`."""

    def __init__(self, code: int, message: str, kind: str, details: list | None = None,
                 status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.doc = error_doc(code, message, details, status)


def error_doc(code: int, message: str, details: list | None = None,
              status: str | None = None) -> dict:
    err = {"code": code, "message": message, "status": status or RPC_STATUS.get(code, "UNKNOWN")}
    if details:
        err["details"] = details
    return {"error": err}


def render(doc) -> bytes:
    """Pretty-print a document as Google does: two spaces, trailing newline."""
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def render_array(doc) -> bytes:
    """An error framed as a one-element array, as non-SSE streamGenerateContent sends it."""
    return ("[" + json.dumps(doc, indent=2, ensure_ascii=False) + "\n]\n").encode("utf-8")


def format_seconds(seconds: float) -> str:
    """`10.689924287` — up to nine decimals, trailing zeros dropped, like Google."""
    text = f"{max(0.0, seconds):.9f}".rstrip("0").rstrip(".")
    return text or "0"


# --- the specific errors -----------------------------------------------------------


def unregistered() -> ApiError:
    return ApiError(403, MSG_UNREGISTERED, "unregistered")


def invalid_key() -> ApiError:
    return ApiError(400, MSG_INVALID_KEY, "invalid_key", [
        {"@type": TYPE_PREFIX + "ErrorInfo", "reason": "API_KEY_INVALID",
         "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": TYPE_PREFIX + "LocalizedMessage", "locale": "en-US",
         "message": MSG_INVALID_KEY},
    ])


def leaked() -> ApiError:
    return ApiError(403, MSG_LEAKED, "leaked")


def suspended(key_name: str, project: str) -> ApiError:
    message = f"Permission denied: Consumer 'api_key:{key_name}' has been suspended."
    return ApiError(403, message, "suspended", [
        {"@type": TYPE_PREFIX + "ErrorInfo", "reason": "CONSUMER_SUSPENDED",
         "domain": "googleapis.com",
         "metadata": {"consumer": f"projects/{project}",
                      "service": "generativelanguage.googleapis.com"}},
        {"@type": TYPE_PREFIX + "LocalizedMessage", "locale": "en-US", "message": message},
    ])


def billing(status: int = 429) -> ApiError:
    return ApiError(status, MSG_PREPAY, "billing", status="RESOURCE_EXHAUSTED")


def model_not_found(model: str, version: str, action: str) -> ApiError:
    return ApiError(404, f"models/{model} is not found for API version {version}, or is not "
                         f"supported for {action}. Call ListModels to see the list of "
                         "available models and their supported methods.", "not_found")


def not_found(message: str = "Requested entity was not found.") -> ApiError:
    return ApiError(404, message, "not_found")


def bad_request(message: str, field_violation: str | None = None) -> ApiError:
    details = None
    if field_violation is not None:
        details = [{"@type": TYPE_PREFIX + "BadRequest",
                    "fieldViolations": [{"description": field_violation}]}]
    return ApiError(400, message, "bad_request", details)


def invalid_json(message: str) -> ApiError:
    """`Invalid JSON payload received. ...` with the BadRequest detail Google adds."""
    text = f"Invalid JSON payload received. {message}"
    return bad_request(text, text)


def server_error(code: int) -> ApiError:
    message = {500: MSG_INTERNAL, 503: MSG_OVERLOADED, 504: MSG_DEADLINE}[code]
    return ApiError(code, message, f"fault_{code}")


def _help() -> dict:
    return {"@type": TYPE_PREFIX + "Help",
            "links": [{"description": "Learn more about Gemini API quotas",
                       "url": RATE_LIMITS_URL}]}


def _retry_info(delay_s: int) -> dict:
    return {"@type": TYPE_PREFIX + "RetryInfo", "retryDelay": f"{delay_s}s"}


def _short_delay(now: float) -> int:
    """The short retryDelay Google puts even in daily and `limit: 0` bodies: the
    seconds left until the next whole minute."""
    return int(60 - (now % 60)) % 60 or 60


def quota_exceeded(model: str, violations: list[Violation], now: float) -> ApiError:
    """The 429 for exceeded RPM / TPM / RPD: QuotaFailure, Help, RetryInfo."""
    wait = max(v.wait_s for v in violations)
    lines = "".join(f"\n* Quota exceeded for metric: {v.metric}, limit: {v.limit}, "
                    f"model: {model}" for v in violations)
    message = f"{QUOTA_MESSAGE}{lines}\nPlease retry in {format_seconds(wait)}s."
    retry = _short_delay(now) if any(v.daily for v in violations) else int(wait)
    failure = {"@type": TYPE_PREFIX + "QuotaFailure", "violations": [
        {"quotaMetric": v.metric, "quotaId": v.quota_id,
         "quotaDimensions": {"location": "global", "model": model},
         "quotaValue": str(v.limit)} for v in violations]}
    return ApiError(429, message, violations[0].kind, [failure, _help(), _retry_info(retry)])


def no_free_tier(model: str, now: float) -> ApiError:
    """The `limit: 0` 429 for a model the project has no free tier for (the real
    body's shape: Help first, violations without quotaValue)."""
    wait = 60 - (now % 60)
    metrics = [METRIC_REQUESTS, METRIC_REQUESTS, METRIC_INPUT_TOKENS]
    ids = [QUOTA_ID_RPD, QUOTA_ID_RPM, QUOTA_ID_TPM]
    lines = "".join(f"\n* Quota exceeded for metric: {m}, limit: 0, model: {model}"
                    for m in metrics)
    message = f"{QUOTA_MESSAGE}{lines}\nPlease retry in {format_seconds(wait)}s."
    failure = {"@type": TYPE_PREFIX + "QuotaFailure", "violations": [
        {"quotaMetric": m, "quotaId": q, "quotaDimensions": {"location": "global", "model": model}}
        for m, q in zip(metrics, ids)]}
    return ApiError(429, message, "no_free_tier", [_help(), failure, _retry_info(int(wait))])
