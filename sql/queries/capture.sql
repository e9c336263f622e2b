-- name: capture_insert
INSERT INTO captured_messages (mail_from, rcpt_to, subject, message_id, raw)
VALUES (%(mail_from)s, %(rcpt_to)s, %(subject)s, %(message_id)s, %(raw)s);

-- name: capture_list
SELECT id, received_at, mail_from, rcpt_to, subject, message_id, length(raw) AS size
  FROM captured_messages
 WHERE (%(rcpt)s::text IS NULL OR %(rcpt)s = ANY(rcpt_to)) AND (%(before)s::bigint IS NULL OR id < %(before)s)
 ORDER BY id DESC LIMIT %(limit)s;

-- name: capture_get
SELECT * FROM captured_messages WHERE id = %(id)s;

-- name: capture_count
SELECT count(*) AS n FROM captured_messages;
