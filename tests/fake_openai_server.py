"""A fake OpenAI-compatible HTTP server on 127.0.0.1, for driving litellm's real HTTP path in tests.

Serves ``POST /v1/chat/completions`` and ``POST /v1/images/generations`` with realistic OpenAI JSON
(``usage`` included), from a background thread running its own aiohttp event loop.

Behaviour is scripted per request. Two queues are consumed in order for each endpoint: first the
faults queued with :meth:`FakeOpenAI.fail_next`, then the replies queued with :meth:`FakeOpenAI.script`
(which may also contain faults). When both are empty a default reply is sent (text echoing the prompt;
a placeholder image). Every received request (path, headers, JSON body) is logged in ``.requests``.

Answers by prompt (:meth:`FakeOpenAI.answer`): ``answer("Summarise X", Reply(json={...}))`` makes every
chat request whose prompt text contains ``"Summarise X"`` get that reply when nothing is queued, for as
long as the server lives (until :meth:`reset`): answers that depend on the prompt only, in any order.
The answer may be a :class:`Fault` too: that prompt then always fails (other prompts are answered).

Replies (:class:`Reply`, :class:`ImageReply`) and faults (:class:`Fault`):

- ``Reply("text")`` / ``Reply(json={...})``: a chat completion whose message content is the text or the
  JSON document; ``usage=(prompt, completion)`` sets the token counts (default: estimated from length).
- ``Reply(chunks=["Hel", "lo"], chunk_delay=0.2, cut_after=None)``: to a request with ``stream: true``,
  Server-Sent Events, one chunk per piece, then the usage chunk (any reply streams, word by word,
  when the request asks for a stream); ``cut_after=N`` drops the connection after N pieces.
- ``ImageReply(b64=True|False, revised_prompt=..., png=bytes)``: ``b64_json`` or a ``url`` served by
  this server at ``/files/<name>.png``.
- ``Fault.status(429, retry_after=0.2)``, ``Fault.status(500)``, ``Fault.status(503)``: an OpenAI-style
  error JSON with that status (and a ``Retry-After`` header when given).
- ``Fault.status(401, echo_headers=True)``: the error message repeats every request header (the API
  key's ``Authorization`` and any custom key header), as careless gateways do; ``echo_url=True``: it
  repeats the URL requested, query string and all (an ``api_base`` of ``.../v1?key=K`` is served too).
- ``Fault.hang(seconds)``: answer nothing for that long (longer than the client's timeout).
- ``Fault.hold()``: answer nothing until :meth:`FakeOpenAI.release` (or :meth:`reset`), then answer
  as usual: as an :meth:`answer` rule it stops every run at the same step until the test lets go.
- ``Fault.drop()``: close the connection without answering.
- ``Fault.malformed()``: HTTP 200 with a body that is not JSON.
- ``Fault.drip(0.5)``: HTTP 200 at once, then the answer one byte every 0.5 s (no single read times out).
- ``Fault.empty()`` / ``Fault.empty("none")``: HTTP 200 with ``content: null`` / with no choices.
- ``reject_json_schema_500`` (attribute, persistent): HTTP 500 "Input should be 'text' or 'json_object'"
  to a ``json_schema`` request, JSON mode answered (as llama.cpp's server does).
- ``reject_json_schema`` (attribute, persistent) or ``Fault.reject_json_schema()`` (once): HTTP 400 to a
  request whose ``response_format.type`` is ``json_schema``, as some OpenAI-compatible servers do.

Connection refused cannot be a per-request fault (nothing must be listening): use the
``refused_base_url`` fixture, an ``/v1`` URL on a port nobody listens on.

Fixtures and helpers (this module is a pytest plugin, loaded by tests/conftest.py):

- ``fake_openai``: the server (one per test session), with an empty script and log for each test.
  Its ``.base_url`` is a real TCP address, so a ``flow run`` subprocess can use it too.
- ``use_fake_openai(base_url, tmp_path, **settings)``: reconfigure the engine for it (api_base, the
  ``test-key`` API key, fast retries, a small timeout, the in-memory store); settings override.
- ``refused_base_url``: an ``/v1`` URL on a port where nothing listens.
- ``no_network``: fail any connection to a host other than 127.0.0.1.
- ``fake_openai_process`` / ``start_subprocess()``: the server in its own process (below).

In a test::

    async def test_x(fake_openai, tmp_path):
        use_fake_openai(fake_openai.base_url, tmp_path)
        fake_openai.script(Reply("hello"))
        fake_openai.fail_next(Fault.status(429, retry_after=0.05))
        ... a step with model="openai/gpt-4o-mini" ...
        assert len(fake_openai.chat_requests) == 2

As a separate process (tests that kill a ``flow run`` subprocess and count requests)::

    python -m tests.fake_openai_server --port 0 --latency-ms 50 [--reject-json-schema]

prints ``READY http://127.0.0.1:PORT/v1`` on stdout and serves until killed. It is scripted and read
over HTTP (``/_fake/script``, ``/_fake/fail``, ``/_fake/answers``, ``/_fake/requests``, ``/_fake/reset``,
``/_fake/config``);
:class:`RemoteFakeOpenAI` wraps those with the same methods as the in-process object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from aiohttp import web

API_KEY = "test-key"


# -- scripted behaviour -------------------------------------------------------------------------
@dataclass
class Reply:
    """A successful chat completion. ``text`` or ``json`` (serialised as the message content)."""

    text: str | None = None
    json: Any = None
    usage: tuple[int, int] | None = None
    model: str | None = None
    finish_reason: str = "stop"
    delay: float | None = None  # seconds, instead of the server's latency
    # a streamed answer (the request asks ``stream: true``): these pieces, ``chunk_delay`` seconds apart;
    # ``cut_after``: the connection drops after that many pieces (a failure mid-stream)
    chunks: list[str] | None = None
    chunk_delay: float = 0.0
    cut_after: int | None = None

    def content(self) -> str:
        if self.chunks is not None:
            return "".join(self.chunks)
        if self.json is not None:
            return json.dumps(self.json)
        return self.text if self.text is not None else ""


@dataclass
class ImageReply:
    """A successful image generation: ``count`` images as ``b64_json`` (``b64=True``) or ``url``."""

    b64: bool = True
    count: int = 1
    revised_prompt: str | None = "a revised prompt"
    png: bytes | None = None  # default: a real small PNG
    url: str | None = None  # with b64=False: this URL instead of one served here (e.g. a broken one)
    usage: tuple[int, int] | None = None
    delay: float | None = None


@dataclass
class Fault:
    """A failure of one request. Build with the classmethods."""

    kind: str  # status | hang | hold | drop | malformed | reject_json_schema
    status_code: int = 500
    retry_after: float | None = None
    seconds: float = 30.0
    message: str | None = None
    echo_headers: bool = False  # the error body repeats every request header (as some gateways do)
    echo_url: bool = False  # the error body repeats the URL requested, query string and all

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: float | None = None,
        message: str | None = None,
        echo_headers: bool = False,
        echo_url: bool = False,
    ) -> Fault:
        return cls(
            "status",
            status_code=code,
            retry_after=retry_after,
            message=message,
            echo_headers=echo_headers,
            echo_url=echo_url,
        )

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def hold(cls) -> Fault:
        return cls("hold")

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def drip(cls, seconds: float = 0.5) -> Fault:
        """HTTP 200 at once, then a valid answer one byte every ``seconds`` (no read ever times out)."""
        return cls("drip", status_code=200, seconds=seconds)

    @classmethod
    def empty(cls, message: str | None = "null") -> Fault:
        """HTTP 200 with ``content: null`` (``message="null"``) or with no choices at all (``"none"``)."""
        return cls("empty", status_code=200, message=message)

    @classmethod
    def reject_json_schema(cls) -> Fault:
        """HTTP 400 if this request asks for ``json_schema``; otherwise it is consumed and answered."""
        return cls("reject_json_schema", status_code=400)


Scripted = Reply | ImageReply | Fault


@dataclass
class RecordedRequest:
    method: str
    path: str  # with its query string, if any
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was not JSON
    raw: str
    received_at: float = field(default_factory=time.time)
    outcome: str = ""  # what the server did: "reply", "429", "hang", "drop", ...

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or [])

    @property
    def text(self) -> str:
        """Every message's content joined: what a test searches for prompt material."""
        parts = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(str(content or ""))
        return "\n".join(parts)

    @property
    def response_format_type(self) -> str | None:
        fmt = (self.body or {}).get("response_format")
        return fmt.get("type") if isinstance(fmt, dict) else None


def tiny_png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    """A real PNG of one colour."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _to_spec(item: Scripted) -> dict[str, Any]:
    kind = {Reply: "reply", ImageReply: "image", Fault: "fault"}[type(item)]
    data = asdict(item)
    if isinstance(item, ImageReply) and item.png is not None:
        data["png"] = base64.b64encode(item.png).decode()
    return {"type": kind, **data}


def _from_spec(spec: dict[str, Any]) -> Scripted:
    spec = dict(spec)
    kind = spec.pop("type")
    if kind == "reply":
        if spec.get("usage") is not None:
            spec["usage"] = tuple(spec["usage"])
        return Reply(**spec)
    if kind == "image":
        if spec.get("png") is not None:
            spec["png"] = base64.b64decode(spec["png"])
        if spec.get("usage") is not None:
            spec["usage"] = tuple(spec["usage"])
        return ImageReply(**spec)
    return Fault(**spec)


# -- the server ---------------------------------------------------------------------------------
class FakeOpenAI:
    """The server and its script. Start with :meth:`start` (or the ``fake_openai`` fixture)."""

    def __init__(self, *, port: int = 0, latency_ms: float = 0.0):
        self.port = port
        self.latency_ms = latency_ms
        self.reject_json_schema = False
        # persistent: HTTP 500 "Input should be 'text' or 'json_object'" to json_schema (as llama.cpp)
        self.reject_json_schema_500 = False
        self._defaults = {"latency_ms": latency_ms, "reject_json_schema": False}
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._faults: dict[str, deque[Scripted]] = {"chat": deque(), "images": deque()}
        self._replies: dict[str, deque[Scripted]] = {"chat": deque(), "images": deque()}
        self._answers: list[tuple[str, Reply | Fault]] = []
        self._released: asyncio.Event | None = None  # what requests held by Fault.hold() wait for
        self._files: dict[str, bytes] = {}
        self._counter = 0
        # the concurrency gauge: chat requests being answered now, and the most there ever were at once
        self.in_flight = 0
        self.max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    # -- test-facing API ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *items: Scripted) -> FakeOpenAI:
        """Queue replies/faults, consumed in order by the matching endpoint (images: ImageReply)."""
        with self._lock:
            for item in items:
                self._replies[self._endpoint_of(item)].append(item)
        return self

    def fail_next(
        self, fault: Fault | str | int, times: int = 1, *, endpoint: str = "chat", **options: Any
    ) -> FakeOpenAI:
        """The next ``times`` requests to ``endpoint`` fail with ``fault`` (before any scripted reply).

        ``fault`` may be a :class:`Fault`, an HTTP status (``429``) or a kind name (``"hang"``,
        ``"drop"``, ``"malformed"``, ``"reject_json_schema"``) with ``options`` for it.
        """
        if isinstance(fault, int):
            fault = Fault.status(fault, **options)
        elif isinstance(fault, str):
            fault = getattr(Fault, fault)(**options)
        with self._lock:
            for _ in range(times):
                self._faults[endpoint].append(fault)
        return self

    def answer(self, contains: str, reply: Reply | Fault) -> FakeOpenAI:
        """Answer every chat request whose prompt text contains ``contains`` with ``reply`` (or fail it
        with a :class:`Fault`), whenever no fault or scripted reply is queued (the first matching rule
        wins; kept until :meth:`reset`)."""
        with self._lock:
            self._answers.append((contains, reply))
        return self

    def _answer_for(self, text: str) -> Reply | Fault | None:
        with self._lock:
            return next((reply for contains, reply in self._answers if contains in text), None)

    def release(self) -> None:
        """Answer the requests held by ``Fault.hold()`` rules, and drop those rules."""
        with self._lock:
            self._answers = [
                (c, r) for c, r in self._answers if not (isinstance(r, Fault) and r.kind == "hold")
            ]
            released, self._released = self._released, None
        if released is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(released.set)

    async def _held(self) -> None:
        with self._lock:
            if self._released is None:
                self._released = asyncio.Event()
            released = self._released
        assert self._stopping is not None
        waits = [asyncio.ensure_future(e.wait()) for e in (released, self._stopping)]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in pending:
            waiting.cancel()

    def reset(self) -> None:
        self.release()
        with self._lock:
            self.requests.clear()
            self._answers.clear()
            for queue in (*self._faults.values(), *self._replies.values()):
                queue.clear()
            self.latency_ms = self._defaults["latency_ms"]
            self.reject_json_schema = self._defaults["reject_json_schema"]
            self.reject_json_schema_500 = False
            self.in_flight = self.max_in_flight = 0

    def pending(self) -> int:
        """Scripted items not consumed yet (a test may assert its script was used up)."""
        with self._lock:
            return sum(len(q) for q in (*self._faults.values(), *self._replies.values()))

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.path.endswith("chat/completions")]

    @property
    def image_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.path.endswith("images/generations")]

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_app())
            except BaseException as exc:  # pragma: no cover - reported to start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_until_complete(self._stopping.wait())  # type: ignore[union-attr]
                loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _start_app(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        # an api_base with a query (``/v1?key=K``): the client appends the endpoint to the query string
        app.router.add_post("/v1", self._chat)
        app.router.add_post("/v1/", self._chat)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/_fake/requests", self._ctl_requests)
        app.router.add_post("/_fake/script", self._ctl_script)
        app.router.add_post("/_fake/fail", self._ctl_fail)
        app.router.add_post("/_fake/answers", self._ctl_answers)
        app.router.add_post("/_fake/reset", self._ctl_reset)
        app.router.add_post("/_fake/release", self._ctl_release)
        app.router.add_post("/_fake/config", self._ctl_config)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(5)
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- request handling -------------------------------------------------------------------------
    async def _answer_oddly(
        self, request: web.Request, record: RecordedRequest, fault: Fault
    ) -> web.StreamResponse:
        return await _drip_or_empty(request, record, fault)

    @staticmethod
    def _endpoint_of(item: Scripted) -> str:
        return "images" if isinstance(item, ImageReply) else "chat"

    def _next(self, endpoint: str) -> Scripted | None:
        with self._lock:
            if self._faults[endpoint]:
                return self._faults[endpoint].popleft()
            if self._replies[endpoint]:
                return self._replies[endpoint].popleft()
            return None

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.text()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest(request.method, request.path_qs, dict(request.headers), body, raw)
        with self._lock:
            self.requests.append(record)
        return record

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), seconds)
            except TimeoutError:
                pass

    async def _fault(self, request: web.Request, record: RecordedRequest, fault: Fault) -> web.StreamResponse:
        if fault.kind == "hang":
            record.outcome = "hang"
            await self._sleep(fault.seconds)
            return web.json_response(_error("the server hung", "timeout"), status=504)
        if fault.kind == "drop":
            record.outcome = "drop"
            if request.transport is not None:
                sock = request.transport.get_extra_info("socket")
                if sock is not None:  # RST instead of FIN: the client sees a reset connection
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp drops the handler quietly
        if fault.kind in ("drip", "empty"):
            return await self._answer_oddly(request, record, fault)
        if fault.kind == "malformed":
            record.outcome = "malformed"
            return web.Response(
                status=200, text='{"id": "chatcmpl-broken", "choices": [', content_type="application/json"
            )
        code = fault.status_code
        record.outcome = str(code)
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        kinds = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_exceeded"}
        message = fault.message or {
            429: "Rate limit reached for requests",
            500: "The server had an error while processing your request",
            503: "The engine is currently overloaded, please try again later",
        }.get(code, f"fake error {code}")
        if fault.echo_headers:
            message = f"{message}; request headers: {json.dumps(dict(request.headers))}"
        if fault.echo_url:
            message = f"{message}; requested {request.method} {request.url}"
        return web.json_response(
            _error(message, kinds.get(code, "server_error")), status=code, headers=headers
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer_chat(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer_chat(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        item = self._next("chat")
        wants_schema = record.response_format_type == "json_schema"
        if item is None:
            item = self._answer_for(record.text)
        if isinstance(item, Fault) and item.kind == "reject_json_schema":
            item = Fault.status(400, message=_SCHEMA_REJECTION) if wants_schema else self._next("chat")
        elif self.reject_json_schema and wants_schema:
            # a persistent rejection does not consume the script
            with self._lock:
                if item is not None:
                    (self._faults if isinstance(item, Fault) else self._replies)["chat"].appendleft(item)
            item = Fault.status(400, message=_SCHEMA_REJECTION)
        if isinstance(item, Fault) and item.kind == "hold":
            record.outcome = "held"
            await self._held()
            item = None
        if self.reject_json_schema_500 and wants_schema:  # persistent, and the script is kept
            with self._lock:
                if item is not None:
                    (self._faults if isinstance(item, Fault) else self._replies)["chat"].appendleft(item)
            return await self._fault(request, record, Fault.status(500, message=_SCHEMA_500))
        if isinstance(item, Fault):
            return await self._fault(request, record, item)
        reply = item if isinstance(item, Reply) else Reply(text=f"fake answer to: {record.text[-200:]}")
        await self._sleep(reply.delay if reply.delay is not None else self.latency_ms / 1000)
        record.outcome = "reply"
        content = reply.content()
        prompt_tokens, completion_tokens = reply.usage or (
            _estimate_tokens(record.text),
            _estimate_tokens(content),
        )
        with self._lock:
            self._counter += 1
            n = self._counter
        body = {
            "id": f"chatcmpl-fake{n:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or (record.body or {}).get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if (record.body or {}).get("stream"):
            return await self._stream(request, record, reply, body)
        return web.json_response(body, headers={"x-request-id": f"req_fake{n:06d}"})

    async def _stream(
        self, request: web.Request, record: RecordedRequest, reply: Reply, body: dict[str, Any]
    ) -> web.StreamResponse:
        """The answer as Server-Sent Events, as OpenAI streams it: one ``chat.completion.chunk`` per
        piece, the finish reason, the usage chunk (``stream_options.include_usage``), ``[DONE]``."""
        content = body["choices"][0]["message"]["content"]
        pieces = reply.chunks if reply.chunks is not None else [w + " " for w in content.split(" ")]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {k: body[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"

        async def send(choices: list[Any], usage: Any = None) -> None:
            event = {**base, "choices": choices, **({"usage": usage} if usage is not None else {})}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())

        record.outcome = "stream"
        for index, piece in enumerate(pieces):
            if reply.cut_after is not None and index >= reply.cut_after:
                record.outcome = "cut"
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError  # aiohttp drops the handler quietly
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            await send([{"index": 0, "delta": delta, "finish_reason": None}])
            if reply.chunk_delay:
                await self._sleep(reply.chunk_delay)
        await send([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
        if ((record.body or {}).get("stream_options") or {}).get("include_usage"):
            await send([], body["usage"])
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _images(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        item = self._next("images")
        if isinstance(item, Fault):
            return await self._fault(request, record, item)
        reply = item if isinstance(item, ImageReply) else ImageReply()
        await self._sleep(reply.delay if reply.delay is not None else self.latency_ms / 1000)
        record.outcome = "reply"
        body_in = record.body or {}
        count = reply.count if item is not None else int(body_in.get("n") or 1)
        data = []
        for i in range(count):
            png = reply.png if reply.png is not None else tiny_png(4 + i, 3)
            entry: dict[str, Any] = {"revised_prompt": reply.revised_prompt}
            if reply.b64:
                entry["b64_json"] = base64.b64encode(png).decode()
            elif reply.url is not None:
                entry["url"] = reply.url
            else:
                with self._lock:
                    self._counter += 1
                    name = f"img{self._counter:06d}.png"
                    self._files[name] = png
                entry["url"] = f"http://127.0.0.1:{self.port}/files/{name}"
            data.append(entry)
        body: dict[str, Any] = {"created": int(time.time()), "data": data}
        if reply.usage is not None:
            body["usage"] = {
                "input_tokens": reply.usage[0],
                "output_tokens": reply.usage[1],
                "total_tokens": sum(reply.usage),
            }
        return web.json_response(body)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        data = self._files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404, text="no such file")
        return web.Response(body=data, content_type="image/png")

    # -- control endpoints (for a server in another process) --------------------------------------
    async def _ctl_requests(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            data = [asdict(r) for r in self.requests]
        return web.json_response(data)

    async def _ctl_script(self, request: web.Request) -> web.StreamResponse:
        self.script(*[_from_spec(s) for s in await request.json()])
        return web.json_response({"pending": self.pending()})

    async def _ctl_fail(self, request: web.Request) -> web.StreamResponse:
        spec = await request.json()
        fault = _from_spec(spec["fault"])
        assert isinstance(fault, Fault)
        self.fail_next(fault, spec.get("times", 1), endpoint=spec.get("endpoint", "chat"))
        return web.json_response({"pending": self.pending()})

    async def _ctl_answers(self, request: web.Request) -> web.StreamResponse:
        for rule in await request.json():
            reply = _from_spec(rule["reply"])
            assert isinstance(reply, Reply | Fault)
            self.answer(rule["contains"], reply)
        return web.json_response({"answers": len(self._answers)})

    async def _ctl_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"ok": True})

    async def _ctl_release(self, request: web.Request) -> web.StreamResponse:
        self.release()
        return web.json_response({"ok": True})

    async def _ctl_config(self, request: web.Request) -> web.StreamResponse:
        config = await request.json()
        if "latency_ms" in config:
            self.latency_ms = float(config["latency_ms"])
        if "reject_json_schema" in config:
            self.reject_json_schema = bool(config["reject_json_schema"])
        if "reject_json_schema_500" in config:
            self.reject_json_schema_500 = bool(config["reject_json_schema_500"])
        return web.json_response(
            {"latency_ms": self.latency_ms, "reject_json_schema": self.reject_json_schema}
        )


_SCHEMA_REJECTION = "response_format.type 'json_schema' is not supported by this server"
_SCHEMA_500 = "Input should be 'text' or 'json_object'"


async def _drip_or_empty(request: web.Request, record: RecordedRequest, fault: Fault) -> web.StreamResponse:
    """``Fault.drip``: a valid answer sent one byte at a time; ``Fault.empty``: a 200 without text."""
    message: dict[str, Any] = {"role": "assistant", "content": "dripped" if fault.kind == "drip" else None}
    choices = [{"index": 0, "message": message, "finish_reason": "stop"}]
    body = {
        "id": "chatcmpl-odd",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": (record.body or {}).get("model", "fake-model"),
        "choices": [] if fault.message == "none" else choices,
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    record.outcome = fault.kind
    if fault.kind == "empty":
        return web.json_response(body)
    data = json.dumps(body).encode()
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = len(data)
    await response.prepare(request)
    for i in range(len(data)):
        await response.write(data[i : i + 1])
        await asyncio.sleep(fault.seconds)
    await response.write_eof()
    return response


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


class RemoteFakeOpenAI:
    """The same test-facing API for a server started with ``python -m tests.fake_openai_server``."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self._root = self.base_url.removesuffix("/v1")

    def _post(self, path: str, payload: Any) -> Any:
        import httpx

        response = httpx.post(f"{self._root}{path}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json()

    def script(self, *items: Scripted) -> RemoteFakeOpenAI:
        self._post("/_fake/script", [_to_spec(i) for i in items])
        return self

    def fail_next(
        self, fault: Fault | int | str, times: int = 1, *, endpoint: str = "chat", **options: Any
    ) -> RemoteFakeOpenAI:
        if isinstance(fault, int):
            fault = Fault.status(fault, **options)
        elif isinstance(fault, str):
            fault = getattr(Fault, fault)(**options)
        self._post("/_fake/fail", {"fault": _to_spec(fault), "times": times, "endpoint": endpoint})
        return self

    def answer(self, contains: str, reply: Reply | Fault) -> RemoteFakeOpenAI:
        self._post("/_fake/answers", [{"contains": contains, "reply": _to_spec(reply)}])
        return self

    def configure(self, **config: Any) -> Any:
        return self._post("/_fake/config", config)

    def reset(self) -> None:
        self._post("/_fake/reset", {})

    def release(self) -> None:
        self._post("/_fake/release", {})

    @property
    def requests(self) -> list[RecordedRequest]:
        import httpx

        response = httpx.get(f"{self._root}/_fake/requests", timeout=10)
        response.raise_for_status()
        return [RecordedRequest(**r) for r in response.json()]

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("chat/completions")]

    @property
    def image_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("images/generations")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- pytest fixtures (this module is a pytest plugin: see tests/conftest.py) ---------------------
@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake server, with an empty script and request log for this test."""
    _fake_openai_server.reset()
    yield _fake_openai_server
    _fake_openai_server.reset()


def use_fake_openai(base_url: str, tmp_path: Any, **settings: Any) -> Any:
    """Reconfigure the engine to reach ``base_url`` with the test key, fast retries, small timeouts."""
    from flow_engine import configure

    options: dict[str, Any] = {
        "database_url": "memory://",
        "data_dir": tmp_path / "data",
        "api_base": base_url,
        "api_key": API_KEY,
        "max_retries": 2,
        "retry_initial_delay": 0.01,
        "retry_max_delay": 0.05,
        "request_timeout": 5.0,
    }
    options.update(settings)
    return configure(**options)


def run_flow_cli(base_url: str, tmp_path: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``flow ARGS`` in a subprocess that reaches ``base_url`` with the test key, on a SQLite file
    in ``tmp_path`` and no other FLOW_ENGINE_* from this environment; ``env`` adds variables."""
    from tests.cli.conftest import flow_command

    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
    clean.update(
        FLOW_ENGINE_API_BASE=base_url,
        FLOW_ENGINE_API_KEY=API_KEY,
        FLOW_ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'runs.db'}",
        FLOW_ENGINE_DATA_DIR=str(tmp_path),
    )
    clean.update(env)
    return subprocess.run(
        [*flow_command(), *args], capture_output=True, text=True, env=clean, cwd=tmp_path, timeout=120
    )


_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", None}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection to a host other than 127.0.0.1 (a test must never reach a real provider)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address and address[0] not in _LOCAL_HOSTS:
            raise OSError(f"network access blocked in tests: {address!r}")

    def connect(self: socket.socket, address: Any) -> Any:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in _LOCAL_HOSTS and host not in (b"127.0.0.1", b"localhost"):
            raise socket.gaierror(f"network access blocked in tests: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def refused_base_url() -> str:
    """An ``/v1`` base URL on 127.0.0.1 where nothing listens: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


def start_subprocess(*args: str, latency_ms: float = 0.0, cwd: Any = None) -> tuple[Any, RemoteFakeOpenAI]:
    """``python -m tests.fake_openai_server`` in its own process; returns (Popen, RemoteFakeOpenAI)."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai_server", "--latency-ms", str(latency_ms), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd or root,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(
            f"the fake server did not start: {line!r} {process.stderr.read() if process.stderr else ''}"
        )
    return process, RemoteFakeOpenAI(line.split()[1])


@pytest.fixture
def fake_openai_process() -> Iterator[RemoteFakeOpenAI]:
    """The fake server in a separate process (``.process`` is its Popen), for tests of subprocesses."""
    process, remote = start_subprocess()
    remote.process = process  # type: ignore[attr-defined]
    yield remote
    process.terminate()
    try:
        process.wait(5)
    except Exception:  # pragma: no cover
        process.kill()


# -- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server for flow-engine tests.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every successful reply")
    parser.add_argument(
        "--reject-json-schema", action="store_true", help="answer json_schema requests with 400"
    )
    args = parser.parse_args(argv)
    server = FakeOpenAI(port=args.port, latency_ms=args.latency_ms)
    server.reject_json_schema = server._defaults["reject_json_schema"] = args.reject_json_schema
    server.start()
    print(f"READY {server.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
