-- The service's own compare-and-set, one row per client (no contention). Every row
-- starts at version 1 (pgbench -D v=1); each UPDATE's RETURNING carries the new
-- version to the client's next one.
\set id :client_id + 1
UPDATE game_sessions
   SET flags = jsonb_set(flags, '{counter}', to_jsonb(:v + 1)), version = version + 1, updated_at = now()
 WHERE id = :id AND version = :v
RETURNING version AS v \gset
