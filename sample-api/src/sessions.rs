//! Session tokens: 128 random bits, written as 32 lowercase hex digits in the `session`
//! cookie. The table is bounded: when it is full the oldest session is dropped, so a client
//! logging in forever cannot grow it.
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How many sessions the table keeps by default.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// A session token's bytes.
type Token = [u8; 16];

/// One live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The account number.
    pub account: u32,
    /// How many times `/notifications` was polled with this session.
    pub polls: u64,
}

/// The session table, shared by every connection.
#[derive(Debug)]
pub struct Sessions {
    /// The table; one lock, held for a map operation only.
    inner: Mutex<Inner>,
    /// The most sessions kept.
    capacity: usize,
}

/// The table behind the lock.
#[derive(Debug, Default)]
struct Inner {
    /// Live sessions.
    by_token: HashMap<Token, Session>,
    /// Tokens in creation order, oldest first; may hold tokens already logged out.
    order: VecDeque<Token>,
}

/// The random source failed (the kernel's getrandom).
#[derive(Debug)]
pub struct RandomError(pub getrandom::Error);

impl std::fmt::Display for RandomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot draw a session token: {}", self.0)
    }
}

impl std::error::Error for RandomError {}

impl Sessions {
    /// An empty table keeping at most `capacity` (at least 1) sessions.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Starts a session for `account` and returns its token (32 hex digits).
    pub fn create(&self, account: u32) -> Result<String, RandomError> {
        let mut token = Token::default();
        getrandom::fill(&mut token).map_err(RandomError)?;
        let mut inner = self.lock();
        while inner.by_token.len() >= self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.by_token.remove(&old);
        }
        if inner.order.len() >= 2 * self.capacity {
            // Logged-out tokens pile up in `order`; drop them now and then.
            let Inner { by_token, order } = &mut *inner;
            order.retain(|t| by_token.contains_key(t));
        }
        inner.by_token.insert(token, Session { account, polls: 0 });
        inner.order.push_back(token);
        Ok(hex(&token))
    }

    /// The session of `token`, if it is live.
    pub fn get(&self, token: &str) -> Option<Session> {
        let token = parse_token(token)?;
        self.lock().by_token.get(&token).copied()
    }

    /// Counts one poll of `/notifications` and returns the session after it.
    pub fn poll(&self, token: &str) -> Option<Session> {
        let token = parse_token(token)?;
        let mut inner = self.lock();
        let session = inner.by_token.get_mut(&token)?;
        session.polls = session.polls.saturating_add(1);
        Some(*session)
    }

    /// Ends the session of `token`; whether it was live.
    pub fn remove(&self, token: &str) -> bool {
        parse_token(token).is_some_and(|t| self.lock().by_token.remove(&t).is_some())
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().by_token.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The table; a panic elsewhere while holding the lock leaves it consistent (every
    /// operation is a single map call), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// A token from its 32 lowercase hex digits.
fn parse_token(s: &str) -> Option<Token> {
    if s.len() != 32 {
        return None;
    }
    let mut token = Token::default();
    for (out, pair) in token.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *out = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::{Session, Sessions, parse_token};

    #[test]
    fn create_get_poll_remove() {
        let sessions = Sessions::new(8);
        let t = sessions.create(7).expect("random");
        assert_eq!(t.len(), 32);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(
            sessions.get(&t),
            Some(Session {
                account: 7,
                polls: 0
            })
        );
        assert_eq!(sessions.poll(&t).map(|s| s.polls), Some(1));
        assert_eq!(sessions.poll(&t).map(|s| s.polls), Some(2));
        assert!(sessions.remove(&t));
        assert!(!sessions.remove(&t));
        assert_eq!(sessions.get(&t), None);
        assert!(sessions.is_empty());
    }

    #[test]
    fn tokens_differ_and_bad_tokens_are_refused() {
        let sessions = Sessions::new(8);
        let a = sessions.create(1).expect("random");
        let b = sessions.create(1).expect("random");
        assert_ne!(a, b);
        for bad in ["", "zz", &a.to_uppercase(), &a[..31], &format!("{a}0"), "é"] {
            assert_eq!(sessions.get(bad), None, "{bad:?}");
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_full_table_drops_the_oldest_and_stays_bounded() {
        let sessions = Sessions::new(3);
        let tokens: Vec<String> = (0..5)
            .map(|i| sessions.create(i).expect("random"))
            .collect();
        assert_eq!(sessions.len(), 3);
        assert_eq!(sessions.get(&tokens[0]), None);
        assert_eq!(sessions.get(&tokens[1]), None);
        assert_eq!(sessions.get(&tokens[4]).map(|s| s.account), Some(4));
        // Login and logout forever: the creation order does not grow without bound.
        for i in 0..100 {
            let t = sessions.create(i).expect("random");
            assert!(sessions.remove(&t));
        }
        assert!(sessions.lock().order.len() <= 2 * 3 + 1);
        assert_eq!(sessions.len(), 2);
    }
}
