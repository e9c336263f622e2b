"""Clear error pages instead of tracebacks."""
from flask import render_template, request
from flask_wtf.csrf import CSRFError


def init_app(app):
    def page(code, title, message):
        if request.path.startswith("/api/"):
            return {"error": message}, code
        return render_template("error.html", title=title, message=message), code

    app.register_error_handler(CSRFError, lambda e: page(400, "Form expired", "The form was missing its security token or it expired: reload the page and try again."))
    app.register_error_handler(404, lambda e: page(404, "Not found", "There is nothing here."))
    app.register_error_handler(405, lambda e: page(405, "Not allowed", "This address does not take that method."))
    app.register_error_handler(413, lambda e: page(413, "Too large", f"The upload is over the limit of {app.config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MB."))
    app.register_error_handler(400, lambda e: page(400, "Bad request", getattr(e, "description", "The request was not valid.")))
