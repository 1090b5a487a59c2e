-- Partition creation that neither fails nor stops ingest while deliveries
-- keep arriving for the month it creates (replaces the function of 0004).
--
-- 0004 moved a month's rows out of DEFAULT, then attached the partition; a
-- row of that month inserted into DEFAULT in between made the attach fail
-- ("updated partition constraint for default partition would be violated"),
-- so under a steady flow into DEFAULT the round failed every time. Writes
-- to DEFAULT now wait from before the move until the commit (SHARE lock;
-- ingest takes DEFAULT of events before DEFAULT of deliveries, and so does
-- hubbub_partitions_ensure(), so they do not deadlock). An insert that was
-- routed to DEFAULT before the attach then fails with SQLSTATE 23514, which
-- the ingest writer retries (db/ingest.c): the retry routes to the new
-- partition.
--
-- A partition is also always created on its own and then attached, never
-- with CREATE TABLE ... PARTITION OF: that one takes the parent's ACCESS
-- EXCLUSIVE lock, and while it waits for it (behind a backup or a long
-- listing) every insert into the parent queues behind it; ATTACH takes
-- SHARE UPDATE EXCLUSIVE on the parent, which inserts and reads do not
-- conflict with.
CREATE OR REPLACE FUNCTION hubbub_partition_create(parent text, month_start timestamp) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    lo_ts timestamp := date_trunc('month', month_start);
    hi_ts timestamp := date_trunc('month', month_start) + interval '1 month';
    lo timestamptz := lo_ts AT TIME ZONE 'UTC';
    hi timestamptz := hi_ts AT TIME ZONE 'UTC';
    part text := format('%s_p%s', parent, to_char(lo_ts, 'YYYY_MM'));
    bounds text := format('FOR VALUES FROM (%L) TO (%L)', to_char(lo_ts, 'YYYY-MM-DD') || ' 00:00:00+00',
                          to_char(hi_ts, 'YYYY-MM-DD') || ' 00:00:00+00');
BEGIN
    IF parent NOT IN ('events', 'deliveries') THEN
        RAISE EXCEPTION 'hubbub_partition_create: % is not partitioned by month', parent;
    END IF;
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('LOCK TABLE %I IN SHARE MODE', parent || '_default');
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
    EXECUTE format('WITH m AS (DELETE FROM %I WHERE received_at >= $1 AND received_at < $2 RETURNING *)'
                   ' INSERT INTO %I SELECT * FROM m', parent || '_default', part) USING lo, hi;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I %s', parent, part, bounds);
    RETURN true;
END
$$;
