"""What embedding one search query costs a worker: the torch model against its ONNX export.

    python -m bench.query_encoder [--queries 300]

Each encoder runs in a fresh child process with one thread, as a serving worker runs it: the
time to load it (imports included) and run it once, the memory it adds (RssAnon, not the
mapped files), and p50 / p95 per query over queries of 2-12 words it has not seen. The ONNX
export is made first, as training makes it (ml/train_embeddings.export_query_encoder).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, random, sys, time
from pathlib import Path

def rss_anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024

kind, folder, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
import numpy as np
before = rss_anon_mb()
started = time.perf_counter()
from services import text_encoder
if kind == "torch":
    text_encoder.warm_up(1)
    embed = text_encoder.embed_query
else:
    embed = text_encoder.QueryEncoder(folder, threads=1).embed
    embed("warm up")
load = time.perf_counter() - started
words = "red blue wireless cotton steel kids men women running office kitchen smart led usb " \\
    "bluetooth leather shoes bag watch phone cover chair lamp bottle charger".split()
rng = random.Random(7)
queries = [" ".join(rng.sample(words, rng.randint(2, 12))) + f" {i}" for i in range(count)]
seconds = []
for query in queries:
    started = time.perf_counter()
    embed(query)
    seconds.append(time.perf_counter() - started)
p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
print(json.dumps({"encoder": kind, "load_s": round(load, 2),
                  "rss_anon_mb": round(rss_anon_mb() - before),
                  "p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    from ml.train_embeddings import export_query_encoder

    results = []
    with tempfile.TemporaryDirectory() as folder:
        export_query_encoder(Path(folder))
        for kind in ("torch", "onnx"):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, kind, folder, str(args.queries)],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| encoder | load + first run s | RssAnon added MB | per query p50 / p95 ms |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['encoder']} | {r['load_s']} | {r['rss_anon_mb']} "
            f"| {r['p50_ms']} / {r['p95_ms']} |"
        )


if __name__ == "__main__":
    main()
