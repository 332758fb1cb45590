-- The code_reuse judgement's index, keyed by 10-minute bucket of `ts` before the subject. Keyed
-- (venue_id, subject, ts), every stored allow went to a random place in the index (subjects are
-- pseudonyms), so a batch of 1,000 entries dirtied about 1,000 index pages: half the cost of
-- storing an entry (bench/ingest.py's raw ceiling doubled without it). Keyed by bucket first,
-- the allows of a venue arriving now go to the few pages of its current bucket, and the
-- judgement (kiosk/collector/storage/sqlite_sql.py, `_CODE_REUSE`) still seeks by subject: in
-- the allow's bucket and the one either side, then by the exact time bounds as before.

DROP INDEX entries_allowed_subject;
CREATE INDEX entries_allowed_bucket ON entries (venue_id, CAST(ts AS INTEGER) / 600, subject, ts)
    WHERE decision = 'allow' AND subject IS NOT NULL;
