"""Co-click association rules with mlxtend FP-Growth over session transactions.

python -m ml.train_fp_growth   (this model only; python -m ml.train trains all)
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlxtend.frequent_patterns import association_rules, fpgrowth

from ml.neighbors import empty_triplet, to_csr_triplet

SESSION_GAP_SECONDS = 30 * 60


def session_transactions(
    user_positions: np.ndarray,
    item_positions: np.ndarray,
    epoch_seconds: np.ndarray,
    gap_seconds: int = SESSION_GAP_SECONDS,
) -> list[np.ndarray]:
    """Clicks split into sessions (a new one after `gap_seconds` of silence); each session's
    distinct items, only sessions with at least two items."""
    order = np.lexsort((epoch_seconds, user_positions))
    users, items, times = user_positions[order], item_positions[order], epoch_seconds[order]
    new_session = np.ones(len(users), dtype=bool)
    new_session[1:] = (users[1:] != users[:-1]) | (np.diff(times) > gap_seconds)
    boundaries = np.flatnonzero(new_session).tolist() + [len(users)]
    transactions = []
    for start, end in zip(boundaries[:-1], boundaries[1:], strict=True):
        basket = np.unique(items[start:end])
        if len(basket) >= 2:
            transactions.append(basket)
    return transactions


def co_click_rules(
    transactions: list[np.ndarray],
    n_items: int,
    *,
    min_support: float,
    min_confidence: float,
    min_lift: float,
    k: int = 50,
) -> tuple[dict[str, np.ndarray], int]:
    """Rules A -> B between single items; per antecedent, consequents ranked by confidence x lift.

    Returns the CSR triplet over all n_items and the number of rules kept.
    """
    empty = empty_triplet(n_items)
    if not transactions:
        return empty, 0
    lengths = [len(t) for t in transactions]
    rows = np.repeat(np.arange(len(transactions)), lengths)
    basket_items = sp.csr_matrix(
        (np.ones(len(rows), dtype=bool), (rows, np.concatenate(transactions))),
        shape=(len(transactions), n_items),
    )
    # Items below min support can never be in a frequent itemset: drop them before FP-Growth.
    support = np.asarray(basket_items.sum(axis=0)).ravel() / len(transactions)
    frequent_items = np.flatnonzero(support >= min_support)
    if len(frequent_items) < 2:
        return empty, 0
    frame = pd.DataFrame.sparse.from_spmatrix(
        basket_items[:, frequent_items], columns=[str(i) for i in frequent_items]
    )
    itemsets = fpgrowth(frame, min_support=min_support, use_colnames=True, max_len=2)
    if itemsets.empty or itemsets["itemsets"].map(len).max() < 2:
        return empty, 0
    rules = association_rules(
        itemsets,
        num_itemsets=len(transactions),
        metric="confidence",
        min_threshold=min_confidence,
        return_metrics=["confidence", "lift"],
    )
    rules = rules[rules["lift"] >= min_lift]
    per_item: dict[int, list[tuple[int, float]]] = {}
    for antecedents, consequents, confidence, lift in zip(
        rules["antecedents"], rules["consequents"], rules["confidence"], rules["lift"], strict=True
    ):
        [antecedent], [consequent] = antecedents, consequents
        per_item.setdefault(int(antecedent), []).append((int(consequent), confidence * lift))
    columns, scores = [], []
    for item in range(n_items):
        ranked = sorted(per_item.get(item, []), key=lambda pair: -pair[1])[:k]
        columns.append(np.array([c for c, _ in ranked], dtype=np.int32))
        scores.append(np.array([s for _, s in ranked], dtype=np.float32))
    return to_csr_triplet(columns, scores), len(rules)


def main() -> None:
    """Train only this model; the others are carried over from the current version."""
    from ml.train import run_cli  # imported here: ml.train imports this module

    run_cli(("coclick",), __doc__.split("\n")[0])


if __name__ == "__main__":
    main()
