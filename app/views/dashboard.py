from flask import Blueprint, render_template

from ..db import fetch_together, q

bp = Blueprint("dashboard", __name__)


@bp.route("/")
def index():
    campaigns, lists = fetch_together((q.campaign_list, None), (q.list_all, None))
    return render_template("dashboard.html", campaigns=campaigns, lists=lists)
