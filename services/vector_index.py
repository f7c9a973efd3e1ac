"""The product embeddings' nearest-neighbour index (usearch HNSW): its settings, shared by the
training that writes it and the serving that opens it memory-mapped."""

from pathlib import Path

from usearch.index import Index

from services import text_encoder

INDEX_FILE = "embedding_index.usearch"
# usearch HNSW over float16 vectors, memory-mapped (`view`) so every worker shares one copy.
# bench/vector_index.py on 200k products: recall@10 0.80 (i8: 0.73; hnswlib/faiss float32,
# loaded into each worker's RAM: 0.84/0.87), p95 0.8 ms; exact numpy search takes 31 ms.
INDEX_DTYPE = "f16"
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 96


def new_index() -> Index:
    return Index(
        ndim=text_encoder.EMBEDDING_DIM,
        metric="cos",
        dtype=INDEX_DTYPE,
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


def open_index(path: Path) -> Index:
    """The saved index, memory-mapped read-only (its dtype and metric read from the file, so a
    version built with other settings still opens)."""
    index = Index.restore(str(path), view=True)
    if index is None:
        raise ValueError(f"{path}: not a usearch index")
    index.expansion_search = EXPANSION_SEARCH
    return index
