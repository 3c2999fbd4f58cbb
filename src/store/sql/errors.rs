//! Database errors, classified once: what a caller can act on keeps its
//! meaning, the rest is internal.

use crate::error::Error;

/// Classifies a database error once: a unique violation is ALREADY_EXISTS, a
/// lost connection UNAVAILABLE, the rest INTERNAL.
pub(super) fn db_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::already_exists("a sandbox with that name or request id exists already")
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => {
            Error::unavailable(format!("the state store cannot be reached: {error}"))
        }
        _ => Error::internal("using the state store", error),
    }
}
