"""The Starlette app: pages, the JSON API under ``/api/``, live updates and actions.

``create_app()`` serves the engine's store (``flow_engine.configure()`` / ``FLOW_ENGINE_DATABASE_URL``).
Page handlers are plain functions: Starlette runs them in a worker thread, so synchronous store reads
never block the event loop that streams live updates.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flow_engine import __version__
from flow_engine.errors import NotFoundError, RunTaken
from flow_engine.plugin import (
    ConfigurationError,
    FlowEngineError,
    InputValidationError,
    RunStatus,
    RunStore,
    UsageError,
    redact_url,
)
from flow_engine.storage import utcnow

from . import format as fmt
from . import live, pages
from .actions import Actions
from .security import Guard, new_csrf_token, same

HERE = Path(__file__).parent
NOTICES = {  # notices a redirect may name (never text taken from the address)
    "cancel-requested": "Cancel requested: the run stops at its next step boundary.",
    "cancelled": "Run cancelled.",
    "resuming": "Resuming: the run goes on from its first unfinished step.",
    "answered": "Answered: the run goes on from its wait.",
    "handed-back": "Answered: the run went back to its executor's workers, which continue it.",
}
MAX_FORM_BYTES = {"cancel": 10_000, "resume": 10_000, "respond": 1_000_000}


class Viewer:
    """State shared by the routes: the store, the templates, the settings of this server."""

    def __init__(
        self,
        store: RunStore,
        *,
        read_only: bool,
        stale_after: float,
        poll_interval: float,
        database: str,
    ):
        self.store = store
        self.read_only = read_only
        self.stale_after = stale_after
        self.poll_interval = poll_interval
        self.database = redact_url(database) or ""
        self.csrf = new_csrf_token()
        self._flow_names: list[str] | None = None
        self.actions = Actions()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"], default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(fmt.FILTERS)
        self.templates.globals.update(
            version=__version__, database=self.database, read_only=read_only, csrf=self.csrf
        )

    def flow_names(self) -> list[str]:
        """The registered flows' names, for the filter's suggestions: read once (scanning the installed
        packages' entry points takes longer than the rest of the page)."""
        if self._flow_names is None:
            from flow_engine.flow_registry import registered_names

            self._flow_names = registered_names()
        return self._flow_names

    def stale_before(self) -> datetime:
        return utcnow() - timedelta(seconds=self.stale_after)

    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(name).render(**context), status_code=status_code)

    def error(self, request: Request, exc: Exception) -> Response:
        code = 404 if isinstance(exc, NotFoundError) else 400
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=code)
        return self.render("error.html", code, message=str(exc), code=code)


def _viewer(request: Request) -> Viewer:
    viewer: Viewer = request.app.state.viewer
    return viewer


# -- pages --------------------------------------------------------------------------------------
def home(request: Request) -> Response:
    return RedirectResponse("/runs", status_code=302)


def runs_page(request: Request) -> Response:
    viewer = _viewer(request)
    try:
        query = pages.parse_query(request.query_params, viewer.stale_before())
    except UsageError as exc:
        form = {k: request.query_params.get(k, "") for k in ("flow", "status", "user", "from", "to")}
        form["limit"] = str(pages.DEFAULT_PAGE_SIZE)
        return viewer.render("runs.html", 400, rows=[], form=form, error=str(exc), **_runs_context(request))
    rows, more = pages.list_page(viewer.store, query)
    return viewer.render(
        "runs.html",
        rows=rows,
        form=query.form,
        error=None,
        offset=query.offset,
        limit=query.limit,
        older=_page_link(request, query.offset + query.limit) if more else None,
        newer=_page_link(request, max(0, query.offset - query.limit)) if query.offset else None,
        totals_url="/api/runs/totals" + (f"?{request.url.query}" if request.url.query else ""),
        **_runs_context(request),
    )


def _runs_context(request: Request) -> dict[str, Any]:
    return {
        "flow_names": _viewer(request).flow_names(),
        "statuses": [s.value for s in RunStatus],
        "page_sizes": pages.PAGE_SIZES,
        "nav": "runs",
    }


def _page_link(request: Request, offset: int) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
    if offset:
        params.append(("offset", str(offset)))
    return "/runs" + (f"?{urlencode(params)}" if params else "")


def search(request: Request) -> Response:
    """Go to a run by id or unique prefix (the box in the header)."""
    viewer = _viewer(request)
    text = request.query_params.get("q", "").strip()
    if not text:
        return RedirectResponse("/runs", status_code=302)
    try:
        run_id = viewer.store.resolve_run_id(text)
    except FlowEngineError as exc:
        return viewer.error(request, exc)
    return RedirectResponse(f"/runs/{run_id}", status_code=302)


def _run(viewer: Viewer, text: str) -> Any:
    return viewer.store.load_run(text)


def run_page(request: Request) -> Response:
    viewer = _viewer(request)
    text = request.path_params["run_id"]
    try:
        run = _run(viewer, text)
    except FlowEngineError as exc:
        return viewer.error(request, exc)
    if text != str(run.id):  # a prefix: show the run at its full address
        return RedirectResponse(f"/runs/{run.id}", status_code=302)
    view = pages.run_view(viewer.store, run, viewer.stale_before())
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return viewer.render("run.html", view=view, notice=notice, problem=None, nav="runs")


def step_page(request: Request) -> Response:
    viewer = _viewer(request)
    try:
        run = _run(viewer, request.path_params["run_id"])
        step = pages.find_step(viewer.store, run, request.path_params["step_id"])
    except FlowEngineError as exc:
        return viewer.error(request, exc)
    requests = viewer.store.list_llm_requests(step_run_id=step.id)
    calls = pages.group_calls(requests, step)
    return viewer.render("step.html", run=run, step=step, calls=calls, nav="runs")


def call_page(request: Request) -> Response:
    """One LLM call made outside any step (steps show their calls on their own page)."""
    viewer = _viewer(request)
    try:
        run = _run(viewer, request.path_params["run_id"])
        call_id = uuid.UUID(request.path_params["call_id"])
    except (FlowEngineError, ValueError) as exc:
        return viewer.error(request, exc if isinstance(exc, FlowEngineError) else UsageError(str(exc)))
    requests = [r for r in viewer.store.list_llm_requests(flow_run_id=run.id) if r.call_id == call_id]
    if not requests:
        return viewer.error(request, NotFoundError(f"run {run.id} has no LLM call {call_id}"))
    return viewer.render("call.html", run=run, calls=pages.group_calls(requests, None), nav="runs")


def flows_page(request: Request) -> Response:
    viewer = _viewer(request)
    flows, failed = _flows()
    return viewer.render("flows.html", flows=flows, failed=failed, nav="flows")


def _flows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The registered flows as ``flow list --json`` describes them, plus their input JSON schema."""
    from dataclasses import asdict

    from flow_engine.flow_registry import describe_inputs, flow_description, load_all

    flows, failed = [], []
    for entry in load_all():
        if entry.flow_class is None:
            failed.append({"name": entry.name, "target": entry.target, "error": entry.error})
            continue
        cls = entry.flow_class
        inputs_model = getattr(cls, "Inputs", None)
        flows.append(
            {
                "name": entry.name,
                "target": entry.target,
                "distribution": entry.distribution,
                "version": entry.version,
                "flow_name": cls.flow_name,
                "description": flow_description(cls),
                "total_steps": cls.total_steps,
                "inputs": [asdict(info) for info in describe_inputs(cls)],
                "input_schema": inputs_model.model_json_schema() if inputs_model is not None else None,
            }
        )
    return flows, failed


# -- live ---------------------------------------------------------------------------------------
async def run_events(request: Request) -> Response:
    viewer = _viewer(request)
    try:
        run_id = uuid.UUID(request.path_params["run_id"])
    except ValueError:
        return viewer.error(request, UsageError("not a run id"))
    template = viewer.templates.get_template("_live.html")
    stream = live.run_events(
        viewer.store,
        run_id,
        lambda view: template.render(view=view),
        viewer.stale_before,
        interval=viewer.poll_interval,
    )
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


# -- actions ------------------------------------------------------------------------------------
async def action(request: Request) -> Response:
    viewer = _viewer(request)
    name = request.path_params["action"]
    if name not in MAX_FORM_BYTES:
        return viewer.render("error.html", 404, message="No such action.", code=404)
    if viewer.read_only:
        return viewer.render("error.html", 403, message="This viewer is read-only (--read-only).", code=403)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES[name]:
        message = f"The form is too large (over {MAX_FORM_BYTES[name]:,} bytes)."
        return viewer.render("error.html", 413, message=message, code=413)
    # the forms are urlencoded: parsed here rather than with python-multipart, one dependency less
    form = dict(parse_qsl(body.decode("utf-8", "replace")))
    if not same(form.get("csrf"), viewer.csrf):
        return viewer.render(
            "error.html", 403, message="Missing or wrong CSRF token; reload the page.", code=403
        )
    try:
        run_id = uuid.UUID(request.path_params["run_id"])
    except ValueError:
        return viewer.error(request, UsageError("not a run id"))
    values: dict[str, str] = {}
    if name == "cancel":
        outcome = await viewer.actions.cancel(run_id)
        notice = "cancel-requested" if outcome.message.startswith("Cancel requested") else "cancelled"
    elif name == "resume":
        outcome = await viewer.actions.resume(run_id)
        notice = "resuming"
    else:
        outcome, values = await _respond(viewer, run_id, form)
        notice = outcome.message
    if outcome.ok:
        return RedirectResponse(f"/runs/{run_id}?notice={notice}", status_code=303)

    def read() -> Any:  # the store's reads block: not on the event loop
        run = viewer.store.get_run(run_id)
        return run and pages.run_view(viewer.store, run, viewer.stale_before())

    view = await asyncio.to_thread(read)
    if view is None:
        return viewer.error(request, NotFoundError(outcome.message))
    return viewer.render(
        "run.html", 409, view=view, notice=None, problem=outcome.message, nav="runs", answer_values=values
    )


async def _respond(viewer: Viewer, run_id: uuid.UUID, form: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """Answer the wait the form names, with the form's fields read by the wait's schema; on refusal,
    the fields as typed, to show them again."""
    from .actions import Outcome

    typed = {key.removeprefix("f."): value for key, value in form.items() if key.startswith("f.")}

    def read() -> tuple[Any, Any]:
        run = viewer.store.get_run(run_id)
        return run, pages.wait_view(viewer.store, run) if run is not None else None

    run, wait = await asyncio.to_thread(read)
    if wait is None:
        status = run.status if run is not None else "not found"
        return Outcome(False, f"The run is not waiting for input (it is {status}); nothing to answer."), typed
    answer = pages.answer_from_form(wait.fields, form)
    return await viewer.actions.respond(run_id, form.get("wait") or wait.name, answer), typed


# -- JSON API -----------------------------------------------------------------------------------
def api_runs(request: Request) -> Response:
    viewer = _viewer(request)
    try:
        query = pages.parse_query(request.query_params, viewer.stale_before())
    except UsageError as exc:
        return viewer.error(request, exc)
    runs = viewer.store.find_runs(query.where, limit=query.limit, offset=query.offset)
    before = query.where.stale_before
    assert before is not None
    return JSONResponse([pages.run_json(run, before) for run in runs])


def api_totals(request: Request) -> Response:
    viewer = _viewer(request)
    try:
        query = pages.parse_query(request.query_params, viewer.stale_before())
    except UsageError as exc:
        return viewer.error(request, exc)
    return JSONResponse(pages.totals_json(viewer.store, query.where))


def api_run(request: Request) -> Response:
    viewer = _viewer(request)
    try:
        run = _run(viewer, request.path_params["run_id"])
    except FlowEngineError as exc:
        return viewer.error(request, exc)
    return JSONResponse(pages.tree_json(viewer.store, run, viewer.stale_before()))


async def api_answer(request: Request) -> Response:
    """``POST /api/runs/{id}/answer`` with ``{"name": ..., "answer": {...}}``: what the run page's form
    and ``flow respond`` do, for programs. Only ``application/json`` is taken: a browser sends that to
    another site only after asking it (CORS), which this server never allows, so a web page elsewhere
    cannot answer for the person whose browser it runs in."""
    from flow_engine.respond import not_waiting

    viewer = _viewer(request)
    if viewer.read_only:
        return JSONResponse({"error": "this viewer is read-only (--read-only)"}, status_code=403)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        return JSONResponse({"error": "send the answer as application/json"}, status_code=415)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES["respond"]:
        return JSONResponse({"error": f"over {MAX_FORM_BYTES['respond']:,} bytes"}, status_code=413)
    try:
        data = json.loads(body)
    except ValueError as exc:
        return JSONResponse({"error": f"the body is not JSON: {exc}"}, status_code=400)
    name = data.get("name") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("answer"), dict)
        or not isinstance(name, str | None)
    ):
        shape = 'the body is {"name": WAIT, "answer": {FIELD: VALUE, ...}} ("name" may be left out)'
        return JSONResponse({"error": shape}, status_code=400)
    try:
        run = await asyncio.to_thread(_run, viewer, request.path_params["run_id"])
    except NotFoundError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except UsageError as exc:  # not a run id, an ambiguous prefix: the request is wrong
        return JSONResponse({"error": str(exc)}, status_code=400)
    try:
        if name is None:  # the wait the run is at, itself or through a child run
            wait = await asyncio.to_thread(pages.wait_view, viewer.store, run)
            if wait is None:
                raise not_waiting(run)
            name = wait.name
        status = await viewer.actions.answer(run.id, name, data["answer"])
    except FlowEngineError as exc:
        return _answer_refused(exc)
    return JSONResponse({"run_id": str(run.id), "name": name, "status": status})


def _answer_refused(exc: FlowEngineError) -> Response:
    from flow_engine.plugin import ExecutorUnavailable
    from flow_engine.respond import AnswerRefused, WaitExpired

    found: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, InputValidationError):  # the run still waits; nothing was written
        found["problems"] = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors]
        return JSONResponse(found, status_code=400)
    if isinstance(exc, NotFoundError):
        return JSONResponse(found, status_code=404)
    if isinstance(exc, AnswerRefused | WaitExpired | RunTaken):  # the run's state, not the request
        return JSONResponse(found, status_code=409)
    if isinstance(exc, ExecutorUnavailable):  # answered; the run is failed, resumable
        return JSONResponse(found, status_code=503)
    if isinstance(exc, UsageError) and not isinstance(exc, ConfigurationError):
        return JSONResponse(found, status_code=409)  # the run cannot take it as it is (its code not found)
    return JSONResponse(found, status_code=500)  # the server's side: its configuration, its database


def api_flows(request: Request) -> Response:
    flows, failed = _flows()
    return JSONResponse({"flows": flows, "failed": failed})


def create_app(
    store: RunStore | None = None,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: set[str] | None = None,
    poll_interval: float = 1.0,
) -> Any:
    """The viewer as an ASGI app. ``store`` defaults to the engine's (the one actions act on)."""
    from flow_engine.plugin import get_engine

    engine = get_engine()
    store = store or engine.store
    viewer = Viewer(
        store,
        read_only=read_only,
        stale_after=engine.settings.stale_after,
        poll_interval=poll_interval,
        database=getattr(store, "url", ""),
    )

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        await viewer.actions.close()

    routes = [
        Route("/", home),
        Route("/runs", runs_page),
        Route("/search", search),
        Route("/flows", flows_page),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/events", run_events),
        Route("/runs/{run_id}/steps/{step_id}", step_page),
        Route("/runs/{run_id}/calls/{call_id}", call_page),
        Route("/runs/{run_id}/{action:str}", action, methods=["POST"]),
        Route("/api/runs", api_runs),
        Route("/api/runs/totals", api_totals),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/answer", api_answer, methods=["POST"]),
        Route("/api/flows", api_flows),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.viewer = viewer
    return Guard(app, token=token, allowed_hosts=allowed_hosts or set())
