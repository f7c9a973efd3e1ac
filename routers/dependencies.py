"""Typed dependencies shared by the routers."""

from functools import cache
from typing import Annotated, TypeVar, get_origin

import asyncpg
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

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
    (for routes that parse it with `query_model`)."""
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
