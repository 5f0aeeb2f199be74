"""Production settings and middleware, routed to ``bench.queue_floor``'s do-nothing view."""
from config.settings.production import *  # noqa: F401,F403

ROOT_URLCONF = "bench.queue_floor"
