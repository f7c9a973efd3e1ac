"""Request and response models. Every input validation rule of the API lives here."""

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from database.identifiers import USER_ID_REGEX

PRODUCT_ID_REGEX = r"^[A-Z0-9]{10}$"
EVENT_ID_REGEX = r"^[A-Za-z0-9_\-]{1,64}$"
MAX_QUERY_LENGTH = 200
MAX_BATCH_EVENTS = 1000
# Client clocks drift; more than this ahead of the server is a bug, not drift.
MAX_FUTURE_SKEW = timedelta(minutes=5)
# A year back covers any offline queue or backfill; 1900 is a client bug, not an event.
MAX_EVENT_AGE = timedelta(days=365)
# Request bodies above this are refused with 413 before they are read whole (a batch of 1,000
# events is about 200 KB).
MAX_BODY_BYTES = 1 << 20


def _no_control_characters(value):
    # NUL cannot be stored in PostgreSQL text at all; other control characters are never search
    # text, and would reach the logs and the per-user tables verbatim. Checked before trimming,
    # as the schema's pattern reads the value sent.
    if isinstance(value, str) and any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError("must not contain control characters")
    return value


UserId = Annotated[
    str,
    StringConstraints(pattern=USER_ID_REGEX),
    Field(description="Letters, digits and underscore, 1-50 characters.", examples=["U12345"]),
]
ProductId = Annotated[
    str,
    StringConstraints(pattern=PRODUCT_ID_REGEX),
    Field(description="10 uppercase letters or digits.", examples=["B09N3ZNHTY"]),
]
# No control characters, and at least one character that is not white space (written in the
# schema, so a client generated from it knows; the validator below says why in its message).
SEARCH_TEXT_PATTERN = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
SearchText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        pattern=SEARCH_TEXT_PATTERN,
    ),
    BeforeValidator(_no_control_characters),
    Field(
        description="Search text, trimmed; must not be blank nor hold control characters.",
        examples=["wireless earbuds"],
    ),
]
EventType = Literal["product_click", "search_query"]  # EVENT_TYPES below


class _EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    timestamp: datetime | None = Field(
        default=None,
        description="When it happened (UTC if no offset); default: now. At most 5 minutes "
        "ahead of the server's clock and 365 days behind it.",
    )
    event_id: Annotated[str, StringConstraints(pattern=EVENT_ID_REGEX)] | None = Field(
        default=None, description="Client id for safe retries: an event_id is stored once."
    )

    @field_validator("timestamp")
    @classmethod
    def timestamp_in_window(cls, value: datetime | None):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        now = datetime.now(UTC)
        if value > now + MAX_FUTURE_SKEW:
            raise ValueError("timestamp is more than 5 minutes in the future")
        if value < now - MAX_EVENT_AGE:
            raise ValueError("timestamp is more than 365 days in the past")
        return value.astimezone(UTC)


def _event_config(example: dict) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class ClickIn(_EventIn):
    """A product click: the product, no query."""

    model_config = _event_config(
        {"user_id": "U12345", "event_type": "product_click", "product_id": "B09N3ZNHTY"}
    )

    event_type: Literal["product_click"]
    product_id: ProductId

    @property
    def query(self) -> None:
        return None


class SearchIn(_EventIn):
    """A search: the query, no product."""

    model_config = _event_config(
        {"user_id": "U12345", "event_type": "search_query", "query": "wireless earbuds"}
    )

    event_type: Literal["search_query"]
    query: SearchText

    @property
    def product_id(self) -> None:
        return None


# One event posted by the frontend: a click or a search, told apart by event_type.
InteractionIn = Annotated[ClickIn | SearchIn, Field(discriminator="event_type")]
EVENT_TYPES = ("product_click", "search_query")


class InteractionBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[InteractionIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class InteractionOut(BaseModel):
    event_id: str
    user_id: str
    event_type: EventType
    product_id: str | None
    query: str | None
    timestamp: datetime
    duplicate: bool = Field(description="True when this event_id was already stored earlier.")


class InteractionBatchOut(BaseModel):
    stored: int
    duplicates: int
    events: list[InteractionOut]


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    database: Literal["ok", "unreachable"]
    products: int | None
    models: dict[str, str | None] = Field(
        description="Model name -> loaded artifact version (null when absent)."
    )


class ProblemFieldError(BaseModel):
    field: str = Field(description="Dotted path of the failing field, e.g. body.events.3.query")
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemFieldError] | None = None


# --- Recommendations -----------------------------------------------------------------------

MAX_LIMIT = 100


class RecommendationQuery(BaseModel):
    """Paging and filters shared by every recommendation endpoint."""

    limit: int = Field(default=20, ge=1, le=MAX_LIMIT, examples=[20])
    offset: int = Field(default=0, ge=0, le=1000, examples=[0])
    category: (
        Annotated[
            str,
            # The search text's pattern: the schema says a blank value is refused (the fuzzer
            # found "category= " valid by the schema and refused by the server).
            StringConstraints(
                strip_whitespace=True, min_length=1, max_length=100, pattern=SEARCH_TEXT_PATTERN
            ),
        ]
        | None
    ) = Field(
        default=None,
        description="Main or sub-category to keep (any it is listed under), in any case; an "
        "unknown one is a 422 naming close ones (GET /categories lists them).",
        examples=["Headphones"],
    )
    min_price: float | None = Field(
        default=None,
        ge=0,
        description="Lowest selling price, rupees; at most max_price.",
        examples=[500],
    )
    max_price: float | None = Field(
        default=None,
        ge=0,
        description="Highest selling price, rupees; at least min_price.",
        examples=[5000],
    )

    @field_validator("max_price")
    @classmethod
    def max_not_below_min(cls, value: float | None, info: ValidationInfo):
        minimum = info.data.get("min_price")
        if value is not None and minimum is not None and value < minimum:
            raise ValueError("max_price is below min_price")
        return value


class HomeQuery(RecommendationQuery):
    user_id: UserId
    exclude_seen: bool = Field(
        default=True, description="Leave out products clicked recently.", examples=[True]
    )


class SimilarQuery(RecommendationQuery):
    mode: Literal["content", "also_viewed", "blend"] = Field(
        default="content",
        description="content: TF-IDF similarity of name and sub-category (the default); "
        "also_viewed: what shoppers who clicked this product clicked next (session-kNN, then "
        "co-click and item-CF); blend: both lists fused by rank.",
        examples=["also_viewed"],
    )


class SessionQuery(RecommendationQuery):
    product_ids: list[ProductId] = Field(
        min_length=1,
        max_length=50,
        description="Products viewed in this visit, oldest first (repeat the parameter: "
        "product_ids=A&product_ids=B). No user id needed.",
        examples=[["B09N3ZNHTY", "B0BRKXTSBT"]],
    )
    exclude_seen: bool = Field(
        default=True, description="Leave out the products given.", examples=[True]
    )


class SearchQuery(RecommendationQuery):
    q: SearchText
    user_id: UserId | None = Field(
        default=None, description="Optional: boosts the user's interests, drives the fallback."
    )

    @field_validator("q")
    @classmethod
    def normalise_query(cls, value: str) -> str:
        # NFKC folds full-width letters and ligatures; inner runs of whitespace become one space.
        value = " ".join(unicodedata.normalize("NFKC", value).split())
        if not value:
            raise ValueError("q must not be blank")
        return value


# Every source a recommended item can owe its place to.
Signal = Literal[
    "similar",  # content (TF-IDF) neighbour of the anchor product
    "co_click",  # often clicked in the same visits as the anchor product
    "collaborative",  # item-CF neighbour of the anchor product
    "item_model",  # EASE: goes with the anchor product for shoppers like this one
    "session",  # session-kNN: what visits like this one went on to
    "search",  # matches the anchor search term
    "semantic",  # close in meaning to the anchor search term
    "personal",  # in a sub-category the shopper often looks at (the anchor)
    "trending",
    "popular",
    "category_popular",  # popular in a category the shopper likes (the anchor)
    "best_value",
    "top_category",  # among the best of the anchor category
    "explore",  # from a category the shopper has not looked at much (the anchor)
]


class ReasonOut(BaseModel):
    signal: Signal
    anchor: str | None = Field(
        description="The product id, search term or category name behind it (the text names "
        "a product by its name and a category by its display name)."
    )
    text: str


class SubCategoryOut(BaseModel):
    name: str = Field(description="As the filters and products name it.")
    display_name: str
    products: int


class CategoryOut(SubCategoryOut):
    sub_categories: list[SubCategoryOut]


class CategoriesOut(BaseModel):
    categories: list[CategoryOut]


class RecommendedProduct(BaseModel):
    id: str
    name: str
    main_category: str
    sub_category: str
    image: str | None
    link: str | None
    ratings: float | None
    no_of_ratings: int | None
    discount_price: float | None
    actual_price: float | None
    discount_ratio: float | None
    score: float
    reasons: list[ReasonOut]


class RecommendationsOut(BaseModel):
    items: list[RecommendedProduct]
    strategy: str = Field(
        description="personal_ranked (learned ranker), personal_hybrid (weighted merge), "
        "new_user, popularity_no_models, content_similarity, also_viewed, blend, session_knn, "
        "session_no_models, search or search_fallback"
    )
    weights: dict[str, float]
    model_version: str | None
    limit: int
    offset: int
    next_offset: int | None = Field(
        description="The offset of the next page; null at the end of the list."
    )
    empty_reason: Literal["past_the_end", "filters_match_nothing", "no_candidates"] | None = Field(
        description="Why `items` is empty (null when it is not)."
    )


DEGRADED = Field(
    default=False,
    description="True when the user's history could not be read (database unavailable): the "
    "results are what everyone gets (new-user feed, plain search), from memory.",
)


class HomeOut(RecommendationsOut):
    variant: str = Field(
        description="The A/B ranking variant of this user (AB_VARIANTS; 'default' without a test)."
    )
    degraded: bool = DEGRADED


class ExpansionOut(BaseModel):
    term: str = Field(description="Words of the query a synonym entry matched.")
    expanded_to: list[str]


class CorrectionOut(BaseModel):
    term: str
    corrected_to: str


class SearchOut(RecommendationsOut):
    query: str = Field(description="The query as searched (trimmed, normalised).")
    expansions: list[ExpansionOut]
    expanded_terms: list[str] = Field(description="Phrases added by synonyms.")
    corrections: list[CorrectionOut] = Field(
        description="Words the catalog does not know, searched as the closest word it does."
    )
    fallback_reason: str | None = Field(
        description="Why these are not search matches: no_match_used_associations, "
        "no_match_used_trending or no_models_used_trending; null for real matches."
    )
    degraded: bool = DEGRADED


# --- Operations --------------------------------------------------------------------------

JobName = Literal["trending", "retrain", "retention"]


class JobAccepted(BaseModel):
    job: JobName
    status: Literal["started"]
    detail: str


class JobRunOut(BaseModel):
    id: int
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    outcome: str
    detail: str | None
    worker: str
    last_success_at: datetime | None


class JobStatusOut(BaseModel):
    last_run: JobRunOut | None
    next_run_at: datetime | None = Field(description="On this worker's scheduler.")
    running: bool


class WorkerOut(BaseModel):
    worker: str
    model_version: str | None
    started_at: datetime
    seen_at: datetime


class ArtifactsOut(BaseModel):
    current: str | None
    on_disk: list[str]
    load_error: str | None = Field(description="Why this worker could not load `current`.")


class VariantOut(BaseModel):
    name: str
    share: float
    ranker: str
    weights: dict[str, float]


class StatusOut(BaseModel):
    worker: str
    model_version: str | None
    workers: list[WorkerOut] = Field(description="Workers seen recently, with their versions.")
    artifacts: ArtifactsOut
    jobs: dict[str, JobStatusOut]
    row_counts: dict[str, int]
    variants: list[VariantOut] = Field(description="A/B ranking variants and their shares.")


class RouteLatencyOut(BaseModel):
    method: str
    route: str
    requests: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class MetricsSummaryOut(BaseModel):
    """Since the workers started, from the samples /metrics exposes (all workers)."""

    routes: list[RouteLatencyOut]
    events_ingested: dict[str, int] = Field(description="Events stored, by event type.")
    query_embeddings: dict[str, int] = Field(
        description="Search query embeddings by source: trained, recent (LRU) or encoded now."
    )
    home_rankings: dict[str, int] = Field(
        default_factory=dict,
        description="Learned home rankings by source: prepared by training, or computed now.",
    )


class EvaluationOut(BaseModel):
    """The latest offline evaluation report (`python -m ml.evaluate --out REPORTS_DIR`)."""

    written_at: datetime
    report: dict = Field(description="evaluation.json: metrics per section and recommender.")
    sessions: dict | None = Field(description="sessions.json, when a session evaluation ran.")
    has_plot: bool
