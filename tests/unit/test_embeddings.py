"""Product embeddings with the real all-MiniLM-L6-v2: incremental re-encoding and the index."""

import numpy as np
import pytest

from ml.train_embeddings import build_index, export_query_encoder, product_embeddings
from services import text_encoder
from services.vector_index import open_index

TEXTS = [
    "boAt Airdopes 141 Wireless Earbuds (Headphones)",
    "Sony Bravia 55 inch 4K Smart LED TV (Televisions)",
    "Nike Revolution 6 Running Shoes (Sports Shoes)",
    "Prestige Svachh 5 L Pressure Cooker (Cookware)",
]


def test_only_new_or_changed_texts_are_encoded(monkeypatch):
    first, encoded = product_embeddings(TEXTS)
    assert encoded == 4
    vectors = first["embedding_vectors"]
    assert vectors.shape == (4, text_encoder.EMBEDDING_DIM) and vectors.dtype == np.float16
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1.0, atol=1e-2)

    calls = []
    real_encode = text_encoder.encode
    monkeypatch.setattr(
        text_encoder, "encode", lambda texts, **kw: calls.append(list(texts)) or real_encode(texts)
    )
    edited = [TEXTS[0], "Nike Revolution 7 Running Shoes (Sports Shoes)", TEXTS[1], TEXTS[1]]
    second, encoded = product_embeddings(
        edited, first["embedding_digests"], first["embedding_vectors"]
    )
    assert encoded == 1 and calls == [[edited[1]]]  # a duplicate text is not encoded twice
    assert np.array_equal(second["embedding_vectors"][0], vectors[0])
    assert np.array_equal(second["embedding_vectors"][2], vectors[1])
    assert np.array_equal(second["embedding_vectors"][3], vectors[1])
    similarity = second["embedding_vectors"][1].astype(np.float32) @ vectors[2].astype(np.float32)
    assert 0.8 < similarity < 0.999  # same shoe, next model: close, not identical


def test_index_round_trip_answers_nearest_neighbours(tmp_path):
    arrays, _ = product_embeddings(TEXTS)
    path = tmp_path / "index.usearch"
    build_index(arrays["embedding_vectors"], path)
    index = open_index(path)
    assert len(index) == 4
    query = text_encoder.embed_query("wireless earphones")
    matches = index.search(query, 2)
    assert matches.keys[0] == 0
    assert 1 - matches.distances[0] > 0.5


def test_the_exported_query_encoder_embeds_as_the_torch_model(tmp_path):
    files = export_query_encoder(tmp_path)
    assert set(files) == {text_encoder.QUERY_ENCODER_FILE, text_encoder.QUERY_TOKENIZER_FILE}
    encoder = text_encoder.open_query_encoder(tmp_path)
    queries = [
        "wireless earphones",
        "SAMSUNG Galaxy M14 5G",  # upper case: the tokenizer lowercases, as the model's does
        "ऑफिस चेयर",  # not English: word pieces of the multilingual vocabulary tail
        # Past MAX_SEQ_LENGTH tokens: both truncate at the same token.
        "red running shoes for men with memory foam soles, lace-up, breathable mesh upper, "
        "anti-slip rubber outsole, lightweight and durable, size 8 to 11, colour red and black",
        *TEXTS,
    ]
    for query in queries:
        onnx_vector = encoder.embed(query)
        torch_vector = text_encoder.embed_query(query)
        assert onnx_vector.shape == (text_encoder.EMBEDDING_DIM,)
        assert float(onnx_vector @ torch_vector) == pytest.approx(1.0, abs=1e-5), query
    assert not encoder.embed("x").flags.writeable  # shared once cached
    assert text_encoder.open_query_encoder(tmp_path / "elsewhere") is None
    (tmp_path / text_encoder.QUERY_ENCODER_FILE).write_bytes(b"not a model")
    with pytest.raises(ValueError, match="query encoder"):  # a broken version, not a crash
        text_encoder.open_query_encoder(tmp_path)
