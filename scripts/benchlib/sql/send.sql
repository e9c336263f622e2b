-- Data for `scripts/bench send`, loaded with the app's own named-query loader.

-- Contacts bench<first>..bench<last>@example.test with a name (one in ten non-ASCII, so the
-- encoded-header path is exercised) and two attributes the template uses.
-- name: bench_seed_contacts
INSERT INTO contacts (email, name, attributes)
SELECT format('bench%%s@example.test', g),
       CASE WHEN g %% 10 = 0 THEN format('Zoë Łukasz %%s', g) ELSE format('Person %%s', g) END,
       jsonb_build_object('city', (ARRAY['Lyon', 'Oslo', 'Porto', 'Graz', 'Turku'])[1 + g %% 5],
                          'plan', (ARRAY['free', 'pro', 'team'])[1 + g %% 3])
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
ON CONFLICT ((lower(email::text)) COLLATE "C") DO NOTHING;

-- name: bench_list_create
INSERT INTO lists (name, description) VALUES (%(name)s, 'benchmark') RETURNING id;

-- The first `n` contacts by id.
-- name: bench_list_fill
INSERT INTO list_members (list_id, contact_id)
SELECT %(list_id)s, id FROM contacts ORDER BY id LIMIT %(n)s
ON CONFLICT DO NOTHING;

-- A random sample of `n` among the first `among` contacts.
-- name: bench_list_fill_sample
INSERT INTO list_members (list_id, contact_id)
SELECT %(list_id)s, id FROM (SELECT id FROM contacts ORDER BY id LIMIT %(among)s) c
 ORDER BY random() LIMIT %(n)s
ON CONFLICT DO NOTHING;

-- name: bench_campaign_by_name
SELECT id FROM campaigns WHERE name = %(name)s;

-- name: bench_status
SELECT status FROM campaigns WHERE id = %(id)s;

-- name: bench_outcomes
SELECT status, count(*) AS n FROM deliveries WHERE campaign_id = %(id)s GROUP BY status;

-- name: bench_journal_sent
SELECT count(*) AS n, count(DISTINCT delivery_id) AS distinct_deliveries
  FROM journal WHERE campaign_id = %(id)s AND kind = 'delivery.sent';

-- name: bench_sent_rows
SELECT d.email, d.message_id, c.id AS contact_id, c.name, c.attributes
  FROM deliveries d JOIN contacts c ON c.id = d.contact_id
 WHERE d.campaign_id = %(id)s AND d.status = 'sent';

-- Backends serving the benchmark's database, for their CPU time.
-- name: bench_backends
SELECT pid FROM pg_stat_activity WHERE datname = current_database();

-- name: bench_clock
SELECT clock_timestamp() AS t;

-- When a campaign's first page was committed and enqueued (sending could begin).
-- name: bench_running_at
SELECT at FROM journal WHERE campaign_id = %(id)s AND kind = 'campaign.running' ORDER BY id LIMIT 1;
