"""How the service names, groups and matches what a shopper reads and types: listings of one
product, display names, category names in any case, words by stem and typos."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from services.catalog import Catalog, UnknownCategory, display_name, product_groups, short_name
from services.query_words import QueryWords
from services.synonyms import Synonyms
from services.text_encoder import encoder_words


def test_listings_of_one_product_share_a_group():
    names = [
        "boAt Airdopes 141 Bluetooth Truly Wireless in Ear Earbuds with 42H Playtime (Black)",
        "boAt Airdopes 141 Bluetooth Truly Wireless in Ear Earbuds with 42H Playtime (Blue)",
        "boAt Airdopes 141 Pro True Wireless in Ear Earbuds with 45H Playtime",
        "BOAT airdopes 141 bluetooth truly wireless in-ear earbuds, other colour",  # other price
        "Kettle",
        "kettle",  # the same name, another price
        "",
        "",  # no name: nobody's listing
    ]
    price = np.array([1299.0, 1299.0, 1399.0, 999.0, 500.0, 700.0, 10.0, 10.0])
    groups = product_groups(pa.array(names), price).tolist()
    assert groups[0] == groups[1]  # colours of one product at one price
    assert len({groups[0], groups[2], groups[3]}) == 3  # another model; another price
    assert groups[4] == groups[5]
    assert groups[6] != groups[7]


def test_display_names_and_short_names():
    assert display_name("tv, audio & cameras") == "TV, Audio & Cameras"
    assert display_name("men's shoes") == "Men's Shoes"
    assert display_name("Headphones") == "Headphones"
    long = "boAt Airdopes 141 Bluetooth Truly Wireless in Ear Earbuds with 42H Playtime, Beast Mode"
    cut = short_name(long)
    assert cut.endswith("…") and len(cut) <= 49 and long.startswith(cut[:-1])
    assert short_name("Kettle") == "Kettle"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    frame = pd.DataFrame(
        {
            "id": ["B000000001", "B000000002", "B000000003", "B000000004"],
            "name": ["Red kettle", "Blue kettle", "Steel bottle", "Wallet"],
            "main_category": ["home & kitchen", "home & kitchen", "bags & luggage", "accessories"],
            "sub_category": ["Kettles", "Kettles", "Bags & Luggage", "Wallets"],
            "image": "",
            "link": "",
            "ratings": [4.0, 4.5, 3.0, 4.0],
            "no_of_ratings": [10, 20, 30, 40],
            "discount_price": [100.0, 120.0, 90.0, 50.0],
            "actual_price": [200.0, 240.0, 100.0, 60.0],
            "discount_ratio": [0.5, 0.5, 0.1, 0.17],
        }
    )
    return Catalog.from_frame(frame)


def test_a_category_is_named_in_any_case_and_a_typo_gets_close_names(catalog):
    assert catalog.resolve_category("kettles") == ("Kettles",)
    assert catalog.resolve_category(" WALLETS ") == ("Wallets",)
    # A main and a sub-category of one name: the filter passes either.
    assert catalog.resolve_category("Bags & Luggage") == ("Bags & Luggage", "bags & luggage")
    with pytest.raises(UnknownCategory) as error:
        catalog.resolve_category("kettel")
    assert "Kettles" in error.value.close
    positions = np.arange(4)
    assert catalog.in_named_sub_categories(positions, ("kettle",)).tolist() == [
        True,
        True,
        False,
        False,
    ]
    tree = {c["name"]: c for c in catalog.category_tree}
    assert tree["home & kitchen"]["products"] == 2
    assert tree["home & kitchen"]["display_name"] == "Home & Kitchen"
    assert tree["home & kitchen"]["sub_categories"] == [
        {"name": "Kettles", "display_name": "Kettles", "products": 2}
    ]


def test_words_match_by_stem_and_typos_are_corrected():
    terms = ["headphone", "headphones", "sunglasses", "wallet", "wall", "refrigerator"]
    words = QueryWords(terms, np.array([3, 40, 12, 9, 30, 5]))
    by_column = dict(enumerate(terms))
    # Every form of the word, the very word typed weighing most.
    assert [(by_column[c], w) for c, w in words.columns("headphone", 0.8)] == [
        ("headphones", 0.8),
        ("headphone", 1.0),
    ]
    assert [c for c, _ in words.columns("sunglass")] == [c for c, _ in words.columns("sunglasses")]
    assert words.correction("hedphones") == "headphones"
    assert words.correction("walet") == "wallet"  # one edit from wallet, two from wall
    assert words.correction("sunglases") == "sunglasses"
    assert words.correction("headphones") is None  # known
    assert words.correction("xqz") is None  # too short to guess
    assert words.correction("flurbotank") is None  # nothing close
    assert [(by_column[c], w) for c, w in words.columns("refrigerater")] == [("refrigerator", 1.0)]
    # A word of the language is not a typo of a catalog word one edit away.
    assert words.correction("walk") == "wall"
    english = QueryWords(terms, np.array([3, 40, 12, 9, 30, 5]), frozenset({"walk"}))
    assert english.correction("walk") is None and english.correction("walet") == "wallet"


def test_the_encoders_words_are_common_english_not_typos():
    dictionary = encoder_words()
    assert {"cheap", "something", "thing", "mother"} <= dictionary
    assert not {"hedphones", "walet", "sunglases", "##ing"} & dictionary


def test_synonyms_match_the_typed_words_in_another_form():
    synonyms = Synonyms.parse("headphones, headset\nfridge, refrigerator")
    singular = synonyms.expand("headphone")
    assert singular.concepts[0].alternatives == ["headphones", "headset"]
    assert synonyms.expand("fridges").concepts[0].alternatives == ["fridge", "refrigerator"]
