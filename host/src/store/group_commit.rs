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
//! Writes go through one connection of their own, held by whoever's turn it is: no pool to
//! acquire it from, and no ping when it goes back.

use std::sync::Arc;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection};
use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};

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
    statement: Statement,
    returning: bool,
    done: oneshot::Sender<std::result::Result<Written, String>>,
}

#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
    /// The writing connection; holding it is having the turn to write.
    turn: Arc<Mutex<AnyConnection>>,
    wal: Arc<WalActivity>,
}

impl GroupCommit {
    /// Starts the committer on `writer`; it takes the turn around each batch, so it and the
    /// other writers of this process go one at a time.
    pub fn start(writer: AnyConnection, wal: Arc<WalActivity>) -> Self {
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
                let mut conn = turn.lock().await;
                wal.wrote(batch.len() as u64);
                commit(&mut conn, batch).await;
            }
        });
        this
    }

    /// Waits for the turn to write, for a writer that runs its own statements (on the pool).
    pub async fn turn(&self) -> MutexGuard<'_, AnyConnection> {
        self.turn.lock().await
    }

    pub async fn run(&self, statement: Statement, returning: bool) -> Result<Written> {
        // Nobody writing: no batch to join, and no hop through the committer either.
        if let Ok(mut conn) = self.turn.try_lock() {
            self.wal.wrote(1);
            return Ok(execute(&mut conn, statement, returning).await?);
        }
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                statement,
                returning,
                done,
            })
            .map_err(|_| StoreError::Commit("the store is closed".into()))?;
        match answer.await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(e)) => Err(StoreError::Commit(e)),
            Err(_) => Err(StoreError::Commit("the committer stopped".into())),
        }
    }
}

async fn execute(
    conn: &mut AnyConnection,
    statement: Statement,
    returning: bool,
) -> std::result::Result<Written, sqlx::Error> {
    if returning {
        let rows = statement.fetch_all(&mut *conn).await?;
        Ok(Written {
            affected: rows.len() as u64,
            rows,
        })
    } else {
        let done = statement.execute(&mut *conn).await?;
        Ok(Written {
            affected: done.rows_affected(),
            rows: vec![],
        })
    }
}

async fn commit(conn: &mut AnyConnection, batch: Vec<Pending>) {
    let fail_all = |batch: Vec<Pending>, e: &dyn std::fmt::Display| {
        for p in batch {
            let _ = p.done.send(Err(e.to_string()));
        }
    };
    if batch.len() == 1 {
        // Alone: no transaction to wrap it in.
        let Some(p) = batch.into_iter().next() else {
            return;
        };
        let result = execute(conn, p.statement, p.returning).await;
        let _ = p.done.send(result.map_err(|e| e.to_string()));
        return;
    }
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return fail_all(batch, &e);
    }
    let mut results = Vec::with_capacity(batch.len());
    for p in batch {
        let result = execute(conn, p.statement, p.returning).await;
        results.push((p.done, result.map_err(|e| e.to_string())));
    }
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => {
            for (done, result) in results {
                let _ = done.send(result);
            }
        }
        Err(e) => {
            // Nothing of the batch is kept.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            for (done, _) in results {
                let _ = done.send(Err(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreError};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_commits_together_and_a_failing_statement_fails_alone() {
        let dir = std::env::temp_dir().join(format!("pods-group-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::connect(&format!("sqlite://{}", dir.join("t.db").display()))
            .await
            .expect("store");
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
                Err(StoreError::Commit(_)) | Err(StoreError::Database(_)) => failed += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((ok, failed), (200, 1));
        let counts = store.job_counts().await.expect("counts");
        assert_eq!(counts.waiting, 200);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
