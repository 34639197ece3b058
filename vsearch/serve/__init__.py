"""`vsearch serve`: an HTTP service (FastAPI) and a web page over one catalog, with models and
indexes loaded once. Build the app with :func:`create_app` (FastAPI's TestClient takes it as is);
``vsearch serve`` runs it under uvicorn."""
from vsearch.serve.app import create_app
from vsearch.serve.service import LOOPBACK_HOSTS, ServeSettings

__all__ = ["create_app", "ServeSettings", "LOOPBACK_HOSTS"]
