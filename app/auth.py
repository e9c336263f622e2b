"""One manager account: hashed password, session login, every non-public page behind it."""
import hmac
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from .db import execute, fetchone, q
from .forms import LoginForm

bp = Blueprint("auth", __name__)
PUBLIC_ENDPOINTS = {"auth.login", "static", "public.unsubscribe", "public.health"}
MIN_PASSWORD = 8


def set_password(username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    execute(q.manager_upsert, {"username": username, "password_hash": generate_password_hash(password)})


def manager_exists() -> bool:
    return fetchone(q.manager_get) is not None


def _local_path(target: str) -> str | None:
    """`target` if it is a path on this site, else None: an open redirect would turn the login
    into a phishing aid. Browsers read a backslash as a slash and drop tabs and newlines, so
    `/\\evil.example` or `/<TAB>/evil.example` would leave the site: they are refused too."""
    parts = urlsplit(target)
    if (not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc
            or "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        manager = fetchone(q.manager_get)
        ok = (manager is not None
              # Bytes: compare_digest refuses str with non-ASCII characters.
              and hmac.compare_digest(manager["username"].encode(), form.username.data.encode())
              and check_password_hash(manager["password_hash"], form.password.data))
        if ok:
            session.clear()
            session["manager"] = manager["username"]
            session.permanent = True
            return redirect(_local_path(request.args.get("next", "")) or url_for("dashboard.index"))
        flash("Wrong username or password.", "error")
    return render_template("login.html", form=form), 200 if request.method == "GET" or form.errors == {} else 400


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("auth.login"))


def _require_login():
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    if not session.get("manager"):
        if request.path.startswith("/api/"):
            return {"error": "login required"}, 401
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


def init_app(app):
    app.register_blueprint(bp)
    app.before_request(_require_login)
