-- Dynamic monthly creation for `orders`: registers it (if an older install did not), keeps its
-- default partition, creates the current month plus `premake` ahead, and, when pg_cron is installed
-- in this database, schedules partition_archiver.run_maintenance() daily (every run is idempotent).
-- The partition-archiver binary does the same work (and the archiving) on its own schedule; the
-- pg_cron job is a safety net so partitions exist before rows arrive even if the binary stops running.
-- Idempotent.

DO $$
BEGIN
  IF to_regclass('public.orders') IS NULL
     OR (SELECT relkind FROM pg_class WHERE oid = to_regclass('public.orders')) <> 'p' THEN
    RAISE NOTICE 'public.orders is absent or not partitioned: nothing to do';
    RETURN;
  END IF;
  INSERT INTO partition_archiver.part_config (schema_name, table_name, partition_column)
  VALUES ('public', 'orders', 'created_at') ON CONFLICT DO NOTHING;
  PERFORM partition_archiver.create_partitions('public', 'orders');
END $$;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
    IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'partition-archiver-maintenance') THEN
      PERFORM cron.schedule('partition-archiver-maintenance', '17 3 * * *',
                            'SELECT partition_archiver.run_maintenance()');
    END IF;
  ELSE
    RAISE NOTICE 'pg_cron is not installed: schedule partition_archiver.run_maintenance() yourself, or run partition-archiver';
  END IF;
END $$;
