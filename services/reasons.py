"""Reasons as a shopper reads them: a product anchor named by its (shortened) name, a category
by its display name. The anchor itself stays the id or name a frontend can link to."""

from services.catalog import Catalog, display_name
from services.recommender import Reason

# A reason's words depend on its fields alone: each (signal, anchor, text) is put into words once
# per catalog. Keyed by a tuple of the fields (their str hashes are cached; hashing the frozen
# dataclass itself runs in Python and cost more than the words).
READABLE_REASONS = 50_000


class ReadableReasons:
    def __init__(self, size: int = READABLE_REASONS):
        self.size = size
        self._made: dict[tuple, tuple[Catalog, dict]] = {}

    def of(self, catalog: Catalog, reasons: list[Reason]) -> list[dict]:
        made = self._made
        forms = []
        for reason in reasons:
            key = (reason.signal, reason.anchor, reason.text)
            entry = made.get(key)
            if entry is None or entry[0] is not catalog:
                if len(made) >= self.size:
                    made.clear()
                entry = made[key] = (catalog, readable(catalog, reason))
            forms.append(entry[1])
        return forms


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
