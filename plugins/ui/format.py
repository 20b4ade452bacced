"""Numbers, costs, times and JSON as the pages show them (Jinja filters).

A cost is never shown as a silent $0 when a model had no known price: ``unknown`` (nothing priced) or
``$0.0123+?`` (part priced), as ``flow runs`` does.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from flow_engine.llm.redact import is_secret_name


def short_id(value: uuid.UUID | str | None) -> str:
    if value is None:
        return ""
    return value.hex[:8] if isinstance(value, uuid.UUID) else str(value).replace("-", "")[:8]


def cost(value: float | None, unpriced: int = 0) -> str:
    if value is None or (unpriced and not value):
        return "unknown"
    if value == 0:
        text = "$0"
    elif value < 0.0001:  # a cheap call is not free: never round it to $0.0000
        text = f"${value:.6f}" if value >= 0.000001 else "<$0.000001"
    else:
        text = f"${value:.4f}" if value < 100 else f"${value:,.2f}"
    return f"{text}+?" if unpriced else text


def duration(ms: int | float | None) -> str:
    if ms is None:
        return "–"
    ms = int(ms)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def when(value: datetime | None) -> str:
    """UTC, to the second: the same text for every viewer and in every test."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "–"


def number(value: int | float | None) -> str:
    return "–" if value is None else f"{value:,}"


def without_secrets(value: Any) -> Any:
    """``value`` with every key named like a secret left out, recursively: whatever a backend stored
    (the engine already drops them), by the engine's own rule of what a secret's name is."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if not is_secret_name(str(k))}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def parse_json(text: Any) -> tuple[bool, Any]:
    """(True, the document) when ``text`` is a JSON object or array, else (False, None)."""
    if not isinstance(text, str) or not text.strip().startswith(("{", "[")):
        return False, None
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def first_line(text: str | None, width: int = 120) -> str:
    if not text or not text.strip():
        return ""
    line = text.strip().splitlines()[0]
    return line if len(line) <= width else line[: width - 1] + "…"


FILTERS = {
    "short_id": short_id,
    "cost": cost,
    "duration": duration,
    "when": when,
    "number": number,
    "pretty": pretty,
    "first_line": first_line,
}
