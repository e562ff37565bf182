//! Single-use OAuth2 states (spec 1.2): a fresh `state` bound to the browser
//! by a signed cookie, and consumed once, across every replica sharing the
//! store, when the portal sends the user back.

use std::time::Duration;

use http::HeaderValue;
use rand::RngCore;

use super::cookie::Carried;
use super::manager::SessionManager;
use super::{Mark, StoreKey};

/// How long an OAuth2 `state` stays valid in its cookie.
pub const STATE_TTL: Duration = Duration::from_secs(600);

/// Why a callback's `state` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateRefused {
    Missing,
    Mismatch,
    Replayed,
    /// The store could not say whether the state was used (fail closed).
    StoreUnavailable,
}

/// A fresh OAuth2 `state`: 128 random bits, hex.
pub fn new_state() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    super::hex(&bytes)
}

impl SessionManager {
    /// The key a used state is recorded under: an HMAC of the state in a
    /// domain of its own (never equal to a session's key).
    fn state_key(&self, state: &str) -> StoreKey {
        self.keyed(&[b"\0used-state\0", state.as_bytes()])
    }

    /// A signed, short-lived cookie binding `state` (and the destination it
    /// carries) to this browser.
    pub fn state_cookie(&self, state: &str, destination: &str) -> HeaderValue {
        // A state is hex and a destination percent-encoded: always a valid header.
        self.cookies().state_cookie(state, destination, STATE_TTL).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Checks a callback's `state` against the browser's state cookie and
    /// consumes it in the store (single use, across replicas when the store is
    /// shared): the destination it was bound to, or why it is refused.
    pub async fn take_state(&self, carried: &Carried, offered: Option<&str>) -> Result<String, StateRefused> {
        let offered = offered.filter(|s| !s.is_empty()).ok_or(StateRefused::Missing)?;
        let bound = self.cookies().state(carried).ok_or(StateRefused::Missing)?;
        let (state, destination) = bound.split_once('.').ok_or(StateRefused::Mismatch)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(state.as_bytes(), offered.as_bytes())) {
            return Err(StateRefused::Mismatch);
        }
        match self.store().use_once(Mark::State, &self.state_key(state), STATE_TTL).await {
            Ok(true) => {}
            Ok(false) => return Err(StateRefused::Replayed),
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a used state");
                return Err(StateRefused::StoreUnavailable);
            }
        }
        Ok(percent_encoding::percent_decode_str(destination).decode_utf8_lossy().into_owned())
    }
}
