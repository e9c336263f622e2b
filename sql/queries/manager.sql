-- name: manager_get
SELECT username, password_hash FROM manager WHERE id = 1;

-- name: manager_upsert
INSERT INTO manager (id, username, password_hash) VALUES (1, %(username)s, %(password_hash)s)
ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, password_hash = EXCLUDED.password_hash,
       updated_at = now();
