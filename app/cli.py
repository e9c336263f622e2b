"""flask CLI commands: migrate, set the manager's password."""
import os
import secrets

import click

from . import auth
from .migrate import migrate


def _set_password(username: str, password: str) -> None:
    """A refused password is a clear one-line error on the terminal, not a traceback."""
    try:
        auth.set_password(username, password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def init_app(app):
    @app.cli.command("migrate")
    def migrate_cmd():
        """Apply pending SQL migrations."""
        migrate()

    @app.cli.command("set-password")
    @click.option("--username", default="admin", show_default=True)
    @click.password_option()
    def set_password_cmd(username, password):
        """Set the manager's login."""
        _set_password(username, password)
        click.echo(f"password set for {username}")

    @app.cli.command("ensure-manager")
    def ensure_manager_cmd():
        """First run: create the manager from MANAGER_PASSWORD, or with a generated password."""
        if auth.manager_exists() and not os.environ.get("MANAGER_PASSWORD"):
            click.echo("manager login: as set before (change it with `flask --app app set-password`)")
            return
        username = os.environ.get("MANAGER_USERNAME", "admin")
        password = os.environ.get("MANAGER_PASSWORD") or secrets.token_urlsafe(12)
        _set_password(username, password)
        shown = password if not os.environ.get("MANAGER_PASSWORD") else "(from MANAGER_PASSWORD)"
        click.echo(f"manager login: {username} / {shown}")
