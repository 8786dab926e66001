-- SQL-only retention for users who do not run the partition-archiver binary.
--
-- Installs partition_archiver.detach_expired_partitions() and run_archiving(). Applying this file
-- changes no data; calling the functions detaches every partition whose whole range ends on or
-- before the start of (current period - retention), and moves it into the table's
-- historical_schema (part_config.historical_schema, default `partition_history`). It NEVER drops a
-- table: data leaves the database only through the binary, which archives and verifies first.
--
--   SELECT * FROM partition_archiver.run_archiving();                 -- all enabled tables
--   SELECT * FROM partition_archiver.detach_expired_partitions('public', 'trades', partition_archiver.now(), true); -- dry run
--   SELECT cron.schedule('partition-archiving', '30 3 1 * *', 'SELECT partition_archiver.run_archiving()');
--
-- Do not combine with the binary's archiving of the same table: a partition moved to the historical
-- schema is no longer a partition, so the binary would not archive it.
-- Same rules as the binary: the cutoff is computed in the table's time zone; never the current or a
-- future partition, never the default partition, never a partition with an unbounded upper end.

CREATE OR REPLACE FUNCTION partition_archiver.detach_expired_partitions(
  p_schema text, p_table text, p_now timestamptz DEFAULT partition_archiver.now(), p_dry_run boolean DEFAULT false)
RETURNS TABLE (partition_name text, upper_bound text, action text)
LANGUAGE plpgsql AS $$
DECLARE
  cfg      partition_archiver.part_config;
  v_parent regclass;
  v_type   regtype;
  v_cutoff timestamp;
  v_due    boolean;
  r        record;
BEGIN
  SELECT * INTO cfg FROM partition_archiver.part_config WHERE schema_name = p_schema AND table_name = p_table;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'table %.% is not registered in partition_archiver.part_config', p_schema, p_table;
  END IF;
  IF cfg.epoch IS NOT NULL THEN
    RAISE EXCEPTION 'table %.% has an epoch key (part_config.epoch = %): SQL-only retention handles timestamp and date keys; partition-archiver handles this table',
      p_schema, p_table, cfg.epoch;
  END IF;
  IF cfg.retention IS NULL THEN
    RETURN;
  END IF;
  SELECT c.oid INTO v_parent FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = p_schema AND c.relname = p_table AND c.relkind = 'p';
  IF v_parent IS NULL THEN
    RAISE EXCEPTION 'table %.% does not exist or is not partitioned', p_schema, p_table;
  END IF;
  SELECT a.atttypid::regtype INTO v_type FROM pg_attribute a
   WHERE a.attrelid = v_parent AND a.attname = cfg.partition_column AND NOT a.attisdropped;
  v_cutoff := partition_archiver.period_start(cfg.partition_interval, cfg.time_zone, p_now)
              - cfg.retention * partition_archiver.period_step(cfg.partition_interval);
  PERFORM set_config('lock_timeout', '2s', true);

  FOR r IN
    SELECT c.relname, n.nspname,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM ' TO \(''([^'']+)''\)$') AS hi
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = v_parent
     ORDER BY c.relname
  LOOP
    CONTINUE WHEN r.hi IS NULL;  -- DEFAULT, or an upper bound of MAXVALUE
    v_due := CASE v_type
      WHEN 'timestamptz'::regtype THEN r.hi::timestamptz <= (v_cutoff AT TIME ZONE cfg.time_zone)
      WHEN 'date'::regtype THEN r.hi::date <= v_cutoff::date
      ELSE r.hi::timestamp <= v_cutoff
    END;
    CONTINUE WHEN NOT v_due;
    partition_name := r.relname;
    upper_bound := r.hi;
    IF p_dry_run THEN
      action := 'would detach and move to ' || cfg.historical_schema;
    ELSIF to_regclass(format('%I.%I', cfg.historical_schema, r.relname)) IS NOT NULL THEN
      action := 'skipped: ' || cfg.historical_schema || '.' || r.relname || ' already exists';
    ELSE
      EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', cfg.historical_schema);
      EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I', p_schema, p_table, r.nspname, r.relname);
      EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', r.nspname, r.relname, cfg.historical_schema);
      action := 'detached and moved to ' || cfg.historical_schema;
    END IF;
    RETURN NEXT;
  END LOOP;
END $$;

CREATE OR REPLACE FUNCTION partition_archiver.run_archiving(p_now timestamptz DEFAULT partition_archiver.now(), p_dry_run boolean DEFAULT false)
RETURNS TABLE (table_name text, partition_name text, upper_bound text, action text)
LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  -- Timestamp and date keys only: an epoch or UUIDv7 table's bounds are not timestamps.
  FOR r IN SELECT c.schema_name, c.table_name FROM partition_archiver.part_config c
            WHERE c.enabled AND c.epoch IS NULL ORDER BY 1, 2 LOOP
    RETURN QUERY SELECT r.schema_name || '.' || r.table_name, d.partition_name, d.upper_bound, d.action
      FROM partition_archiver.detach_expired_partitions(r.schema_name, r.table_name, p_now, p_dry_run) d;
  END LOOP;
END $$;
