"""Content similarity: TF-IDF over product name + sub-category, top-K similar products each.

python -m ml.train_content_model --help   (trains every model: see ml.train)
"""

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from ml.neighbors import chunked_top_k

# Repeating the sub-category gives it real weight next to the (longer) product name.
SUB_CATEGORY_REPEAT = 3
TOKEN_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z0-9\-]+\b"


def product_text(name: str, sub_category: str) -> str:
    return f"{name} " + " ".join([sub_category] * SUB_CATEGORY_REPEAT)


def fit_tfidf(
    names: list[str], sub_categories: list[str]
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """TF-IDF matrix (rows L2-normalised), vocabulary (column -> term) and idf weights."""
    vectorizer = TfidfVectorizer(
        lowercase=True,
        token_pattern=TOKEN_PATTERN,
        sublinear_tf=True,
        min_df=1,
        max_df=0.5,  # words in half the catalog ("with", "for") carry no similarity
        dtype=np.float32,
    )
    texts = [product_text(n, s) for n, s in zip(names, sub_categories, strict=True)]
    matrix = vectorizer.fit_transform(texts).tocsr()
    vocabulary = np.array(vectorizer.get_feature_names_out(), dtype=str)
    return normalize(matrix), vocabulary, vectorizer.idf_.astype(np.float32)


def similar_products(matrix: sp.csr_matrix, k: int = 50, progress=None) -> dict[str, np.ndarray]:
    """Top-k cosine neighbours of every product (CSR triplet), excluding the product itself."""
    return chunked_top_k(matrix, matrix.T.tocsr(), k, chunk_rows=1000, progress=progress)
