"""The synthetic catalog is deterministic and as messy as the real one."""

from ml.catalog_taxonomy import TAXONOMY
from ml.clean_catalog import clean_row, product_id_from_link
from ml.generate_catalog import RAW_COLUMNS, generate_rows


def test_same_seed_same_rows():
    assert list(generate_rows(300, seed=3)) == list(generate_rows(300, seed=3))
    assert list(generate_rows(300, seed=3)) != list(generate_rows(300, seed=4))


def test_taxonomy_size():
    assert len(TAXONOMY) >= 20
    assert sum(len(subs) for _, _, subs in TAXONOMY.values()) >= 100


def test_rows_have_real_world_mess():
    rows = [dict(zip(RAW_COLUMNS, row, strict=True)) for row in generate_rows(5000, seed=1)]
    ids = [product_id_from_link(row["link"]) for row in rows]
    assert len(set(ids)) < len(ids), "some products are listed twice"
    assert any(row["discount_price"] == "" for row in rows)
    assert any(row["ratings"] in {"Get", "FREE"} for row in rows)
    assert any(not row["no_of_ratings"].replace(",", "").isdigit() for row in rows)
    assert any(row["name"].endswith("...") for row in rows)
    assert any(row["name"] != row["name"].strip() for row in rows)
    assert any(not row["name"].isascii() for row in rows)
    assert any("," in row["actual_price"] for row in rows)
    kept = [clean_row(row)[0] for row in rows]
    assert all(row is not None for row in kept)
