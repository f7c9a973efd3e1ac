"""Every knob of the service, read from environment variables (or a .env file)."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Variant(BaseModel):
    """A named home-ranking configuration of an A/B test."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    share: float = Field(gt=0, le=1)  # of users, by a stable hash of the user id
    ranker: Literal["learned", "weighted"] = "learned"
    # clicked / search / diverse; unset: WEIGHT_CLICKED, WEIGHT_SEARCH, WEIGHT_DIVERSE
    weights: dict[Literal["clicked", "search", "diverse"], float] | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Storage: DATABASE_URL wins; without it an embedded PostgreSQL keeps its data in PGDATA_DIR.
    database_url: str | None = None
    pgdata_dir: Path = PROJECT_ROOT / "data" / "pgdata"
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)

    # Catalog files
    processed_catalog_path: Path = (
        PROJECT_ROOT / "data" / "processed" / "Amazon-Products-Optimized.csv"
    )

    # Models
    artifacts_dir: Path = PROJECT_ROOT / "data" / "artifacts"
    reports_dir: Path = PROJECT_ROOT / "reports"  # ml.evaluate's output, shown on the dashboard
    artifacts_keep: int = Field(default=3, ge=1)
    model_reload_seconds: float = Field(default=10, gt=0)
    content_top_k: int = Field(default=50, ge=1)
    cf_top_k: int = Field(default=50, ge=1)
    training_window_days: int = Field(default=60, ge=1)
    cf_half_life_days: float = Field(default=14, gt=0)
    trending_decay_rate: float = Field(default=0.95, gt=0, lt=1)
    # EASE (closed-form linear item-item model) on the most clicked items; its cost is an
    # items x items inverse, so the long tail is left to the neighbour models.
    ease_max_items: int = Field(default=10_000, ge=2, le=30_000)
    ease_l2: float = Field(default=500.0, gt=0)
    # Co-click rules A -> B: sessions holding both (a count, so a busier shop gets more rules,
    # not fewer), P(B | A) and lift.
    coclick_min_sessions: int = Field(default=2, ge=1)
    coclick_min_confidence: float = Field(default=0.01, ge=0, le=1)
    coclick_min_lift: float = Field(default=1.0, ge=0)

    # Home feed: merged = clicked * w_clicked + search * w_search + diverse * w_diverse
    weight_clicked: float = Field(default=0.5, ge=0)
    weight_search: float = Field(default=0.4, ge=0)
    weight_diverse: float = Field(default=0.1, ge=0)
    trending_boost: float = Field(default=0.1, ge=0)
    # learned: LightGBM LambdaRank over every source (when the version has one); weighted: the
    # merge above. The learned feed keeps WEIGHT_DIVERSE's share of exploration slots.
    home_ranker: Literal["learned", "weighted"] = "learned"
    home_max_per_sub_category: int = Field(default=4, ge=1)  # on a page of the learned feed
    ranker_label_days: float = Field(
        default=7, gt=0
    )  # labels: clicks in the N days after a cut-off
    ranker_cutoffs: int = Field(default=4, ge=1)  # cut-offs, a label window apart, to learn from
    ranker_max_users: int = Field(default=5000, ge=1)  # users sampled per cut-off to train it
    # Candidates kept per training user: all the relevant ones, a random sample of the others.
    ranker_max_candidates: int = Field(default=300, ge=10)
    # Training ranks this many of the most recently active users for home requests to read
    # (services/home_rankings.py); 0: every home request ranks for itself.
    home_prepared_users: int = Field(default=100_000, ge=0)
    # Off: every home request ranks for itself, prepared rankings or not (to measure or rule
    # them out without retraining).
    serve_prepared_home: bool = True
    # Home rankings computed at request time are stored (a few KB each, in the database) and
    # read by every worker's next request for the same history (a refresh, the next visit
    # without a click). Off: every such request ranks again.
    share_computed_home: bool = True
    # With several workers (uvicorn --workers N): a worker serving 2 or more connections above the
    # others' mean closes some (Connection: close), so clients reconnect and the split evens out
    # (routers/worker_balance.py). Off: connections stay where they were accepted.
    balance_workers: bool = True
    # Driver memory of `ml.train --engine spark` in local mode (spark-submit's --driver-memory
    # wins when launched by it): the reduced results (top-k lists, sessions) come back to it.
    spark_driver_memory: str = Field(default="4g", pattern=r"^[0-9]+[kmgt]?$")
    # A/B test of home rankings, JSON: [{"name": "learned", "share": 0.5}, {"name": "spec",
    # "share": 0.5, "ranker": "weighted"}]. Empty: everyone gets HOME_RANKER and the weights.
    ab_variants: list[Variant] = Field(default_factory=list)
    ab_salt: str = "ab1"  # change it to reshuffle users between variants

    @field_validator("ab_variants")
    @classmethod
    def shares_add_up(cls, variants: list[Variant]) -> list[Variant]:
        if variants and abs(sum(v.share for v in variants) - 1.0) > 1e-6:
            raise ValueError("the shares of AB_VARIANTS must add up to 1")
        if len({v.name for v in variants}) != len(variants):
            raise ValueError("AB_VARIANTS names must be unique")
        return variants

    history_days: int = Field(default=30, ge=1)
    # Where a user's history is kept and read: one table per user (the spec's layout) or the
    # global log alone (docs/operations.md says when to switch).
    user_events_source: Literal["user_tables", "global_log"] = "user_tables"

    # Search: synonyms (Solr format) are copied into each artifact version by training.
    synonyms_path: Path = PROJECT_ROOT / "data" / "synonyms.txt"
    search_candidates: int = Field(default=100, ge=10, le=1000)  # per retrieval path
    search_rrf_k: int = Field(default=60, ge=1)  # reciprocal rank fusion: 1 / (k + rank)
    # Below this cosine similarity a semantic hit is not a match. Calibrated on the generated
    # catalog: gibberish ("asdf", "lorem ipsum dolor") tops out at 0.20-0.37 against product
    # names, real queries ("television", "wireless thing for ears") reach 0.40-0.68.
    search_min_similarity: float = Field(default=0.38, ge=-1, le=1)
    search_personal_boost: float = Field(default=0.1, ge=0)  # x (1 + boost * profile affinity)
    # x (1 + boost) for products of a sub-category the query names ("fridge": Refrigerators)
    search_category_boost: float = Field(default=1.0, ge=0)
    search_torch_threads: int = Field(default=1, ge=1)  # per worker, for the query embedding
    query_vector_cache_size: int = Field(default=4096, ge=0)  # recent query embeddings per worker
    # The most frequent queries of the event log are embedded by training: no encoder call
    # at request time for them.
    search_query_cache_size: int = Field(default=20000, ge=0)

    # Jobs (APScheduler in every worker; an advisory lock lets one of them run each job).
    # Cron expressions, UTC: minute hour day-of-month month day-of-week.
    scheduler_enabled: bool = True
    trending_cron: str = "5 * * * *"  # hourly: trending scores + activity rollup
    retrain_cron: str = "30 3 * * *"  # daily: all models, in a separate process
    retention_cron: str = "0 4 * * *"  # daily: delete old interaction rows
    retrain_timeout_minutes: float = Field(default=180, gt=0)
    retrain_nice: int = Field(default=10, ge=0, le=19)  # CPU priority of the training process
    retention_days: int = Field(default=90, ge=1)  # interaction rows older than this are deleted
    activity_retention_days: int = Field(default=400, ge=1)  # hourly rollup rows

    # Browser origins allowed to call the API (CORS), comma-separated, e.g.
    # "https://shop.example.com,http://localhost:3000"; "*" allows any. Empty: no CORS headers.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def comma_separated(cls, value):
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    # Admin endpoints (/admin/*) need this key in the X-API-Key header; unset: admin disabled.
    admin_api_key: SecretStr | None = None

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    # FastAPI's native OpenTelemetry (request spans and metrics to the global providers): for a
    # shop with an OTel collector. Off, the service's metrics are Prometheus' at /metrics, and
    # no request pays FastAPI's check for configured providers (~5 % of a light request's CPU).
    opentelemetry: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
