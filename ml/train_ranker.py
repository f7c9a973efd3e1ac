"""The learned home ranker: LightGBM LambdaRank over the candidates of every source.

Trained on a temporal split of the log, the way it will be used: the sources are fitted on the
events before a cut-off (`RANKER_LABEL_DAYS` before the end), each sampled user's candidates and
features are computed with the serving code (services/feeds.py ranker_candidates) from that
user's events before the cut-off, and a candidate is relevant when the
user clicked it after the cut-off. Several cut-offs a label window apart (RANKER_CUTOFFS) give
more examples. A quarter of the users is held out for early stopping.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import lightgbm
import numpy as np
import pandas as pd

from services.catalog import Catalog
from services.feeds import ranker_candidates
from services.models import ModelBundle, TrendingScores
from services.ranking import FEATURES

MIN_GROUPS = 50  # fewer users with a hit after the cut-off: no ranker, the weighted merge serves
PARAMS = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "lambdarank_truncation_level": 20,
    "num_threads": 2,
    "verbose": -1,
    "seed": 1,
}


@dataclass
class RankerExamples:
    """Candidates of sampled users at one cut-off: a feature matrix and 0/1 labels per user."""

    features: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    users: int = 0  # sampled users (with or without a relevant candidate)

    def extend(self, other: "RankerExamples") -> None:
        self.features += other.features
        self.labels += other.labels
        self.users += other.users


@dataclass
class RankerTraining:
    booster: lightgbm.Booster | None
    users: int  # groups used (with at least one relevant candidate)
    rows: int
    positives: int
    candidate_recall: float  # share of users whose next clicks any source found
    reason: str | None = None  # why no ranker was trained


def trending_at(catalog: Catalog, clicks: pd.DataFrame, cutoff: datetime, rate: float):
    """Trending scores as the hourly job would have had them at the cut-off."""
    age_hours = (cutoff.timestamp() - clicks["epoch"].to_numpy()) / 3600
    positions = pd.Index(catalog.frame["id"]).get_indexer(clicks["product_id"])
    known = positions >= 0
    scores = np.bincount(
        positions[known], weights=np.power(rate, age_hours[known]), minlength=len(catalog)
    )
    top = scores.max() if len(scores) else 0.0
    return TrendingScores(cutoff, (scores / top if top > 0 else scores).astype(np.float32))


def history_events(user_events: pd.DataFrame) -> list[dict]:
    """A user's events as the request path reads them: newest first, datetimes."""
    rows = user_events.sort_values("epoch", ascending=False)
    return [
        {
            "event_type": r.event_type,
            "product_id": r.product_id or None,
            "query": r.query or None,
            "timestamp": datetime.fromtimestamp(r.epoch, UTC),
        }
        for r in rows.itertuples()
    ]


def ranker_examples(
    *,
    catalog: Catalog,
    bundle: ModelBundle,
    before: pd.DataFrame,
    after: pd.DataFrame,
    cutoff: datetime,
    history_days: float,
    trending_rate: float,
    max_users: int,
    max_candidates: int,
    seed: int = 1,
) -> RankerExamples:
    """Candidates and labels of users active on both sides of the cut-off.

    Args:
        bundle: sources trained on `before` only.
        before / after: events (user_id, event_type, product_id, query, epoch) either side.
    """
    clicks_after = after[after["event_type"] == "product_click"]
    truth = clicks_after.groupby("user_id")["product_id"].agg(set)
    window = before[before["epoch"] >= cutoff.timestamp() - history_days * 86400]
    by_user = dict(tuple(window.groupby("user_id")))
    users = sorted(set(truth.index) & set(by_user))
    rng = np.random.default_rng(seed)
    users = sorted(rng.choice(users, min(max_users, len(users)), replace=False).tolist())
    trending = trending_at(
        catalog, before[before["event_type"] == "product_click"], cutoff, trending_rate
    )
    examples = RankerExamples(users=len(users))
    for user in users:
        events = history_events(by_user[user])
        found = ranker_candidates(
            catalog=catalog, bundle=bundle, trending=trending, events=events, now=cutoff
        )
        relevant = [catalog.position_of[p] for p in truth[user] if p in catalog.position_of]
        label = np.isin(found.positions, relevant).astype(np.float32)
        features = found.features
        if label.sum() == 0:  # a user none of whose clicks was found teaches the order nothing
            continue
        # Every relevant candidate and a random sample of the others: memory and training time
        # grow with users x max_candidates, not with how many candidates a long history brings.
        keep = np.flatnonzero(label > 0)
        others = np.flatnonzero(label == 0)
        if len(others) > max_candidates - len(keep):
            others = rng.choice(others, max(max_candidates - len(keep), 0), replace=False)
        rows = np.sort(np.concatenate([keep, others]))
        examples.features.append(features[rows].astype(np.float32))
        examples.labels.append(label[rows])
    return examples


def fit_ranker(examples: RankerExamples, seed: int = 1) -> RankerTraining:
    """LambdaRank on the examples, a quarter of the users held out for early stopping."""
    groups = [len(label) for label in examples.labels]
    recall = len(groups) / max(examples.users, 1)
    if len(groups) < MIN_GROUPS:
        reason = f"{len(groups)} users with a relevant candidate (need {MIN_GROUPS})"
        return RankerTraining(None, len(groups), 0, 0, recall, reason)
    order = np.random.default_rng(seed).permutation(len(groups))
    held_out = set(order[: max(1, len(groups) // 4)].tolist())

    def dataset(keep_held_out: bool, reference=None):
        chosen = [i for i in range(len(groups)) if (i in held_out) == keep_held_out]
        return lightgbm.Dataset(
            np.vstack([examples.features[i] for i in chosen]),
            np.concatenate([examples.labels[i] for i in chosen]),
            group=[groups[i] for i in chosen],
            feature_name=list(FEATURES),
            reference=reference,
            free_raw_data=True,
        )

    train_set = dataset(False)
    booster = lightgbm.train(
        PARAMS,
        train_set,
        num_boost_round=300,
        valid_sets=[dataset(True, train_set)],
        callbacks=[lightgbm.early_stopping(30, verbose=False)],
    )
    positives = int(sum(label.sum() for label in examples.labels))
    return RankerTraining(booster, len(groups), int(sum(groups)), positives, recall)
