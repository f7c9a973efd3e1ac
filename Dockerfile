# The service image: uvicorn with several workers, non-root, with a built-in health check.
#   docker build -t recommendation-service .     (docker compose up does this for you)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# CPU-only torch first: an unpinned torch (via sentence-transformers) pulls a multi-GB CUDA build.
RUN python -m venv /opt/venv \
    && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
# Dependencies in their own layer: code changes do not reinstall them.
COPY pyproject.toml ./
RUN mkdir -p config database/migrations ml routers services \
    && touch main.py schemas.py \
    && pip install -e . \
    && rm -rf /app/*.egg-info
COPY config/ config/
COPY database/ database/
COPY ml/ ml/
COPY routers/ routers/
COPY services/ services/
COPY bench/ bench/
COPY web/ web/
COPY main.py schemas.py ./
COPY data/synonyms.txt data/synonyms.txt
COPY data/raw/amazon-in-sample/ data/raw/amazon-in-sample/
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p data/artifacts data/processed /tmp/prometheus \
    && chown -R app data /tmp/prometheus

USER app
ENV HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=2 \
    ARTIFACTS_DIR=/app/data/artifacts \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    HF_HUB_OFFLINE=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=90s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=2)"
# Metrics files of a previous run would be added to this one's: start from an empty folder.
CMD ["sh", "-c", "rm -rf \"$PROMETHEUS_MULTIPROC_DIR\"/* && exec uvicorn main:app --host \"$HOST\" --port \"$PORT\" --workers \"$WORKERS\" --no-access-log"]
