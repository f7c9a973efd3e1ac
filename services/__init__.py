"""Serving logic: pure functions and in-memory models, no HTTP."""

import sys

# Load order matters: once usearch's native library is loaded, a lightgbm loaded after it formats
# no numbers (Datasets fail with "Feature (Column_) appears more than one time" and Booster files
# no longer parse), so the ranker could be neither trained nor loaded. Every import of usearch
# goes through this package, which loads lightgbm first.
#
# lightgbm imports scikit-learn (and with it scipy.stats) whenever it is installed, for its
# scikit-learn-style estimators: over a second of every worker's start-up. Serving and training
# use lightgbm's own API (Booster, train), so lightgbm is loaded as if scikit-learn were absent;
# scikit-learn itself still imports normally afterwards (training's TF-IDF).
_hide_sklearn = "sklearn" not in sys.modules
if _hide_sklearn:
    sys.modules["sklearn"] = None  # `import sklearn` raises ImportError meanwhile
try:
    import lightgbm  # noqa: F401
finally:
    if _hide_sklearn:
        del sys.modules["sklearn"]
