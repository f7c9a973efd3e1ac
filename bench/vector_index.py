"""Compare nearest-neighbour back-ends for semantic search on the trained product embeddings.

    python -m bench.vector_index [--limit N] [--queries 500]   (ARTIFACTS_DIR as for training)

Exact search (numpy float32 matrix-vector product) is the reference; each index reports its
build time, size, single-query latency (one thread, as a serving worker runs it) and recall@10
against the exact top 10. Queries are real search phrases: the entries of the synonyms file,
embedded with the service's encoder. hnswlib and faiss are measured when installed
(`pip install hnswlib faiss-cpu`); they are not dependencies of the service.
"""

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from config.settings import get_settings
from services import text_encoder
from services.artifacts import current_version_folder, load_version
from services.synonyms import words

K = 10


def _queries(path: Path, n: int) -> np.ndarray:
    phrases = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0]
        for part in line.replace("=>", ",").split(","):
            phrase = " ".join(words(part))
            if phrase and phrase not in phrases:
                phrases.append(phrase)
    return text_encoder.encode(phrases[:n])


def _latencies(search, queries: np.ndarray) -> tuple[list[np.ndarray], float, float]:
    results, times = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(search(query))
        times.append((time.perf_counter() - started) * 1000)
    return results, float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _recall(found: list[np.ndarray], exact: list[np.ndarray]) -> float:
    pairs = zip(found, exact, strict=True)
    overlaps = [len(set(f[:K].tolist()) & set(e.tolist())) for f, e in pairs]
    return float(np.mean(overlaps)) / K


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="use the first N products")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--backends", default="usearch-i8,usearch-f16,hnswlib,faiss", help="comma-separated"
    )
    args = parser.parse_args()
    settings = get_settings()
    folder = current_version_folder(settings.artifacts_dir)
    if folder is None:
        raise SystemExit(f"no trained version in {settings.artifacts_dir}: run python -m ml.train")
    _, arrays = load_version(folder)
    vectors16 = np.asarray(arrays["embedding_vectors"][: args.limit])
    vectors = vectors16.astype(np.float32)
    queries = _queries(settings.synonyms_path, args.queries)
    threads = os.cpu_count() or 1
    # What a request pays for an uncached query: one short text, one thread (as a worker).
    text_encoder.limit_torch_threads(1)
    phrases = ["wireless thing for ears", "runing shoes", "something to keep drinks cold"] * 34
    _, embed_p50, embed_p95 = _latencies(
        lambda q: text_encoder.encode([q], batch_size=1), np.array(phrases, dtype=object)
    )
    print(f"query embedding, 1 thread: p50 {embed_p50:.1f} ms, p95 {embed_p95:.1f} ms")
    print(
        f"{len(vectors):,} products x {vectors.shape[1]} dims, {len(queries)} queries, "
        f"index builds on {threads} threads, queries on 1"
    )
    exact, p50, p95 = _latencies(lambda q: np.argsort(-(vectors @ q))[:K], queries)
    rows = [("exact numpy float32", 0.0, vectors.nbytes, p50, p95, 1.0)]
    work = Path(tempfile.mkdtemp())

    backends = args.backends.split(",")
    for backend in backends:
        if backend.startswith("usearch-"):
            measure = _usearch(backend.removeprefix("usearch-"))
        elif backend in ("hnswlib", "faiss") and importlib.util.find_spec(backend):
            measure = {"hnswlib": _hnswlib, "faiss": _faiss}[backend]
        else:
            print(f"{backend}: not installed or unknown, skipped")
            continue
        name, build, path, search = measure(vectors, threads, work)
        found, p50, p95 = _latencies(search, queries)
        rows.append((name, build, path.stat().st_size, p50, p95, _recall(found, exact)))

    print(f"| back-end | build s | size MB | query p50 ms | query p95 ms | recall@{K} |")
    print("|---|---|---|---|---|---|")
    for name, build, size, p50, p95, recall in rows:
        print(f"| {name} | {build:.1f} | {size / 1e6:.0f} | {p50:.2f} | {p95:.2f} | {recall:.3f} |")


# Each back-end: build on all cores, save, and return (name, build seconds, file, search on one
# thread returning the top-K keys).


def _usearch(dtype: str):
    def measure(vectors: np.ndarray, threads: int, work: Path):
        from usearch.index import Index

        index = Index(
            ndim=vectors.shape[1],
            metric="cos",
            dtype=dtype,
            connectivity=16,
            expansion_add=128,
            expansion_search=96,
        )
        started = time.perf_counter()
        index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=threads)
        build = time.perf_counter() - started
        path = work / f"usearch-{dtype}.usearch"
        index.save(str(path))
        viewed = Index.restore(str(path), view=True)
        name = f"usearch HNSW {dtype} (memory-mapped)"
        return name, build, path, lambda q: viewed.search(q, K, threads=1).keys

    return measure


def _hnswlib(vectors: np.ndarray, threads: int, work: Path):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=16, ef_construction=128)
    started = time.perf_counter()
    index.add_items(vectors, num_threads=threads)
    build = time.perf_counter() - started
    index.set_ef(96)
    index.set_num_threads(1)
    path = work / "hnswlib.bin"
    index.save_index(str(path))
    name = "hnswlib HNSW float32 (loaded into RAM)"
    return name, build, path, lambda q: index.knn_query(q, K)[0][0]


def _faiss(vectors: np.ndarray, threads: int, work: Path):
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(vectors.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    started = time.perf_counter()
    index.add(vectors)
    build = time.perf_counter() - started
    index.hnsw.efSearch = 96
    faiss.omp_set_num_threads(1)
    path = work / "faiss.index"
    faiss.write_index(index, str(path))
    name = "faiss HNSWFlat float32 (loaded into RAM)"
    return name, build, path, lambda q: index.search(q[None, :], K)[1][0]


if __name__ == "__main__":
    main()
