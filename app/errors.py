"""Clear error pages instead of tracebacks."""
from flask import render_template, request
from flask_wtf.csrf import CSRFError
from psycopg import DataError


def size_label(n: int) -> str:
    """A byte count as people read it in a limit message: 10 MB, 64 KB, 900 bytes."""
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def init_app(app):
    def page(code, title, message):
        if request.path.startswith("/api/"):
            return {"error": message}, code
        return render_template("error.html", title=title, message=message), code

    def refuse_nul():
        # PostgreSQL cannot store a NUL character and no honest input carries one: refuse the
        # request with a clear page before any view tries to save it.
        values = [*request.args.values(), *(request.form.values() if request.method == "POST" else ())]
        if any("\x00" in v for v in values):
            return page(400, "Not valid", "The input contains a NUL character (\\x00), which no field "
                                          "accepts. Nothing was saved.")
        return None

    def data_error(exc):
        # The last guard for values only the database can judge (a number beyond bigint, say).
        app.logger.warning("refused input the database cannot take: %s", exc)
        first_line = str(exc).splitlines()[0] if str(exc) else "a value is not valid"
        return page(400, "Not valid", f"Some input is not valid ({first_line}). Nothing was saved.")

    app.before_request(refuse_nul)
    app.register_error_handler(DataError, data_error)
    app.register_error_handler(CSRFError, lambda e: page(400, "Form expired", "The form was missing its security token or it expired: reload the page and try again."))
    app.register_error_handler(404, lambda e: page(404, "Not found", "There is nothing here."))
    app.register_error_handler(405, lambda e: page(405, "Not allowed", "This address does not take that method."))
    app.register_error_handler(413, lambda e: page(413, "Too large", f"The upload is over the limit of {size_label(app.config['MAX_CONTENT_LENGTH'])}."))
    app.register_error_handler(400, lambda e: page(400, "Bad request", getattr(e, "description", "The request was not valid.")))
