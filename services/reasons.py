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
        self._catalog: Catalog | None = None
        self._made: dict[tuple, dict] = {}  # of self._catalog

    def of(self, catalog: Catalog, reasons: list[Reason]) -> list[dict]:
        if catalog is not self._catalog:  # another catalog: names may have changed
            self._catalog, self._made = catalog, {}
        made = self._made
        forms = []
        for reason in reasons:
            key = (reason.signal, reason.anchor, reason.text)
            form = made.get(key)
            if form is None:
                if len(made) >= self.size:
                    made.clear()
                form = made[key] = readable(catalog, reason)
            forms.append(form)
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
