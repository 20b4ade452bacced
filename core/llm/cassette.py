"""Record and replay: every LLM response of a real run saved to a JSON file, answered from it later.

``flow run --record FILE`` / ``--replay FILE`` and ``with cassette(FILE, mode=...)`` switch it on for a
whole run. A :class:`Cassette` is a ``wrap_llm_call`` plugin (``hook.py``): recording wraps the real
litellm call; replaying replaces it, so a
replayed run needs no network, no key and no money, and still goes through the rest of the engine as
the real one did (token counts, ``llm_requests`` rows marked ``replayed_from``, structured-output
validation, re-asks and fallbacks).

A request is matched by a stable key: kind, model, messages (or the image prompt), the structured-output
schema and every parameter that changes the answer. Not in the key: ``api_base``, keys, timeouts and
retry settings, so a cassette recorded against a provider replays in CI with none of them set. The same
request made several times is answered with its recordings in order; a request that was not recorded
(or asked more often than recorded) fails with :class:`UnrecordedRequest`, naming the model and the
start of the prompt, rather than reaching for a network the caller said not to use.

The file holds requests (messages, non-secret parameters) and responses, never API keys or headers:
parameters go through ``redact_params`` and known secret values are blanked before writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import deque
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..errors import UsageError
from ..hookspecs import hookimpl
from .hook import LLMCallInfo, Send, call_plugins
from .redact import known_secrets, redact_params, redact_text, secrets_in_params, secrets_in_url
from .retry_policy import is_transient, status_of

FORMAT_VERSION = 1
Mode = Literal["record", "replay"]

# parameters that say how to reach the model, not what to ask it: never part of the key
_TRANSPORT_PARAMS = {
    "messages",
    "prompt",
    "api_base",
    "base_url",
    "api_version",
    "timeout",
    "max_retries",
    "num_retries",
    "drop_params",
    "metadata",
    "stream_options",
}


class CassetteError(UsageError):
    """A cassette file is missing, unreadable or not a cassette."""


class UnrecordedRequest(CassetteError):
    """Replaying, the run made an LLM request the cassette holds no (more) recorded response for."""


class RecordedFailure(Exception):
    """A provider's refusal (HTTP 4xx) as recorded, raised again on replay.

    Recorded because the engine acts on it: a server rejecting ``json_schema`` makes a structured step
    fall back to JSON mode, and the replay must take the same way to find the recorded answer.
    """

    def __init__(self, message: str, status_code: int):
        super().__init__(message)
        self.status_code = status_code


def _jsonable(value: Any) -> Any:
    """Request values as JSON: a pydantic ``response_format`` class becomes the schema it asks for."""
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return {"type": "json_schema", "name": value.__name__, "schema": value.model_json_schema()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _scrubbed(value: Any, secrets: list[str]) -> Any:
    """``value`` with every secret blanked in its texts (keys and values), never in the JSON's own
    syntax: a secret that also spells ``true`` or a number cannot break the file. An interaction's
    ``key`` (a hash of the request, matched on replay) is left as it is."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {_scrubbed(k, secrets): v if k == "key" else _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, secrets) for v in value]
    return value


def describe_request(kind: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    """What identifies a request: the JSON stored in the cassette beside its response."""
    params = {k: v for k, v in request.items() if k not in _TRANSPORT_PARAMS}
    described: dict[str, Any] = {"kind": kind, "model": model}
    if kind == "completion":
        described["messages"] = _jsonable(request.get("messages") or [])
    else:
        described["prompt"] = request.get("prompt")
    described["params"] = _jsonable(redact_params(params))
    return described


def request_key(described: dict[str, Any]) -> str:
    canonical = json.dumps(described, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def prompt_excerpt(described: dict[str, Any], length: int = 80) -> str:
    """The start of the last user message (or the image prompt), on one line."""
    text = described.get("prompt")
    if text is None:
        users = [m for m in described.get("messages") or [] if m.get("role") == "user"]
        content = users[-1].get("content") if users else ""
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        text = content
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= length else flat[: length - 1] + "…"


def _prompt_text(described: dict[str, Any]) -> str:
    if described.get("prompt") is not None:
        return " ".join(str(described["prompt"]).split())
    parts = []
    for message in described.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(f"{message.get('role')}: {content}")
    return " ".join(" | ".join(parts).split())


def _closest_difference(described: dict[str, Any], candidates: list[dict[str, Any]], step: str | None) -> str:
    """Where the request departs from the most similar recording (same step first): what a person needs
    to see when two prompts share a long template and differ in one input."""
    text = _prompt_text(described)

    def shared(item: dict[str, Any]) -> tuple[bool, int]:
        other = _prompt_text(item)
        n = next(
            (i for i, (a, b) in enumerate(zip(text, other, strict=False)) if a != b),
            min(len(text), len(other)),
        )
        return item.get("step") == step, n

    best = max(candidates, key=shared)
    other, at = _prompt_text(best), shared(best)[1]
    if text == other:
        keys = sorted(set(described["params"]) | set(best.get("params") or {}))
        changed = [k for k in keys if described["params"].get(k) != (best.get("params") or {}).get(k)]
        return f"the closest recording has the same prompt but other parameters ({', '.join(changed)})"
    start = max(0, at - 30)
    if start:  # from a word's start
        space = text.find(" ", start, at)
        start = space + 1 if space != -1 else start
    lead = "…" if start else ""
    mine, theirs = lead + text[start : at + 50], lead + other[start : at + 50]
    return f"the closest recording's prompt differs here: {mine!r} (recorded: {theirs!r})"


def _dump_response(response: Any) -> dict[str, Any]:
    data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
    return json.loads(json.dumps(data, default=str))


def _rebuild_response(kind: str, data: dict[str, Any]) -> Any:
    """The litellm object a real call returns, from its recorded JSON."""
    from .loader import load_litellm

    litellm = load_litellm()
    if kind == "image_generation":
        return litellm.ImageResponse(**data)
    return litellm.ModelResponse(**data)


class Cassette:
    """One cassette file, opened to record (starting empty) or to replay (read at once)."""

    def __init__(self, path: str | os.PathLike[str], mode: Mode = "replay"):
        if mode not in ("record", "replay"):
            raise UsageError(f"cassette mode must be 'record' or 'replay', not {mode!r}")
        self.path = Path(path)
        self.mode: Mode = mode
        self.interactions: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        # secret values the recorded calls sent (keys, header values): blanked in the file on save
        self._secrets: set[str] = set()
        self._unplayed: dict[str, deque[int]] = {}
        self._played: set[int] = set()
        if mode == "replay":
            self.interactions = self._load()
            for index, item in enumerate(self.interactions):
                self._unplayed.setdefault(item["key"], deque()).append(index)

    @property
    def replaying(self) -> bool:
        return self.mode == "replay"

    @property
    def name(self) -> str:
        return self.path.name

    def _load(self) -> list[dict[str, Any]]:
        where = f"cassette '{self.path}'"
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CassetteError(f"no {where} to replay; record it first (flow run --record)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CassetteError(f"cannot read {where}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise CassetteError(f"{where} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(data, dict) or data.get("flow_engine_cassette") != FORMAT_VERSION:
            raise CassetteError(f"{where} is not a flow-engine cassette (format {FORMAT_VERSION})")
        items = data.get("interactions")
        if not isinstance(items, list) or not all(isinstance(i, dict) and "key" in i for i in items):
            raise CassetteError(f"{where} has no valid 'interactions' list")
        return items

    # -- the hook ---------------------------------------------------------------------------------
    @hookimpl(wrapper=True)
    def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
        """Replaying: answer from the recordings. Recording: make the call, then keep its answer."""
        send = yield
        if self.replaying:

            async def replayed() -> Any:
                call.replayed_from = self.name
                return self.replay(call.kind, call.model, call.request, call.step)

            return replayed

        async def recorded() -> Any:
            with self._lock:
                self._secrets.update(secrets_in_params(call.params), secrets_in_url(call.api_base))
            try:
                response = await send()
            except Exception as exc:
                status = status_of(exc)
                if status is not None and 400 <= status < 500 and not is_transient(exc):
                    # a refusal the engine acts on (a structured-output fallback): replayed as such
                    message = f"HTTP {status} {type(exc).__name__}: {exc}"
                    secrets = known_secrets(*secrets_in_params(call.params), *secrets_in_url(call.api_base))
                    message = redact_text(message, secrets)[:4000]
                    self.record_error(call.kind, call.model, call.request, status, message, call.step)
                raise
            self.record(call.kind, call.model, call.request, response, call.step)
            return response

        return recorded

    # -- replay -----------------------------------------------------------------------------------
    def replay(self, kind: str, model: str, request: dict[str, Any], step: str | None) -> Any:
        """The recorded response to this request (the next one, when it was made several times)."""
        described = describe_request(kind, model, request)
        key = request_key(described)
        with self._lock:
            queue = self._unplayed.get(key)
            index = queue.popleft() if queue else None
            if index is not None:
                self._played.add(index)
        if index is None:
            raise UnrecordedRequest(self._miss_message(described, key, step))
        item = self.interactions[index]
        if "error" in item:
            error = item["error"]
            raise RecordedFailure(f"(replayed) {error['message']}", int(error["status_code"]))
        return _rebuild_response(kind, item["response"])

    def _miss_message(self, described: dict[str, Any], key: str, step: str | None) -> str:
        kind, model = described["kind"], described["model"]
        where = f" (step '{step}')" if step else ""
        recorded = sum(1 for item in self.interactions if item["key"] == key)
        if recorded:
            why = f"it was recorded {recorded} time(s) and every recording has been replayed already"
        else:
            same = [i for i in self.interactions if (i.get("kind"), i.get("model")) == (kind, model)]
            why = (
                f"the cassette holds {len(self.interactions)} recorded request(s), "
                f"{len(same)} of them {kind} with this model, none with this exact prompt and parameters"
            )
            if same:
                why += "; " + _closest_difference(described, same, step)
        return (
            f"cassette '{self.name}' has no recorded response for {kind} with model '{model}'{where}, "
            f"prompt {prompt_excerpt(described)!r}: {why}; re-record it (flow run --record {self.name})"
        )

    @property
    def unplayed(self) -> list[dict[str, Any]]:
        """Recorded interactions not replayed (yet): a test may assert its run used the whole cassette.
        Always empty while recording."""
        if not self.replaying:
            return []
        return [item for i, item in enumerate(self.interactions) if i not in self._played]

    # -- record -----------------------------------------------------------------------------------
    def record(self, kind: str, model: str, request: dict[str, Any], response: Any, step: str | None) -> None:
        """Add one successful response and rewrite the file (a crash keeps what was recorded)."""
        described = describe_request(kind, model, request)
        item = {"key": request_key(described), "step": step, **described}
        item["response"] = _dump_response(response)
        with self._lock:
            self.interactions.append(item)
            self.save()

    def record_error(
        self, kind: str, model: str, request: dict[str, Any], status_code: int, message: str, step: str | None
    ) -> None:
        """Add a provider's refusal of a request (not a transient failure: those are retried, and the
        response that finally came is what gets recorded). ``message`` must be redacted already."""
        described = describe_request(kind, model, request)
        item = {"key": request_key(described), "step": step, **described}
        item["error"] = {"status_code": status_code, "message": message}
        with self._lock:
            self.interactions.append(item)
            self.save()

    def save(self) -> None:
        """Write the cassette atomically, with every known secret value blanked."""
        from ..engine import get_engine

        payload = {
            "flow_engine_cassette": FORMAT_VERSION,
            "note": "LLM responses recorded by flow-engine; replay with `flow run --replay FILE`",
            "interactions": self.interactions,
        }
        secrets = known_secrets(get_engine().settings.api_key, *self._secrets)
        text = json.dumps(_scrubbed(payload, secrets), indent=2, ensure_ascii=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, self.path)


@contextmanager
def cassette(path: str | os.PathLike[str], mode: Mode = "replay") -> Iterator[Cassette]:
    """Record every LLM response made inside the block to ``path``, or answer them from it.

    ``mode="record"`` makes the real calls and (re)writes the file, even when the block fails;
    ``mode="replay"`` (the default) makes no call at all and raises :class:`UnrecordedRequest` for a
    request the file does not hold. The file must exist to replay.
    """
    tape = Cassette(path, mode)
    try:
        with call_plugins(tape):
            yield tape
    finally:
        if mode == "record":
            with tape._lock:
                tape.save()
