"""The price book: a data file of per-model and per-tool prices, loaded and validated at start."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipika.kit.money import ceil_div, to_micro

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "pricebook.toml"

TOKEN_BLOCK = 1_000_000  # token prices are per million tokens
# The output a request without `max_tokens` may write, when its model names no default: the
# hold is sized for it (not for the model's ceiling, often 64k-128k tokens) and the answer is
# cut there.
DEFAULT_OUTPUT_TOKENS = 4096
_MODEL_RATES = {
    "input_per_mtok": "input_tokens",
    "output_per_mtok": "output_tokens",
    "cached_input_per_mtok": "cached_input_tokens",
}
_TOOL_RATES = {
    "per_image": "images",
    "per_video_second": "video_seconds",
    "per_audio_second": "audio_seconds",
    "per_call": "calls",
    "per_task": "tasks",
}
# Tools billed by tokens (OpenAI's image models report text and image tokens separately).
_TOOL_TOKEN_RATES = {
    "text_input_per_mtok": "text_input_tokens",
    "image_input_per_mtok": "image_input_tokens",
    "image_output_per_mtok": "image_output_tokens",
}
# A provider that reports its own cost (deep research): credits per USD, usage in micro-USD.
_TOOL_COST_RATES = {"per_provider_usd": "provider_usd_micros"}
# Tool rates that may be a table by variant: `per_task.fast`, `per_video_second."1080p"`.
_TOOL_TABLES = {"per_task": "tasks", "per_video_second": "video_seconds"}
TOKEN_UNITS = frozenset(_MODEL_RATES.values()) | frozenset(_TOOL_TOKEN_RATES.values())
# Units whose rate is per million of them: tokens, and micro-USD of a provider's reported cost.
PER_MILLION_UNITS = TOKEN_UNITS | frozenset(_TOOL_COST_RATES.values())


class PriceBookError(ValueError):
    pass


def cost_of(rates: Mapping[str, int], usage: Mapping[str, int]) -> int:
    """Micro-credits for `usage` at `rates`; each line rounds up to a whole micro-credit.

    A unit the price does not know is refused: silently charging nothing for it would be a leak.
    """
    total = 0
    for unit, quantity in usage.items():
        if quantity < 0:
            raise ValueError(f"negative usage for {unit}: {quantity}")
        if quantity == 0:
            continue
        if unit not in rates:
            raise ValueError(f"no price for unit {unit!r}")
        block = TOKEN_BLOCK if unit in PER_MILLION_UNITS else 1
        total += ceil_div(quantity * rates[unit], block)
    return total


@dataclass(frozen=True, slots=True)
class Price:
    """The price of one model or tool: micro-credits per unit (per million, for tokens)."""

    name: str
    kind: str
    rates: Mapping[str, int]
    provider: str | None = None
    label: str = ""
    context_window: int | None = None
    max_output_tokens: int | None = None
    default_output_tokens: int | None = None

    def cost(self, usage: Mapping[str, int]) -> int:
        return cost_of(self.rates, usage)

    def output_allowance(self, requested: int | None) -> int:
        """The most output tokens a request may write (and its hold is sized for): what it
        asked for, else the model's default allowance; never above the model's ceiling."""
        ceiling = self.max_output_tokens or DEFAULT_OUTPUT_TOKENS
        default = self.default_output_tokens or DEFAULT_OUTPUT_TOKENS
        return min(requested or default, ceiling)


@dataclass(frozen=True)
class PriceBook:
    version: str
    prices: Mapping[str, Price] = field(default_factory=dict)

    def get(self, name: str) -> Price | None:
        return self.prices.get(name)

    @property
    def models(self) -> list[Price]:
        return [p for p in self.prices.values() if p.kind == "model"]

    @classmethod
    def load(cls, path: Path | None = None) -> PriceBook:
        path = path or DEFAULT_PATH
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PriceBookError(f"cannot read price book {path}: {exc}") from exc
        return cls.parse(data)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> PriceBook:
        version = data.get("version")
        if not isinstance(version, str) or not version:
            raise PriceBookError("price book needs a non-empty string `version`")
        prices: dict[str, Price] = {}
        for name, spec in data.get("models", {}).items():
            prices[name] = _model_price(name, spec)
        for name, spec in data.get("tools", {}).items():
            if name in prices:
                raise PriceBookError(f"{name!r} is priced twice")
            prices[name] = _tool_price(name, spec)
        if not prices:
            raise PriceBookError("price book prices nothing")
        return cls(version=version, prices=prices)


def _model_price(name: str, spec: Mapping[str, Any]) -> Price:
    unknown = (
        set(spec)
        - set(_MODEL_RATES)
        - {"provider", "label", "context_window", "max_output_tokens", "default_output_tokens"}
    )
    if unknown:
        raise PriceBookError(f"model {name!r}: unknown fields {sorted(unknown)}")
    missing = {
        "input_per_mtok",
        "output_per_mtok",
        "provider",
        "context_window",
        "max_output_tokens",
    } - set(spec)
    if missing:
        raise PriceBookError(f"model {name!r}: missing {sorted(missing)}")
    rates = {unit: _rate(name, key, spec[key]) for key, unit in _MODEL_RATES.items() if key in spec}
    rates.setdefault("cached_input_tokens", rates["input_tokens"])
    return Price(
        name=name,
        kind="model",
        rates=rates,
        provider=str(spec["provider"]),
        label=str(spec.get("label", "")),
        context_window=_positive_int(name, "context_window", spec["context_window"]),
        max_output_tokens=_positive_int(name, "max_output_tokens", spec["max_output_tokens"]),
        default_output_tokens=(
            _positive_int(name, "default_output_tokens", spec["default_output_tokens"])
            if "default_output_tokens" in spec
            else None
        ),
    )


def _tool_price(name: str, spec: Mapping[str, Any]) -> Price:
    kind = spec.get("kind")
    if not isinstance(kind, str):
        raise PriceBookError(f"tool {name!r}: missing `kind`")
    rates: dict[str, int] = {}
    provider = spec.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise PriceBookError(f"tool {name!r}: `provider` must be a string")
    for key, value in spec.items():
        if key in ("kind", "label", "provider"):
            continue
        if key in _TOOL_TABLES and isinstance(value, Mapping):
            unit = _TOOL_TABLES[key]
            rates.update(
                {f"{unit}.{mode}": _rate(name, f"{key}.{mode}", v) for mode, v in value.items()}
            )
        elif key in _TOOL_RATES:
            rates[_TOOL_RATES[key]] = _rate(name, key, value)
        elif key in _TOOL_TOKEN_RATES:
            rates[_TOOL_TOKEN_RATES[key]] = _rate(name, key, value)
        elif key in _TOOL_COST_RATES:
            rates[_TOOL_COST_RATES[key]] = _rate(name, key, value)
        else:
            raise PriceBookError(f"tool {name!r}: unknown price field {key!r}")
    if not rates:
        raise PriceBookError(f"tool {name!r}: no price")
    return Price(
        name=name, kind=kind, rates=rates, provider=provider, label=str(spec.get("label", ""))
    )


def _rate(name: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PriceBookError(f"{name!r}.{key}: not a number: {value!r}")
    try:
        micro = to_micro(value)
    except ValueError as exc:
        raise PriceBookError(f"{name!r}.{key}: {exc}") from None
    if micro < 0:
        raise PriceBookError(f"{name!r}.{key}: negative price {value!r}")
    return micro


def _positive_int(name: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PriceBookError(f"{name!r}.{key}: must be a positive integer")
    return value
