//! Database errors, classified once: what a caller can act on keeps its
//! meaning, the rest is internal.

use crate::error::Error;

/// Classifies a database error once: a unique violation is ALREADY_EXISTS; a
/// database that cannot be reached, is shutting down or is out of
/// connections UNAVAILABLE; the rest INTERNAL.
pub(super) fn db_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::already_exists("a sandbox with that name or request id exists already")
        }
        sqlx::Error::Database(db) if db.code().as_deref().is_some_and(is_unavailability) => {
            Error::unavailable(format!("the database is not available: {error}"))
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => {
            Error::unavailable(format!("the database cannot be reached: {error}"))
        }
        _ => Error::internal("using the state store", error),
    }
}

/// Whether a Postgres SQLSTATE says the database is away rather than the
/// query wrong: connection exceptions (08…), insufficient resources (53…),
/// operator intervention such as a shutdown (57P…).
fn is_unavailability(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}
