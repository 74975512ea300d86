-- The floor for UpdateSession: the single-statement compare-and-set on the migrated
-- table, one row per client (no contention), replacing a ~1 KiB flags document as
-- the service does. Run with -M prepared (like the service's driver) and
-- -D v=1 -D doc='<1 KiB JSON>'; each RETURNING carries the new version to the
-- client's next statement.
\set id :client_id + 1
UPDATE game_sessions
   SET flags = :doc::jsonb, version = version + 1, updated_at = now()
 WHERE id = :id AND version = :v
RETURNING version AS v \gset
