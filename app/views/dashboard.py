from flask import Blueprint, render_template

from ..db import fetchall, q

bp = Blueprint("dashboard", __name__)


@bp.route("/")
def index():
    return render_template("dashboard.html", campaigns=fetchall(q.campaign_list), lists=fetchall(q.list_all))
