"""The models the emulator knows, their free-tier limits and their Model resources."""

from __future__ import annotations

from dataclasses import dataclass, field

GENERATION_METHODS = ("generateContent", "countTokens", "createCachedContent",
                      "batchGenerateContent")


@dataclass(frozen=True)
class Limits:
    """Free-tier limits of one model in one project; None means "not enforced"."""

    rpm: int | None
    tpm: int | None
    rpd: int | None

    def no_free_tier(self) -> bool:
        """True when any limit is 0: Google answers every request with `limit: 0`."""
        return 0 in (self.rpm, self.tpm, self.rpd)

    def as_json(self) -> dict:
        return {"rpm": self.rpm, "tpm": self.tpm, "rpd": self.rpd}


@dataclass(frozen=True)
class ModelSpec:
    """One model as `GET models/{m}` describes it, plus its default limits."""

    id: str
    display_name: str
    description: str
    limits: Limits
    input_token_limit: int = 1048576
    output_token_limit: int = 65536
    thinking: bool = True
    methods: tuple = GENERATION_METHODS
    version: str = "001"
    extra: dict = field(default_factory=dict)

    def supports(self, action: str) -> bool:
        """Whether `models/{id}:{action}` is served (streaming rides on generateContent)."""
        if action == "streamGenerateContent":
            action = "generateContent"
        return action in self.methods

    def makes_images(self) -> bool:
        return "image" in self.id

    def resource(self) -> dict:
        """The Model resource, as `GET /v1beta/models/{id}` returns it."""
        res = {
            "name": f"models/{self.id}",
            "version": self.version,
            "displayName": self.display_name,
            "description": self.description,
            "inputTokenLimit": self.input_token_limit,
            "outputTokenLimit": self.output_token_limit,
            "supportedGenerationMethods": list(self.methods),
        }
        if "generateContent" in self.methods:
            res.update({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2})
        res["thinking"] = self.thinking
        res.update(self.extra)
        return res


def _gemma(size: str) -> ModelSpec:
    return ModelSpec(
        id=f"gemma-3-{size}-it", display_name=f"Gemma 3 {size.upper()}",
        description=f"Gemma 3 {size.upper()} instruction-tuned (emulated)",
        limits=Limits(30, 15000, 14400), input_token_limit=32768,
        output_token_limit=8192, thinking=False,
        methods=("generateContent", "countTokens"))


# The original project's verified free-tier limits (SPEC.md §2), in list order.
BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("gemini-3.1-pro-preview", "Gemini 3.1 Pro Preview",
              "Gemini 3.1 Pro Preview (emulated; not on the free tier)", Limits(0, 0, 0)),
    ModelSpec("gemini-3-flash-preview", "Gemini 3 Flash Preview",
              "Gemini 3 Flash Preview (emulated)", Limits(5, 250000, 20)),
    ModelSpec("gemini-2.5-flash", "Gemini 2.5 Flash",
              "Stable version of Gemini 2.5 Flash (emulated)", Limits(15, 250000, 1000)),
    ModelSpec("gemini-3.1-flash-lite-preview", "Gemini 3.1 Flash-Lite Preview",
              "Gemini 3.1 Flash-Lite Preview (emulated)", Limits(15, 250000, 500)),
    _gemma("1b"),
    _gemma("4b"),
    _gemma("12b"),
    _gemma("27b"),
    ModelSpec("gemini-2.5-flash-image", "Nano Banana",
              "Gemini 2.5 Flash Image (emulated): returns a small PNG",
              Limits(10, 250000, 100), input_token_limit=32768,
              output_token_limit=32768, thinking=False,
              methods=("generateContent", "countTokens", "batchGenerateContent")),
    # Not a generateContent model: asking it to generate gives the real 404 "not
    # supported for generateContent".  embedContent and batchEmbedContents are served
    # (deterministic vectors) under the free-tier limits of SPEC.md §2.
    ModelSpec("gemini-embedding-001", "Gemini Embedding 001",
              "Obtain a distributed representation of a text (emulated)",
              Limits(100, 30000, 1000), input_token_limit=2048,
              output_token_limit=1, thinking=False,
              methods=("embedContent", "batchEmbedContents", "countTextTokens",
                       "countTokens", "asyncBatchEmbedContent")),
)


class Catalog:
    """Every model the emulator knows: the built-in table plus models a keys file adds."""

    def __init__(self) -> None:
        self._models: dict[str, ModelSpec] = {m.id: m for m in BUILTIN_MODELS}

    def get(self, model_id: str) -> ModelSpec | None:
        return self._models.get(model_id)

    def add_custom(self, model_id: str, limits: Limits) -> None:
        """Make a model named only in a keys file known (generic Gemini metadata)."""
        if model_id not in self._models:
            self._models[model_id] = ModelSpec(
                model_id, model_id, f"{model_id} (defined by the keys file)", limits)

    def all(self) -> list[ModelSpec]:
        return list(self._models.values())
