"""Serving logic: pure functions and in-memory models, no HTTP."""

# Load order matters: once usearch's native library is loaded, a lightgbm loaded after it formats
# no numbers (Datasets fail with "Feature (Column_) appears more than one time" and Booster files
# no longer parse), so the ranker could be neither trained nor loaded. Every import of usearch
# goes through this package, which loads lightgbm first.
import lightgbm  # noqa: F401
