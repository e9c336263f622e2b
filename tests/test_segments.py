"""Issue 3 against the real PostgreSQL: the builder's versions, DBA functions written in psql
(registered, refused, drifted), sql/procedures files, campaigns to segment versions with
exclusions, merge data in previews, and static lists made from segments."""
import json
import re
from html import unescape

import pytest
from psycopg.types.json import Jsonb

from app.config import Config
from app.services import procedure, rules, segment
from tests.test_send_e2e import make_campaign

ALERT = re.compile(r'role="alert"[^>]*>(.*?)</', re.S)


def alerts(response) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", m)).strip() for m in ALERT.findall(response.get_data(as_text=True))]


def people(db, domain: str, rows: list[tuple]) -> dict:
    """Contacts (local part, name, attributes, tags, status) under a domain of the test's own."""
    ids = {}
    for local, name, attrs, tags, status in rows:
        ids[local] = db.execute(
            "INSERT INTO contacts (email, name, attributes, tags, status) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (f"{local}@{domain}", name, Jsonb(attrs), tags, status)).fetchone()["id"]
    return ids


def scoped(domain: str, *conditions, op="and") -> dict:
    """A rule limited to the test's own contacts."""
    mine = {"type": "condition", "field": "email", "op": "ends_with", "value": "@" + domain}
    rest = [{"type": "group", "op": op, "children": list(conditions)}] if conditions else []
    return {"type": "group", "op": "and", "children": [mine, *rest]}


def cond(field, op, value=None, **extra) -> dict:
    c = {"type": "condition", "field": field, "op": op, **extra}
    if value is not None:
        c["value"] = value
    return c


def attr(key, kind, op, value=None) -> dict:
    return cond("attribute", op, value, key=key, attr_type=kind)


def members(db, fn_name: str) -> set:
    return {r["contact_id"] for r in db.execute("SELECT contact_id FROM segment_eval(%s::regprocedure)",
                                                (f"segments.{fn_name}()",))}


def deliveries(db, campaign_id) -> set:
    return {r["contact_id"] for r in db.execute("SELECT contact_id FROM deliveries WHERE campaign_id = %s",
                                                (campaign_id,))}


def stop(db, campaign_id):
    """These tests run no workers: stop what they started so no later test's workers send it."""
    db.execute("UPDATE campaigns SET status = 'stopped' WHERE id = %s AND status = 'running'", (campaign_id,))


def segment_campaign(client, db, version_id, **overrides):
    return make_campaign(client, db, 0, target="segment", segment_version_id=version_id,
                         body_html="<p>Hi {{ contact.name }}</p>", **overrides)


CITIES = [("ann", "Ann", {"city": "Oslo", "age": "31", "vip": "yes"}, ["news"], "subscribed"),
          ("bob", "Bob", {"city": "Bergen", "age": "45", "vip": "no"}, ["news", "jobs"], "subscribed"),
          ("cat", "Cat", {"city": "Oslo", "age": "52"}, ["jobs"], "subscribed"),
          ("dan", "Dan", {"city": "oslo", "age": 19}, [], "unsubscribed"),
          ("eve", "Eve", {"city": "Trondheim", "age": "abc"}, ["news"], "subscribed")]


def test_builder_saves_immutable_versions_with_sql_and_a_diff(client, db):
    ids = people(db, "seg-a.test", CITIES)
    vocab = client.get("/api/segments/vocabulary").get_json()
    types = {a["key"]: a["type"] for a in vocab["attributes"]}
    assert types["city"] == "text" and types["vip"] == "boolean" and "age" in types
    assert "contains" in vocab["attribute_ops"]["text"] and "between" in vocab["attribute_ops"]["number"]

    v1_rule = scoped("seg-a.test", attr("city", "text", "equals", "Oslo"),
                     cond("tags", "contains", "jobs"), op="or")
    est = client.post("/api/segments/preview", json={"mode": "estimate", "rules": v1_rule})
    assert est.status_code == 200 and isinstance(est.get_json()["estimate"], int)
    exact = client.post("/api/segments/preview", json={"mode": "exact", "rules": v1_rule}).get_json()
    assert exact["matched"] == 3 and exact["subscribed"] == 3
    assert [r["email"] for r in exact["sample"]] == ["ann@seg-a.test", "bob@seg-a.test", "cat@seg-a.test"]

    r = client.post("/segments/new", data={"name": "Oslo or jobs", "rules": json.dumps(v1_rule)})
    assert r.status_code == 302, alerts(r)
    proc_id = int(r.headers["Location"].rsplit("/", 1)[-1])
    v1 = db.execute("SELECT * FROM procedure_versions WHERE procedure_id = %s", (proc_id,)).fetchone()
    assert (v1["fn_name"], v1["version"], v1["author"], v1["matched"]) == ("segment_oslo_or_jobs_v1", 1, "builder", 3)
    assert members(db, v1["fn_name"]) == {ids["ann"], ids["bob"], ids["cat"]}

    v2_rule = scoped("seg-a.test", attr("age", "number", "gt", "40"))
    r = client.post(f"/segments/{proc_id}/versions", data={"rules": json.dumps(v2_rule)})
    assert r.status_code == 302, alerts(r)
    assert members(db, "segment_oslo_or_jobs_v2") == {ids["bob"], ids["cat"]}

    page = client.get(f"/segments/{proc_id}").get_data(as_text=True)
    assert "segment_oslo_or_jobs_v1" in page and "segment_oslo_or_jobs_v2" in page
    assert "by the rule builder" in page and "Changes from the previous version" in page
    assert "public.segment_number" in unescape(page)  # the v2 side of the diff
    # The builder on the page starts from the latest rules.
    assert json.loads(unescape(re.search(r'id="rules-json"[^>]*value="([^"]*)"', page).group(1))) == \
        json.loads(json.dumps(segment.rules.to_json(segment.rules.normalise(v2_rule))))

    with pytest.raises(Exception, match="immutable"):
        db.execute("UPDATE procedure_versions SET source = 'x' WHERE id = %s", (v1["id"],))


BAD_RULES = [
    ("not json", "did not arrive as JSON"),
    ('{"type": "group", "op": "and", "children": [{"type": "condition", "field": "pwd", "op": "equals", "value": "x"}]}',
     "there is no field"),
    ('{"type": "group", "op": "and", "children": [{"type": "condition", "field": "email", "op": "equals", "value": "a\\u0000"}]}',
     "NUL"),
    ('{"type": "group", "op": "nand", "children": []}', "'and' or 'or'"),
    ('{"type": "group", "op": "and", "children": [{"type": "condition", "field": "created_at", "op": "before", "value": "yesterday"}]}',
     "is not a date"),
    ("[" * 100_000, "did not arrive as JSON"),
    ("x" * 1_000_001, "longer than 1000000"),
]


def test_a_bad_rule_or_name_is_refused_with_its_reason(client, db):
    before = db.execute("SELECT count(*) AS n FROM procedures").fetchone()["n"]
    for rules_text, message in BAD_RULES:
        r = client.post("/segments/new", data={"name": "Bad", "rules": rules_text})
        assert r.status_code == 400
        assert any(message in a for a in alerts(r)), alerts(r)
    for name in ["", "   ", "x" * 201, "nul\x00name"]:
        r = client.post("/segments/new", data={"name": name, "rules": json.dumps(scoped("seg-name.test"))})
        assert r.status_code == 400 and alerts(r), name
    assert db.execute("SELECT count(*) AS n FROM procedures").fetchone()["n"] == before


def test_the_preview_api_answers_bad_input_with_json_errors(client):
    for body in ({"data": "x", "content_type": "text/plain"}, {"json": []}, {"data": "[" * 100_000}, {"json": {"rules": {"type": "x"}}},
                 {"json": {"mode": "estimate", "rules": {"type": "group", "op": "and", "children": [
                     {"type": "condition", "field": "list", "op": "in_list", "value": "1; DROP TABLE lists"}]}}}):
        r = client.post("/api/segments/preview", **body)
        assert r.status_code == 400 and r.get_json()["error"], body


def test_the_preview_api_takes_the_csrf_header_and_refuses_a_forged_one(app, manager):
    from tests.test_web_auth import csrf_token, login

    client = app.test_client()
    login(client)
    token = csrf_token(client, "/segments/new")
    rule = {"mode": "estimate", "rules": None}
    assert client.post("/api/segments/preview", json=rule, headers={"X-CSRFToken": token}).status_code == 200
    r = client.post("/api/segments/preview", json=rule, headers={"X-CSRFToken": "forged"})
    assert r.status_code == 400 and "security token" in r.get_json()["error"]


def test_a_dba_function_in_psql_becomes_a_version_and_a_campaign_sends_to_it(client, db):
    ids = people(db, "seg-c.test", CITIES)
    v1 = segment.create("Dba target", scoped("seg-c.test", cond("tags", "contains", "news")))
    v2 = segment.save_version(v1["procedure_id"], scoped("seg-c.test", cond("tags", "contains", "jobs")))
    # A DBA writes v3 by hand in psql, under the contract.
    db.execute("""CREATE FUNCTION segments.segment_dba_target_v3() RETURNS TABLE (contact_id bigint)
                  LANGUAGE sql STABLE AS $$
                    SELECT id FROM contacts WHERE email::text LIKE '%@seg-c.test' AND name IN ('Cat', 'Dan', 'Eve')
                  $$""")
    assert "segment_dba_target_v3" not in client.get(f"/segments/{v1['procedure_id']}").get_data(as_text=True)
    r = client.post("/segments/refresh", follow_redirects=True)
    assert "Registered segment_dba_target_v3 (author: DBA)." in alerts(r)
    page = client.get(f"/segments/{v1['procedure_id']}").get_data(as_text=True)
    assert "segment_dba_target_v3" in page and "a DBA (psql)" in page
    v3 = db.execute("SELECT * FROM procedure_versions WHERE fn_name = 'segment_dba_target_v3'").fetchone()
    assert (v3["author"], v3["version"], v3["matched"], v3["rules"]) == ("dba", 3, 3, None)

    # The builder's next save goes above the DBA's version.
    v4 = segment.save_version(v1["procedure_id"], scoped("seg-c.test"))
    assert v4["fn_name"] == "segment_dba_target_v4"

    # The campaign form offers the versions; the campaign records exactly v3.
    form = client.get("/campaigns/new").get_data(as_text=True)
    assert "Dba target v3 (segment_dba_target_v3)" in form and "Dba target v2" in form
    cid = segment_campaign(client, db, v3["id"])
    page = client.get(f"/campaigns/{cid}").get_data(as_text=True)
    assert "Dba target v3" in page and 'id="newer-version"' in page and "v4" in page
    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert "Sending to 2 recipients." in alerts(r)  # Dan is unsubscribed
    assert deliveries(db, cid) == {ids["cat"], ids["eve"]}
    row = db.execute("SELECT segment_version_id, segment_checksum FROM campaigns WHERE id = %s", (cid,)).fetchone()
    assert row == {"segment_version_id": v3["id"], "segment_checksum": v3["checksum"]}
    detail = db.execute("SELECT detail FROM journal WHERE campaign_id = %s AND kind = 'campaign.materialised'",
                        (cid,)).fetchone()["detail"]
    assert detail["segment"] == "segment_dba_target_v3" and detail["deliveries"] == 2
    stop(db, cid)
    assert v2["fn_name"] == "segment_dba_target_v2"


def test_exclusions_suppressions_and_duplicates(client, db):
    ids = people(db, "seg-x.test", CITIES + [("fay", "Fay", {"city": "Oslo"}, ["news"], "bounced"),
                                             ("gus", "Gus", {"city": "Oslo"}, ["news"], "subscribed"),
                                             ("hal", "Hal", {"city": "Oslo"}, ["news"], "subscribed")])
    db.execute("INSERT INTO suppressions (email, reason) VALUES ('gus@seg-x.test', 'complaint')")
    everyone = segment.create("X everyone", scoped("seg-x.test"))
    # A DBA's version that returns duplicates: each contact only once in the outbox.
    db.execute("""CREATE FUNCTION segments.segment_x_dupes_v1() RETURNS TABLE (contact_id bigint)
                  LANGUAGE sql STABLE AS $$
                    SELECT id FROM contacts WHERE email::text LIKE '%@seg-x.test'
                    UNION ALL SELECT id FROM contacts WHERE email::text LIKE '%@seg-x.test'
                  $$""")
    procedure.refresh()
    dupes = db.execute("SELECT id FROM procedure_versions WHERE fn_name = 'segment_x_dupes_v1'").fetchone()["id"]
    bergen = segment.create("X Bergen", scoped("seg-x.test", attr("city", "text", "equals", "Bergen")))
    excluded_list = db.execute("INSERT INTO lists (name) VALUES ('seg-x excluded') RETURNING id").fetchone()["id"]
    db.execute("INSERT INTO list_members (list_id, contact_id) VALUES (%s, %s)", (excluded_list, ids["ann"]))

    cid = segment_campaign(client, db, dupes, exclude_list_ids=[excluded_list],
                           exclude_segment_version_ids=[bergen["id"]])
    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert "Sending to 3 recipients." in alerts(r), alerts(r)
    # ann: excluded list; bob: excluded segment; dan: unsubscribed; fay: bounced; gus: suppressed.
    assert deliveries(db, cid) == {ids["cat"], ids["eve"], ids["hal"]}
    stop(db, cid)
    # A list target is excluded the same way.
    target = db.execute("INSERT INTO lists (name) VALUES ('seg-x target') RETURNING id").fetchone()["id"]
    db.execute("INSERT INTO list_members (list_id, contact_id) SELECT %s, contact_id FROM "
               "segment_eval(%s::regprocedure)", (target, f"segments.{everyone['fn_name']}()"))
    cid = make_campaign(client, db, target, exclude_segment_version_ids=[bergen["id"]],
                        exclude_list_ids=[excluded_list])
    client.post(f"/campaigns/{cid}/send")
    assert deliveries(db, cid) == {ids["cat"], ids["eve"], ids["hal"]}
    stop(db, cid)


def test_refused_dba_functions_say_why_and_nothing_is_written(client, db, monkeypatch):
    people(db, "seg-r.test", CITIES)
    db.execute("CREATE TABLE IF NOT EXISTS refusal_canary (n int)")
    monkeypatch.setattr(Config, "SEGMENT_TIMEOUT_MS", 300)
    bad = {
        "segments.segment_r_args_v1(integer)":
            ("(x int) RETURNS TABLE (contact_id bigint) LANGUAGE sql STABLE AS $$ SELECT 1::bigint $$",
             "a segment must be segment_r_args_v1() RETURNS TABLE (contact_id bigint)"),
        "segments.segment_r_setof_v1()":
            ("() RETURNS SETOF integer LANGUAGE sql STABLE AS $$ SELECT 1 $$", "has the signature () RETURNS SETOF integer"),
        "segments.segment_r_strangers_v1()":
            ("() RETURNS TABLE (contact_id bigint) LANGUAGE sql STABLE AS $$ SELECT 9000000000000::bigint $$",
             "returns 1 ids that are not contacts (for example 9000000000000)"),
        "segments.segment_r_slow_v1()":
            ("() RETURNS TABLE (contact_id bigint) LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); "
             "RETURN QUERY SELECT id FROM contacts LIMIT 1; END $$", "did not finish within the statement timeout (0.3 s)"),
        "segments.segment_r_writes_v1()":
            ("() RETURNS TABLE (contact_id bigint) LANGUAGE plpgsql AS $$ BEGIN INSERT INTO refusal_canary VALUES (1); "
             "RETURN QUERY SELECT id FROM contacts LIMIT 1; END $$", "tries to"),
        "segments.segment_r_escape_v1()":
            ("() RETURNS TABLE (contact_id bigint) LANGUAGE plpgsql AS $$ BEGIN RESET ROLE; "
             "INSERT INTO refusal_canary VALUES (2); RETURN QUERY SELECT id FROM contacts LIMIT 1; END $$",
             "cannot set parameter \"role\""),
        "segments.segment_r_definer_v1()":
            ("() RETURNS TABLE (contact_id bigint) LANGUAGE sql STABLE SECURITY DEFINER AS $$ SELECT id FROM contacts $$",
             "is SECURITY DEFINER"),
        "segments.merge_r_args_v1(integer[])":
            ("(ids int[]) RETURNS TABLE (contact_id bigint, data jsonb) LANGUAGE sql STABLE AS "
             "$$ SELECT 1::bigint, '{}'::jsonb $$", "a merge procedure must be merge_r_args_v1(ids bigint[])"),
        "segments.merge_r_others_v1(bigint[])":
            ("(ids bigint[]) RETURNS TABLE (contact_id bigint, data jsonb) LANGUAGE sql STABLE AS "
             "$$ SELECT 9000000000000::bigint, '{}'::jsonb $$", "rows for contacts it was not asked for"),
        "segments.merge_r_scalar_v1(bigint[])":
            ("(ids bigint[]) RETURNS TABLE (contact_id bigint, data jsonb) LANGUAGE sql STABLE AS "
             "$$ SELECT i, '42'::jsonb FROM unnest(ids) i $$", "data is not a JSON object"),
        "segments.segment_r_Bad_Name_v1()":
            ("() RETURNS TABLE (contact_id bigint) LANGUAGE sql STABLE AS $$ SELECT 1::bigint $$",
             "is not named segment_<slug>_v<N>"),
    }
    for sig, (rest, _) in bad.items():
        name = sig.split(".", 1)[1].split("(")[0]
        db.execute(f'CREATE FUNCTION segments."{name}"{rest}')
    r = client.post("/segments/refresh", follow_redirects=True)
    shown = alerts(r)
    for sig, (_, reason) in bad.items():
        quoted = sig.replace("segment_r_Bad_Name_v1", '"segment_r_Bad_Name_v1"')
        assert any(a.startswith(f"Refused {quoted}:") and reason in a for a in shown), (sig, shown)
    assert db.execute("SELECT count(*) AS n FROM refusal_canary").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM procedure_versions "
                      "WHERE fn_name ^@ 'segment_r_' OR fn_name ^@ 'merge_r_'").fetchone()["n"] == 0
    page = client.get("/segments").get_data(as_text=True)
    assert "Refused functions" in page and "did not finish within the statement timeout" in page

    # Refusals are remembered: the slow one is not run again while unchanged...
    monkeypatch.setattr(procedure, "probe", lambda *a: pytest.fail("re-validated an unchanged refusal"))
    assert len(procedure.refresh().still_refused) >= len(bad)
    monkeypatch.undo()
    # ... and tried again once the DBA fixes it.
    db.execute("CREATE OR REPLACE FUNCTION segments.segment_r_slow_v1() RETURNS TABLE (contact_id bigint) "
               "LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT id FROM contacts WHERE email::text LIKE "
               "'%@seg-r.test'; END $$")
    assert "segment_r_slow_v1" in procedure.refresh().registered
    assert not db.execute("SELECT 1 FROM procedure_refusals WHERE signature = 'segments.segment_r_slow_v1()'").fetchone()


def test_evaluation_is_read_only_as_the_reader_role(db):
    from app.db import pool

    with pool().connection() as conn:
        with procedure.read_only(conn, 1234):
            row = conn.execute("SELECT current_user AS who, current_setting('transaction_read_only') AS ro, "
                               "current_setting('statement_timeout') AS t").fetchone()
        assert row == {"who": "mailer_segment_reader", "ro": "on", "t": "1234ms"}
        after = conn.execute("SELECT current_user AS who, current_setting('transaction_read_only') AS ro").fetchone()
        assert after["who"] != "mailer_segment_reader" and after["ro"] == "off"
    role = db.execute("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'mailer_segment_reader'").fetchone()
    assert role == {"rolcanlogin": False, "rolsuper": False}
    writable = db.execute("SELECT count(*) AS n FROM information_schema.role_table_grants WHERE grantee = "
                          "'mailer_segment_reader' AND privilege_type <> 'SELECT'").fetchone()["n"]
    assert writable == 0
    assert not db.execute("SELECT has_table_privilege('mailer_segment_reader', 'manager', 'SELECT') AS ok").fetchone()["ok"]


def test_drift_is_flagged_and_sending_needs_the_managers_confirmation(client, db):
    ids = people(db, "seg-d.test", CITIES)
    v1 = segment.create("Drifty", scoped("seg-d.test", cond("tags", "contains", "news")))
    other = segment.save_version(v1["procedure_id"], scoped("seg-d.test"))
    cid = segment_campaign(client, db, v1["id"])
    # Someone edits v1 in place.
    db.execute("""CREATE OR REPLACE FUNCTION segments.segment_drifty_v1() RETURNS TABLE (contact_id bigint)
                  LANGUAGE sql STABLE AS $$ SELECT id FROM contacts WHERE email::text = 'bob@seg-d.test' $$""")
    assert procedure.version(v1["id"])["state"] == "drifted"
    seg_page = client.get(f"/segments/{v1['procedure_id']}").get_data(as_text=True)
    assert "Drift: this function was changed in the database" in seg_page
    page = client.get(f"/campaigns/{cid}").get_data(as_text=True)
    assert 'id="drift-segment_drifty_v1"' in page and 'id="confirm-drift"' in page

    r = client.post(f"/campaigns/{cid}/send", follow_redirects=True)
    assert any("was changed in the database after it was saved (drift)" in a for a in alerts(r)), alerts(r)
    assert deliveries(db, cid) == set()
    assert db.execute("SELECT status FROM campaigns WHERE id = %s", (cid,)).fetchone()["status"] == "draft"

    r = client.post(f"/campaigns/{cid}/send", data={"confirm_drift": "1"}, follow_redirects=True)
    assert "Sending to 1 recipients." in alerts(r)
    assert deliveries(db, cid) == {ids["bob"]}
    detail = db.execute("SELECT detail FROM journal WHERE campaign_id = %s AND kind = 'campaign.materialised'",
                        (cid,)).fetchone()["detail"]
    assert detail["drift_confirmed"] == ["segment_drifty_v1"]
    current = db.execute("SELECT procedure_checksum('segments.segment_drifty_v1()') AS c").fetchone()["c"]
    assert db.execute("SELECT segment_checksum FROM campaigns WHERE id = %s", (cid,)).fetchone()["segment_checksum"] \
        == current != v1["checksum"]
    stop(db, cid)

    # A version whose function was dropped cannot be sent to, confirmed or not.
    db.execute(f"DROP FUNCTION segments.{other['fn_name']}()")
    cid = segment_campaign(client, db, other["id"])
    r = client.post(f"/campaigns/{cid}/send", data={"confirm_drift": "1"}, follow_redirects=True)
    assert any("no longer exists in the database" in a for a in alerts(r))
    assert deliveries(db, cid) == set()


def test_the_scheduler_never_sends_to_a_drifted_version(client, db):
    from app.services import campaign as campaigns
    from app.services.campaign import CampaignError

    people(db, "seg-s.test", CITIES)
    v1 = segment.create("Sched drift", scoped("seg-s.test"))
    cid = segment_campaign(client, db, v1["id"])
    db.execute("CREATE OR REPLACE FUNCTION segments.segment_sched_drift_v1() RETURNS TABLE (contact_id bigint) "
               "LANGUAGE sql STABLE AS $$ SELECT id FROM contacts LIMIT 1 $$")
    with pytest.raises(CampaignError, match="drift"):
        campaigns.start(cid, source="scheduler")
    assert deliveries(db, cid) == set()


BAD_TARGETS = [
    ({"target": "segment"}, "Choose the segment version to send to."),
    ({"target": "segment", "segment_version_id": "abc"}, "Invalid choice"),
    ({"target": "segment", "segment_version_id": "999999999"}, "Not a valid choice"),
    ({"target": "everyone"}, "Not a valid choice"),
    ({"exclude_list_ids": ["999999999"]}, "not a valid choice"),
    ({"merge_version_id": "-1"}, "Not a valid choice"),
]


def test_a_bad_campaign_target_is_refused_with_its_message(client, db):
    from tests.test_send_e2e import BODY

    before = db.execute("SELECT count(*) AS n FROM campaigns").fetchone()["n"]
    for data, message in BAD_TARGETS:
        form = {"name": "Target", "from_email": "jo@example.org", "subject": "Hi", "body_html": BODY,
                "max_attempts": 3, **data}
        r = client.post("/campaigns/new", data=form)
        assert r.status_code == 400
        assert any(message.lower() in a.lower() for a in alerts(r)), (data, alerts(r))
    assert db.execute("SELECT count(*) AS n FROM campaigns").fetchone()["n"] == before


def test_sql_procedures_files_are_registered_and_exported(app, db, tmp_path):
    runner = app.test_cli_runner()
    db.execute("CREATE TABLE IF NOT EXISTS file_canary (n int)")
    db.execute("INSERT INTO file_canary VALUES (1)")
    good = ("-- a DBA's file\nCREATE FUNCTION segments.segment_from_file_v1()\nRETURNS TABLE (contact_id bigint)\n"
            "LANGUAGE sql STABLE\nBEGIN ATOMIC\n  SELECT id FROM public.contacts WHERE email::text LIKE '%@seg-f.test';\nEND;\n")
    (tmp_path / "segment_from_file_v1.sql").write_text(good)
    (tmp_path / "segment_two_statements_v1.sql").write_text(
        "CREATE FUNCTION segments.segment_two_statements_v1() RETURNS TABLE (contact_id bigint) LANGUAGE sql "
        "STABLE AS $$ SELECT 1::bigint $$; DROP TABLE file_canary;")
    (tmp_path / "segment_other_name_v1.sql").write_text(
        "DROP TABLE file_canary; CREATE FUNCTION segments.segment_other_name_v1() RETURNS TABLE (contact_id bigint) "
        "LANGUAGE sql AS $$ SELECT 1::bigint $$")
    (tmp_path / "notes.sql").write_text("SELECT 1")
    people(db, "seg-f.test", CITIES[:2])

    r = runner.invoke(args=["segments", "register", "--dir", str(tmp_path)])
    assert r.exit_code == 1
    assert "registered segment_from_file_v1" in r.output
    assert "segment_two_statements_v1.sql: PostgreSQL refused it: cannot insert multiple commands" in r.output
    assert "segment_other_name_v1.sql: the file must hold one CREATE FUNCTION" in r.output
    assert "notes.sql: the file name is not" in r.output
    assert db.execute("SELECT count(*) AS n FROM file_canary").fetchone()["n"] == 1
    v = db.execute("SELECT * FROM procedure_versions WHERE fn_name = 'segment_from_file_v1'").fetchone()
    assert v["author"] == "dba" and v["origin"].endswith("segment_from_file_v1.sql") and v["matched"] == 2

    out = tmp_path / "export"
    r = runner.invoke(args=["segments", "export", "segment_from_file_v1", "--dir", str(out)])
    assert r.exit_code == 0, r.output
    exported = (out / "segment_from_file_v1.sql").read_text()
    assert exported.startswith("-- segment 'from_file' v1, by a DBA (") and v["source"].rstrip() + ";\n" in exported
    # Exported source registers as the same version, unchanged; an edited copy is refused.
    r = runner.invoke(args=["segments", "register", "--dir", str(out)])
    assert r.exit_code == 0 and "unchanged" in r.output, r.output
    (out / "segment_from_file_v1.sql").write_text(exported.replace("seg-f.test", "seg-g.test"))
    r = runner.invoke(args=["segments", "register", "--dir", str(out)])
    assert r.exit_code == 1 and "exists with another source, and versions are immutable" in r.output
    assert procedure.version(v["id"])["state"] == "ok"

    # The repository's own sql/procedures (the merge example) registers too.
    r = runner.invoke(args=["segments", "register"])
    assert r.exit_code == 0, r.output
    assert db.execute("SELECT 1 FROM procedure_versions WHERE fn_name = 'merge_offers_v1'").fetchone()


def test_export_from_the_page_writes_sql_procedures(client, db, tmp_path, monkeypatch):
    monkeypatch.setattr(procedure, "PROCEDURES_DIR", tmp_path)
    v = segment.create("Exported", scoped("seg-e.test"))
    r = client.post(f"/segments/versions/{v['id']}/export", follow_redirects=True)
    assert any("Exported segment_exported_v1 to" in a for a in alerts(r)), alerts(r)
    assert "CREATE OR REPLACE FUNCTION segments.segment_exported_v1()" in (tmp_path / "segment_exported_v1.sql").read_text()


def test_merge_example_fills_the_preview(app, client, db):
    app.test_cli_runner().invoke(args=["segments", "register"])
    people(db, "seg-m.test", [("mia", "Mia", {"city": "Lyon"}, [], "subscribed"),
                                    ("max", "Max", {"city": "Nowhere"}, [], "subscribed")])
    db.execute("INSERT INTO offers (title, city, url) VALUES ('Baker in Lyon', 'lyon', 'https://jobs.example/1'), "
               "('Closed job', 'Lyon', '') ")
    db.execute("UPDATE offers SET open = false WHERE title = 'Closed job'")
    merge_id = db.execute("SELECT id FROM procedure_versions WHERE fn_name = 'merge_offers_v1'").fetchone()["id"]
    body = "<ul>{% for o in data.offers %}<li>{{ o.title }} {{ o.url }}</li>{% else %}<li>none</li>{% endfor %}</ul>"
    cid = make_campaign(client, db, db.execute("INSERT INTO lists (name) VALUES ('seg-m') RETURNING id").fetchone()["id"],
                        body_html=body, merge_version_id=merge_id)
    r = client.post(f"/campaigns/{cid}/preview", data={"contact_email": "mia@seg-m.test"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "Baker in Lyon https://jobs.example/1" in html and "Closed job" not in html
    r = client.post(f"/campaigns/{cid}/preview", data={"contact_email": "max@seg-m.test"})
    assert "<li>none</li>" in unescape(r.get_data(as_text=True))


def test_save_matches_as_a_list_and_refresh_it(client, db):
    ids = people(db, "seg-l.test", CITIES)
    v1 = segment.create("Listed", scoped("seg-l.test", cond("tags", "contains", "news")))
    r = client.post(f"/segments/{v1['procedure_id']}/lists", data={"list_name": "News readers (static)"},
                    follow_redirects=True)
    assert "List News readers (static) made from v1: 3 members." in alerts(r), alerts(r)
    list_id = db.execute("SELECT id FROM lists WHERE name = 'News readers (static)'").fetchone()["id"]
    listed = lambda: {r["contact_id"] for r in db.execute(  # noqa: E731
        "SELECT contact_id FROM list_members WHERE list_id = %s", (list_id,))}
    assert listed() == {ids["ann"], ids["bob"], ids["eve"]}
    segment.save_version(v1["procedure_id"], scoped("seg-l.test", cond("tags", "contains", "jobs")))
    r = client.post(f"/segments/lists/{list_id}/refresh", follow_redirects=True)
    assert "List News readers (static) refreshed from v2: 2 members (1 added, 2 removed)." in alerts(r), alerts(r)
    assert listed() == {ids["bob"], ids["cat"]}
    r = client.post(f"/segments/{v1['procedure_id']}/lists", data={"list_name": "News readers (static)"},
                    follow_redirects=True)
    assert any("exists already" in a for a in alerts(r))
    assert client.post("/segments/lists/999999999/refresh").status_code == 404


def test_email_equals_ignores_case_and_finds_its_contacts_by_index(db):
    """citext's rule (equal once lower-cased), in the form of the contacts' unique index, so a
    segment on one address reads one contact, not every contact (migration 012)."""
    ids = people(db, "seg-mail.test", [("Ann", "Ann", {}, [], "subscribed"), ("bob", "Bob", {}, [], "subscribed")])
    from psycopg import sql as psql

    def matching(rule):
        query = psql.SQL("SELECT c.id FROM contacts c WHERE {}").format(rules.where(rules.normalise(rule)))
        return {r["id"] for r in db.execute(query)}, "\n".join(
            r["QUERY PLAN"] for r in db.execute(psql.SQL("EXPLAIN ") + query))

    found, plan = matching(scoped("seg-mail.test", cond("email", "equals", "ANN@Seg-Mail.test")))
    assert found == {ids["Ann"]} and "contacts_email_lower" in plan
    found, plan = matching(scoped("seg-mail.test", cond("email", "in", ["bob@SEG-MAIL.TEST", "x@seg-mail.test"])))
    assert found == {ids["bob"]} and "contacts_email_lower" in plan
    found, _ = matching(scoped("seg-mail.test", cond("email", "not_equals", "ann@seg-mail.test")))
    assert found == {ids["bob"]}
