"""The event models of a training computed on Apache Spark: `python -m ml.train --engine spark`.

The steps whose cost grows with pairs of clicks run as Spark jobs over the global event log (a
Parquet export, `python -m ml.export_events`): item-CF similarities (pairs of a user's items),
co-click rules (pairs of a session's items), EASE's co-occurrence counts (pairs of a user's
modelled items), and the sessions and click counts they start from. What comes back to the
driver is already reduced (top-k lists, the kept sessions, an EASE_MAX_ITEMS² count matrix) and
is turned into the arrays of a version by the same functions as the local path
(ml/train.py's event_arrays), so serving does not know which engine trained it.

Both paths order the clicks by (user, time, product) and break equal scores by product
position; co-click scores are computed in float32 step by step as numpy does, so they are
bit-equal. Item-CF sums float products in another order than scipy: equal to ~1e-6.

pyspark is the optional extra `spark` (`pip install '.[spark]'`); Spark needs Java 17+.
"""

import logging
import os
import time
from datetime import datetime

import numpy as np
import pandas as pd
from pyspark import SparkConf
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from config.settings import Settings
from ml.neighbors import prefixed
from ml.train_coclick import RULES_PER_ITEM
from ml.train_ease import ease_from_gram, ease_neighbors, modelled_items
from ml.train_sessions import MAX_SESSION_LENGTH, SESSION_GAP_SECONDS, session_index


def spark_session(driver_memory: str) -> SparkSession:
    """The session: spark-submit's (master, memory, ...) when launched by it, else local mode on
    every core of this machine with `driver_memory`."""
    # py4j logs every gateway connection it opens and closes at INFO (and at interpreter exit,
    # to handlers already closed): only its warnings are worth reading.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    conf = SparkConf()  # holds what spark-submit or spark-defaults.conf set
    builder = (
        SparkSession.builder.appName("recsys-train")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if not conf.contains("spark.master"):
        # One machine: a few shuffle partitions per core, not Spark's 200 (sized for clusters),
        # whose tasks cost more than the work on a small log.
        builder = builder.master("local[*]").config(
            "spark.sql.shuffle.partitions", str(4 * (os.cpu_count() or 1))
        )
    if not conf.contains("spark.driver.memory"):
        builder = builder.config("spark.driver.memory", driver_memory)
    return builder.getOrCreate()


def _f32(column: Column) -> Column:
    return column.cast("float")


def _top_k(pairs: DataFrame, k: int) -> DataFrame:
    """Per item `a`, its k best `b` by float32 score, equal scores by position (as
    ml.neighbors.top_k_per_row)."""
    best = Window.partitionBy("a").orderBy(F.col("score").desc(), F.col("b").asc())
    return pairs.withColumn("rank", F.row_number().over(best)).where(F.col("rank") <= k)


def _triplet(rows: pd.DataFrame, n_items: int) -> dict[str, np.ndarray]:
    """CSR triplet (indptr, indices, scores) from rows a, b, score, rank."""
    rows = rows.sort_values(["a", "rank"])
    indptr = np.zeros(n_items + 1, np.int64)
    np.cumsum(np.bincount(rows["a"].to_numpy(), minlength=n_items), out=indptr[1:])
    return {
        "indptr": indptr,
        "indices": rows["b"].to_numpy(np.int32),
        "scores": rows["score"].to_numpy(np.float32),
    }


class SparkEventModels:
    """ml.train.EventModels on Spark, over an events DataFrame with the columns of
    ml.export_events (user_id, event_type, product_id, query, epoch)."""

    def __init__(
        self, spark: SparkSession, events: DataFrame, product_ids: np.ndarray, settings: Settings
    ):
        self.spark = spark
        self.settings = settings
        self.n_items = len(product_ids)
        positions = spark.createDataFrame(
            pd.DataFrame(
                {
                    "product_id": product_ids.astype(str),
                    "item": np.arange(self.n_items, dtype=np.int32),
                }
            )
        )
        # Clicks on products no longer in the catalog drop out in the join, as they do locally.
        self.clicks = (
            events.where(F.col("event_type") == "product_click")
            .join(F.broadcast(positions), "product_id")
            .select("user_id", "product_id", "item", "epoch")
            .persist()
        )

    def __call__(self, now: datetime, models: tuple[str, ...]):
        settings = self.settings
        end = now.timestamp()
        clicks = self.clicks.where(
            (F.col("epoch") >= end - settings.training_window_days * 86400) & (F.col("epoch") < end)
        )
        arrays: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        counts: dict[str, int] = {}
        if "cf" in models:
            started = time.perf_counter()
            arrays |= prefixed("cf", self._item_cf(clicks, end))
            seconds["collaborative"] = time.perf_counter() - started
        if "ease" in models:
            started = time.perf_counter()
            model = self._ease(clicks)
            arrays |= prefixed("ease", ease_neighbors(model, self.n_items, settings.cf_top_k))
            counts["ease_items"] = len(model.items)
            seconds["ease"] = time.perf_counter() - started
        if "coclick" in models or "sessions" in models:
            started = time.perf_counter()
            kept = self._kept_sessions(clicks).persist()
            rows = kept.select("user_id", "session", "end", "item", "last_step").toPandas()
            # Sessions numbered by their last click (then user, as locally); items in the order
            # of their last click within the session.
            rows = rows.sort_values(["end", "user_id", "session", "last_step"], kind="stable")
            number = rows.groupby(["user_id", "session"], sort=False).ngroup().to_numpy()
            sessions = session_index(number, rows["item"].to_numpy(), self.n_items)
            counts["sessions"] = len(sessions["sessions_session_indptr"]) - 1
            if "sessions" in models:
                arrays |= sessions | self._log_clicks(clicks, end)
            seconds["sessions"] = time.perf_counter() - started
            if "coclick" in models:
                started = time.perf_counter()
                rules, counts["co_click_rules"] = self._co_click_rules(kept, counts["sessions"])
                arrays |= prefixed("coclick", rules)
                seconds["coclick"] = time.perf_counter() - started
            kept.unpersist()
        return arrays, seconds, counts

    def _item_cf(self, clicks: DataFrame, end: float) -> dict[str, np.ndarray]:
        """Cosine between items' time-decayed user vectors (ml.train_collaborative)."""
        half_life_hours = self.settings.cf_half_life_days * 24
        decay = F.pow(F.lit(0.5), ((F.lit(end) - F.col("epoch")) / 3600.0) / half_life_hours)
        weights = clicks.groupBy("user_id", "item").agg(F.sum(_f32(decay)).alias("w"))
        norms = weights.groupBy("item").agg(F.sqrt(F.sum(F.col("w") * F.col("w"))).alias("norm"))
        unit = weights.join(norms, "item").select(
            "user_id", "item", (F.col("w") / F.col("norm")).alias("u")
        )
        a = unit.select("user_id", F.col("item").alias("a"), F.col("u").alias("ua"))
        b = unit.select("user_id", F.col("item").alias("b"), F.col("u").alias("ub"))
        pairs = (
            a.join(b, "user_id")
            .where(F.col("a") != F.col("b"))
            .groupBy("a", "b")
            .agg(_f32(F.sum(F.col("ua") * F.col("ub"))).alias("score"))
            .where(F.col("score") > 0)
        )
        rows = _top_k(pairs, self.settings.cf_top_k).toPandas()
        return _triplet(rows, self.n_items)

    def _ease(self, clicks: DataFrame):
        """EASE fitted on the driver from co-occurrence counts of the modelled items counted
        here: the users who clicked both (ml.train_ease)."""
        clicked = clicks.select("user_id", "item").distinct().persist()
        per_item = clicked.groupBy("item").count().toPandas()
        users_per_item = np.zeros(self.n_items, np.int64)
        users_per_item[per_item["item"].to_numpy()] = per_item["count"].to_numpy()
        items = modelled_items(users_per_item, self.settings.ease_max_items)
        index = self.spark.createDataFrame(
            pd.DataFrame(
                {"item": items.astype(np.int32), "column": np.arange(len(items), dtype=np.int32)}
            )
        )
        modelled = clicked.join(F.broadcast(index), "item").select("user_id", "column")
        pairs = (
            modelled.withColumnRenamed("column", "i")
            .join(modelled.withColumnRenamed("column", "j"), "user_id")
            .groupBy("i", "j")
            .count()
            .toPandas()
        )
        clicked.unpersist()
        gram = np.zeros((len(items), len(items)), np.float64)
        gram[pairs["i"].to_numpy(), pairs["j"].to_numpy()] = pairs["count"].to_numpy()
        return ease_from_gram(items, gram, self.settings.ease_l2)

    def _kept_sessions(self, clicks: DataFrame) -> DataFrame:
        """Each session's distinct items at their last click, its latest MAX_SESSION_LENGTH, in
        sessions of two items or more (ml.train_sessions): user_id, session, end, item,
        last_step."""
        by_user = Window.partitionBy("user_id").orderBy("epoch", "product_id")
        ordered = (
            clicks.withColumn("step", F.row_number().over(by_user))
            .withColumn("gap", F.col("epoch") - F.lag("epoch").over(by_user))
            .withColumn(
                "starts", (F.col("gap").isNull() | (F.col("gap") > SESSION_GAP_SECONDS)).cast("int")
            )
            .withColumn(
                "session",
                F.sum("starts").over(
                    by_user.rowsBetween(Window.unboundedPreceding, Window.currentRow)
                ),
            )
        )
        in_session = Window.partitionBy("user_id", "session")
        distinct_items = (
            ordered.withColumn("end", F.max("epoch").over(in_session))
            .groupBy("user_id", "session", "item")
            .agg(F.max("step").alias("last_step"), F.max("end").alias("end"))
        )
        latest = distinct_items.withColumn(
            "from_end", F.row_number().over(in_session.orderBy(F.col("last_step").desc()))
        ).where(F.col("from_end") <= MAX_SESSION_LENGTH)
        return latest.withColumn("size", F.count("*").over(in_session)).where(F.col("size") >= 2)

    def _log_clicks(self, clicks: DataFrame, end: float) -> dict[str, np.ndarray]:
        """Clicks per product in the window and in its last week (ranker features)."""
        counted = (
            clicks.groupBy("item")
            .agg(
                F.count("*").alias("window"),
                F.sum(((F.lit(end) - F.col("epoch")) / 3600.0 <= 7 * 24).cast("long")).alias(
                    "week"
                ),
            )
            .toPandas()
        )
        arrays = {}
        for name, column in (
            ("sessions_log_clicks", "window"),
            ("sessions_week_log_clicks", "week"),
        ):
            per_item = np.zeros(self.n_items, np.int64)
            per_item[counted["item"].to_numpy()] = counted[column].to_numpy()
            arrays[name] = np.log1p(per_item).astype(np.float32)
        return arrays

    def _co_click_rules(
        self, kept: DataFrame, n_sessions: int
    ) -> tuple[dict[str, np.ndarray], int]:
        """Rules A -> B as ml.train_coclick.co_click_rules computes them, in float32 step by
        step (numpy's arithmetic on its float32 arrays), so the rules are the same."""
        settings = self.settings
        baskets = kept.select("user_id", "session", "item")
        sessions_of = baskets.groupBy("item").agg(_f32(F.count("*")).alias("n"))
        pairs = (
            baskets.withColumnRenamed("item", "a")
            .join(baskets.withColumnRenamed("item", "b"), ["user_id", "session"])
            .where(F.col("a") != F.col("b"))
            .groupBy("a", "b")
            .agg(_f32(F.count("*")).alias("together"))
            .join(
                F.broadcast(
                    sessions_of.withColumnRenamed("item", "a").withColumnRenamed("n", "na")
                ),
                "a",
            )
            .join(
                F.broadcast(
                    sessions_of.withColumnRenamed("item", "b").withColumnRenamed("n", "nb")
                ),
                "b",
            )
        )
        both = _f32(F.col("na") * F.col("nb"))  # float * float stays float in Spark
        confidence = _f32(F.col("together") / F.col("na"))
        lift = _f32(_f32(F.col("together") * F.lit(n_sessions).cast("float")) / both)
        rules = (
            pairs.where(
                (F.col("together") >= F.lit(settings.coclick_min_sessions).cast("float"))
                & (confidence >= F.lit(settings.coclick_min_confidence).cast("float"))
                & (lift >= F.lit(settings.coclick_min_lift).cast("float"))
            )
            .select("a", "b", _f32(F.col("together") / _f32(F.sqrt(both))).alias("score"))
            .persist()
        )
        count = rules.count()
        top = _top_k(rules.where(F.col("score") > 0), RULES_PER_ITEM).toPandas()
        rules.unpersist()
        return _triplet(top, self.n_items), count
