//! `key_list` and `key_rotate`: the cluster keys this daemon holds, by fingerprint, and the
//! steps of a rotation (`circuit key rotate`).

use circuit_sdk::proto::{KeyStatus, KeyStep, Reply, Request};
use circuit_sdk::secure::{Key, Keyring};

use super::error::ApiError;
use super::Context;

/// Answers `key_list` and `key_rotate`.
pub(crate) fn handle(request: Request, ctx: &Context) -> Result<Reply, ApiError> {
    let keys = ctx.config.keys.as_ref();
    let Request::KeyRotate { step, key } = request else {
        return Ok(Reply::Keys(status(ctx, keys)));
    };
    let Some(ring) = keys else {
        return Err(ApiError::InvalidState(format!(
            "node {} runs without a cluster key; restart it with --key-file to use one",
            ctx.config.name
        )));
    };
    let new =
        Key::from_hex(&key, "the new key").map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let now: Vec<Key> = ring.keys().to_vec();
    let held = now.contains(&new);
    let next = match step {
        KeyStep::Add if held => now.clone(),
        KeyStep::Add => now.iter().cloned().chain([new.clone()]).collect(),
        KeyStep::Use if !held => {
            return Err(refused(
                ctx,
                &new,
                "is not held yet: run the add step first",
            ))
        }
        KeyStep::Use => std::iter::once(new.clone())
            .chain(now.iter().filter(|k| **k != new).cloned())
            .collect(),
        KeyStep::Retire if now[0] != new => {
            return Err(refused(
                ctx,
                &new,
                "is not the sending key yet: run the use step first",
            ))
        }
        KeyStep::Retire => vec![new.clone()],
    };
    if next != now {
        ring.set(next)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        tracing::info!(?step, keys = ?ring.fingerprints(), "cluster keys changed");
    }
    Ok(Reply::Keys(status(ctx, Some(ring))))
}

fn refused(ctx: &Context, key: &Key, why: &str) -> ApiError {
    ApiError::InvalidState(format!(
        "on node {}: the key {} {why}",
        ctx.config.name,
        key.fingerprint()
    ))
}

fn status(ctx: &Context, keys: Option<&Keyring>) -> KeyStatus {
    KeyStatus {
        node: ctx.config.name.clone(),
        fingerprints: keys.map(Keyring::fingerprints).unwrap_or_default(),
        file: keys.and_then(|k| k.file()).map(|p| p.display().to_string()),
    }
}
