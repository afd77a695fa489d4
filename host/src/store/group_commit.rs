//! Group commit for SQLite's single writer.
//!
//! Every SQLite commit appends the pages it changed to the WAL; the hot statements of the queue
//! (insert an execution, claim it, finish it, drop its job) touch the same few table and index
//! pages. So the statements that arrive while one commit runs are gathered and run in the next
//! transaction together, each page written once per batch instead of once per statement. A
//! statement that fails (a constraint) fails alone: SQLite undoes that statement only, and the
//! rest of the batch commits. Callers wait for the commit before they hear "done".
//!
//! When nothing else is being written, a statement runs at once in its caller's task, as it would
//! without batching. PostgreSQL has row locks and its own group commit; there, statements run
//! straight on the pool.
//!
//! Writes go through one connection of their own ([`Writer`], on the calling thread), held by
//! whoever's turn it is.

use std::sync::Arc;

use sqlx::Any;
use sqlx::any::{AnyArguments, AnyRow};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot};

use super::sqlite_writer::{Prepared, Writer};
use super::{Result, StoreError, WalActivity};

/// A statement with owned arguments, so it can wait in the batch.
pub type Statement = sqlx::query::Query<'static, Any, AnyArguments<'static>>;

/// Most statements per transaction.
const BATCH: usize = 128;

/// What a statement did: rows changed, and the rows it returned (`RETURNING`).
pub struct Written {
    pub affected: u64,
    pub rows: Vec<AnyRow>,
}

struct Pending {
    statement: Prepared,
    done: oneshot::Sender<Result<Written>>,
}

#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
    /// The writing connection; holding it is having the turn to write.
    turn: Arc<Mutex<Writer>>,
    wal: Arc<WalActivity>,
}

impl GroupCommit {
    /// Starts the committer on `writer`; it takes the turn around each batch, so it and the
    /// statements run at once by their callers go one at a time.
    pub fn start(writer: Writer, wal: Arc<WalActivity>) -> Self {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Pending>();
        let turn = Arc::new(Mutex::new(writer));
        let this = GroupCommit {
            queue,
            turn: turn.clone(),
            wal: wal.clone(),
        };
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match waiting.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let writer = turn.clone().lock_owned().await;
                wal.wrote(batch.len() as u64);
                commit(writer, batch).await;
            }
        });
        this
    }

    pub async fn run(&self, statement: Statement, returning: bool) -> Result<Written> {
        let statement = Prepared::new(statement, returning).map_err(StoreError::Commit)?;
        // Nobody writing: no batch to join, and no hop through the committer either.
        let result = match self.turn.clone().try_lock_owned() {
            Ok(writer) => {
                self.wal.wrote(1);
                let mut results = run(writer, vec![statement]).await;
                results.pop()
            }
            Err(_) => {
                let (done, answer) = oneshot::channel();
                self.queue
                    .send(Pending { statement, done })
                    .map_err(|_| StoreError::Commit("the store is closed".into()))?;
                answer.await.ok()
            }
        };
        match result {
            Some(written) => written,
            None => Err(StoreError::Commit("the committer stopped".into())),
        }
    }

    /// Runs the statements in a transaction of their own that commits all or none of them
    /// (after whatever batch is being written).
    pub async fn run_atomic(&self, statements: Vec<Statement>) -> Result<Vec<Written>> {
        let statements = statements
            .into_iter()
            .map(|s| Prepared::new(s, false))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(StoreError::Commit)?;
        let mut writer = self.turn.clone().lock_owned().await;
        self.wal.wrote(statements.len() as u64);
        if let Some(result) = writer.run_atomic(&statements, false) {
            return result;
        }
        tokio::task::spawn_blocking(move || writer.run_atomic(&statements, true))
            .await
            .map_err(|e| StoreError::Commit(format!("the committer failed: {e}")))?
            .unwrap_or_else(|| Err(StoreError::Commit("the writer gave no results".into())))
    }
}

impl GroupCommit {
    /// Checkpoints the whole WAL and starts it again from its beginning, holding the turn so no
    /// write appends meanwhile (a checkpoint beside writers never catches up with them, and the
    /// WAL — which every read searches — would grow without end). `false`: a read of old
    /// frames outlasted the short wait, nothing was restarted.
    pub async fn restart_wal(&self) -> Result<bool> {
        let mut writer = self.turn.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || writer.restart_wal())
            .await
            .map_err(|e| StoreError::Commit(format!("the checkpoint failed: {e}")))?
    }
}

/// Batches of up to this many statements run on the runtime thread that has the turn (a few
/// hundred microseconds at most); larger ones on the blocking pool.
const INLINE: usize = 4;

/// Runs the statements with the writer, as [`Writer::run`] does, on this thread if they are few
/// and nobody else holds SQLite's lock, else on the blocking pool.
async fn run(
    mut writer: OwnedMutexGuard<Writer>,
    statements: Vec<Prepared>,
) -> Vec<Result<Written>> {
    if statements.len() <= INLINE
        && let Some(results) = writer.run(&statements, false)
    {
        return results;
    }
    let count = statements.len();
    let results = tokio::task::spawn_blocking(move || writer.run(&statements, true)).await;
    match results {
        Ok(Some(results)) => results,
        other => {
            let why = match other {
                Err(e) => format!("the committer failed: {e}"),
                _ => "the writer gave no results".to_string(),
            };
            (0..count)
                .map(|_| Err(StoreError::Commit(why.clone())))
                .collect()
        }
    }
}

/// Runs a batch, then tells each caller how its statement went.
async fn commit(writer: OwnedMutexGuard<Writer>, batch: Vec<Pending>) {
    let (statements, dones): (Vec<Prepared>, Vec<_>) =
        batch.into_iter().map(|p| (p.statement, p.done)).unzip();
    for (done, result) in dones.into_iter().zip(run(writer, statements).await) {
        let _ = done.send(result);
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wal_restart_gives_up_quickly_on_a_long_read_and_succeeds_after_it() {
        let (store, _dir) = Store::temp("pods-wal-reader").await;
        let insert = |id: &str| {
            sqlx::query("INSERT INTO jobs (execution_id, workspace_id, attempts, not_before, created_at) VALUES ($1, 'w', 0, 0, 0)")
                .bind(id.to_string())
        };
        store.write(insert("a")).await.expect("write");
        // A read that stays open on the WAL's frames while more is written.
        let mut reading = store.pool.begin().await.expect("begin");
        sqlx::query("SELECT COUNT(*) FROM jobs")
            .fetch_one(&mut *reading)
            .await
            .expect("read");
        store.write(insert("b")).await.expect("write");
        let commits = store.commits.clone().expect("SQLite commits");
        let started = std::time::Instant::now();
        assert!(
            !commits.restart_wal().await.expect("restart"),
            "a reader held it"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // Writes go on, and once the read ends the WAL starts over.
        store.write(insert("c")).await.expect("write");
        reading.rollback().await.expect("end the read");
        assert!(commits.restart_wal().await.expect("restart"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_commits_together_and_a_failing_statement_fails_alone() {
        let (store, _dir) = Store::temp("pods-group-commit").await;
        // 200 inserts at once, one of them a duplicate key: they share transactions.
        let insert = |id: String| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(
                        sqlx::query("INSERT INTO jobs (execution_id, workspace_id, attempts, not_before, created_at) VALUES ($1, 'w', 0, 0, 0)")
                            .bind(id),
                    )
                    .await
            })
        };
        let mut tasks: Vec<_> = (0..200).map(|i| insert(format!("e{i}"))).collect();
        tasks.push(insert("e7".into()));
        let mut ok = 0;
        let mut failed = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(1) => ok += 1,
                Err(e) if e.is_rejection() => failed += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((ok, failed), (200, 1));
        let counts = store.job_counts().await.expect("counts");
        assert_eq!(counts.waiting, 200);
    }
}
