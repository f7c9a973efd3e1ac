"""How the routers get their inputs: the pool dependency, and the query, path and body parsing
of the hot routes (`parse_query`, `RequestRoute`), which skip FastAPI's per-request dependency
resolution with the same rules and 422s."""

import email.message
import json
from collections.abc import Awaitable, Callable
from functools import cache, lru_cache
from typing import Annotated, Any, TypeVar, get_origin

import asyncpg
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined as Undefined
from starlette.exceptions import HTTPException

Model = TypeVar("Model", bound=BaseModel)


async def get_pool(request: Request) -> asyncpg.Pool:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    return request.app.state.pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]


def parse_query(request: Request, model: type[Model]) -> Model:
    """The query string validated against `model` in one pydantic call, with the same rules and
    422 as `Annotated[model, Query()]`, called by the route itself: FastAPI's own parsing of a
    query model inspects every field's annotation on every request (a quarter of a light
    request's CPU), and resolving even a one-call dependency costs about as much as the call.
    Document the parameters with `openapi_extra=query_parameters(model)`."""
    params = request.query_params
    lists = _list_fields(model)
    data = {key: params.getlist(key) if key in lists else params[key] for key in params}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [error | {"loc": ("query", *error["loc"])} for error in errors]
        ) from None


@cache
def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` a repeated parameter fills as a list."""
    return frozenset(
        name for name, field in model.model_fields.items() if get_origin(field.annotation) is list
    )


def query_parameters(model: type[BaseModel]) -> dict:
    """The OpenAPI query parameters of `model`, as FastAPI documents `Annotated[model, Query()]`
    (for routes that parse it with `parse_query`)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        parameter["schema"] = field_schema
        parameters.append(parameter)
    return {"parameters": parameters}


class RequestRoute(APIRoute):
    """A route whose endpoint takes the request, its path parameters and its JSON body (both
    checked here, with FastAPI's rules and 422s) and returns a Response: called directly,
    without FastAPI's per-request dependency resolution, which costs as much as a light
    endpoint itself. The endpoint parses its query with `parse_query` (so a request with a bad
    path parameter and a bad query gets the path's 422 alone); the OpenAPI document is built
    from its signature as usual."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint
        path = {field.name: _adapter(field.field_info) for field in self.dependant.path_params}
        if len(self.dependant.body_params) > 1:
            raise TypeError(f"{self.path}: RequestRoute takes one body parameter at most")
        body = [(field.name, _adapter(field.field_info)) for field in self.dependant.body_params]

        async def handler(request: Request) -> Response:
            values, errors = {}, []
            for name, adapter in path.items():  # every path parameter's errors together
                values[name], found = _validate(adapter, request.path_params[name], ("path", name))
                errors += found
            if errors:
                raise RequestValidationError(errors)
            for name, adapter in body:
                raw = await _json_body(request)
                values[name], errors = _validate(adapter, raw, ("body",))
                if errors:
                    raise RequestValidationError(errors, body=None if raw is Undefined else raw)
            return await endpoint(request, **values)

        return handler


def _adapter(field_info: FieldInfo) -> TypeAdapter:
    """Validates a parameter as FastAPI does: its type with its Path(...) or Body constraints."""
    return TypeAdapter(Annotated[field_info.annotation, field_info])


async def _json_body(request: Request) -> Any:
    """The body as FastAPI reads it for a JSON body parameter: parsed when its content type is
    JSON (a 422 when it is not valid JSON), the bytes as they are under another content type or
    none, Undefined when empty."""
    raw = await request.body()
    if not raw:
        return Undefined
    if not _is_json(request.headers.get("content-type", "")):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error], body=exc.doc) from exc
    except ValueError as exc:  # not UTF-8
        raise HTTPException(400, "There was an error parsing the body") from exc


def _validate(adapter: TypeAdapter, value: Any, loc: tuple) -> tuple[Any, list[dict]]:
    """(the value validated, []) or (None, the errors, each at `loc` then its own place); a
    value that is Undefined (no body) is missing."""
    if value is Undefined:
        return None, [{"type": "missing", "loc": loc, "msg": "Field required", "input": None}]
    try:
        return adapter.validate_python(value), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        return None, [error | {"loc": (*loc, *error["loc"])} for error in errors]


@lru_cache(maxsize=64)  # a client names any content type: bounded
def _is_json(content_type: str) -> bool:
    """application/json or application/*+json, as FastAPI decides (no content type: not JSON)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
