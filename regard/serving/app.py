"""The attention explorer's web app: the REST API and the page that uses it.

>>> from regard import Translator
>>> from regard.serving import ServeSettings, create_app
>>> app = create_app({"att": Translator.load("runs/demo/model")}, ServeSettings())  # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import Receive

import regard
from regard.search.common import check_nbest
from regard.serving.batcher import Batcher, DeadlinePassed, QueueFull
from regard.serving.budget import STEP_WORK, attention_shape, check_budget, estimate
from regard.serving.errors import ApiError, install_error_handlers
from regard.serving.guards import BodyLimit, HostCheck
from regard.serving.parsing import StrictJsonRoute
from regard.serving.schemas import (
    ErrorBody, Health, Hypothesis, Limits, ModelInfo, ModelsResponse, Result, TranslateRequest, TranslateResponse,
)
from regard.serving.settings import ServeSettings
from regard.translator import Translation, Translator

STATIC = Path(__file__).parent / "static"
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                "auto_configure": False}
ERRORS = {status: {"model": ErrorBody} for status in (400, 404, 408, 413, 415, 422, 503)}


@dataclass(frozen=True)
class Plan:
    """A checked translate request: what the batcher should do."""

    model: str
    texts: list[str]
    beam: int
    nbest: int
    heads: bool = False
    work: tuple[int, ...] = ()  # per text, in subword steps (regard.serving.budget)
    steps: tuple[int, ...] = ()  # per text, the most decoding steps it may take


def check_request(req: TranslateRequest, models: dict[str, Translator], settings: ServeSettings) -> Plan:
    """Validate a request against the loaded models and limits; raise :class:`ApiError` if bad."""
    if (req.text is None) == (req.texts is None):
        raise ApiError(422, "give exactly one of 'text' (a string) or 'texts' (a list of strings)")
    texts = [req.text] if req.text is not None else req.texts
    if not texts:
        raise ApiError(422, "'texts' is empty: give at least one sentence")
    if len(texts) > settings.max_texts:
        raise ApiError(422, f"too many texts: {len(texts)} (the limit is {settings.max_texts} per request)")
    for i, text in enumerate(texts):
        where = "text" if req.text is not None else f"texts[{i}]"
        if not text.strip():
            raise ApiError(422, f"{where} is empty: type a sentence to translate")
        if len(text) > settings.max_chars:
            raise ApiError(422, f"{where} is {len(text)} characters long; the limit is {settings.max_chars}")
    name = req.model if req.model is not None else next(iter(models))
    if name not in models:
        raise ApiError(404, f"unknown model '{name}'; loaded: {', '.join(models)}")
    beam = req.beam if req.beam is not None else default_beam(models[name], settings)
    if not 1 <= beam <= settings.max_beam:
        raise ApiError(422, f"beam must be between 1 and {settings.max_beam}, got {beam}")
    try:
        check_nbest(req.nbest, beam)
    except ValueError as err:
        raise ApiError(422, str(err)) from None
    cost = estimate(models[name], texts, beam, req.nbest, req.heads, settings.max_call_work)
    check_budget(cost, settings)
    return Plan(name, list(texts), beam, req.nbest, req.heads, tuple(cost.work), tuple(cost.steps))


def default_beam(translator: Translator, settings: ServeSettings) -> int:
    return max(1, min(translator.cfg.search.beam, settings.max_beam))


def to_result(hyps: list[Translation]) -> Result:
    first = hyps[0]
    return Result(source=first.source, source_tokens=first.source_tokens, source_words=first.source_words,
                  hypotheses=[Hypothesis(text=h.text, score=h.score, tokens=h.tokens, target_words=h.target_words,
                                         attention=h.attention, word_attention=h.word_attention, **head_fields(h))
                              for h in hyps])


def head_fields(h: Translation) -> dict:
    """The per-layer/head fields when they were asked for: left unset otherwise, so that the
    response leaves them out (``response_model_exclude_unset``)."""
    if h.head_attention is None:
        return {}
    return {"head_attention": h.head_attention, "head_word_attention": h.head_word_attention}


def model_info(name: str, translator: Translator, default: bool, settings: ServeSettings) -> ModelInfo:
    cfg = translator.cfg.model
    layers, heads = attention_shape(translator)
    return ModelInfo(name=name, default=default, attention=cfg.attention_kind, has_attention=translator.has_attention,
                     rnn=cfg.rnn, arch=cfg.arch, layers=layers, heads=heads,
                     attention_layer=translator.model.attention_layer + 1, beam=default_beam(translator, settings),
                     parameters=sum(p.numel() for p in translator.model.parameters()))


def render(plan: Plan, translator: Translator, found: list[list[Translation]]) -> bytes:
    """The response body (run in a worker thread: a large one takes a while to build)."""
    response = TranslateResponse(model=plan.model, has_attention=translator.has_attention, beam=plan.beam,
                                 nbest=plan.nbest, results=[to_result(h) for h in found])
    return response.model_dump_json(exclude_unset=True).encode()


async def disconnected(receive: Receive) -> None:
    """Return once the client has gone (the body was read already: the next message says so)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def translate_within(batcher: Batcher, plan: Plan, receive: Receive, deadline: float,
                           deadline_s: float) -> list[list[Translation]]:
    """The plan's translations, unless the deadline passes or the client goes first: then its job is
    dropped (texts not yet computed never are) and the request answered 503."""
    work = asyncio.ensure_future(batcher.translate(plan.model, plan.texts, plan.beam, plan.nbest, plan.heads,
                                                   list(plan.work), list(plan.steps), deadline))
    work.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved, even when left
    gone = asyncio.ensure_future(disconnected(receive))
    try:
        done, _ = await asyncio.wait({work, gone}, timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, gone):
            task.cancel()  # a job still running is dropped (Batcher.translate cancels it)
    if work in done and not work.cancelled() and not isinstance(work.exception(), DeadlinePassed):
        return work.result()
    if gone in done:
        raise ApiError(503, "the client went away; its translations were dropped")
    raise ApiError(503, f"the deadline of {deadline_s:g} s passed before the translations were done; their "
                   "remaining work was dropped: send fewer or shorter texts, or try again when the server is "
                   "less busy", {"retry-after": str(math.ceil(deadline_s))})


def create_app(models: dict[str, Translator], settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``models`` (the first is the default) under ``settings``."""
    if not models:
        raise ValueError("create_app needs at least one model")
    settings = settings or ServeSettings()
    batcher = Batcher(models, wait_s=settings.batch_wait_ms / 1000, max_texts=settings.max_batch_texts,
                      call_work=settings.max_call_work, step_work=STEP_WORK, max_queue=settings.max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPIOffline(title="Regard attention explorer", version=regard.__version__, lifespan=lifespan,
                         telemetry=NO_TELEMETRY, description="Translate English to French and see what the "
                         "decoder looked at: subword- and word-level attention for every hypothesis.")
    app.router.route_class = StrictJsonRoute
    app.state.models = models
    app.state.settings = settings
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.read_timeout_s)
    app.add_middleware(HostCheck, hosts=settings.host_names)  # the outermost: before any body is read
    install_error_handlers(app)

    @app.post("/api/translate", response_model=TranslateResponse, responses=ERRORS, response_model_exclude_unset=True)
    async def translate(req: TranslateRequest, request: Request) -> Response:
        """Translate one text or a list of texts, with tokens, scores and attention."""
        deadline = time.monotonic() + settings.deadline_s
        plan = await asyncio.to_thread(check_request, req, models, settings)  # tokenises: off the event loop
        try:
            found = await translate_within(batcher, plan, request.receive, deadline, settings.deadline_s)
        except QueueFull:
            retry = {"retry-after": str(math.ceil(settings.deadline_s))}  # by then, all queued now is done or dropped
            raise ApiError(503, f"the server is busy: over {settings.max_queue} texts are waiting to be "
                           "translated; try again later", retry) from None
        body = await asyncio.to_thread(render, plan, models[plan.model], found)
        return Response(body, media_type="application/json")

    @app.get("/api/models", response_model=ModelsResponse)
    async def list_models() -> ModelsResponse:
        """The loaded models (the first is the default) and the request limits."""
        infos = [model_info(name, t, i == 0, settings) for i, (name, t) in enumerate(models.items())]
        return ModelsResponse(default=infos[0].name, models=infos, limits=Limits(
            **{name: getattr(settings, name) for name in Limits.model_fields}))

    @app.get("/api/health", response_model=Health)
    async def health() -> Health:
        """Liveness, and how much batching has happened (answered without waiting for the model)."""
        return Health(status="ok", models=list(models), queued=batcher.pending, requests=batcher.stats.requests,
                      batches=batcher.stats.batches)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
