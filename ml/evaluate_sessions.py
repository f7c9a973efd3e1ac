"""Session benchmark: next-item prediction on real sessions, the protocol of the session-based
recommendation literature (SR-GNN's Diginetica split in ../shared/data/diginetica/).

    python -m ml.evaluate --sessions ../shared/data/diginetica [--out reports]

Input folder: `train_sessions.txt.gz` (one session a line: item ids in click order, oldest
session first) and `test_prefixes.tsv.gz` (`prefix item ids<TAB>next item`). Every method is
trained on the training sessions with the service's own training code and answers each prefix
with 20 items; Recall@20 and MRR@20 (%) in the published protocol (items of the prefix may be
recommended) and as the service behaves (items already clicked in the visit left out).
"""

import gzip
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml.neighbors import empty_triplet
from ml.train_coclick import co_click_rules
from ml.train_collaborative import interaction_matrix, item_neighbors
from ml.train_sessions import session_index
from services.catalog import Catalog
from services.feeds import Filters, session_feed, similar_feed
from services.models import ModelBundle
from services.sessions import SessionIndex
from services.synonyms import Synonyms

K = 20
# Published figures on this split (SR-GNN paper, Wu et al. 2019), Recall@20 / MRR@20 %.
PUBLISHED = {
    "POP": (0.89, 0.20),
    "S-POP": (21.06, 13.68),
    "Item-KNN": (35.75, 11.57),
    "GRU4Rec": (29.45, 8.33),
    "NARM": (49.70, 16.17),
    "STAMP": (45.64, 14.32),
    "SR-GNN": (50.73, 17.59),
}


@dataclass
class SessionData:
    train: list[np.ndarray]  # item ids per session, click order
    prefixes: list[np.ndarray]
    targets: np.ndarray
    n_items: int  # ids are 0..n_items-1


def load_sessions(folder: Path) -> SessionData:
    with gzip.open(folder / "train_sessions.txt.gz", "rt") as lines:
        train = [np.array(line.split(), np.int64) for line in lines if line.strip()]
    prefixes, targets = [], []
    with gzip.open(folder / "test_prefixes.tsv.gz", "rt") as lines:
        for line in lines:
            prefix, target = line.rstrip("\n").split("\t")
            prefixes.append(np.array(prefix.split(), np.int64))
            targets.append(int(target))
    n_items = int(max(max(t.max() for t in train), max(p.max() for p in prefixes), max(targets)))
    return SessionData(train, prefixes, np.array(targets), n_items + 1)


def _item_catalog(n_items: int) -> Catalog:
    """A catalog of bare item ids (the benchmark has no product data): position = item id."""
    ids = [f"I{i:09d}" for i in range(n_items)]
    frame = pd.DataFrame(
        {
            "id": ids,
            "name": ids,
            "main_category": "",
            "sub_category": "",
            "image": "",
            "link": "",
            "ratings": np.nan,
            "no_of_ratings": np.nan,
            "discount_price": np.nan,
            "actual_price": np.nan,
            "discount_ratio": np.nan,
        }
    )
    return Catalog(frame, np.zeros(n_items, np.float32))


def train_bundle(data: SessionData, min_sessions: int, min_confidence: float, min_lift: float):
    """The service's models on the training sessions: session index, co-click rules, item-CF
    (a session as the user), no content model (no product text)."""
    session_of_click = np.repeat(np.arange(len(data.train)), [len(s) for s in data.train])
    items = np.concatenate(data.train)
    arrays = {"product_ids": np.array([f"I{i:09d}" for i in range(data.n_items)])}
    arrays |= session_index(session_of_click, items, data.n_items)
    indptr, session_items = arrays["sessions_session_indptr"], arrays["sessions_session_items"]
    rules, _ = co_click_rules(
        indptr,
        session_items,
        data.n_items,
        min_sessions=min_sessions,
        min_confidence=min_confidence,
        min_lift=min_lift,
    )
    item_knn, _ = co_click_rules(
        indptr, session_items, data.n_items, min_sessions=1, min_confidence=0, min_lift=0
    )
    user_items = interaction_matrix(
        session_of_click, items, np.ones(len(items), np.float32), data.n_items
    )
    for name, triplet in (
        ("coclick", rules),
        ("itemknn", item_knn),
        ("cf", item_neighbors(user_items, 50)),
        ("content", empty_triplet(data.n_items)),
    ):
        arrays |= {f"{name}_{key}": value for key, value in triplet.items()}
    identity = np.arange(data.n_items)
    return ModelBundle(
        version="sessions-benchmark",
        folder=Path("."),
        arrays=arrays,
        to_catalog=identity,
        from_catalog=identity,
        vocabulary={},
        synonyms=Synonyms({}),
        vector_index=None,
        created_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
        query_rows={},
        sessions=SessionIndex.from_arrays(arrays),
    )


class Score:
    def __init__(self):
        self.hits = 0
        self.reciprocal = 0.0
        self.cases = 0

    def add(self, ranked: np.ndarray, target: int) -> None:
        self.cases += 1
        where = np.flatnonzero(np.asarray(ranked[:K]) == target)
        if len(where):
            self.hits += 1
            self.reciprocal += 1.0 / (where[0] + 1)

    def summary(self) -> dict[str, float]:
        cases = max(self.cases, 1)
        return {
            "recall@20": round(100 * self.hits / cases, 2),
            "mrr@20": round(100 * self.reciprocal / cases, 2),
            "cases": self.cases,
        }


def evaluate_sessions(
    data: SessionData,
    *,
    min_sessions: int = 2,
    min_confidence: float = 0.01,
    min_lift: float = 1.0,
    max_cases: int | None = None,
) -> dict:
    """Recall@20 / MRR@20 of each method, both protocols. Returns the report."""
    started = time.perf_counter()
    bundle = train_bundle(data, min_sessions, min_confidence, min_lift)
    trained = time.perf_counter() - started
    catalog = _item_catalog(data.n_items)
    popularity = np.bincount(np.concatenate(data.train), minlength=data.n_items)
    popular = np.argsort(-popularity, kind="stable")[: K + 50]
    methods = (
        "popularity",
        "Item-KNN (last item, cosine)",
        "co-click rules (last item)",
        "item-CF (last item)",
        "also_viewed (last item, the product endpoint)",
        "session-kNN (the service's session feed)",
    )
    scores = {(m, p): Score() for m in methods for p in ("published", "seen excluded")}
    cases = range(len(data.prefixes) if max_cases is None else min(max_cases, len(data.prefixes)))
    for case in cases:
        prefix, target = data.prefixes[case], int(data.targets[case])
        last = int(prefix[-1])
        ranked = {
            "popularity": popular,
            "Item-KNN (last item, cosine)": bundle.neighbors("itemknn", last)[0],
            "co-click rules (last item)": bundle.neighbors("coclick", last)[0],
            "item-CF (last item)": bundle.neighbors("cf", last)[0],
            "also_viewed (last item, the product endpoint)": np.array(
                [
                    c.position
                    for c in similar_feed(
                        catalog=catalog,
                        bundle=bundle,
                        position=last,
                        filters=Filters(),
                        mode="also_viewed",
                    ).items[: K + len(prefix)]
                ]
            ),
        }
        for exclude in (False, True):
            feed = session_feed(
                catalog=catalog,
                bundle=bundle,
                trending=None,
                clicked=prefix.tolist(),
                n=K,
                filters=Filters(),
                exclude_seen=exclude,
            )
            protocol = "seen excluded" if exclude else "published"
            scores["session-kNN (the service's session feed)", protocol].add(
                np.array([c.position for c in feed.items[:K]]), target
            )
        seen = np.asarray(prefix)
        for name, items in ranked.items():
            scores[name, "published"].add(items, target)
            scores[name, "seen excluded"].add(items[~np.isin(items, seen)], target)
    return {
        "train_sessions": len(data.train),
        "test_cases": len(cases),
        "items": data.n_items - 1,
        "published": {name: {"recall@20": r, "mrr@20": m} for name, (r, m) in PUBLISHED.items()},
        "methods": {
            name: {
                protocol: scores[name, protocol].summary()
                for protocol in ("published", "seen excluded")
            }
            for name in methods
        },
        "train_seconds": round(trained, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(report: dict) -> str:
    lines = [
        f"{report['train_sessions']:,} training sessions, {report['test_cases']:,} test prefixes, "
        f"{report['items']:,} items; trained in {report['train_seconds']} s, "
        f"evaluated in {report['seconds']} s.",
        "",
        "| method | Recall@20 | MRR@20 | Recall@20 (seen excluded) | MRR@20 (seen excluded) |",
        "|---|---|---|---|---|",
    ]
    for name, protocols in report["methods"].items():
        published, excluded = protocols["published"], protocols["seen excluded"]
        lines.append(
            f"| {name} | {published['recall@20']:.2f} | {published['mrr@20']:.2f} | "
            f"{excluded['recall@20']:.2f} | {excluded['mrr@20']:.2f} |"
        )
    for name, figures in report["published"].items():
        lines.append(
            f"| {name} (published) | {figures['recall@20']:.2f} | {figures['mrr@20']:.2f} | | |"
        )
    return "\n".join(lines) + "\n"
