-- partition-archiver's own schema: per-table policy (part_config), the PL/pgSQL functions that
-- create partitions ahead (callable from pg_cron), and the helpers they share.
--
-- The Rust planner and these functions read the same part_config row and follow the same rules:
--   * a period is a calendar day, ISO week (from Monday), month, quarter or year in the table's
--     time zone (part_config.partition_interval; the CHECK is in 20261206000004_intervals.sql);
--   * bounds are exact instants, written with an explicit UTC offset (never the session TimeZone);
--   * names are {table}_YYYY_MM_DD (daily), {table}_IYYY_wIW (weekly: ISO year and week),
--     {table}_YYYY_MM (monthly), {table}_YYYY_qQ (quarterly), {table}_YYYY (yearly), {table}_default;
--   * the current period and `premake` periods ahead are created, counted from now, which is
--     partition_archiver.now(): the real clock unless the session pins it (see below);
--   * rows that sit in the default partition and belong to a new range are moved into it, in the
--     same transaction that creates it.
-- Idempotent: applying this file again changes nothing.

CREATE SCHEMA IF NOT EXISTS partition_archiver;

-- "Now" for every function and seed migration here: the session setting partition_archiver.now
-- when it is set (an instant with its offset, such as '2026-11-15T12:00:00Z'), else the
-- transaction's now(). Production never sets it; `partition-archiver migrate --now <instant>`,
-- the tests and anyone rehearsing another day do:
--   SET partition_archiver.now = '2026-12-31T23:30:00Z';   -- or PGOPTIONS='-c partition_archiver.now=...'
-- so the partitions the migrations create follow the same pinned instant as `maintain --now`.
CREATE OR REPLACE FUNCTION partition_archiver.now()
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  -- current_setting(.., true) is NULL when never set, '' after RESET.
  SELECT coalesce(nullif(current_setting('partition_archiver.now', true), '')::timestamptz, pg_catalog.now())
$$;

-- True when PostgreSQL knows the time zone name. Used by part_config's CHECK.
CREATE OR REPLACE FUNCTION partition_archiver.is_valid_time_zone(p_tz text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  PERFORM now() AT TIME ZONE p_tz;
  RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
  RETURN false;
END $$;

CREATE TABLE IF NOT EXISTS partition_archiver.part_config (
  schema_name        text    NOT NULL,
  table_name         text    NOT NULL,
  partition_column   text    NOT NULL DEFAULT 'created_at',
  -- 'day', 'week', 'month' (default), 'quarter' or 'year' (the CHECK below is widened by
  -- 20261206000004_intervals.sql). A change applies from the first instant not yet covered.
  partition_interval text    NOT NULL DEFAULT 'month' CHECK (partition_interval IN ('month', 'year')),
  -- periods created ahead of the current one
  premake            integer NOT NULL DEFAULT 2 CHECK (premake BETWEEN 0 AND 120),
  -- periods kept online before the current one; NULL keeps everything
  retention          integer DEFAULT 6 CHECK (retention IS NULL OR retention BETWEEN 1 AND 1200),
  time_zone          text    NOT NULL DEFAULT 'UTC' CHECK (partition_archiver.is_valid_time_zone(time_zone)),
  -- what happens to a partition past retention:
  --   archive_drop: archive to S3, verify, then drop (default)
  --   archive_move: archive to S3, verify, then move to historical_schema
  --   detach_only:  detach and move to historical_schema, no archive
  retention_action   text    NOT NULL DEFAULT 'archive_drop'
                     CHECK (retention_action IN ('archive_drop', 'archive_move', 'detach_only')),
  historical_schema  text    NOT NULL DEFAULT 'partition_history',
  create_default     boolean NOT NULL DEFAULT true,
  -- archive options; NULL means "the deployment's setting" (ARCHIVE_FORMAT, ARCHIVE_COMPRESSION)
  archive_format     text    CHECK (archive_format IS NULL OR archive_format IN ('csv', 'binary')),
  archive_compression text   CHECK (archive_compression IS NULL OR archive_compression IN ('zstd', 'gzip', 'none')),
  enabled            boolean NOT NULL DEFAULT true,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schema_name, table_name)
);

COMMENT ON TABLE partition_archiver.part_config IS
  'One row per managed table: the policy read by both the partition-archiver binary and the SQL functions.';

-- Start of the period that contains p_at, as local wall time in p_tz.
CREATE OR REPLACE FUNCTION partition_archiver.period_start(p_interval text, p_tz text, p_at timestamptz)
RETURNS timestamp LANGUAGE sql STABLE AS $$
  SELECT date_trunc(p_interval, p_at AT TIME ZONE p_tz)
$$;

-- The bound literal for a local period boundary, for a partition key of type p_type.
-- timestamptz: the exact instant with an explicit offset, so the session TimeZone never matters.
CREATE OR REPLACE FUNCTION partition_archiver.bound_literal(p_local timestamp, p_tz text, p_type regtype)
RETURNS text LANGUAGE sql STABLE AS $$
  SELECT CASE p_type
    WHEN 'timestamptz'::regtype
      THEN to_char((p_local AT TIME ZONE p_tz) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00'
    WHEN 'date'::regtype THEN to_char(p_local, 'YYYY-MM-DD')
    ELSE to_char(p_local, 'YYYY-MM-DD"T"HH24:MI:SS')
  END
$$;

CREATE OR REPLACE FUNCTION partition_archiver.partition_name(p_table text, p_interval text, p_local timestamp)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT p_table || to_char(p_local, CASE p_interval
    WHEN 'day' THEN '"_"YYYY"_"MM"_"DD'
    WHEN 'week' THEN '"_"IYYY"_w"IW'
    WHEN 'quarter' THEN '"_"YYYY"_q"Q'
    WHEN 'year' THEN '"_"YYYY'
    ELSE '"_"YYYY"_"MM' END)
$$;

-- The length of one period: PostgreSQL's interval input has no 'quarter'.
CREATE OR REPLACE FUNCTION partition_archiver.period_step(p_interval text)
RETURNS interval LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE p_interval WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || p_interval)::interval END
$$;

-- The default partition of a parent, if any.
CREATE OR REPLACE FUNCTION partition_archiver.default_partition(p_parent regclass)
RETURNS regclass LANGUAGE sql STABLE AS $$
  SELECT i.inhrelid::regclass
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = p_parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
$$;

-- Creates the default partition {table}_default when the parent has none. Returns true if created.
CREATE OR REPLACE FUNCTION partition_archiver.ensure_default_partition(p_schema text, p_table text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  v_parent regclass := format('%I.%I', p_schema, p_table)::regclass;
BEGIN
  IF partition_archiver.default_partition(v_parent) IS NOT NULL THEN
    RETURN false;
  END IF;
  EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I DEFAULT',
                 p_schema, p_table || '_default', p_schema, p_table);
  RETURN true;
END $$;

-- Creates the current period and `premake` periods ahead (and p_back periods behind) for one
-- managed table, following its part_config row. Rows found in the default partition for a new
-- range are moved into the new partition in the same transaction. A period that overlaps an
-- existing partition (a foreign-named one, say) is skipped with a NOTICE, never an error.
-- Returns the number of partitions created. Safe to call from pg_cron.
CREATE OR REPLACE FUNCTION partition_archiver.create_partitions(
  p_schema text, p_table text, p_now timestamptz DEFAULT partition_archiver.now(), p_back integer DEFAULT 0)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  cfg       partition_archiver.part_config;
  v_parent  regclass;
  v_type    regtype;
  v_default regclass;
  v_step    interval;
  v_current timestamp;
  v_from    timestamp;
  v_to      timestamp;
  v_name    text;
  v_lo      text;
  v_hi      text;
  v_cols    text;
  v_moved   bigint;
  v_created integer := 0;
BEGIN
  SELECT * INTO cfg FROM partition_archiver.part_config WHERE schema_name = p_schema AND table_name = p_table;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'table %.% is not registered in partition_archiver.part_config', p_schema, p_table;
  END IF;
  SELECT c.oid INTO v_parent FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = p_schema AND c.relname = p_table AND c.relkind = 'p';
  IF v_parent IS NULL THEN
    RAISE EXCEPTION 'table %.% does not exist or is not partitioned', p_schema, p_table;
  END IF;
  SELECT a.atttypid::regtype INTO v_type FROM pg_attribute a
   WHERE a.attrelid = v_parent AND a.attname = cfg.partition_column AND NOT a.attisdropped;
  IF v_type IS NULL OR v_type NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
    RAISE EXCEPTION 'partition column %.%.% must be timestamptz, timestamp or date', p_schema, p_table, cfg.partition_column;
  END IF;
  -- Never at the same time as a partition-archiver run on this table (same advisory lock key).
  IF NOT pg_try_advisory_xact_lock(1346458179, hashtext(p_schema || '.' || p_table)) THEN
    RAISE NOTICE '%.%: a partition-archiver run holds the table lock; skipped', p_schema, p_table;
    RETURN 0;
  END IF;
  -- DDL must never queue application traffic behind it for long.
  PERFORM set_config('lock_timeout', '2s', true);
  IF cfg.create_default THEN
    PERFORM partition_archiver.ensure_default_partition(p_schema, p_table);
  END IF;
  v_default := partition_archiver.default_partition(v_parent);
  v_step := partition_archiver.period_step(cfg.partition_interval);
  v_current := partition_archiver.period_start(cfg.partition_interval, cfg.time_zone, p_now);
  SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO v_cols
    FROM pg_attribute WHERE attrelid = v_parent AND attnum > 0 AND NOT attisdropped AND attgenerated = '';

  FOR i IN -p_back .. cfg.premake LOOP
    v_from := v_current + i * v_step;
    v_to   := v_from + v_step;
    v_name := partition_archiver.partition_name(p_table, cfg.partition_interval, v_from);
    CONTINUE WHEN EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = p_schema AND c.relname = v_name);
    v_lo := partition_archiver.bound_literal(v_from, cfg.time_zone, v_type);
    v_hi := partition_archiver.bound_literal(v_to, cfg.time_zone, v_type);
    BEGIN
      v_moved := 0;
      IF v_default IS NOT NULL THEN
        EXECUTE format('SELECT count(*) FROM %s WHERE %I >= %L AND %I < %L',
                       v_default, cfg.partition_column, v_lo, cfg.partition_column, v_hi) INTO v_moved;
      END IF;
      IF v_moved > 0 THEN
        -- The default partition holds rows of this range: creating the partition directly would fail.
        -- Detach the default, create the partition, move the rows, attach the default back.
        EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %s', p_schema, p_table, v_default);
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                       p_schema, v_name, p_schema, p_table, v_lo, v_hi);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L RETURNING %s) '
                       'INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM moved',
                       v_default, cfg.partition_column, v_lo, cfg.partition_column, v_hi, v_cols,
                       p_schema, v_name, v_cols, v_cols);
        GET DIAGNOSTICS v_moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %s DEFAULT', p_schema, p_table, v_default);
        RAISE NOTICE 'created %.% and moved % rows into it from %', p_schema, v_name, v_moved, v_default;
      ELSE
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                       p_schema, v_name, p_schema, p_table, v_lo, v_hi);
      END IF;
      v_created := v_created + 1;
    EXCEPTION WHEN invalid_object_definition THEN
      -- "partition ... would overlap partition ...": an existing partition already covers the range.
      RAISE NOTICE 'skipped %.%: %', p_schema, v_name, SQLERRM;
    END;
  END LOOP;
  RETURN v_created;
END $$;

-- Runs create_partitions for every enabled table with a timestamp or date key (epoch and UUIDv7
-- keys are the binary's: create_partitions refuses them, and one refusal would end the loop).
-- `epoch` is read through to_jsonb because the seed migrations below call this before the column
-- exists (20261206000005). Schedule it with pg_cron, for example:
--   SELECT cron.schedule('partition-archiver', '0 3 * * *', 'SELECT partition_archiver.run_maintenance()');
CREATE OR REPLACE FUNCTION partition_archiver.run_maintenance(p_now timestamptz DEFAULT partition_archiver.now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  r record;
  v_total integer := 0;
BEGIN
  FOR r IN SELECT c.schema_name, c.table_name FROM partition_archiver.part_config c
            WHERE c.enabled AND to_jsonb(c) ->> 'epoch' IS NULL ORDER BY 1, 2 LOOP
    v_total := v_total + partition_archiver.create_partitions(r.schema_name, r.table_name, p_now);
  END LOOP;
  RETURN v_total;
END $$;
