"""GET /docs (Swagger UI) and /redoc from assets installed with the service: the pages work
without internet (FastAPI's defaults load them from a CDN)."""

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

# Swagger UI's and Redoc's release files, as the fastapi-standalone-docs package ships them.
ASSETS = files("fastapi_standalone_docs") / "static"


def install(app: FastAPI) -> None:
    """Serve the API documentation pages and their assets under /docs-assets."""
    app.mount("/docs-assets", StaticFiles(directory=str(ASSETS)), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url="/docs-assets/swagger/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger/swagger-ui.css",
            swagger_favicon_url="/docs-assets/fastapi/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url="/docs-assets/redoc/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/fastapi/favicon.png",
            with_google_fonts=False,
        )
