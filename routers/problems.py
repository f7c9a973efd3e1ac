"""One error shape for every 4xx/5xx: RFC 9457 application/problem+json."""

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from database.pool import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, DatabaseUnavailable
from schemas import EVENT_TYPES, Problem, ProblemFieldError

logger = logging.getLogger(__name__)
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://docs.recommendation-service.local/problems/"


class ProblemError(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        problem_type: str | None = None,
        errors: list[ProblemFieldError] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.problem_type = problem_type
        self.errors = errors


def problem_response(
    request: Request,
    status: int,
    detail: str | None,
    *,
    problem_type: str | None = None,
    errors: list[ProblemFieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    problem = Problem(
        type=PROBLEM_TYPE_BASE + problem_type if problem_type else "about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def field_path(loc: tuple | list) -> str:
    return ".".join(str(part) for part in loc)


def _field_of(error: dict) -> str:
    # An event is a union told apart by event_type: pydantic puts the tag in the path
    # (body.product_click.product_id); clients know the field as body.product_id.
    loc = [part for part in error["loc"] if part not in EVENT_TYPES]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("event_type")
    return field_path(loc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # A body that is not JSON at all is a malformed request (400), not a field to correct.
    invalid_json = [e for e in exc.errors() if e["type"] == "json_invalid"]
    if invalid_json:
        error = invalid_json[0]
        where = error["loc"][-1] if len(error["loc"]) > 1 else "?"
        reason = (error.get("ctx") or {}).get("error", error["msg"])
        return problem_response(
            request,
            400,
            f"The body is not valid JSON: {reason} (at character {where})",
            problem_type="invalid-json",
        )
    errors = [
        ProblemFieldError(field=_field_of(error), message=error["msg"], type=error["type"])
        for error in exc.errors()
    ]
    fields = ", ".join(sorted({error.field for error in errors}))
    return problem_response(
        request, 422, f"Invalid request: {fields}", problem_type="validation-error", errors=errors
    )


async def _problem_error(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(
        request, exc.status, exc.detail, problem_type=exc.problem_type, errors=exc.errors
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem_response(request, exc.status_code, str(exc.detail), headers=exc.headers)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Nothing was stored: every write is one transaction, rolled back with the connection.
    logger.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
    return problem_response(
        request,
        503,
        "The database is unavailable; nothing was stored. Retry later with the same event_id.",
        problem_type="database-unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, "An unexpected error occurred.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in (DatabaseUnavailable, *DATABASE_UNAVAILABLE):
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)


# Error statuses every operation of a kind can answer, beyond those its route declares.
_BODY_ERRORS = {"400": "Body is not valid JSON", "413": "Body larger than the limit"}
_DATABASE_ERRORS = {"503": "Database unavailable (writes: nothing stored; see Retry-After)"}


def document_problems(schema: dict) -> dict:
    """The OpenAPI document as the service answers: every 4xx/5xx is application/problem+json
    (a Problem), and operations list the statuses they can give (400 and 413 with a body, 422
    with parameters or a body, 503 where the database is written)."""
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            extra: dict[str, str] = {}
            if "requestBody" in operation:
                extra |= _BODY_ERRORS | {"422": "Invalid request"}
            if operation.get("parameters"):
                extra |= {"422": "Invalid request"}
            if method == "post" and path.startswith("/interactions"):
                extra |= _DATABASE_ERRORS
            for status, description in extra.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and path != "/ready":
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem}}
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return schema


def install_problem_docs(app: FastAPI) -> None:
    """Serve the OpenAPI document through `document_problems` (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi
