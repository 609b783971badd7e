//! `key_list` and `key_set`: the cluster keys this daemon holds.

use circuit_sdk::proto::{ErrorCode, Reply, Request};

use super::dispatch::Failure;
use super::Context;

/// Answers `key_list` and `key_set`.
pub(crate) fn handle(request: Request, _ctx: &Context) -> Result<Reply, Failure> {
    match request {
        _ => Err(Failure(ErrorCode::Internal, "not implemented yet".into())),
    }
}
