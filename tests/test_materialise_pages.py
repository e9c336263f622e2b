"""Materialising in two pages (migration 015): the first MATERIALISE_FIRST_PAGE recipients
are committed and sent while the rest is written, both read the snapshot taken at Send, the
campaign cannot complete in between, and a start that dies in between is finished by the
scheduler. Real PostgreSQL, RabbitMQ, workers and SMTP server."""
import psycopg
import pytest
from psycopg.rows import dict_row

from app.config import Config
from app.services import campaign as campaigns
from consumers import scheduler
from tests.conftest import wait_for
from tests.delivery_kit import assert_nothing_lost_nothing_doubled, seed_campaign, start, status, wait_status

FIRST = 50


@pytest.fixture
def small_first_page(monkeypatch):
    monkeypatch.setattr(Config, "MATERIALISE_FIRST_PAGE", FIRST)


def materialised_events(db, cid) -> list[dict]:
    return [r["detail"] for r in db.execute(
        "SELECT detail FROM journal WHERE campaign_id = %s AND kind = 'campaign.materialised'", (cid,))]


def test_the_first_page_goes_out_while_the_rest_is_written_from_the_same_snapshot(
        db, smtp, workers, small_first_page, monkeypatch):
    cid = seed_campaign(db, 400, "pages")
    list_id = db.execute("SELECT list_id FROM campaigns WHERE id = %s", (cid,)).fetchone()["list_id"]
    last = db.execute("SELECT max(contact_id) AS id FROM list_members WHERE list_id = %s",
                      (list_id,)).fetchone()["id"]
    seen = {}
    enqueue = campaigns.enqueue

    def first_page_sent_then_the_world_changes(campaign_id, after=0, until=None):
        enqueue(campaign_id, after, until)
        if until is None:
            return
        # The rest is not written yet: the first page is sent all the same, and the
        # campaign, with nothing open that anyone can see, must not complete.
        wait_for(lambda: smtp.count() >= FIRST, message="the first page sent before the rest is written")
        seen["status"] = status(db, campaign_id)
        seen["deliveries"] = db.execute("SELECT count(*) AS n FROM deliveries WHERE campaign_id = %s",
                                        (campaign_id,)).fetchone()["n"]
        # Changes after Send do not change who receives it: the set is frozen at Send.
        db.execute("UPDATE contacts SET status = 'unsubscribed' WHERE id = %s", (last,))
        late = db.execute("INSERT INTO contacts (email, name) VALUES ('late-pages@example.com', 'Late') "
                          "RETURNING id").fetchone()["id"]
        db.execute("INSERT INTO list_members (list_id, contact_id) VALUES (%s, %s)", (list_id, late))

    monkeypatch.setattr(campaigns, "enqueue", first_page_sent_then_the_world_changes)
    result = start(cid)
    assert result == {"started": True, "deliveries": 400}
    assert seen == {"status": "running", "deliveries": FIRST}

    wait_status(db, cid, "completed")
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 400}
    received = set(smtp.recipients())
    assert db.execute("SELECT email FROM contacts WHERE id = %s", (last,)).fetchone()["email"] in received
    assert "late-pages@example.com" not in received
    assert [d["deliveries"] for d in materialised_events(db, cid)] == [400]
    assert db.execute("SELECT materialising_after FROM campaigns WHERE id = %s",
                      (cid,)).fetchone()["materialising_after"] is None
    assert start(cid)["started"] is False  # pressing Send again sends nothing twice
    assert db.execute("SELECT count(*) AS n FROM materialise_staging").fetchone()["n"] == 0


@pytest.mark.parametrize("staging_lost", [False, True], ids=["staged", "staging-lost-in-a-crash"])
def test_a_start_that_dies_after_the_first_page_is_finished_by_the_scheduler(
        db, smtp, workers, small_first_page, monkeypatch, staging_lost):
    cid = seed_campaign(db, 300, f"died{int(staging_lost)}")

    def killed(*args, **kwargs):
        raise RuntimeError("the web process died here")

    monkeypatch.setattr(campaigns, "_move_rest", killed)
    with pytest.raises(RuntimeError):
        start(cid)
    monkeypatch.undo()
    wait_for(lambda: smtp.count() >= FIRST, message="the first page sent")
    row = db.execute("SELECT status, materialising_after FROM campaigns WHERE id = %s", (cid,)).fetchone()
    assert row["status"] == "running" and row["materialising_after"] is not None
    if staging_lost:  # an unlogged table is emptied by a PostgreSQL crash
        db.execute("DELETE FROM materialise_staging WHERE campaign_id = %s", (cid,))
    with psycopg.connect(Config.DATABASE_URL, autocommit=True, row_factory=dict_row) as conn:
        with conn.transaction():
            assert not campaigns.complete_if_done(conn, cid)  # the first page is all sent, yet the rest is owed
        scheduler.finish_materialising(conn)

    wait_status(db, cid, "completed")
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": 300}
    events = materialised_events(db, cid)
    assert len(events) == 1 and events[0]["deliveries"] == 300 and events[0]["resumed_after_interruption"]
    assert events[0].get("staged_rest_lost", False) is staging_lost
    assert db.execute("SELECT count(*) AS n FROM materialise_staging WHERE campaign_id = %s",
                      (cid,)).fetchone()["n"] == 0


def test_a_campaign_within_the_first_page_is_one_statement(db, smtp, workers, small_first_page):
    cid = seed_campaign(db, FIRST - 1, "small")
    assert start(cid) == {"started": True, "deliveries": FIRST - 1}
    wait_status(db, cid, "completed")
    assert assert_nothing_lost_nothing_doubled(db, smtp, cid) == {"sent": FIRST - 1}
    assert [d["deliveries"] for d in materialised_events(db, cid)] == [FIRST - 1]
