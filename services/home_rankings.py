"""Home rankings prepared by the daily training for the active users, and read back by the
request path.

The learned ranker's output for a user is a function of the user's events in the history window
and of the model version alone (the ranker's trending inputs are the version's, as ml.evaluate
measures them; the mixer's exploration and the page are still made per request). So training
ranks every active user once, and a home request whose events are the ones training saw (same
count, newest and oldest timestamp) reads that ranking instead of computing it: one array slice
instead of ~10 ms of sources, features and LightGBM at 550k products. Any new event, an event
leaving the window, a filter or a longer page: the request computes the ranking itself.

A user's history stamp (migration 0011), read by training in the snapshot of its events, lets a
request skip even the read of the user's table: while the stamp is unchanged and no event of the
history has left the window, the history is the one training ranked, and its clicked products
(which the feed leaves out) are stored here too.

Arrays (prefix "home_", one version's): users sorted by id with their history fingerprint and
stamp (-1: unknown), and per user the version rows of the products clicked in the history; per
user a slice of candidates (product rows of the version, ranker scores), the first
`home_ranked_counts[u]` the ranked list and the rest the exploration picks; per candidate its
reasons as (kind, anchor) with kinds (signal, text before and after the anchor) and anchors
(UTF-8 strings) in small vocabularies.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, pairwise
from typing import Protocol

import numpy as np
import orjson

from services.artifacts import packed_string, packed_strings
from services.recommender import Candidate, Reason

PAGE = 20  # the longest first page (offset + limit) a prepared ranking serves
MADE_REASONS = 100_000  # Reasons kept per version and worker (a few hundred bytes each)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def history_fingerprint(events: list[dict]) -> tuple[int, int, int]:
    """(count, newest, oldest timestamp in microseconds) of events given newest first: the same
    for the same history window unless events were added or left it in a way no user can
    make (an event inserted in the middle adds one to the count)."""
    if not events:
        return (0, 0, 0)
    return (len(events), _micros(events[0]["timestamp"]), _micros(events[-1]["timestamp"]))


def _micros(timestamp: datetime) -> int:
    return (timestamp - _EPOCH) // timedelta(microseconds=1)


@dataclass
class PreparedRanking:
    """A user's learned ranking (best first) and exploration picks; with a visit in progress,
    the lists that follow it (services/feeds.py: visit_lists) and its newest event."""

    ranked: list[Candidate]
    explore: list[Candidate]
    visit: dict[str, list[Candidate]] = field(default_factory=dict)
    newest: datetime | None = None  # the history's newest event, when the visit lists are set

    def give_reasons(self, candidates: list[Candidate]) -> None:
        """Give the reasons to those of `candidates` made without them (the page's: a page
        shows a few, the ranking holds dozens). Complete already here."""


# The form of a ranking a worker computed and shares (migration 0013); another form is ignored.
_SHARED_FORM = 2


def shared_ranking(ranking: PreparedRanking, seen: list[int], ids) -> bytes:
    """A complete ranking (every candidate's reasons) and the products clicked in the history it
    ranked (catalog positions), as JSON with product ids: another worker's catalog may hold
    the same products at other positions (one loaded after products were imported, say). A
    reason is its kind (signal, text around the anchor: a few per ranking) and its anchor."""
    visit = ranking.visit
    candidates = ranking.ranked + ranking.explore + [c for found in visit.values() for c in found]
    counts = [len(ranking.ranked), len(ranking.explore), *(len(f) for f in visit.values())]
    kinds = _Vocabulary()
    # Candidates share Reason objects (one per source and anchor): each is taken apart once.
    parts_of: dict[int, tuple[int, str | None]] = {}

    def parts(reason: Reason) -> tuple[int, str | None]:
        found = parts_of.get(id(reason))
        if found is None:
            kind = kinds.of((reason.signal, *_split(reason)))
            found = parts_of[id(reason)] = (kind, reason.anchor)
        return found

    reasons = [[part for r in c.reasons for part in parts(r)] for c in candidates]
    return orjson.dumps(
        [
            _SHARED_FORM,
            counts,
            ids[[c.position for c in candidates]].tolist(),
            [c.score for c in candidates],
            kinds.values(),
            reasons,
            ids[seen].tolist(),
            list(visit),
            _micros(ranking.newest) if ranking.newest is not None else None,
        ]
    )


class _SharedReasons:
    """Makes the Reasons of shared candidates (per candidate: kind, anchor, kind, anchor...)."""

    def __init__(self, kinds: list[list]):
        self.kinds = kinds
        self._made: dict[tuple[int, str | None], Reason] = {}  # candidates share reasons

    def reasons(self, pending: list[list]) -> list[list[Reason]]:
        return [[self._reason(k, a) for k, a in zip(r[::2], r[1::2], strict=True)] for r in pending]

    def _reason(self, kind: int, anchor: str | None) -> Reason:
        reason = self._made.get((kind, anchor))
        if reason is None:
            reason = self._made[(kind, anchor)] = _joined(self.kinds[kind], anchor)
        return reason


def read_shared_ranking(payload: bytes, position_of: dict[str, int]) -> PreparedRanking | None:
    """A ranking `shared_ranking` wrote, with its `seen` positions; None when it is not one or
    names a product this catalog lacks (the request then computes the ranking itself)."""
    try:
        form, counts, ids, scores, kinds, reasons, seen_ids, names, newest = orjson.loads(payload)
        if form != _SHARED_FORM:
            return None
        positions = [position_of[i] for i in ids]
        seen = [position_of[i] for i in seen_ids]
        reading = _SharedReasons(kinds)
        ranking = _read_ranking(positions, scores, reasons, counts[0], reading)
        explore, at = ranking.explore, counts[1]
        ranking.explore = explore[:at]
        for name, count in zip(names, counts[2:], strict=True):
            ranking.visit[name] = explore[at : at + count]
            at += count
        ranking.newest = None if newest is None else _EPOCH + timedelta(microseconds=newest)
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError):
        return None
    ranking.seen = seen
    return ranking


@dataclass
class PreparedUser:
    """What training stores of one active user."""

    user_id: str
    fingerprint: tuple[int, int, int]  # history_fingerprint of the events ranked
    stamp: int  # the user's history stamp when training read the events; -1: unknown
    seen: list[int]  # catalog rows (the version's) of the products clicked in the history
    ranking: PreparedRanking


class _ReasonMaker(Protocol):
    def reasons(self, pending: list) -> list[list[Reason]]: ...


@dataclass
class _ReadRanking(PreparedRanking):
    """A ranking read back (from the arrays, or shared by a worker); its reasons are made for the
    page only, by `reading`, from what `pending_reasons` holds of each candidate."""

    reading: _ReasonMaker | None = None
    pending_reasons: dict[int, object] | None = None  # id(candidate) -> what makes its reasons
    seen: list[int] | None = None  # catalog positions clicked in the history, when asked for

    def give_reasons(self, candidates: list[Candidate]) -> None:
        waiting = [c for c in candidates if id(c) in self.pending_reasons]
        found = self.reading.reasons([self.pending_reasons.pop(id(c)) for c in waiting])
        for candidate, reasons in zip(waiting, found, strict=True):
            candidate.reasons[:0] = reasons


def _read_ranking(
    positions: list[int],
    scores: list[float],
    pending: list,
    ranked_count: int,
    reading: _ReasonMaker,
) -> _ReadRanking:
    """Candidates without their reasons, the first `ranked_count` the ranked list."""
    made = [Candidate(p, score) for p, score in zip(positions, scores, strict=True)]
    pending_reasons = dict(zip(map(id, made), pending, strict=True))
    return _ReadRanking(
        made[:ranked_count], made[ranked_count:], reading=reading, pending_reasons=pending_reasons
    )


class _Vocabulary:
    def __init__(self):
        self.index: dict = {}

    def of(self, value) -> int:
        return self.index.setdefault(value, len(self.index))

    def values(self) -> list:
        return list(self.index)


def pack(users: list[PreparedUser]) -> dict[str, np.ndarray]:
    """The arrays of the users' rankings (catalog positions must be the version's rows)."""
    users = sorted(users, key=lambda user: user.user_id)
    kinds, anchors = _Vocabulary(), _Vocabulary()
    indptr, ranked_counts, products, scores = [0], [], [], []
    reason_indptr, reason_kinds, reason_anchors = [0], [], []
    seen_indptr, seen = [0], []
    for user in users:
        seen.extend(user.seen)
        seen_indptr.append(len(seen))
        ranking = user.ranking
        candidates = ranking.ranked + ranking.explore
        ranked_counts.append(len(ranking.ranked))
        indptr.append(indptr[-1] + len(candidates))
        for candidate in candidates:
            products.append(candidate.position)
            scores.append(candidate.score)
            for reason in candidate.reasons:
                reason_kinds.append(kinds.of((reason.signal, *_split(reason))))
                reason_anchors.append(-1 if reason.anchor is None else anchors.of(reason.anchor))
            reason_indptr.append(len(reason_kinds))
    kind_values = kinds.values() or [("", "", "", False)]
    anchor_bytes, anchor_offsets = packed_strings(anchors.values())
    return {
        "home_user_ids": np.array([u.user_id for u in users], dtype=str),
        "home_fingerprints": np.array([u.fingerprint for u in users], np.int64).reshape(-1, 3),
        "home_stamps": np.array([u.stamp for u in users], np.int64),
        "home_seen_indptr": np.array(seen_indptr, np.int64),
        "home_seen_products": np.array(seen, np.int32),
        "home_indptr": np.array(indptr, np.int64),
        "home_ranked_counts": np.array(ranked_counts, np.int32),
        "home_products": np.array(products, np.int32),
        "home_scores": np.array(scores, np.float64),
        "home_reason_indptr": np.array(reason_indptr, np.int64),
        "home_reason_kinds": np.array(reason_kinds, _kind_dtype(len(kind_values))),
        "home_reason_anchors": np.array(reason_anchors, np.int32),
        "home_kind_signals": np.array([k[0] for k in kind_values], dtype=str),
        "home_kind_prefixes": np.array([k[1] for k in kind_values], dtype=str),
        "home_kind_suffixes": np.array([k[2] for k in kind_values], dtype=str),
        "home_kind_inserts": np.array([k[3] for k in kind_values], bool),
        "home_anchor_bytes": anchor_bytes,
        "home_anchor_offsets": anchor_offsets,
    }


def _kind_dtype(kinds: int) -> type:
    """The smallest integer type for the reason kinds (a few dozen: signals x texts)."""
    return np.int8 if kinds <= 127 else np.int16 if kinds <= 32767 else np.int32


def _split(reason: Reason) -> tuple[str, str, bool]:
    """The reason's text before and after its anchor, and whether the anchor is in the text
    (when not: all of the text before)."""
    if reason.anchor is None or reason.anchor not in reason.text:
        return reason.text, "", False
    at = reason.text.index(reason.anchor)
    return reason.text[:at], reason.text[at + len(reason.anchor) :], True


def _joined(kind, anchor: str | None) -> Reason:
    """The Reason `_split` took apart, from its kind (signal, text before and after the anchor,
    whether the anchor is in the text) and its anchor."""
    signal, before, after, inserted = kind
    return Reason(signal, anchor, before + anchor + after if inserted else before + after)


class HomeRankings:
    """Reads one version's prepared rankings: the users' slots and the reason kinds (a few
    dozen) decoded once at load, so a request decodes only its page's anchors."""

    def __init__(self, arrays: dict[str, np.ndarray], slots: dict[str, int]):
        self.arrays = arrays
        self.slots = slots
        self._made: dict[tuple[int, int], Reason] = {}  # (kind, anchor) -> its Reason
        self.kinds = (
            [
                (str(signal), str(prefix), str(suffix), bool(insert))
                for signal, prefix, suffix, insert in zip(
                    arrays["home_kind_signals"].tolist(),
                    arrays["home_kind_prefixes"].tolist(),
                    arrays["home_kind_suffixes"].tolist(),
                    arrays["home_kind_inserts"].tolist(),
                    strict=True,
                )
            ]
            if slots
            else []
        )

    def ranking(
        self, to_catalog: np.ndarray, user_id: str, events: list[dict]
    ) -> PreparedRanking | None:
        """The user's prepared ranking if training saw exactly these events (newest first),
        with catalog positions (a product gone from the catalog left out); else None. Its
        reasons come with `give_reasons`."""
        slot = self.slots.get(user_id)
        if slot is None:
            return None
        if tuple(self.arrays["home_fingerprints"][slot].tolist()) != history_fingerprint(events):
            return None
        return self._read(to_catalog, slot)

    def stamp(self, user_id: str, since: datetime, visit_since: datetime) -> int | None:
        """The user's history stamp when training read the events it ranked, if it is known,
        none of those events is older than `since` (the request's window) and none is newer
        than `visit_since` (a visit in progress); else None."""
        slot = self.slots.get(user_id)
        stamps = self.arrays.get("home_stamps")
        if slot is None or stamps is None:
            return None
        stamp = int(stamps[slot])
        _, newest, oldest = self.arrays["home_fingerprints"][slot].tolist()
        fresh = oldest >= _micros(since) and newest < _micros(visit_since)
        return stamp if stamp >= 0 and fresh else None

    def unread_ranking(self, to_catalog: np.ndarray, user_id: str) -> PreparedRanking:
        """The user's prepared ranking and clicked products (`seen`, catalog positions), for a
        request whose history stamp matched `stamp`: its events were not read."""
        slot = self.slots[user_id]
        read = self._read(to_catalog, slot)
        indptr = self.arrays["home_seen_indptr"]
        rows = self.arrays["home_seen_products"][indptr[slot] : indptr[slot + 1]]
        read.seen = [p for p in to_catalog[rows].tolist() if p >= 0]
        return read

    def _read(self, to_catalog: np.ndarray, slot: int) -> "_ReadRanking":
        arrays = self.arrays
        start, end = int(arrays["home_indptr"][slot]), int(arrays["home_indptr"][slot + 1])
        positions = to_catalog[arrays["home_products"][start:end]].tolist()
        scores = arrays["home_scores"][start:end].tolist()
        reason_indptr = arrays["home_reason_indptr"][start : end + 1].tolist()
        ranked_count = int(arrays["home_ranked_counts"][slot])
        rows = list(pairwise(reason_indptr))  # each candidate's range of reason rows
        if min(positions, default=0) < 0:  # products gone from the catalog: left out
            kept = [i for i, position in enumerate(positions) if position >= 0]
            ranked_count = sum(i < ranked_count for i in kept)
            positions = [positions[i] for i in kept]
            scores = [scores[i] for i in kept]
            rows = [rows[i] for i in kept]
        return _read_ranking(positions, scores, rows, ranked_count, self)

    def reasons(self, rows: list[tuple[int, int]]) -> list[list[Reason]]:
        """The reasons in each (start, end) range of rows of the home_reason_* arrays, read in
        one pass; a Reason (immutable) is made once per kind and anchor and shared."""
        if not rows:
            return []
        # A page's few dozen rows: plain lists cost less than NumPy's per-call overhead.
        at = [row for start, end in rows for row in range(start, end)]
        kinds = self.arrays["home_reason_kinds"][at].tolist()
        anchors = self.arrays["home_reason_anchors"][at].tolist()
        if len(self._made) > MADE_REASONS:
            self._made.clear()
        made = [
            self._made.get(pair) or self._make(*pair) for pair in zip(kinds, anchors, strict=True)
        ]
        bounds = [0, *accumulate(end - start for start, end in rows)]
        return [made[bounds[i] : bounds[i + 1]] for i in range(len(rows))]

    def _make(self, kind: int, anchor: int) -> Reason:
        name = None
        if anchor >= 0:
            arrays = self.arrays
            name = packed_string(arrays["home_anchor_bytes"], arrays["home_anchor_offsets"], anchor)
        reason = _joined(self.kinds[kind], name)
        self._made[(kind, anchor)] = reason
        return reason
