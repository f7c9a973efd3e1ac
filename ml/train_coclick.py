"""Co-click association rules A -> B between single items, by counting item pairs per session.

python -m ml.train --only coclick   (this model only; python -m ml.train trains all)

Support is an absolute count of sessions (COCLICK_MIN_SESSIONS): a relative support shrinks the
rules to nothing as a shop grows (0.05 % of 176k sessions is 88 sessions). The pair counts are one
sparse product (items x sessions) @ (sessions x items), whose size is the number of co-occurring
pairs: memory grows with Σ session length², never sessions x items (mlxtend's FP-Growth needs
a dense sessions x items table: 7.6 GB at support 3 on 176k sessions). For rules of two items,
counting pairs is all that FP-Growth would do, without the tree.
"""

import numpy as np
import scipy.sparse as sp

from ml.neighbors import to_csr_triplet, top_k_per_row

RULES_PER_ITEM = 50  # consequents kept per antecedent


def co_click_rules(
    session_indptr: np.ndarray,
    session_items: np.ndarray,
    n_items: int,
    *,
    min_sessions: int,
    min_confidence: float,
    min_lift: float,
    k: int = RULES_PER_ITEM,
) -> tuple[dict[str, np.ndarray], int]:
    """Rules A -> B over sessions given as CSR (each session's distinct items).

    A rule needs A and B together in at least `min_sessions` sessions, confidence
    P(B | A) >= min_confidence and lift >= min_lift. Per antecedent the consequents are ranked
    by confidence x lift damped by B's popularity, which here is the cosine
    n(A,B) / sqrt(n(A) n(B)): pure confidence ranks the bestsellers first for every item, pure
    lift the rarest co-clicks.

    Returns the CSR triplet (indptr, indices, scores) over n_items and the number of rules.
    """
    n_sessions = len(session_indptr) - 1
    baskets = sp.csr_matrix(
        (np.ones(len(session_items), np.float32), session_items, session_indptr),
        shape=(n_sessions, n_items),
    )
    item_sessions = np.asarray(baskets.sum(axis=0)).ravel()
    pairs = (baskets.T @ baskets).tocoo()
    a, b, together = pairs.row, pairs.col, pairs.data
    confidence = together / item_sessions[a]
    lift = together * n_sessions / (item_sessions[a] * item_sessions[b])
    keep = (
        (a != b) & (together >= min_sessions) & (confidence >= min_confidence) & (lift >= min_lift)
    )
    a, b, together = a[keep], b[keep], together[keep]
    score = together / np.sqrt(item_sessions[a] * item_sessions[b])
    rules = sp.csr_matrix((score.astype(np.float32), (a, b)), shape=(n_items, n_items))
    columns, scores = top_k_per_row(rules, k)
    return to_csr_triplet(columns, scores), int(keep.sum())
