"""The REST API (FastAPI): `create_app` builds it; `ApiState.of(app)` reads what the running app holds."""

from parley.api.app import create_app
from parley.api.state import ApiState

__all__ = ["ApiState", "create_app"]
