"""The Flask app factory: one blueprint per part of the domain."""
import os

from flask import Flask
from flask_wtf.csrf import CSRFProtect, generate_csrf
from markupsafe import Markup, escape

from .config import Config

csrf = CSRFProtect()


def create_app(overrides: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_object(Config)
    app.config.update(
        MAX_CONTENT_LENGTH=Config.MAX_UPLOAD_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.config.update(overrides or {})
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError("SECRET_KEY must be set in the environment (scripts/run sets one up)")
    csrf.init_app(app)

    from . import auth, cli, db, errors
    from .views import campaigns, contacts, dashboard, delivery, inbox, journal, public, segments

    auth.init_app(app)
    errors.init_app(app)
    app.teardown_appcontext(db.release_reader)
    cli.init_app(app)
    for bp in (dashboard.bp, contacts.bp, campaigns.bp, delivery.bp, journal.bp, inbox.bp, public.bp, segments.bp):
        app.register_blueprint(bp)
    # One hidden token field per form, without the id WTForms gives it: a page of several
    # forms would otherwise repeat id="csrf_token".
    app.jinja_env.globals["csrf_field"] = lambda: Markup(
        f'<input type="hidden" name="csrf_token" value="{escape(generate_csrf())}">')
    app.jinja_env.globals["vendor_css"] = os.path.exists(
        os.path.join(app.static_folder, "vendor", "pico.min.css"))
    return app
