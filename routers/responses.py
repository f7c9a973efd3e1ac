"""Response classes shared by the routers."""

import orjson
from fastapi.responses import Response


class FastJSONResponse(Response):
    """orjson instead of json.dumps: the body of 20 products is encoded several times faster
    (and a NaN that slipped through becomes null, not invalid JSON)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
