//! Bad input gets a clear error and loses nothing: fields checked one by
//! one, messages that do not decode, and a hostile corpus sent to every RPC.

#[path = "../common/mod.rs"]
mod common;

mod corpus;
mod decoding;
mod fields;
mod hostile;

use common::TestServer;
use paddock::pb;
use tonic::Code;
