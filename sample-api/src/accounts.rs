//! The generated accounts: `user0000` to `user{N-1}` with at least four digits, and the
//! password of `userNNNN` is `pw-NNNN` (the same digits). Attack tools in the lab build their
//! word lists from this rule.

/// The most accounts [`Accounts::new`] takes (names stay short).
pub const MAX_ACCOUNTS: i64 = 10_000_000;

/// The account set: numbers `0..count`.
#[derive(Debug, Clone, Copy)]
pub struct Accounts {
    /// How many accounts exist.
    count: u32,
}

impl Accounts {
    /// `count` accounts.
    pub fn new(count: u32) -> Self {
        Self { count }
    }

    /// How many accounts exist.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The name of account `n`: `user` and `n` with at least four digits.
    pub fn name(n: u32) -> String {
        format!("user{n:04}")
    }

    /// The password of account `n`: `pw-` and the digits of its name.
    pub fn password(n: u32) -> String {
        format!("pw-{n:04}")
    }

    /// The number of the account named `username`, if it exists (names are exact: no other
    /// spelling of the number matches).
    pub fn find(&self, username: &str) -> Option<u32> {
        let digits = username.strip_prefix("user")?;
        if digits.len() < 4 || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        (n < self.count && Self::name(n) == username).then_some(n)
    }

    /// The account `username` if `password` is its password.
    pub fn verify(&self, username: &str, password: &str) -> Option<u32> {
        let n = self.find(username)?;
        // Not constant-time: the fixed login delay dominates every answer's timing.
        (Self::password(n) == password).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::Accounts;

    #[test]
    fn names_and_passwords_follow_the_documented_rule() {
        let accounts = Accounts::new(1000);
        let cases: &[(&str, &str, Option<u32>)] = &[
            ("user0000", "pw-0000", Some(0)),
            ("user0042", "pw-0042", Some(42)),
            ("user0999", "pw-0999", Some(999)),
            ("user1000", "pw-1000", None),
            ("user0042", "pw-0043", None),
            ("user42", "pw-0042", None),
            ("user00042", "pw-00042", None),
            ("user+042", "pw-0042", None),
            ("User0042", "pw-0042", None),
            ("user0042", "", None),
            ("", "", None),
            ("user99999999999999999999", "pw-0", None),
        ];
        for &(user, pw, want) in cases {
            assert_eq!(accounts.verify(user, pw), want, "{user:?} / {pw:?}");
        }
        assert_eq!(Accounts::name(7), "user0007");
        assert_eq!(Accounts::password(7), "pw-0007");
        let big = Accounts::new(20_000);
        assert_eq!(big.verify("user12345", "pw-12345"), Some(12_345));
    }
}
