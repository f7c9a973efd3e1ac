"""Deployment files stay in step with the code: every setting is documented in the README, the
compose file only sets known settings, the image is non-root with a health check."""

import re
from pathlib import Path

import yaml

from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Read by the container's command line or by libraries, not by Settings.
NOT_SETTINGS = {"WORKERS", "HOST", "PORT", "PROMETHEUS_MULTIPROC_DIR", "HF_HUB_OFFLINE"}


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert missing == []


def test_compose_file_sets_only_known_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"db", "app", "setup"} <= set(compose["services"])
    assert compose["services"]["db"]["image"].startswith("timescale/timescaledb")
    app = compose["services"]["app"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert "artifacts:/app/data/artifacts" in app["volumes"]
    known = {name.upper() for name in Settings.model_fields} | NOT_SETTINGS
    assert set(app["environment"]) - known == set()


def test_image_runs_as_a_user_with_a_health_check_and_cpu_torch():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in dockerfile
