-- The archive manifest: one row per partition that left (or is leaving) a parent through the
-- archiver. It is the source of truth for the per-partition state machine
--   detaching -> detached -> uploading -> uploaded -> verified -> dropped | moved
-- and records everything needed to find, verify and restore the archive (the same fields are
-- written as JSON next to the object in S3, so an archive is restorable even without this table).
-- Idempotent.

CREATE TABLE IF NOT EXISTS partition_archiver.archive_manifest (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  table_schema      text   NOT NULL,
  table_name        text   NOT NULL,
  partition_schema  text   NOT NULL,
  partition_name    text   NOT NULL,
  key_column        text   NOT NULL,
  key_type          text   NOT NULL CHECK (key_type IN ('timestamptz', 'timestamp', 'date')),
  time_zone         text   NOT NULL,
  -- bound literals as written in DDL; NULL stands for MINVALUE / MAXVALUE
  range_from        text,
  range_to          text,
  -- [{"name": ..., "type": ...}] in column order: enough to recreate the table
  columns           jsonb  NOT NULL,
  state             text   NOT NULL CHECK (state IN ('detaching', 'detached', 'uploading', 'uploaded', 'verified', 'dropped', 'moved')),
  row_count         bigint,
  raw_bytes         bigint,
  compressed_bytes  bigint,
  sha256            text,
  format            text   CHECK (format IS NULL OR format IN ('csv', 'binary')),
  compression       text   CHECK (compression IS NULL OR compression IN ('zstd', 'gzip', 'none')),
  bucket            text,
  object_key        text,
  manifest_key      text,
  version_id        text,
  etag              text,
  -- S3's composite checksum of the multipart object (base64 SHA-256 of part digests, '-N')
  checksum_composite text,
  multipart_upload_id text,
  pg_version        text,
  tool_version      text,
  moved_to_schema   text,
  last_error        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  uploaded_at       timestamptz,
  verified_at       timestamptz,
  finished_at       timestamptz,
  UNIQUE (table_schema, table_name, partition_name)
);

CREATE INDEX IF NOT EXISTS archive_manifest_state_idx ON partition_archiver.archive_manifest (state)
  WHERE state NOT IN ('dropped', 'moved');

COMMENT ON TABLE partition_archiver.archive_manifest IS
  'One row per archived partition; the per-partition state machine of partition-archiver.';

-- Guard used inside the archiver's DDL transactions: locks the manifest row, and raises unless the
-- partition is in one of p_states and is no longer attached to any parent. A drop can therefore
-- never run ahead of a verified archive, whatever a caller's plan says.
CREATE OR REPLACE FUNCTION partition_archiver.require_archive_state(
  p_table_schema text, p_table_name text, p_partition_name text, p_states text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_state  text;
  v_schema text;
BEGIN
  SELECT state, partition_schema INTO v_state, v_schema
    FROM partition_archiver.archive_manifest
   WHERE table_schema = p_table_schema AND table_name = p_table_name AND partition_name = p_partition_name
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no archive manifest row for partition % of %.%', p_partition_name, p_table_schema, p_table_name;
  END IF;
  IF NOT (v_state = ANY (p_states)) THEN
    RAISE EXCEPTION 'partition %.% is in archive state %, expected one of %', v_schema, p_partition_name, v_state, p_states;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = v_schema AND c.relname = p_partition_name AND c.relispartition) THEN
    RAISE EXCEPTION 'partition %.% is still attached', v_schema, p_partition_name;
  END IF;
END $$;

-- Guard run before a detach records a partition: a name whose archive is verified, dropped or
-- moved is never recorded (and so never uploaded) again, which would replace that archive.
CREATE OR REPLACE FUNCTION partition_archiver.require_not_archived(
  p_table_schema text, p_table_name text, p_partition_name text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_state text;
BEGIN
  SELECT state INTO v_state FROM partition_archiver.archive_manifest
   WHERE table_schema = p_table_schema AND table_name = p_table_name AND partition_name = p_partition_name
     FOR UPDATE;
  IF v_state IN ('verified', 'dropped', 'moved') THEN
    RAISE EXCEPTION 'partition % of %.% was already archived (state %): not archived again under the same name',
      p_partition_name, p_table_schema, p_table_name, v_state;
  END IF;
END $$;
