-- Yearly partitions for `orders` (previous, current and next year), for deployments that set
-- partition_interval = 'year' for it in partition_archiver.part_config.
--
-- A range cannot be partitioned both monthly and yearly: the interval is a per-table setting
-- (month by default). This file installs the yearly path and applies it only when orders is set to
-- yearly; on a monthly table (the default) it changes nothing and never fails. To make orders
-- yearly, before its first partitions exist:
--   UPDATE partition_archiver.part_config SET partition_interval = 'year', premake = 1
--    WHERE schema_name = 'public' AND table_name = 'orders';
-- Idempotent.

DO $$
DECLARE
  v_created integer;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM partition_archiver.part_config
                 WHERE schema_name = 'public' AND table_name = 'orders' AND partition_interval = 'year') THEN
    RAISE NOTICE 'public.orders is not set to yearly partitions: nothing to do';
    RETURN;
  END IF;
  -- p_back => 1 also creates the previous year (current year +- 1).
  v_created := partition_archiver.create_partitions('public', 'orders', partition_archiver.now(), p_back => 1);
  RAISE NOTICE 'public.orders: % yearly partitions created', v_created;
END $$;
