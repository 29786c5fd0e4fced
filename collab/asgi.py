"""``collab.asgi.create_app(config)``: collab as an ASGI 3 app (see docs/asgi.md).

from fastapi import FastAPI
from collab.asgi import create_app
from collab.config import Config

collab_app = create_app(Config(db_url="sqlite:///collab.db"))
app = FastAPI(lifespan=collab_app.lifespan)
app.mount("/collab", collab_app)      # documents live under /collab/<doc>
"""

from collab.transports.asgi import CollabApp, create_app, from_env

__all__ = ["CollabApp", "create_app", "from_env"]
