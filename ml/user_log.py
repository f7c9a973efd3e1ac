"""A shop's own interaction log as a CSV, for the offline evaluation:

    python -m ml.evaluate --user-log clicks.csv [--test-days 7]

Columns (a header row; names as below, extra columns ignored): `user`, `item`, `timestamp`
(epoch seconds or an ISO 8601 date-time), and optionally `title` and `category`. Every row is a
click. Items become the catalog (title and category feed the content model when given).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from database.products import PRODUCT_COLUMNS

REQUIRED = ("user", "item", "timestamp")


def read_user_log(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(catalog frame, events frame) in the shapes the training reads from the database.

    Raises ValueError naming what is missing or unreadable.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (need {', '.join(REQUIRED)})")
    frame = frame[(frame["user"] != "") & (frame["item"] != "") & (frame["timestamp"] != "")]
    numeric = pd.to_numeric(frame["timestamp"], errors="coerce")
    if numeric.notna().all():
        epoch = numeric.to_numpy(float)
    else:
        parsed = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="mixed")
        if parsed.isna().any():
            bad = frame["timestamp"][parsed.isna()].iloc[0]
            raise ValueError(f"{path}: unreadable timestamp {bad!r}")
        epoch = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    events = pd.DataFrame(
        {
            "user_id": frame["user"].to_numpy(),
            "event_type": "product_click",
            "product_id": frame["item"].to_numpy(),
            "query": "",
            "epoch": epoch,
        }
    )
    items = frame.drop_duplicates("item", keep="last").sort_values("item")
    title = items["title"] if "title" in items else items["item"]
    category = items["category"] if "category" in items else pd.Series("", index=items.index)
    catalog = pd.DataFrame(
        {
            "id": items["item"].to_numpy(),
            "name": title.where(title != "", items["item"]).to_numpy(),
            "main_category": category.to_numpy(),
            "sub_category": category.to_numpy(),
            "image": "",
            "link": "",
        }
    )
    for column in ("ratings", "no_of_ratings", "discount_price", "actual_price", "discount_ratio"):
        catalog[column] = np.nan
    return catalog[list(PRODUCT_COLUMNS)].reset_index(drop=True), events
