-- Rolling migration for a database whose `public.trades` is still a plain table.
--
-- What it does: the old table BECOMES A PARTITION (no row moves, no rewrite). It is renamed
-- `trades_legacy` and attached to a new partitioned `trades` for the range
-- [MINVALUE, start of the month after its newest row, and at least two months ahead). New months get
-- their own partitions and a default partition catches anything outside them. When the legacy
-- range falls past retention, the archiver archives it as one object like any other partition.
--
-- Locks: step 1 adds a CHECK constraint NOT VALID and validates it; validation takes only SHARE
-- UPDATE EXCLUSIVE, so reads and writes continue while it scans. Step 2 is one short transaction
-- (rename, create parent, attach): the CHECK constraint lets ATTACH skip its validation scan, so the
-- ACCESS EXCLUSIVE lock lasts milliseconds. Every statement runs under lock_timeout: if the
-- application holds a conflicting lock, the migration fails fast and can simply be rerun.
--
-- On a database where `trades` is already partitioned (or absent) this file changes nothing.
-- It runs as separate transactions on purpose: psql -f commits each statement; `partition-archiver
-- migrate` runs each chunk between `-- migrate:split` lines as its own transaction.

SET lock_timeout = '5s';

-- Step 1: constrain the legacy table to the range it will own, without blocking writers.
DO $$
DECLARE
  v_hi timestamptz;
BEGIN
  IF to_regclass('public.trades') IS NULL
     OR (SELECT relkind FROM pg_class WHERE oid = to_regclass('public.trades')) <> 'r' THEN
    RAISE NOTICE 'public.trades is already partitioned (or absent): nothing to convert';
    RETURN;
  END IF;
  SELECT greatest(
           -- two months ahead: new rows keep satisfying the CHECK even if step 2 runs after a month boundary
           (date_trunc('month', partition_archiver.now() AT TIME ZONE 'UTC') + interval '2 months') AT TIME ZONE 'UTC',
           (date_trunc('month', max(created_at) AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC')
    INTO v_hi FROM public.trades;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.trades'::regclass
                 AND conname = 'trades_legacy_partition_bound') THEN
    EXECUTE format('ALTER TABLE public.trades ADD CONSTRAINT trades_legacy_partition_bound '
                   'CHECK (created_at IS NOT NULL AND created_at < %L::timestamptz) NOT VALID', v_hi);
  END IF;
END $$;

-- migrate:split
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass('public.trades')
             AND conname = 'trades_legacy_partition_bound' AND NOT convalidated) THEN
    ALTER TABLE public.trades VALIDATE CONSTRAINT trades_legacy_partition_bound;
  END IF;
END $$;

-- migrate:split
-- Step 2: one short transaction swaps the plain table for a partitioned parent.
DO $$
DECLARE
  v_hi  text;
  r     record;
BEGIN
  IF to_regclass('public.trades') IS NULL
     OR (SELECT relkind FROM pg_class WHERE oid = to_regclass('public.trades')) <> 'r' THEN
    RETURN;
  END IF;
  SELECT substring(pg_get_constraintdef(oid) FROM '< ''([^'']+)''') INTO v_hi
    FROM pg_constraint WHERE conrelid = 'public.trades'::regclass AND conname = 'trades_legacy_partition_bound';
  ALTER TABLE public.trades RENAME TO trades_legacy;
  -- Index and constraint names are unique per schema: free the old ones for the new parent.
  FOR r IN SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
           WHERE x.indrelid = 'public.trades_legacy'::regclass LOOP
    IF r.relname NOT LIKE '%\_legacy' THEN
      EXECUTE format('ALTER INDEX public.%I RENAME TO %I', r.relname, left(r.relname, 55) || '_legacy');
    END IF;
  END LOOP;
  CREATE TABLE public.trades (LIKE public.trades_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                              INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS)
    PARTITION BY RANGE (created_at);
  ALTER TABLE public.trades DROP CONSTRAINT IF EXISTS trades_legacy_partition_bound;
  -- The identity sequence of the new parent continues after the legacy ids.
  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.trades'::regclass AND attname = 'id' AND attidentity <> '') THEN
    PERFORM setval(pg_get_serial_sequence('public.trades', 'id'),
                   greatest((SELECT coalesce(max(id), 0) FROM public.trades_legacy), 1));
  END IF;
  EXECUTE format('ALTER TABLE public.trades ATTACH PARTITION public.trades_legacy FOR VALUES FROM (MINVALUE) TO (%L)', v_hi);
  CREATE INDEX IF NOT EXISTS idx_trades_user_created ON public.trades (user_id, created_at DESC);
  CREATE INDEX IF NOT EXISTS idx_trades_symbol_side ON public.trades (symbol, side);
  RAISE NOTICE 'public.trades is now partitioned; its old rows are in partition public.trades_legacy (up to %)', v_hi;
END $$;

-- migrate:split
-- Install dynamic creation: register the table and create the default and upcoming partitions.
DO $$
BEGIN
  IF to_regclass('public.trades') IS NULL
     OR (SELECT relkind FROM pg_class WHERE oid = to_regclass('public.trades')) <> 'p' THEN
    RETURN;
  END IF;
  INSERT INTO partition_archiver.part_config (schema_name, table_name, partition_column)
  VALUES ('public', 'trades', 'created_at') ON CONFLICT DO NOTHING;
  PERFORM partition_archiver.create_partitions('public', 'trades');
END $$;

RESET lock_timeout;
