-- code_reuse is judged once per stored batch by the ingest transaction itself
-- (kiosk/collector/storage/sqlite_sql.py, `_CODE_REUSE`), no longer by a per-row trigger: on
-- SQLite the mere presence of a row trigger on `entries` doubled the cost of inserting a row
-- (bench/ingest.py), whatever the trigger did. The judgement is the same: an allow that gives
-- its subject 4 or more allows at its venue within 10 minutes either side re-judges the allows
-- of that subject in the 10 minutes from it, and each excess use is recorded. An excess use
-- stays excess as allows arrive, so judging after the whole batch records exactly what judging
-- after each row did. PostgreSQL already judges once per statement (its 0002).

DROP TRIGGER entries_code_reuse;
