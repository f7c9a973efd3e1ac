"""POST /interactions and /interactions/batch."""

from fastapi import APIRouter, Request, status

from routers.dependencies import RequestRoute
from routers.problems import ProblemError
from routers.responses import FastJSONResponse
from schemas import (
    InteractionBatchIn,
    InteractionBatchOut,
    InteractionIn,
    InteractionOut,
    Problem,
    ProblemFieldError,
)
from services.interactions import EventIdConflictError, UnknownProductsError, ingest_events
from services.variants import assign_variant

# The endpoints take the request and their checked body: see RequestRoute.
router = APIRouter(prefix="/interactions", tags=["interactions"], route_class=RequestRoute)
PROBLEM_RESPONSES = {
    409: {"model": Problem, "description": "An event_id already stored for another event"},
    422: {"model": Problem, "description": "Invalid event"},
}


def _reused_ids_problem(exc: EventIdConflictError) -> ProblemError:
    return ProblemError(
        409,
        f"event_id already stored for another event: {', '.join(exc.event_ids[:5])}; a retry "
        "must send the same event, a new event needs a new event_id",
        problem_type="event-id-reused",
    )


def _unknown_products_problem(exc: UnknownProductsError, *, field_prefix: str) -> ProblemError:
    errors = [
        ProblemFieldError(
            field=field_prefix.format(position=position),
            message=f"unknown product id {product_id!r}",
            type="unknown_product",
        )
        for position, product_id in exc.unknown
    ]
    return ProblemError(
        422, "product_id not found in the catalog", problem_type="unknown-product", errors=errors
    )


def _variant_of(request: Request):
    variants, salt = request.app.state.variants, request.app.state.settings.ab_salt
    return lambda user_id: assign_variant(user_id, variants, salt).name


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=InteractionOut,
    responses={200: {"description": "Retry of an event_id already stored"}, **PROBLEM_RESPONSES},
    name="interactions:create",
)
async def create_interaction(request: Request, event: InteractionIn):
    """Store one interaction event in the user's table (created on first event)."""
    try:
        [stored] = await ingest_events(
            pool=request.app.state.pool,
            events=[event],
            variant_of=_variant_of(request),
            catalog=request.app.state.catalog,
            writer=request.app.state.event_writer,
        )
    except UnknownProductsError as exc:
        raise _unknown_products_problem(exc, field_prefix="body.product_id") from exc
    except EventIdConflictError as exc:
        raise _reused_ids_problem(exc) from exc
    # The stored event as it is (no second validation against InteractionOut), orjson-encoded:
    # this is the request a storefront sends for every click.
    return FastJSONResponse(
        stored.model_dump(mode="json"),
        status_code=status.HTTP_200_OK if stored.duplicate else status.HTTP_201_CREATED,
    )


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=InteractionBatchOut,
    responses=PROBLEM_RESPONSES,
    name="interactions:create_batch",
)
async def create_interactions_batch(request: Request, batch: InteractionBatchIn):
    """Store up to 1,000 events atomically: all are validated before any is stored."""
    try:
        events = await ingest_events(
            pool=request.app.state.pool,
            events=batch.events,
            variant_of=_variant_of(request),
            catalog=request.app.state.catalog,
            to_user_tables=request.app.state.event_writer.to_user_tables,
        )
    except UnknownProductsError as exc:
        raise _unknown_products_problem(
            exc, field_prefix="body.events.{position}.product_id"
        ) from exc
    except EventIdConflictError as exc:
        raise _reused_ids_problem(exc) from exc
    duplicates = sum(event.duplicate for event in events)
    out = InteractionBatchOut(stored=len(events) - duplicates, duplicates=duplicates, events=events)
    return FastJSONResponse(out.model_dump(mode="json"), status_code=status.HTTP_201_CREATED)
