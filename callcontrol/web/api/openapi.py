"""``/openapi.json`` built from the route table and the pydantic models, and ``/docs``.

Nothing here is written by hand per operation: each ``Route`` row gives the
method, path, parameters, body, answer and the error statuses it can give, so
the spec describes exactly what ``add_api_routes`` serves. OpenAPI 3.1, whose
schemas are JSON Schema 2020-12 as pydantic writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from callcontrol.web.api.endpoint import MAX_ID, Route
from callcontrol.web.api.schemas import ErrorBody

REF = "#/components/schemas/{model}"
UPLOAD_TYPES = ("audio/wav", "application/octet-stream")
_DID_PATTERN = r"^\+?[0-9]{6,15}$"
_ERROR_TEXT = {
    400: "malformed request (e.g. the body is not JSON)",
    401: "no or invalid API token",
    403: "the caller's role may not do this",
    404: "no such object (or it belongs to another account)",
    409: "refused in the object's current state",
    413: "the body is too large",
    415: "wrong Content-Type",
    422: "a value is not valid; details name each one",
}


def _models(routes: Sequence[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for route in routes:
        for model, mode in ((route.body, "validation"), (route.query, "validation")):
            if model is not None:
                wanted.append((model, mode))  # type: ignore[arg-type]
        if route.response is not None:
            wanted.append((route.response, "serialization"))
    return list(dict.fromkeys(wanted))


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if options is None:
        return schema
    kept = [s for s in options if s.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def _query_parameters(model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = defs[model.__name__]
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _non_null(prop),
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema["properties"].items()
    ]


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    params = []
    for name in route.path_params:
        if name == "did":
            schema: dict[str, Any] = {"type": "string", "pattern": _DID_PATTERN}
            text = "the number in E.164, e.g. +4930123456 (the + may be left out)"
        else:
            schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
            text = f"the {name.removesuffix('_id').replace('_', ' ')}'s id"
        params.append(
            {"name": name, "in": "path", "required": True, "schema": schema, "description": text}
        )
    return params


def _error_statuses(route: Route) -> list[int]:
    statuses = {401, *route.errors}
    if route.path_params:
        statuses.add(404)
    if route.operator_only:
        statuses.add(403)
    if route.body is not None:
        statuses |= {400, 413, 415, 422}
    if route.upload:
        statuses |= {413, 415, 422}
    if route.query is not None or "did" in route.path_params:
        statuses.add(422)
    return sorted(statuses)


def _success(route: Route, keys: dict[Any, Any]) -> dict[str, Any]:
    if route.status == 204:
        return {"description": "done"}
    if route.response is not None:
        schema = keys[(route.response, "serialization")]
    elif route.media_type in ("audio/wav", "application/octet-stream"):
        schema = {"type": "string", "format": "binary"}
    else:
        schema = {"type": "string"}
    return {"description": "success", "content": {route.media_type: {"schema": schema}}}


def _request_body(route: Route, keys: dict[Any, Any]) -> dict[str, Any] | None:
    if route.upload:
        binary = {"schema": {"type": "string", "format": "binary"}}
        kinds = route.upload_types or UPLOAD_TYPES
        return {"required": True, "content": {kind: binary for kind in kinds}}
    if route.body is None:
        return None
    schema = keys[(route.body, "validation")]
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _operation(route: Route, keys: dict[Any, Any], defs: dict[str, Any]) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}}
    responses: dict[str, Any] = {str(route.status): _success(route, keys)}
    for status in _error_statuses(route):
        responses[str(status)] = {"description": _ERROR_TEXT.get(status, "error"), **error}
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": _path_parameters(route)
        + (_query_parameters(route.query, defs) if route.query else []),
        "responses": responses,
    }
    if route.operator_only:
        operation["description"] = "Operator only."
    body = _request_body(route, keys)
    if body is not None:
        operation["requestBody"] = body
    return operation


def build_spec(routes: Sequence[Route]) -> dict[str, Any]:
    keys, top = models_json_schema(_models(routes), ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, keys, defs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callcontrol API",
            "version": "1",
            "description": "Numbers, forwarding, greetings, voicemail, SIP accounts, "
            "statistics and privacy of a virtual-number service. Every error is "
            '{"error", "message", "details"}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def add_spec_routes(app: web.Application, routes: Sequence[Route]) -> None:
    spec = build_spec(routes)
    page = files("callcontrol.web.api").joinpath("docs.html").read_text(encoding="utf-8")

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(spec)

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
