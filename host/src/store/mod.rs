//! The SQL store: the source of truth for workspaces, flows, pods, edges, executions, prices and
//! provider keys. One implementation serves SQLite (the embedded default, WAL mode) and
//! PostgreSQL, chosen by `DATABASE_URL`: the schema and every query are written in the SQL both
//! understand, over sqlx's `Any` driver.
//!
//! Conventions: ids are UUIDv7 strings, times are unix milliseconds, money is an exact decimal
//! string, and every query that reads workspace data filters by workspace id — a row of another
//! workspace is simply not found.

mod api_keys;
mod audit;
mod executions;
mod flows;
mod group_commit;
mod keys;
mod migrate;
mod plugins;
mod pricing;
mod queue;
mod runs;
mod sign_in;
mod sqlite_writer;
mod usage;
mod workspaces;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};

pub use api_keys::{ActiveApiKey, ApiKey, ApiKeyUsage, NewApiKey, month_of};
pub use audit::{AuditEntry, NewAuditEntry};
pub use executions::{Execution, FinishedExecution, HistoryFilter, Idempotency, NewExecution};
pub(crate) use flows::version_conflict;
pub use flows::{Edge, Flow, Pod, PodConfig};
pub use keys::{KeySummary, StoredKey};
pub use pricing::NewPrice;
pub use queue::{Cancelled, Claim, ClaimedJob, JobCounts, SYNC_LEASE_OWNER, Stale};
pub use runs::{NewRun, Run, RunGraph, RunPod};
pub use sign_in::Ticket;
pub use usage::{UsageKey, UsageRow};
pub use workspaces::{User, Workspace};

use crate::domain::{Price, new_id, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The SQLite writer could not open the database, or a statement it ran failed.
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// A group-committed batch failed (the statements of a failed commit are not kept).
    #[error("commit failed: {0}")]
    Commit(String),
    /// The workspace's configuration changed since the caller read it (or the workspace is
    /// gone): nothing was written; read it again.
    #[error("the workspace's configuration changed meanwhile")]
    ConfigChanged,
    /// A run pod's execution was not recorded: the pod is no longer PENDING in its run (another
    /// node scheduled it meanwhile). Nothing was written.
    #[error("the run pod was scheduled already")]
    RunPodTaken,
    /// An execution with this `Idempotency-Key` was recorded meanwhile. Nothing was written.
    #[error("an execution with this idempotency key exists")]
    IdempotencyTaken,
    /// The pod store's DynamoDB failed.
    #[error("pod store: {0}")]
    PodBackend(String),
    /// The database refused an execution's answer as it is; the execution was ended with
    /// `STORE_REJECTED` instead (see [`StoreError::is_rejection`]).
    #[error("the database refused the answer: {0}")]
    Rejected(String),
}

impl StoreError {
    /// The database refused the data itself — a constraint, an encoding, a value out of range —
    /// so writing the same again fails again: not worth a retry (and never worth calling a
    /// provider again for).
    pub fn is_rejection(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                use sqlx::error::ErrorKind;
                matches!(
                    db.kind(),
                    ErrorKind::UniqueViolation
                        | ErrorKind::ForeignKeyViolation
                        | ErrorKind::NotNullViolation
                        | ErrorKind::CheckViolation
                ) || db.code().is_some_and(|code| {
                    // PostgreSQL's classes 22 (data exception) and 23 (integrity constraint).
                    code.len() == 5 && (code.starts_with("22") || code.starts_with("23"))
                })
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::ConstraintViolation | rusqlite::ErrorCode::TooBig
            ),
            StoreError::Rejected(_) => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite writes since the last checkpoint, and when the last one happened (ms).
    wal: Arc<WalActivity>,
    /// Prices change rarely and are read twice per execution.
    prices: Arc<std::sync::RwLock<Option<CachedPrices>>>,
    /// SQLite: the hot writes, group-committed. SQLite allows one writer at a time and makes a
    /// second one sleep in its busy handler (1 ms and up); this process's writers take turns
    /// here instead, which keeps write latency flat.
    commits: Option<group_commit::GroupCommit>,
    /// SQLite: connections for the hot reads, run on the calling thread ([`Store::read`]).
    readers: Option<Arc<Readers>>,
}

/// Idle SQLite read connections; one more is opened when none is idle.
struct Readers {
    url: String,
    idle: std::sync::Mutex<Vec<sqlite_writer::Reader>>,
}

/// Most idle read connections kept (reads run on the runtime's few threads).
const IDLE_READERS: usize = 8;

impl Readers {
    fn take(&self) -> Result<sqlite_writer::Reader> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(reader) => Ok(reader),
            None => sqlite_writer::Reader::open(&self.url).map_err(StoreError::Sqlite),
        }
    }

    fn give_back(&self, reader: sqlite_writer::Reader) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(reader);
        }
    }
}

#[derive(Default)]
struct WalActivity {
    writes: std::sync::atomic::AtomicU64,
    last_write_ms: std::sync::atomic::AtomicI64,
}

impl WalActivity {
    fn wrote(&self, statements: u64) {
        use std::sync::atomic::Ordering;
        self.writes.fetch_add(statements, Ordering::Relaxed);
        self.last_write_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Checkpoint when writes have paused this long…
const CHECKPOINT_WHEN_IDLE_MS: i64 = 1_000;
/// …or, under sustained load, after this many writes: small, frequent checkpoints keep each
/// fsync short and the WAL (which every read searches) small. Measured at 1,000 sync
/// executions/s for 30 s: p99 added latency 2.4 ms at 200, 3.4 ms at 2,000, 5.8 ms at 50,000.
const CHECKPOINT_AFTER_WRITES: u64 = 200;

/// Past this many frames (16 MiB of 4 KiB pages) the WAL is started over. Each restart holds
/// writes for 2–4 ms (the last frames and an fsync); a WAL four times as long held them
/// 10–14 ms, and one that grows without end made the drain of 20,000 executions 20 % slower.
const RESTART_WAL_FRAMES: i64 = 4_096;

/// The whole pricing table and when it was read.
type CachedPrices = (std::time::Instant, Arc<Vec<Price>>);

/// How long cached prices are trusted (another node may have added a row meanwhile).
const PRICE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Store {
    /// Connects (creating a SQLite file if needed) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Corrupt(format!(
                "DATABASE_URL must start with sqlite: or postgres:, got {:?}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let url = match backend {
            // Create the file on first start.
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let options = AnyPoolOptions::new().max_connections(match backend {
            // SQLite has one writer; a few readers beside it are plenty.
            Backend::Sqlite => 4,
            Backend::Postgres => 16,
        });
        let options = if backend == Backend::Sqlite {
            // A SQLite connection is a file handle on this machine; it cannot go stale, so
            // pinging it before each use would only add a hop to its worker thread.
            options
                .test_before_acquire(false)
                .after_connect(|conn, _| Box::pin(sqlite_settings(conn)))
        } else {
            options
        };
        let pool = options.connect(&url).await?;
        migrate::run(&pool, backend).await?;
        let wal = Arc::<WalActivity>::default();
        let commits = match backend {
            Backend::Sqlite => {
                let writer = sqlite_writer::Writer::open(&url).map_err(StoreError::Sqlite)?;
                Some(group_commit::GroupCommit::start(writer, wal.clone()))
            }
            Backend::Postgres => None,
        };
        let readers = (backend == Backend::Sqlite).then(|| {
            Arc::new(Readers {
                url: url.clone(),
                idle: Default::default(),
            })
        });
        let store = Store {
            readers,
            pool,
            backend,
            wal,
            prices: Arc::default(),
            commits,
        };
        if backend == Backend::Sqlite {
            // Its own connection: a checkpoint's fsync must not hold one of the pool's few
            // connections while requests wait for it.
            let mut conn = sqlx::AnyConnection::connect(&url).await?;
            sqlite_settings(&mut conn).await?;
            store.spawn_checkpointer(conn);
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the pool was closed (background tasks stop then).
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Moves the WAL into the database file. A checkpoint fsyncs, and appends to the WAL stall
    /// behind that fsync, so it runs when writes pause rather than inside whichever commit
    /// crossed SQLite's threshold; under sustained load it runs every `CHECKPOINT_AFTER_WRITES`.
    /// Ends with the pool.
    ///
    /// Those checkpoints run beside the writers, so under sustained writes they never reach the
    /// WAL's end and SQLite never starts it over: past `RESTART_WAL_FRAMES` the checkpointer takes
    /// the writer's turn for one last short checkpoint (the passive ones copied the rest).
    fn spawn_checkpointer(&self, mut conn: sqlx::AnyConnection) {
        let (pool, wal, commits) = (self.pool.clone(), self.wal.clone(), self.commits.clone());
        tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            while !pool.is_closed() {
                tick.tick().await;
                let writes = wal.writes.load(Ordering::Relaxed);
                let idle =
                    now_ms() - wal.last_write_ms.load(Ordering::Relaxed) > CHECKPOINT_WHEN_IDLE_MS;
                if writes == 0 || !(idle || writes >= CHECKPOINT_AFTER_WRITES) {
                    continue;
                }
                wal.writes.fetch_sub(writes, Ordering::Relaxed);
                let frames = match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(row) => row.try_get::<i64, _>(1).unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                        continue;
                    }
                };
                if let Some(commits) = &commits
                    && frames >= RESTART_WAL_FRAMES
                {
                    // Once more beside the writers, so the turn is held only for what they
                    // wrote during this one.
                    let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(&mut conn)
                        .await;
                    match commits.restart_wal().await {
                        Ok(true) => {}
                        // A long read: the next tick tries again.
                        Ok(false) => tracing::debug!(frames, "a read held the WAL; not restarted"),
                        Err(e) => tracing::warn!(error = %e, frames, "restarting the WAL failed"),
                    }
                }
            }
        });
    }

    /// Runs a write: group-committed on SQLite, straight on PostgreSQL. Returns rows changed.
    async fn write(&self, statement: group_commit::Statement) -> Result<u64> {
        let started = std::time::Instant::now();
        let written = match &self.commits {
            Some(commits) => commits.run(statement, false).await?.affected,
            None => statement.execute(&self.pool).await?.rows_affected(),
        };
        crate::metrics::get()
            .store_write_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(written)
    }

    /// Runs a hot read: on SQLite on the calling thread (sqlx would hand it to a connection's
    /// own thread and back — two thread wake-ups, most of what a small read costs), on the
    /// blocking pool if SQLite is busy; on PostgreSQL on the pool. Keep it to reads of a few
    /// rows by index: a long one would hold a runtime thread.
    async fn read(&self, statement: group_commit::Statement) -> Result<Vec<AnyRow>> {
        let Some(readers) = &self.readers else {
            return Ok(statement.fetch_all(&self.pool).await?);
        };
        let statement =
            sqlite_writer::Prepared::new(statement, true).map_err(StoreError::Commit)?;
        let mut reader = readers.take()?;
        if let Some(rows) = reader.read(&statement, false) {
            readers.give_back(reader);
            return rows;
        }
        let readers = readers.clone();
        tokio::task::spawn_blocking(move || {
            let rows = reader.read(&statement, true);
            readers.give_back(reader);
            rows
        })
        .await
        .map_err(|e| StoreError::Commit(format!("a read failed: {e}")))?
        .unwrap_or_else(|| Err(StoreError::Commit("the reader gave no rows".into())))
    }

    /// One row of a hot read, if any.
    async fn read_one(&self, statement: group_commit::Statement) -> Result<Option<AnyRow>> {
        Ok(self.read(statement).await?.into_iter().next())
    }

    /// Runs writes that commit together or not at all; rows changed by each.
    async fn write_atomic(&self, statements: Vec<group_commit::Statement>) -> Result<Vec<u64>> {
        if let Some(commits) = &self.commits {
            let written = commits.run_atomic(statements).await?;
            return Ok(written.iter().map(|w| w.affected).collect());
        }
        let mut tx = self.pool.begin().await?;
        let mut affected = Vec::with_capacity(statements.len());
        for statement in statements {
            affected.push(statement.execute(&mut *tx).await?.rows_affected());
        }
        tx.commit().await?;
        Ok(affected)
    }

    /// Runs a write with `RETURNING`, as [`Store::write`] does; returns its rows.
    async fn write_returning(&self, statement: group_commit::Statement) -> Result<Vec<AnyRow>> {
        match &self.commits {
            Some(commits) => Ok(commits.run(statement, true).await?.rows),
            None => Ok(statement.fetch_all(&self.pool).await?),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A statement with a list of any length, bound as one JSON array of strings at `$param`, in its
/// text once per backend (so it is prepared once): `build` gets the subquery that yields the
/// list's values, for `x IN (…)`. PostgreSQL is given the parameter as text, then as `jsonb`.
fn with_json_list(build: impl Fn(&str) -> String, param: u8) -> [String; 2] {
    [
        build(&format!("SELECT value FROM json_each(${param})")),
        build(&format!(
            "SELECT jsonb_array_elements_text(CAST(CAST(${param} AS TEXT) AS jsonb))"
        )),
    ]
}

impl Backend {
    /// This backend's text of a statement made by [`with_json_list`].
    fn pick(self, statements: &[String; 2]) -> &str {
        match self {
            Backend::Sqlite => &statements[0],
            Backend::Postgres => &statements[1],
        }
    }
}

/// How every SQLite connection of the store is set up (the pool's, the checkpointer's and the
/// writer's); a connection waits up to `sqlite_writer::BUSY_TIMEOUT` for another's write lock.
const SQLITE_PRAGMAS: [&str; 5] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    // Checkpoints fsync; run them in the background, not inside a request's commit.
    "PRAGMA wal_autocheckpoint = 0",
    // After a checkpoint, shrink the WAL file back to at most 64 MiB.
    "PRAGMA journal_size_limit = 67108864",
];

async fn sqlite_settings(conn: &mut sqlx::AnyConnection) -> std::result::Result<(), sqlx::Error> {
    for pragma in SQLITE_PRAGMAS {
        conn.execute(pragma).await?;
    }
    let busy = sqlite_writer::BUSY_TIMEOUT.as_millis();
    conn.execute(format!("PRAGMA busy_timeout = {busy}").as_str())
        .await?;
    Ok(())
}

fn get<T>(row: &AnyRow, column: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn decimal(text: Option<String>, column: &str) -> Result<Option<rust_decimal::Decimal>> {
    text.map(|t| {
        rust_decimal::Decimal::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    })
    .transpose()
}

/// `NotFound` when a statement touched no row (the id is not in the workspace).
fn touched(done: sqlx::any::AnyQueryResult) -> Result<()> {
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

impl Store {
    /// Runs `DELETE … WHERE workspace_id = $1 AND <key> = $2`.
    async fn delete_in_workspace(&self, sql: &str, ws: &str, key: &str) -> Result<()> {
        touched(
            sqlx::query(sql)
                .bind(ws)
                .bind(key)
                .execute(&self.pool)
                .await?,
        )
    }
}

/// Maps a unique-constraint violation to `Conflict`.
fn conflict(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_string())
        }
        _ => StoreError::Database(e),
    }
}

/// A folder removed when dropped (a test's store lives in it).
#[cfg(test)]
pub(crate) struct TempDir(std::path::PathBuf);

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
impl Store {
    /// A store on a new SQLite file in the temp folder, named for the test.
    pub(crate) async fn temp(name: &str) -> (Store, TempDir) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::connect(&format!("sqlite://{}", dir.join("t.db").display()))
            .await
            .expect("store");
        (store, TempDir(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_sustained_writes_the_wal_starts_over_instead_of_growing() {
        let (store, _dir) = Store::temp("pods-wal-restart").await;
        // Writes without a pause for 1.5 s (and at least 20,000 of them). Each commit appends at
        // least three pages (the row, its key, its `jobs_due` entry), so a WAL that never
        // started over would hold three frames per write; one that does holds about a tick's.
        let started = std::time::Instant::now();
        let mut writes: i64 = 0;
        while writes < 20_000 || started.elapsed() < std::time::Duration::from_millis(1500) {
            store
                .write(
                    sqlx::query("INSERT INTO jobs (execution_id, workspace_id, attempts, not_before, created_at) VALUES ($1, 'w', 0, $2, 0)")
                        .bind(format!("e{writes}"))
                        .bind(writes),
                )
                .await
                .expect("write");
            writes += 1;
        }
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&store.pool)
            .await
            .expect("checkpoint");
        let frames: i64 = row.try_get(1).expect("frames");
        assert!(
            frames < writes * 3 / 2,
            "{frames} frames in the WAL after {writes} writes: it never started over"
        );
    }
}
