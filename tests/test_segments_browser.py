"""Issue 3 in headless Chromium: build a segment with nested AND/OR groups (add, reorder,
remove), watch the live preview (estimate, then the exact count and first rows), save v1, change
the rules on the segment's page and save v2."""
import json
import re

from playwright.sync_api import expect
from psycopg.types.json import Jsonb

# b_age: an attribute of this test's own, so its type (number) is discovered from these values.
WAIT = 20_000  # ms: the preview and saves run real queries on a machine other tests share
PEOPLE = [("ann", {"city": "Oslo", "b_age": "31"}, ["news"]), ("bob", {"city": "Bergen", "b_age": "45"}, ["jobs"]),
          ("cat", {"city": "Oslo", "b_age": "52"}, ["jobs"]), ("dan", {"city": "Lima", "b_age": "19"}, ["news"]),
          ("eve", {"city": "Oslo", "b_age": 60}, [])]


def members(db, fn_name):
    return {r["email"] for r in db.execute(
        "SELECT c.email::text AS email FROM segment_eval(%s::regprocedure) r JOIN contacts c ON c.id = r.contact_id",
        (f"segments.{fn_name}()",))}


def model(page):
    return json.loads(page.locator("#rules-json").input_value())


def expect_matched(page, n):
    count = page.locator("#preview-count")
    expect(count).to_have_attribute("data-state", "exact", timeout=WAIT)
    expect(count).to_have_attribute("data-matched", str(n), timeout=WAIT)


def test_build_preview_and_save_two_versions(page, db):
    for name, attrs, tags in PEOPLE:
        db.execute("INSERT INTO contacts (email, name, attributes, tags) VALUES (%s, %s, %s, %s)",
                   (f"{name}@seg-b.test", name.title(), Jsonb(attrs), tags))
    page.click("nav >> text=Segments")
    page.click("#new-segment")
    expect(page.locator("#builder")).to_have_attribute("data-ready", "1", timeout=WAIT)
    page.fill("#name", "Browser segment")
    expect(page.locator(".group.root .hint")).to_have_text("No conditions: every contact matches.", timeout=WAIT)

    root = page.locator("#builder .group.root")
    root.locator(":scope > .group-tools .add-condition").click()
    first = root.locator(":scope > ol > li").nth(0).locator(".condition")
    first.locator("select.op").select_option("ends_with")
    first.locator("input.value").fill("@seg-b.test")
    expect_matched(page, 5)

    # A nested OR group: city is Oslo, or the tag jobs.
    root.locator(":scope > .group-tools .add-group").click()
    group = root.locator(".group.nested")
    expect(group.locator("select.group-op")).to_have_value("or", timeout=WAIT)
    cond = group.locator(".condition").nth(0)
    cond.locator("select.field").select_option(label="city (text)")
    cond.locator("select.op").select_option("equals")
    cond.locator("input.value").fill("Oslo")
    group.locator(".add-condition").click()
    cond = group.locator(".condition").nth(1)
    cond.locator("select.field").select_option(label="Tags")
    cond.locator("select.op").select_option("contains")
    cond.locator("input.value").fill("jobs")
    expect_matched(page, 4)  # ann, bob, cat, eve
    expect(page.locator("#preview-sample tbody tr")).to_have_count(4, timeout=WAIT)
    expect(page.locator("#preview-sample tbody tr").first).to_contain_text("ann@seg-b.test", timeout=WAIT)

    # A third top-level condition, moved up, then removed; and the group moved above the first.
    root.locator(":scope > .group-tools .add-condition").click()
    third = root.locator(":scope > ol > li").nth(2)
    third.locator("select.field").select_option(label="b_age (number)")
    third.locator("select.op").select_option("gt")
    third.locator("input.value").fill("50")
    expect_matched(page, 2)  # cat, eve
    third.locator(".up").click()
    assert [c.get("field", c.get("op")) for c in model(page)["children"]] == ["email", "attribute", "or"]
    root.locator(":scope > ol > li").nth(1).locator(".remove").click()
    expect_matched(page, 4)
    root.locator(".group.nested > .group-head .up").click()
    assert [c.get("field", c.get("op")) for c in model(page)["children"]] == ["or", "email"]

    page.click("#save-segment")
    saved = page.locator("p.flash", has_text="Saved segment_browser_segment_v1: 4 contacts match now.")
    expect(saved).to_be_visible(timeout=WAIT)
    assert members(db, "segment_browser_segment_v1") == {"ann@seg-b.test", "bob@seg-b.test", "cat@seg-b.test",
                                                         "eve@seg-b.test"}

    # On the segment's page the builder starts from v1; AND instead of OR makes v2.
    expect(page.locator("#builder")).to_have_attribute("data-ready", "1", timeout=WAIT)
    expect_matched(page, 4)
    page.locator("#builder .group.nested select.group-op").select_option("and")
    expect_matched(page, 1)  # cat: Oslo and jobs
    page.click("#save-segment")
    saved = page.locator("p.flash", has_text="Saved segment_browser_segment_v2: 1 contacts match now.")
    expect(saved).to_be_visible(timeout=WAIT)
    assert members(db, "segment_browser_segment_v2") == {"cat@seg-b.test"}
    expect(page.locator("#version-2")).to_contain_text("by the rule builder", timeout=WAIT)
    page.locator("#version-2 summary", has_text="Changes from the previous version").click()
    expect(page.locator("#version-2 pre.diff .add").first).to_be_visible(timeout=WAIT)

    # A refused rule says why and saves nothing.
    page.locator("#builder .group.nested .condition").nth(0).locator("input.value").fill("")
    page.locator("#builder .group.nested .condition").nth(0).locator("select.field").select_option(label="Created")
    page.locator("#builder .group.nested .condition").nth(0).locator("select.op").select_option("before")
    expect(page.locator("#preview-error")).to_contain_text("is not a date", timeout=WAIT)
    page.click("#save-segment")
    expect(page.locator("#save-error")).to_contain_text("is not a date", timeout=WAIT)
    assert db.execute("SELECT count(*) AS n FROM procedure_versions v JOIN procedures p ON p.id = v.procedure_id "
                      "WHERE p.slug = 'browser_segment'").fetchone()["n"] == 2
    assert re.search(r"/segments/\d+", page.url)
