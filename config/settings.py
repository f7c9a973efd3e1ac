"""Every knob of the service, read from environment variables (or a .env file)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Storage: DATABASE_URL wins; without it an embedded PostgreSQL keeps its data in PGDATA_DIR.
    database_url: str | None = None
    pgdata_dir: Path = PROJECT_ROOT / "data" / "pgdata"
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)

    # Catalog files
    raw_catalog_path: Path = PROJECT_ROOT / "data" / "raw" / "Amazon-Products-Raw.csv"
    processed_catalog_path: Path = (
        PROJECT_ROOT / "data" / "processed" / "Amazon-Products-Optimized.csv"
    )

    # Event ingestion
    max_batch_events: int = Field(default=1000, ge=1)
    max_query_length: int = Field(default=200, ge=1)
    max_clock_skew_seconds: int = Field(default=300, ge=0)

    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    return Settings()
