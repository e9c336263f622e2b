"""The manager's login: every page behind it, no open redirect, logout by POST with CSRF,
a hashed password, and the two CLI commands that set it."""
import re

import pytest
from werkzeug.security import check_password_hash

from tests.conftest import MANAGER

CSRF = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')
# Pages anyone may open. Adding one is a security decision: it must be made here too.
PUBLIC = {"auth.login", "static", "public.unsubscribe", "public.health"}


def csrf_token(client, path="/login") -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def login(client, username=MANAGER[0], password=MANAGER[1], next_=None):
    """Log in through the real form, CSRF token and all."""
    token = csrf_token(client)
    return client.post("/login" + (f"?next={next_}" if next_ is not None else ""),
                       data={"csrf_token": token, "username": username, "password": password})


def logged_in(client) -> bool:
    return client.get("/").status_code == 200


def concrete(rule, number=1) -> str:
    """A URL for a rule, with `number` for every number and 'x' for every other part."""
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>",
                  lambda m: str(number) if m.group(1) == "int" else "x", rule.rule)


@pytest.fixture
def restore_manager(manager):
    yield
    from app.auth import set_password

    set_password(*manager)


def test_the_public_pages_are_only_the_known_ones(app):
    from app.auth import PUBLIC_ENDPOINTS

    assert PUBLIC_ENDPOINTS == PUBLIC


def test_every_page_redirects_to_login_when_logged_out(csrf_off, manager):
    client = csrf_off.test_client()
    checked = 0
    for rule in csrf_off.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        url = concrete(rule)
        for method in sorted(rule.methods & {"GET", "POST"}):
            r = client.open(url, method=method)
            checked += 1
            if url.startswith("/api/"):
                assert r.status_code == 401 and r.get_json() == {"error": "login required"}, (method, url)
            else:
                assert r.status_code == 302, (method, url, r.status_code)
                assert r.headers["Location"].startswith("/login?next="), (method, url)
    assert checked >= 10  # the app's pages were really walked, not an empty map


def test_login_then_lands_on_the_page_asked_for(app, manager):
    client = app.test_client()
    r = client.get("/contacts?q=ann")
    assert r.headers["Location"] == "/login?next=/contacts?q%3Dann"
    r = login(client, next_="/contacts%3Fq%3Dann")
    assert r.status_code == 302 and r.headers["Location"] == "/contacts?q=ann"
    assert logged_in(client)


@pytest.mark.parametrize("username,password", [
    (MANAGER[0], "wrong password"),
    ("someone-else", MANAGER[1]),
    ("ädmin", MANAGER[1]),             # non-ASCII must be a refusal, not a crash
    (MANAGER[0], MANAGER[1].upper()),
    (MANAGER[0], MANAGER[1] + " "),
])
def test_wrong_login_is_refused(app, manager, username, password):
    client = app.test_client()
    r = login(client, username, password)
    assert r.status_code == 200
    assert "Wrong username or password." in r.get_data(as_text=True)
    assert not logged_in(client)


@pytest.mark.parametrize("username,password,message", [
    ("", MANAGER[1], "This field is required."),
    (MANAGER[0], "", "This field is required."),
    ("u" * 10_000, MANAGER[1], "Field cannot be longer than 200 characters."),
    (MANAGER[0], "p" * 10_000, "Field cannot be longer than 1000 characters."),
    ("ad\x00min", MANAGER[1], "NUL"),
])
def test_malformed_login_gets_a_clear_message(app, manager, username, password, message):
    client = app.test_client()
    r = login(client, username, password)
    assert r.status_code == 400
    assert message in r.get_data(as_text=True)
    assert not logged_in(client)


@pytest.mark.parametrize("target", [
    "//evil.example/x", "https://evil.example/", "http:/evil.example", "/\\evil.example",
    "/%09/evil.example", "javascript:alert(1)", "evil.example", "%2F%2Fevil.example",
])
def test_login_never_redirects_off_site(app, manager, target):
    client = app.test_client()
    r = login(client, next_=target)
    assert r.status_code == 302
    assert r.headers["Location"] == "/", target


def test_logout_is_a_post_with_csrf(app, manager):
    client = app.test_client()
    login(client)
    assert logged_in(client)

    r = client.get("/logout")
    assert r.status_code == 405 and logged_in(client)
    r = client.post("/logout")
    assert r.status_code == 400 and "Form expired" in r.get_data(as_text=True)
    assert logged_in(client)
    r = client.post("/logout", data={"csrf_token": "forged"})
    assert r.status_code == 400 and logged_in(client)

    r = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    assert not logged_in(client)


def test_the_password_is_stored_hashed(db, manager):
    row = db.execute("SELECT username, password_hash FROM manager").fetchone()
    assert row["username"] == manager[0]
    assert manager[1] not in row["password_hash"]
    assert row["password_hash"].split(":")[0] in ("scrypt", "pbkdf2")
    assert check_password_hash(row["password_hash"], manager[1])


def test_ensure_manager_keeps_an_existing_login(app, db, manager):
    before = db.execute("SELECT password_hash FROM manager").fetchone()
    r = app.test_cli_runner().invoke(args=["ensure-manager"], env={"MANAGER_PASSWORD": None})
    assert r.exit_code == 0, r.output
    assert "as set before" in r.output
    assert db.execute("SELECT password_hash FROM manager").fetchone() == before


def test_ensure_manager_takes_the_password_from_the_environment(app, db, restore_manager):
    r = app.test_cli_runner().invoke(args=["ensure-manager"], env={
        "MANAGER_USERNAME": "boss", "MANAGER_PASSWORD": "from the environment"})
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "manager login: boss / (from MANAGER_PASSWORD)"
    assert "from the environment" not in r.output
    client = app.test_client()
    assert login(client, "boss", "from the environment").status_code == 302


def test_ensure_manager_on_first_run_prints_a_generated_login(app, db, restore_manager):
    db.execute("DELETE FROM manager")
    r = app.test_cli_runner().invoke(args=["ensure-manager"], env={"MANAGER_PASSWORD": None,
                                                                   "MANAGER_USERNAME": None})
    assert r.exit_code == 0, r.output
    m = re.fullmatch(r"manager login: admin / (\S+)", r.output.strip())
    assert m, r.output
    client = app.test_client()
    assert login(client, "admin", m.group(1)).status_code == 302
    assert logged_in(client)


def test_ensure_manager_refuses_a_short_password_clearly(app, db, restore_manager):
    before = db.execute("SELECT password_hash FROM manager").fetchone()
    r = app.test_cli_runner().invoke(args=["ensure-manager"], env={"MANAGER_PASSWORD": "short"})
    assert r.exit_code != 0
    assert "at least 8 characters" in r.output and "Traceback" not in r.output
    assert db.execute("SELECT password_hash FROM manager").fetchone() == before


def test_set_password_changes_the_login(app, restore_manager):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["set-password", "--username", "admin"], input="a new password\na new password\n")
    assert r.exit_code == 0, r.output
    assert "password set for admin" in r.output
    assert login(app.test_client(), "admin", MANAGER[1]).status_code == 200  # the old one is refused
    assert login(app.test_client(), "admin", "a new password").status_code == 302


@pytest.mark.parametrize("entered,message", [
    ("short\nshort\n", "at least 8 characters"),
    ("a long password\nanother password\n", "do not match"),
])
def test_set_password_refuses_bad_input_clearly(app, db, restore_manager, entered, message):
    before = db.execute("SELECT password_hash FROM manager").fetchone()
    r = app.test_cli_runner().invoke(args=["set-password"], input=entered)
    assert r.exit_code != 0
    assert message in r.output and "Traceback" not in r.output
    assert db.execute("SELECT password_hash FROM manager").fetchone() == before


def test_every_form_post_without_a_csrf_token_is_refused(app, db, manager):
    """With CSRF on, each POST route refuses a missing or forged token with the clear page,
    before it acts: the draft campaign and its list stay as they were."""
    list_id = db.execute("INSERT INTO lists (name) VALUES ('csrf-probe') RETURNING id").fetchone()["id"]
    cid = db.execute("INSERT INTO campaigns (name, from_email, subject, body_html, list_id) VALUES "
                     "('csrf', 'a@example.com', 's', 'b', %s) RETURNING id", (list_id,)).fetchone()["id"]
    client = app.test_client()
    login(client)
    posts = [r for r in app.url_map.iter_rules() if "POST" in r.methods and r.endpoint != "public.unsubscribe"]
    assert len(posts) >= 8
    for rule in posts:
        url = concrete(rule, cid)
        for data in ({"name": "x", "email": "x@example.com"}, {"csrf_token": "forged", "name": "x"}):
            r = client.post(url, data=data)
            assert r.status_code == 400, (url, r.status_code)
            if url.startswith("/api/"):
                assert "security token" in r.get_json()["error"], url
            else:
                assert "Form expired" in r.get_data(as_text=True), url
    assert db.execute("SELECT status FROM campaigns WHERE id = %s", (cid,)).fetchone()["status"] == "draft"
    assert db.execute("SELECT count(*) AS n FROM deliveries WHERE campaign_id = %s", (cid,)).fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM lists WHERE name = 'x'").fetchone()["n"] == 0
    assert logged_in(client)  # logout without a token did not log out


def test_a_multipart_upload_without_a_token_is_refused(app, db, manager):
    import io

    client = app.test_client()
    login(client)
    r = client.post("/contacts/upload", content_type="multipart/form-data",
                    data={"file": (io.BytesIO(b"email\ncsrf-upload@example.com\n"), "c.csv")})
    assert r.status_code == 400 and "Form expired" in r.get_data(as_text=True)
    assert db.execute("SELECT 1 FROM contacts WHERE email = 'csrf-upload@example.com'").fetchone() is None


def test_login_without_a_token_is_refused(app, manager):
    client = app.test_client()
    r = client.post("/login", data={"username": manager[0], "password": manager[1]})
    assert r.status_code == 400 and "Form expired" in r.get_data(as_text=True)
    assert not logged_in(client)


def test_no_page_repeats_an_element_id(app, manager, db):
    """With CSRF on, pages of several forms gave each hidden token field id="csrf_token"."""
    from collections import Counter

    client = app.test_client()
    assert login(client).status_code == 302
    cid = db.execute("INSERT INTO campaigns (name, from_email, subject) VALUES ('ids', 'a@example.org', 's') "
                     "RETURNING id").fetchone()["id"]
    for path in ["/", "/contacts", "/lists", "/campaigns/new", f"/campaigns/{cid}", f"/campaigns/{cid}/edit",
                 "/segments", "/segments/new", "/journal", "/contacts/import"]:
        r = client.get(path)
        assert r.status_code == 200, path
        html = r.get_data(as_text=True)
        assert CSRF.search(html), f"{path} has no CSRF field"
        repeated = [i for i, n in Counter(re.findall(r'\bid="([^"]+)"', html)).items() if n > 1]
        assert not repeated, f"{path} repeats ids {repeated}"
