"""The route table and the one wrapper every API handler runs in.

A ``Route`` says everything about an operation: method, path, who may call it,
the pydantic models of its query, body and answer. ``add_api_routes`` registers
handlers from these rows and ``openapi.py`` builds the spec from the same rows,
so the documentation cannot drift from what is served.

The wrapper authenticates, checks the path values (ids are positive 32-bit
integers, else 404; a DID must parse, else 422), refuses a customer an
operator-only operation (403 on its own objects, 404 on what it may not see,
so the answer tells it nothing of other accounts), validates the query and the
JSON body strictly (unknown fields refused, no type coercion), and serialises
the answer model. Handlers see an ``ApiCall`` and never parse anything.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.domain.callerid import parse_did
from callcontrol.domain.destinations import DestinationPolicy
from callcontrol.domain.errors import InvalidInput
from callcontrol.keys import SESSIONS, SETTINGS
from callcontrol.services import end_user_documents
from callcontrol.services.numbers import NumberService
from callcontrol.settings import MediaSettings, Settings
from callcontrol.web.api import lookup
from callcontrol.web.api.auth import Caller, authenticate
from callcontrol.web.api.config import (
    API_SETTINGS,
    DESTINATION_POLICY,
    NUMBER_SERVICE,
    PROVISIONER,
    ApiSettings,
    SipAccountProvisioner,
)
from callcontrol.web.api.errors import (
    ApiError,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    invalid,
    validation_details,
)

MAX_ID = 2**31 - 1
M = TypeVar("M", bound=BaseModel)
Reply = BaseModel | web.StreamResponse | None
Handler = Callable[["ApiCall"], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI form: /api/v1/accounts/{account_id}
    handler: Handler
    summary: str
    tag: str
    operator_only: bool = False
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    media_type: str = "application/json"  # of the answer
    upload: bool = False  # body is raw bytes (audio/wav unless upload_types says)
    upload_types: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    max_body_bytes: int | None = None  # the JSON body's bound; None: ApiSettings.max_json_bytes

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@dataclass(frozen=True)
class ApiCall:
    request: web.Request
    caller: Caller
    path: Mapping[str, int | str]
    query: BaseModel | None
    body: BaseModel | None

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.request.app[SESSIONS]

    @property
    def media(self) -> MediaSettings:
        return self.request.app[SETTINGS].media

    @property
    def api(self) -> ApiSettings:
        return self.request.app[API_SETTINGS]

    @property
    def numbers(self) -> NumberService:
        return self.request.app[NUMBER_SERVICE]

    @property
    def destinations(self) -> DestinationPolicy:
        return self.request.app[DESTINATION_POLICY]

    @property
    def settings(self) -> Settings:
        return self.request.app[SETTINGS]

    @property
    def provisioner(self) -> SipAccountProvisioner:
        return self.request.app[PROVISIONER]

    def id(self, name: str) -> int:
        value = self.path[name]
        assert isinstance(value, int)
        return value

    def did(self) -> str:
        return str(self.path["did"])

    def body_as(self, model: type[M]) -> M:
        assert isinstance(self.body, model)
        return self.body

    def query_as(self, model: type[M]) -> M:
        assert isinstance(self.query, model)
        return self.query


def _path_values(request: web.Request, names: list[str]) -> dict[str, int | str]:
    values: dict[str, int | str] = {}
    for name in names:
        raw = request.match_info[name]
        if name == "did":
            try:
                values[name] = parse_did(raw).e164
            except InvalidInput as exc:
                raise invalid("path.did", str(exc)) from None
            continue
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
            raise NotFound(f"{name.removesuffix('_id').replace('_', ' ')} {raw!r} not found")
        values[name] = int(raw)
    return values


def _query(request: web.Request, model: type[BaseModel] | None) -> BaseModel | None:
    if model is None:
        return None
    if len(set(request.query.keys())) != len(request.query):
        raise invalid("query", "each query parameter may be given once")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        details = validation_details(exc, "query")
        raise Unprocessable("the query parameters are not valid", details) from None


async def read_bounded(request: web.Request, limit: int, what: str) -> bytes:
    """The body, reading at most ``limit + 1`` bytes; 413 if it is longer."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"{what} is {request.content_length} bytes; at most {limit}")
    data = await request.content.read(limit + 1)
    while len(data) <= limit and not request.content.at_eof():
        chunk = await request.content.read(limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} is more than {limit} bytes; at most {limit}")
    return data


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _refuse_duplicate_keys(raw: bytes) -> None:
    """A key given twice is refused: parsers disagree on which one wins, so a proxy
    that checked the first and a handler that used the last could be played off."""
    try:
        json.loads(raw or b"null", object_pairs_hook=_pairs)
    except _DuplicateKey as exc:
        raise invalid("body", f"duplicate key {exc.key!r} in the JSON body") from None
    except ValueError:
        return  # not JSON at all: the model's parse says so


async def _body(request: web.Request, route: Route, limit: int) -> BaseModel | None:
    if route.body is None:
        return None
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    raw = await read_bounded(request, limit, "the JSON body")
    _refuse_duplicate_keys(raw)
    try:
        return route.body.model_validate_json(raw or b"null", strict=True)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ApiError("the body is not valid JSON") from None
        details = validation_details(exc, "body")
        raise Unprocessable("the body is not valid", details) from None


def _serialise(route: Route, reply: Reply) -> web.StreamResponse:
    if reply is None:
        return web.Response(status=204)
    if isinstance(reply, BaseModel):
        body = reply.model_dump_json(by_alias=True)
        return web.Response(text=body, status=route.status, content_type="application/json")
    return reply


async def _refuse_customer(
    request: web.Request, caller: Caller, path: Mapping[str, int | str]
) -> None:
    """A customer on an operator-only route: 404 for an object it may not see (as if it
    did not exist), else 403."""
    account_id = path.get("account_id")
    if isinstance(account_id, int):
        caller.scope(account_id)
    did = path.get("did")
    if isinstance(did, str):
        async with request.app[SESSIONS]() as session:
            await lookup.number(session, caller, did)
    document_id = path.get("number_document_id")
    if isinstance(document_id, int):
        await end_user_documents.visible(request.app[SESSIONS], document_id, caller.may_see)
    caller.require_operator()


def handler_for(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        caller = await authenticate(request, request.app[SESSIONS])
        path = _path_values(request, route.path_params)
        if route.operator_only and not caller.is_operator:
            await _refuse_customer(request, caller, path)
        query = _query(request, route.query)
        limit = route.max_body_bytes or request.app[API_SETTINGS].max_json_bytes
        body = await _body(request, route, limit)
        call = ApiCall(request=request, caller=caller, path=path, query=query, body=body)
        return _serialise(route, await route.handler(call))

    handle.__name__ = route.operation_id
    return handle
