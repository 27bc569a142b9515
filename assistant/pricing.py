"""What a model call costs, in US$: the one place every cost the application records is computed.

Three rules:
- a model served by an API is priced per token: input and output tokens times the model's price per
  million (`settings.price(name)`: the built-in table merged with ASSISTANT_PRICES); input tokens the
  provider served from its prompt cache (`cached_tokens`, part of the input count) at the cached-input
  price when the table has one (a third number), else at the input price;
- a local model (the student, the case-based stand-in) is priced by compute time: the seconds it took
  times `settings.compute_per_hour`;
- the OpenAI Batch API bills tokens at a discount (`BATCH_DISCOUNT`), given as `discount`.

A call whose price is unknown (no price for the model, or no input token count) costs None: the caller
decides whether that counts as free (the labeller's totals) or stays unknown (a chat exchange's `cost`).
Missing output tokens count as none. Costs are rounded to 1e-8 US$.

`assistant.spend` sums the recorded costs against the daily teacher cap.
"""

from __future__ import annotations

BATCH_DISCOUNT = 0.5  # OpenAI bills Batch API tokens at half the list price
_DIGITS = 8


def token_cost(price: tuple[float, ...] | None, input_tokens: int | None, output_tokens: int | None,
               discount: float = 1.0, cached_tokens: int | None = None) -> float | None:
    """Tokens times the price per million (input, output[, cached input]), times `discount`; None when the
    price or the input count is unknown. `cached_tokens` are the part of the input served from cache."""
    if price is None or input_tokens is None:
        return None
    cached = min(max(cached_tokens or 0, 0), input_tokens)
    cached_rate = price[2] if len(price) > 2 else price[0]
    dollars = (input_tokens - cached) * price[0] + cached * cached_rate + (output_tokens or 0) * price[1]
    return round(discount * dollars / 1e6, _DIGITS)


def compute_cost(seconds: float, per_hour: float) -> float:
    """A local model's compute time at the machine's price per hour."""
    return round(seconds / 3600 * per_hour, _DIGITS)


def call_cost(*, local: bool, model: str, settings, seconds: float, input_tokens: int | None,
              output_tokens: int | None, discount: float = 1.0, cached_tokens: int | None = None) -> float | None:
    """One call of a model: by compute time when it runs locally, else by its tokens at the model's price."""
    if local:
        return compute_cost(seconds, settings.compute_per_hour)
    return token_cost(settings.price(model), input_tokens, output_tokens, discount, cached_tokens)


def reply_cost(model, completion, settings) -> float | None:
    """One reply of a `ChatModel` (its `Completion`): what the chat, the shadow answers and the A/B record."""
    return call_cost(local=model.local, model=model.name, settings=settings, seconds=completion.latency_ms / 1000,
                     input_tokens=completion.input_tokens, output_tokens=completion.output_tokens,
                     cached_tokens=completion.cached_tokens)
