"""Republish the current models with the synonyms file as it is now (no model is retrained).

    python -m ml.update_synonyms     (SYNONYMS_PATH, default data/synonyms.txt)

Serving workers pick the new version up like any other, so an edited synonym list is live
within MODEL_RELOAD_SECONDS.
"""

from ml.train import run_cli


def main() -> None:
    run_cli((), __doc__.split("\n")[0])


if __name__ == "__main__":
    main()
