//! `application/x-www-form-urlencoded` decoding, for login bodies and query strings: `+` is a
//! space, `%XX` a byte, and the decoded bytes must be UTF-8.

/// Why a form could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A name or value that is not UTF-8 once decoded.
    NotUtf8,
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadEscape => "bad percent escape",
            Self::NotUtf8 => "not utf-8",
        })
    }
}

impl std::error::Error for FormError {}

/// The decoded `name=value` pairs of `input`, in order (empty pieces are skipped; a piece
/// without `=` has an empty value).
pub fn parse(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    input
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// The first value named `name` in decoded pairs.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// One decoded name or value.
fn decode(raw: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&c| hex_digit(c));
                let lo = raw.get(i + 2).and_then(|&c| hex_digit(c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(FormError::BadEscape);
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

/// The value of one hex digit.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{FormError, get, parse};

    /// Decodes `input` and compares with `want`.
    fn check(input: &str, want: Result<&[(&str, &str)], FormError>) {
        let got = parse(input.as_bytes());
        let want = want.map(|pairs| {
            pairs
                .iter()
                .map(|&(n, v)| (n.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, want, "{input:?}");
    }

    #[test]
    fn decodes_like_browsers_encode() {
        check(
            "username=user0001&password=pw-0001",
            Ok(&[("username", "user0001"), ("password", "pw-0001")]),
        );
        check("q=blue+lamp", Ok(&[("q", "blue lamp")]));
        check("q=%C3%A9t%C3%A9%2B%26", Ok(&[("q", "été+&")]));
        check("a&&b=&=c", Ok(&[("a", ""), ("b", ""), ("", "c")]));
        check("", Ok(&[]));
        check("q=%", Err(FormError::BadEscape));
        check("q=%4", Err(FormError::BadEscape));
        check("q=%zz", Err(FormError::BadEscape));
        check("q=%ff", Err(FormError::NotUtf8));
        let pairs = parse(b"q=1&q=2").expect("valid");
        assert_eq!(get(&pairs, "q"), Some("1"));
        assert_eq!(get(&pairs, "x"), None);
    }
}
