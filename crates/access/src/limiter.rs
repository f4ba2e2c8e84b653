//! A bound on guessing passwords: after a few failed sign-ins, an account (and, separately, a
//! client address) waits before it may try again, longer after each further failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts allowed before a wait is imposed.
pub const FREE_ATTEMPTS: u32 = 5;

/// Longest wait imposed.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// Keys remembered at most (account names and addresses a client may invent without end);
/// past it, the entries whose wait is over are forgotten first, then the oldest.
pub const MAX_KEYS: usize = 100_000;

/// Failures and when the next attempt is allowed, per key (`user:<name>`, `addr:<ip>`).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    state: Mutex<HashMap<String, Failures>>,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl LoginLimiter {
    /// A limiter that remembers nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Err(wait)` while any of `keys` must wait before trying again.
    pub fn check(&self, keys: &[&str]) -> Result<(), Duration> {
        let now = Instant::now();
        let state = self.lock();
        let wait = keys
            .iter()
            .filter_map(|k| state.get(*k)?.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt against every key; past [`FREE_ATTEMPTS`] each failure
    /// doubles the wait (1 s, 2 s, 4 s … at most [`MAX_WAIT`]).
    pub fn failed(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.len() + keys.len() > MAX_KEYS {
            state.retain(|_, f| f.blocked_until.is_some_and(|u| u > now));
            while state.len() + keys.len() > MAX_KEYS {
                let Some(oldest) = state
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                state.remove(&oldest);
            }
        }
        for key in keys {
            let f = state.entry((*key).to_string()).or_insert(Failures {
                count: 0,
                last: now,
                blocked_until: None,
            });
            f.count = f.count.saturating_add(1);
            f.last = now;
            if f.count > FREE_ATTEMPTS {
                let doublings = (f.count - FREE_ATTEMPTS - 1).min(20);
                let wait = Duration::from_secs(1u64 << doublings).min(MAX_WAIT);
                f.blocked_until = Some(now + wait);
            }
        }
    }

    /// Forgets the failures of `keys` (after a successful sign-in).
    pub fn succeeded(&self, keys: &[&str]) {
        let mut state = self.lock();
        for key in keys {
            state.remove(*key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_wait_longer_and_success_forgets() {
        let l = LoginLimiter::new();
        let keys = ["user:alice", "addr:10.0.0.1"];
        for _ in 0..FREE_ATTEMPTS {
            assert!(l.check(&keys).is_ok());
            l.failed(&keys);
        }
        assert!(l.check(&keys).is_ok(), "the free attempts are free");
        l.failed(&keys);
        let wait = l.check(&keys).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        l.failed(&keys);
        assert!(l.check(&["user:alice"]).unwrap_err() > Duration::from_secs(1));
        // Another account from another address is not held up.
        assert!(l.check(&["user:bob", "addr:10.0.0.2"]).is_ok());
        // The same address is, whatever account it tries.
        assert!(l.check(&["user:bob", "addr:10.0.0.1"]).is_err());
        l.succeeded(&keys);
        assert!(l.check(&keys).is_ok());
        for _ in 0..100 {
            l.failed(&["user:x"]);
        }
        assert!(l.check(&["user:x"]).unwrap_err() <= MAX_WAIT);
    }

    #[test]
    fn invented_keys_do_not_grow_it_without_bound() {
        let l = LoginLimiter::new();
        for i in 0..(MAX_KEYS + 50) {
            l.failed(&[&format!("user:{i}")]);
        }
        assert!(l.lock().len() <= MAX_KEYS);
    }
}
