//! SQLite writes — and the hot reads ([`Reader`]) — run on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own, so every statement is two thread
//! hand-offs, there and back. On a small machine a hand-off to a sleeping thread is a wake-up
//! of tens of microseconds and, at the tail, a wait for a core — most of what a sync execution's
//! two writes cost (docs/benchmarks/where-the-time-goes.md). The store's writes are short (a row
//! and its indexes appended to the WAL, no fsync), so they run in the caller on a `rusqlite`
//! connection: the same SQL and arguments the store builds for sqlx, and the rows handed back
//! as sqlx's `AnyRow`, so the rest of the store does not know which connection wrote.
//!
//! The writer never sleeps in SQLite's busy handler on a runtime thread: when another
//! connection holds the write lock (a pool connection writing outside the turn, another
//! process), nothing is written and the statements go to the blocking pool, where waiting is
//! allowed. The price of running in the caller: a disk that stalls a write stalls that runtime
//! thread too (commits do not fsync — `synchronous = NORMAL` in WAL mode — and checkpoints run on
//! a connection of their own, so in practice a write is tens of microseconds).

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};
use sqlx::Execute as _;
use sqlx_core::any::{
    AnyArguments, AnyColumn, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue, AnyValueKind,
};

use super::StoreError;
use super::group_commit::{Statement, Written};

/// How long a write waits for SQLite's lock on the blocking pool (the pool's connections wait
/// as long).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a WAL restart, which holds every write, waits for a read of old frames to end.
const RESTART_WAIT: Duration = Duration::from_millis(50);

/// A statement taken apart: its SQL and its arguments, ready for rusqlite.
pub struct Prepared {
    sql: &'static str,
    args: Vec<Value>,
    returning: bool,
}

impl Prepared {
    pub fn new(mut statement: Statement, returning: bool) -> Result<Self, String> {
        let sql = statement.sql();
        let args = match statement.take_arguments() {
            Ok(Some(args)) => arguments(args)?,
            Ok(None) => vec![],
            Err(e) => return Err(e.to_string()),
        };
        Ok(Prepared {
            sql,
            args,
            returning,
        })
    }
}

/// The store's writing connection.
pub struct Writer {
    conn: rusqlite::Connection,
}

impl Writer {
    /// Opens the database file of a `sqlite:` URL with the store's settings
    /// (`SQLITE_PRAGMAS`); the store has created the file and its tables by then.
    pub fn open(url: &str) -> Result<Self, rusqlite::Error> {
        Ok(Writer { conn: open(url)? })
    }

    /// Runs the statements: one alone, several in one transaction, where a failing statement
    /// fails alone (SQLite undoes that statement only) and the rest commit — unless the commit
    /// fails, which fails them all.
    ///
    /// With `wait: false` (on a runtime thread) it does not wait for SQLite's lock: `None`
    /// means another connection holds it and nothing was written; run them again with
    /// `wait: true`, which waits up to [`BUSY_TIMEOUT`], on the blocking pool.
    pub fn run(
        &mut self,
        statements: &[Prepared],
        wait: bool,
    ) -> Option<Vec<Result<Written, StoreError>>> {
        let timeout = if wait { BUSY_TIMEOUT } else { Duration::ZERO };
        let fail_all = |e: &dyn std::fmt::Display| {
            Some(
                statements
                    .iter()
                    .map(|_| Err(StoreError::Commit(e.to_string())))
                    .collect(),
            )
        };
        if let Err(e) = self.conn.busy_timeout(timeout) {
            return fail_all(&e);
        }
        if let [one] = statements {
            return match self.run_one(one) {
                Err(e) if !wait && is_busy(&e) => None,
                result => Some(vec![result.map_err(StoreError::Sqlite)]),
            };
        }
        match self.conn.execute_batch("BEGIN IMMEDIATE") {
            Err(e) if !wait && is_busy(&e) => return None,
            Err(e) => return fail_all(&e),
            Ok(()) => {}
        }
        let results: Vec<_> = statements
            .iter()
            .map(|s| self.run_one(s).map_err(StoreError::Sqlite))
            .collect();
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => Some(results),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                fail_all(&e)
            }
        }
    }

    /// Runs the statements in one transaction that commits only if every one of them succeeds;
    /// the first failure undoes them all. `wait` and `None` as for [`Writer::run`].
    pub fn run_atomic(
        &mut self,
        statements: &[Prepared],
        wait: bool,
    ) -> Option<Result<Vec<Written>, StoreError>> {
        let timeout = if wait { BUSY_TIMEOUT } else { Duration::ZERO };
        if let Err(e) = self.conn.busy_timeout(timeout) {
            return Some(Err(StoreError::Sqlite(e)));
        }
        match self.conn.execute_batch("BEGIN IMMEDIATE") {
            Err(e) if !wait && is_busy(&e) => return None,
            Err(e) => return Some(Err(StoreError::Sqlite(e))),
            Ok(()) => {}
        }
        let results: Result<Vec<_>, _> = statements.iter().map(|s| self.run_one(s)).collect();
        let committed = match results {
            Ok(written) => self.conn.execute_batch("COMMIT").map(|()| written),
            Err(e) => Err(e),
        };
        if committed.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        Some(committed.map_err(StoreError::Sqlite))
    }

    /// `wal_checkpoint(RESTART)`: every frame into the database file, and the next commit
    /// writes the WAL from its start. Waits at most [`RESTART_WAIT`] for readers of old frames
    /// (every write waits meanwhile); `false` if one was still reading — try again later.
    pub fn restart_wal(&mut self) -> Result<bool, StoreError> {
        self.conn
            .busy_timeout(RESTART_WAIT)
            .map_err(StoreError::Sqlite)?;
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
                row.get::<_, i64>(0)
            }) {
            Ok(busy) => Ok(busy == 0),
            Err(e) if is_busy(&e) => Ok(false),
            Err(e) => Err(StoreError::Sqlite(e)),
        }
    }

    fn run_one(&mut self, statement: &Prepared) -> Result<Written, rusqlite::Error> {
        execute(&self.conn, statement)
    }
}

/// A read-only connection for the hot reads, which run on the calling thread as the writer's
/// statements do (a read is a few index lookups; in WAL mode it never waits for the writer).
pub struct Reader {
    conn: rusqlite::Connection,
}

impl Reader {
    /// Opens the database file of a `sqlite:` URL to read.
    pub fn open(url: &str) -> Result<Self, rusqlite::Error> {
        let conn = open(url)?;
        conn.execute_batch("PRAGMA query_only = 1")?;
        Ok(Reader { conn })
    }

    /// The statement's rows. With `wait: false` it does not wait if SQLite is busy (a
    /// checkpoint resetting the WAL): `None`, read again with `wait: true` on the blocking pool.
    pub fn read(
        &mut self,
        statement: &Prepared,
        wait: bool,
    ) -> Option<Result<Vec<AnyRow>, StoreError>> {
        let timeout = if wait { BUSY_TIMEOUT } else { Duration::ZERO };
        if let Err(e) = self.conn.busy_timeout(timeout) {
            return Some(Err(StoreError::Sqlite(e)));
        }
        match execute(&self.conn, statement) {
            Err(e) if !wait && is_busy(&e) => None,
            result => Some(result.map(|w| w.rows).map_err(StoreError::Sqlite)),
        }
    }
}

/// A connection to the database file of a `sqlite:` URL with the store's settings
/// (`SQLITE_PRAGMAS`); the store has created the file and its tables by then.
fn open(url: &str) -> Result<rusqlite::Connection, rusqlite::Error> {
    let path = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map(|o| o.get_filename().to_path_buf())
        .map_err(|e| rusqlite::Error::InvalidPath(e.to_string().into()))?;
    let conn = rusqlite::Connection::open(path)?;
    for pragma in super::SQLITE_PRAGMAS {
        conn.execute_batch(pragma)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Runs one statement on `conn`: rows changed, or (`returning`) the rows as sqlx's `AnyRow`.
fn execute(conn: &rusqlite::Connection, statement: &Prepared) -> Result<Written, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(statement.sql)?;
    // The store writes `$1`, `$2`…; SQLite numbers parameters by first appearance, so each
    // is bound by its name.
    for index in 1..=stmt.parameter_count() {
        let value = stmt
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| statement.args.get(n.wrapping_sub(1)))
            .ok_or(rusqlite::Error::InvalidParameterCount(
                index,
                statement.args.len(),
            ))?;
        stmt.raw_bind_parameter(index, value)?;
    }
    if !statement.returning {
        let affected = stmt.raw_execute()? as u64;
        return Ok(Written {
            affected,
            rows: vec![],
        });
    }
    let columns: Vec<AnyColumn> = (0..stmt.column_count())
        .map(|ordinal| {
            Ok(AnyColumn {
                ordinal,
                name: stmt.column_name(ordinal)?.to_string().into(),
                type_info: AnyTypeInfo {
                    kind: AnyTypeInfoKind::Null,
                },
            })
        })
        .collect::<Result<_, rusqlite::Error>>()?;
    let names = Arc::new(
        columns
            .iter()
            .map(|c| (c.name.clone(), c.ordinal))
            .collect(),
    );
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns.len())
            .map(|i| row.get_ref(i).map(value))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(AnyRow {
            column_names: Arc::clone(&names),
            columns: columns.clone(),
            values,
        });
    }
    Ok(Written {
        affected: out.len() as u64,
        rows: out,
    })
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// sqlx's arguments as SQLite values (what sqlx's own SQLite driver would bind).
fn arguments(args: AnyArguments<'static>) -> Result<Vec<Value>, String> {
    args.values
        .0
        .into_iter()
        .map(|v| match v {
            AnyValueKind::Null(_) => Ok(Value::Null),
            AnyValueKind::Bool(b) => Ok(Value::Integer(b.into())),
            AnyValueKind::SmallInt(i) => Ok(Value::Integer(i.into())),
            AnyValueKind::Integer(i) => Ok(Value::Integer(i.into())),
            AnyValueKind::BigInt(i) => Ok(Value::Integer(i)),
            AnyValueKind::Real(f) => Ok(Value::Real(f.into())),
            AnyValueKind::Double(f) => Ok(Value::Real(f)),
            AnyValueKind::Text(t) => Ok(Value::Text(t.into_owned())),
            AnyValueKind::Blob(b) => Ok(Value::Blob(b.into_owned())),
            other => Err(format!("an argument SQLite cannot take: {other:?}")),
        })
        .collect()
}

/// A SQLite value as sqlx's `Any` driver gives it (by storage class).
fn value(v: ValueRef<'_>) -> AnyValue {
    let kind = match v {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(f) => AnyValueKind::Double(f),
        ValueRef::Text(t) => AnyValueKind::Text(String::from_utf8_lossy(t).into_owned().into()),
        ValueRef::Blob(b) => AnyValueKind::Blob(b.to_vec().into()),
    };
    AnyValue { kind }
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use super::*;

    fn writer(name: &str) -> (Writer, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("pods-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("w.db");
        let w = Writer::open(&format!("sqlite://{}?mode=rwc", path.display())).expect("open");
        w.conn
            .execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, note TEXT)")
            .expect("table");
        (w, path)
    }

    fn prepared(statement: Statement, returning: bool) -> Prepared {
        Prepared::new(statement, returning).expect("prepared")
    }

    #[test]
    fn binds_by_number_and_returns_rows_as_sqlx_would() {
        let (mut w, _) = writer("bind");
        // `$2` appears before `$1`: SQLite would number them the other way round.
        let insert =
            sqlx::query("INSERT INTO t (n, id, note) VALUES ($2, $1, $3) RETURNING id, n, note")
                .bind("a".to_string())
                .bind(7_i64)
                .bind(None::<String>);
        let results = w.run(&[prepared(insert, true)], false).expect("not busy");
        let written = results.into_iter().next().expect("one").expect("ok");
        assert_eq!(written.affected, 1);
        let row = &written.rows[0];
        assert_eq!(row.try_get::<String, _>("id").expect("id"), "a");
        assert_eq!(row.try_get::<i64, _>("n").expect("n"), 7);
        assert_eq!(
            row.try_get::<Option<String>, _>("note").expect("note"),
            None
        );
    }

    #[test]
    fn in_a_batch_a_failing_statement_fails_alone() {
        let (mut w, _) = writer("batch");
        let insert = |id: &str| {
            prepared(
                sqlx::query("INSERT INTO t (id, n) VALUES ($1, 1)").bind(id.to_string()),
                false,
            )
        };
        let results = w
            .run(&[insert("a"), insert("a"), insert("b")], false)
            .expect("not busy");
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, true]);
        let count: i64 = w
            .conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count, 2);
    }

    #[test]
    fn an_atomic_group_commits_all_or_nothing_and_a_reader_sees_it() {
        let (mut w, path) = writer("atomic");
        let insert = |id: &str| {
            prepared(
                sqlx::query("INSERT INTO t (id, n) VALUES ($1, 1)").bind(id.to_string()),
                false,
            )
        };
        let failed = w
            .run_atomic(&[insert("a"), insert("a")], false)
            .expect("not busy");
        assert!(failed.is_err(), "the duplicate fails the group");
        let written = w
            .run_atomic(&[insert("b"), insert("c")], false)
            .expect("not busy");
        assert_eq!(written.expect("ok").len(), 2);
        let mut reader = Reader::open(&format!("sqlite://{}", path.display())).expect("reader");
        let ids = sqlx::query("SELECT id FROM t ORDER BY id");
        let rows = reader
            .read(&prepared(ids, true), false)
            .expect("not busy")
            .expect("rows");
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>("id").expect("id"))
            .collect();
        assert_eq!(ids, ["b", "c"], "nothing of the failed group");
    }

    #[test]
    fn does_not_wait_for_another_writer_unless_told_to() {
        let (mut w, path) = writer("busy");
        let other = rusqlite::Connection::open(&path).expect("other");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let insert = || prepared(sqlx::query("INSERT INTO t (id, n) VALUES ('x', 1)"), false);
        assert!(
            w.run(&[insert()], false).is_none(),
            "busy, nothing waited for"
        );
        assert!(w.run(&[insert(), insert()], false).is_none(), "a batch too");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            other.execute_batch("COMMIT").expect("unlock");
        });
        let waited = w.run(&[insert()], true).expect("waits");
        assert_eq!(waited[0].as_ref().map(|w| w.affected).ok(), Some(1));
        release.join().expect("thread");
    }
}
