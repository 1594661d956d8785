"""Token counts as vendors report them, read into one `Usage` by one rule."""

from __future__ import annotations

from typing import Any

from conversations.events import Usage

# The names each count goes by: OpenAI and Loop Health write `prompt_tokens` (snake case),
# Anthropic-style backends `input_tokens`, AG-UI `inputTokens` (camel case). The first one present
# with a count wins.
PROMPT_KEYS = ("prompt_tokens", "input_tokens", "inputTokens", "promptTokens")
COMPLETION_KEYS = ("completion_tokens", "output_tokens", "outputTokens", "completionTokens")
TOTAL_KEYS = ("total_tokens", "totalTokens")


def parse_usage(raw: Any) -> Usage | None:
    """One usage object (OpenAI's usage chunk, Loop Health's `token_usage`) or a list of them,
    summed (AG-UI's `RUN_FINISHED.usage`, one entry per provider and model).

    An object is a report even when it counts nothing (the vendor did send one); a list is one
    only when some entry counts something; anything else is None.
    """
    entries = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    totals: list[int | None] = [None, None, None]
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for position, keys in enumerate((PROMPT_KEYS, COMPLETION_KEYS, TOTAL_KEYS)):
            value = _count(entry, keys)
            if value is not None:
                totals[position] = (totals[position] or 0) + value
    if isinstance(raw, dict) or any(value is not None for value in totals):
        return Usage(*totals)
    return None


def _count(entry: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = entry.get(key)
        # Loop Health's schema types counts as "number": 12.0 is a count, 12.5, "12" or a
        # boolean is not.
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    return None
