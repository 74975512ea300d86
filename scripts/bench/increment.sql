-- Every client increments the same row: the floor for mutate-hot.
UPDATE game_sessions
   SET flags = jsonb_set(flags, '{counter}', to_jsonb(version + 1)), version = version + 1, updated_at = now()
 WHERE id = 1
RETURNING version;
