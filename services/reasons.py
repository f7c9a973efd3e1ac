"""Reasons as a shopper reads them: a product anchor named by its (shortened) name, a category
by its display name. The anchor itself stays the id or name a frontend can link to."""

from services.catalog import Catalog, display_name
from services.lru import LRU
from services.recommender import Reason

# Reasons are shared by many items and requests (one per source and anchor): each is put into
# words once per catalog.
READABLE_REASONS = 50_000


class ReadableReasons:
    def __init__(self, size: int = READABLE_REASONS):
        self._made = LRU(size)  # Reason -> (catalog, its response form)

    def of(self, catalog: Catalog, reasons: list[Reason]) -> list[dict]:
        return [self.one(catalog, reason) for reason in reasons]

    def one(self, catalog: Catalog, reason: Reason) -> dict:
        made = self._made.get(reason)
        if made is None or made[0] is not catalog:
            made = (catalog, readable(catalog, reason))
            self._made.put(reason, made)
        return made[1]


def readable(catalog: Catalog, reason: Reason) -> dict:
    """The response form of a reason, its text naming the anchor as a person would."""
    text, anchor = reason.text, reason.anchor
    if anchor:
        position = catalog.position_of.get(anchor)
        if position is not None:
            text = text.replace(anchor, f"“{catalog.short_name(position)}”")
        elif anchor.casefold() in catalog.category_names_of:
            text = text.replace(anchor, display_name(anchor))
    return {"signal": reason.signal, "anchor": anchor, "text": text}
