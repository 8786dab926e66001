//! The partition-creation steps: the default partition, range partitions ahead of time (moving
//! rows out of the default partition when needed), and finishing an interrupted
//! `DETACH ... CONCURRENTLY`. Each is DDL under [`crate::pg::ddl`]'s `lock_timeout` and retries.

use crate::pg::ddl::{ddl_outside_transaction, run_ddl, sqlstate, DdlOptions};
use crate::plan::ident::{quote_ident, quote_literal, QualifiedName};
use crate::plan::policy::TablePolicy;
use crate::plan::snapshot::TableSnapshot;
use crate::retry::RetryPolicy;
use anyhow::Context;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// `ALTER TABLE parent DETACH PARTITION p FINALIZE`: completes a detach a killed run left pending.
pub async fn finalize_detach(
    client: &Client,
    parent: &QualifiedName,
    partition: &QualifiedName,
    opts: &DdlOptions,
) -> (anyhow::Result<()>, u32) {
    let sql = format!("ALTER TABLE {} DETACH PARTITION {} FINALIZE", parent.quoted(), partition.quoted());
    ddl_outside_transaction(client, opts, &format!("finalize detach of {partition}"), &sql).await
}

/// Where a new partition of `parent` goes and whose it is: PARTITION OF would put it in the
/// parent's tablespace, if it has one; and it is given to the parent's owner, as pg_partman does,
/// not left to the role that runs the archiver (the owner's own `ALTER TABLE` on the parent would
/// then fail with "must be owner of table ...").
struct Placement {
    /// ` TABLESPACE "ts"`, or empty.
    tablespace: String,
    /// `ALTER TABLE .. OWNER TO ..` when the owner is another role and can be given the table.
    owner: Option<String>,
}

impl Placement {
    async fn of(client: &Client, parent: &QualifiedName, partition: &QualifiedName) -> anyhow::Result<Self> {
        // OWNER TO needs a superuser, or a role that may become the new owner (a member of its
        // role; from PostgreSQL 16, one with the SET option) and a new owner that may create in
        // the schema (PostgreSQL 15's `public` does not let every role create): otherwise the
        // archiver keeps the table, as before, rather than fail the creation.
        let row = client
            .query_one(
                "SELECT t.spcname::text, pg_get_userbyid(c.relowner)::text,
                        c.relowner <> r.oid AND (r.rolsuper OR (
                          CASE WHEN current_setting('server_version_num')::int >= 160000
                               THEN pg_has_role(r.oid, c.relowner, 'SET')
                               ELSE pg_has_role(r.oid, c.relowner, 'MEMBER') END
                          AND has_schema_privilege(c.relowner, c.relnamespace, 'CREATE')))
                   FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
                   JOIN pg_roles r ON r.rolname = current_user
                  WHERE c.oid = $1::text::regclass",
                &[&parent.quoted()],
            )
            .await
            .with_context(|| format!("read the tablespace and owner of {parent}"))?;
        let tablespace = row.get::<_, Option<String>>(0).map(|t| format!(" TABLESPACE {}", quote_ident(&t)));
        let owner = row
            .get::<_, bool>(2)
            .then(|| format!("ALTER TABLE {} OWNER TO {}", partition.quoted(), quote_ident(&row.get::<_, String>(1))));
        Ok(Self { tablespace: tablespace.unwrap_or_default(), owner })
    }

    /// Runs the creating `statements` with the hand-over to the owner last, in the same
    /// transaction (the table is not visible yet: its `OWNER TO` waits for nobody). Refused for a
    /// permission the check above could not foresee, the creation is run again without it: the
    /// partition is created, the archiver's, warned.
    async fn create(
        &self,
        client: &mut Client,
        opts: &DdlOptions,
        label: &str,
        statements: &[String],
    ) -> (anyhow::Result<Vec<u64>>, u32) {
        let Some(owner) = &self.owner else { return run_ddl(client, opts, label, statements).await };
        let with_owner: Vec<String> = statements.iter().chain([owner]).cloned().collect();
        let (r, n) = run_ddl(client, opts, label, &with_owner).await;
        match r {
            Err(e) if sqlstate(&e) == Some(SqlState::INSUFFICIENT_PRIVILEGE) => {
                tracing::warn!(%label, error = %format!("{e:#}"), "the new partition stays the archiver's");
                let (r, m) = run_ddl(client, opts, label, statements).await;
                (r, n + m)
            }
            other => (other, n),
        }
    }
}

/// The default partition (`PARTITION OF ... DEFAULT`, created once, so its ACCESS EXCLUSIVE on the
/// parent is paid once), the parent owner's.
pub async fn create_default(
    client: &mut Client,
    parent: &QualifiedName,
    partition: &QualifiedName,
    opts: &DdlOptions,
) -> (anyhow::Result<()>, u32) {
    let placement = match Placement::of(client, parent, partition).await {
        Ok(p) => p,
        Err(e) => return (Err(e), 1),
    };
    let create = format!("CREATE TABLE {} PARTITION OF {} DEFAULT", partition.quoted(), parent.quoted());
    let (r, n) = placement.create(client, opts, &format!("create {partition}"), &[create]).await;
    (r.map(|_| ()), n)
}

/// Creates one range partition: `CREATE TABLE (LIKE parent)` + `ATTACH`, or, when rows for its range
/// sit in the default partition, detach default + create + move the rows + attach both, all in
/// one transaction. Returns the rows moved out of the default partition.
#[allow(clippy::too_many_arguments)]
pub async fn create_partition(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    partition: &QualifiedName,
    from: &str,
    to: &str,
    rows_in_default: i64,
    opts: &DdlOptions,
) -> (anyhow::Result<i64>, u32) {
    let parent = policy.table.quoted();
    // Not `CREATE TABLE ... PARTITION OF`, which holds ACCESS EXCLUSIVE on the parent (every insert
    // and query of the table waits): a table shaped like the parent, then ATTACH, which holds only
    // SHARE UPDATE EXCLUSIVE on the parent, so inserts into the other partitions go on. (ATTACH
    // still locks the default partition while it checks that no row there belongs to the new
    // range: the planner saw none, so that scan is of an empty or small table.) ATTACH creates the
    // parent's indexes, foreign keys and row triggers on the new table, as PARTITION OF does;
    // the LIKE options copy what ATTACH requires to match (NOT NULL, CHECKs, generated columns)
    // and what PARTITION OF would have given (defaults, storage, compression). One transaction:
    // a failed ATTACH leaves no stray table.
    let placement = match Placement::of(client, &policy.table, partition).await {
        Ok(p) => p,
        Err(e) => return (Err(e), 1),
    };
    let tablespace = &placement.tablespace;
    let create = [
        format!(
            "CREATE TABLE {} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED \
             INCLUDING STORAGE INCLUDING COMPRESSION){tablespace}",
            partition.quoted()
        ),
        format!(
            "ALTER TABLE {parent} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})",
            partition.quoted(),
            quote_literal(from),
            quote_literal(to)
        ),
    ];
    let label = format!("create {partition}");
    let default = snapshot.default_partition().map(|d| d.name.clone());
    if rows_in_default == 0 || default.is_none() {
        let (r, n) = placement.create(client, opts, &label, &create).await;
        match r {
            Ok(_) => return (Ok(0), n),
            // Rows reached the default partition after the snapshot was taken: move them.
            Err(e) if default.is_some() && sqlstate(&e) == Some(SqlState::CHECK_VIOLATION) => {}
            Err(e) => return (Err(e), n),
        }
    }
    let default = default.expect("checked above");
    let columns = match crate::pg::catalog::columns(&*client, &policy.table).await {
        Ok(c) => c.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", "),
        Err(e) => return (Err(e), 1),
    };
    let key = quote_ident(&policy.column);
    let move_rows = format!(
        "WITH moved AS (DELETE FROM {d} WHERE {key} >= {f} AND {key} < {t} RETURNING {columns}) \
         INSERT INTO {p} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM moved",
        d = default.quoted(),
        f = quote_literal(from),
        t = quote_literal(to),
        p = partition.quoted(),
    );
    let [create_table, attach] = create;
    // The rows go into the new table before it is attached: a row moved is the same row, not a
    // new one, so the parent's row triggers (which ATTACH gives the partition) must not see it:
    // a BEFORE INSERT trigger would change its values, an audit or outbox trigger record an
    // insert that never happened. (The detached default has no trigger of the parent's either.)
    // The ATTACH then checks the moved rows against the range and builds the parent's indexes
    // over them (a unique one refusing a duplicate as the INSERT would have).
    let statements = [
        format!("ALTER TABLE {parent} DETACH PARTITION {}", default.quoted()),
        create_table,
        move_rows,
        attach,
        format!("ALTER TABLE {parent} ATTACH PARTITION {} DEFAULT", default.quoted()),
    ];
    let (r, n) = run_ddl(client, opts, &label, &statements).await;
    let moved = match r {
        Ok(counts) => counts[2] as i64,
        Err(e) => return (Err(e), n),
    };
    if moved > 0 {
        // The moved rows stay in the default partition as dead tuples: a plain VACUUM (its lock
        // blocks no writer) makes their space reusable and gives back the pages at the end of the
        // file, so its size (`status`, the metrics) stops counting them; ANALYZE renews its
        // estimate. Not needed for correctness, so a failure only warns: autovacuum will do it.
        // Under the DDL lock_timeout, as everything else: an anti-wraparound autovacuum of the
        // default partition (which does not give way) would keep it waiting.
        let vacuum = format!("VACUUM (ANALYZE) {}", default.quoted());
        let once = DdlOptions { lock_timeout: opts.lock_timeout, retry: RetryPolicy { max_attempts: 1, ..opts.retry } };
        let (r, _) = ddl_outside_transaction(client, &once, &label, &vacuum).await;
        if let Err(e) = r {
            tracing::warn!(partition = %default, error = %format!("{e:#}"), "could not vacuum the default partition after moving rows out");
        }
    }
    (Ok(moved), n)
}
