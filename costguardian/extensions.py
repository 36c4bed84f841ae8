"""Extensions, created once here and bound to the app in `create_app`.

The OIDC client registry (Authlib's OAuth) is the exception: it caches clients
by name across apps, so each app gets its own, in `costguardian.oidc`."""
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from peewee import DatabaseProxy

from costguardian import ratelimit_storage  # noqa: F401 (registers the cg-sqlite:// scheme with limits)
from costguardian.signing import RotatingLoginManager

db = DatabaseProxy()
login_manager = RotatingLoginManager()  # remember-me cookies honour SECRET_KEY_FALLBACKS
csrf = CSRFProtect()
htmx = HTMX()
limiter = Limiter(get_remote_address)
