-- Chunked archives (issue 11): a partition larger than ARCHIVE_CHUNK_SIZE is archived as several
-- objects, one per ctid block range, each streamed, recorded and resumed on its own.
--
-- On the manifest row, the chunk plan of the current attempt:
--   chunk_size:       bytes of heap per chunk when the plan was made (NULL: one object, as before)
--   chunk_generation: the plan's number; a table rewrite (VACUUM FULL, CLUSTER, pg_repack) between
--                     two chunks makes a new plan with the next number, and new object keys
--   rel_filenode, rel_blocks: pg_relation_filenode() and the block count the plan was made from;
--                     every chunk worker compares them before and after its COPY
-- archive_chunk: one row per chunk of every plan. States:
--   pending -> uploading (upload id and token recorded; figures recorded before the write-once
--   completion) -> uploaded (completed, its rows = count(*) over its block range); superseded: a
--   chunk of an older plan (its object, if any, is never part of the archive).
-- The partition's row becomes `uploaded` only when every chunk of the current plan is, and
-- `verified` only after every chunk object passed HEAD and the sum of chunk rows = count(*).
-- Idempotent.
ALTER TABLE partition_archiver.archive_manifest
  ADD COLUMN IF NOT EXISTS chunk_size bigint,
  ADD COLUMN IF NOT EXISTS chunk_generation integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS rel_filenode bigint,
  ADD COLUMN IF NOT EXISTS rel_blocks bigint;

CREATE TABLE IF NOT EXISTS partition_archiver.archive_chunk (
  table_schema        text    NOT NULL,
  table_name          text    NOT NULL,
  partition_name      text    NOT NULL,
  generation          integer NOT NULL,
  chunk_no            integer NOT NULL CHECK (chunk_no >= 1),
  block_from          bigint  NOT NULL CHECK (block_from >= 0),
  -- NULL: to the end of the relation (the last chunk)
  block_to            bigint  CHECK (block_to IS NULL OR block_to > block_from),
  state               text    NOT NULL CHECK (state IN ('pending', 'uploading', 'uploaded', 'superseded')),
  object_key          text    NOT NULL,
  multipart_upload_id text,
  upload_token        text,
  row_count           bigint,
  raw_bytes           bigint,
  compressed_bytes    bigint,
  sha256              text,
  checksum_composite  text,
  etag                text,
  version_id          text,
  last_error          text,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  uploaded_at         timestamptz,
  PRIMARY KEY (table_schema, table_name, partition_name, generation, chunk_no),
  FOREIGN KEY (table_schema, table_name, partition_name)
    REFERENCES partition_archiver.archive_manifest (table_schema, table_name, partition_name) ON DELETE CASCADE
);

COMMENT ON TABLE partition_archiver.archive_chunk IS
  'One row per chunk (ctid block range, own S3 object) of a chunked partition archive.';
