//! The transport fingerprint: the shape of a client's TCP stack, read from the SYN that opened
//! its connection (the IP TTL or hop limit, the TCP window and the TCP options). Like the
//! request fingerprint ([`super::fingerprint`]) it is the same for every connection a given
//! client program on a given system opens, whatever address it uses, and it tells a Linux
//! stack from a Windows one, or a raw-socket tool from either, where the HTTP shape alone
//! might not. The idea is p0f's; the format is apisensor's own.
//!
//! # Format (version 1)
//!
//! `tcp1_<ittl>_<window>_<mss>_<ws>_<options>`, for example `tcp1_64_m44_1460_7_M-S-T-N-W`
//! (a Linux client on Ethernet) or `tcp1_128_m44_1460_8_M-N-W-N-N-S` (Windows):
//!
//! - `ittl`: the initial TTL guessed from the observed one (IPv4 TTL, IPv6 hop limit): the
//!   first of `32`, `64`, `128` and `255` at or above it.
//! - `window`: the SYN's window as sent (unscaled), in decimal; `m<k>` when the SYN has an
//!   MSS option whose value `v` is not zero and the window is `k` times `v` (`k` at least 1),
//!   since many stacks size their first window in segments.
//! - `mss`: the MSS option's value in decimal, `x` without one (or with one of a length other
//!   than 4).
//! - `ws`: the window scale option's shift in decimal, `x` without one (or with one of a
//!   length other than 3).
//! - `options`: the option kinds in the order sent, at most 10, joined by `-`: `E` end of list
//!   (0), `N` no-operation (1), `M` MSS (2), `W` window scale (3), `S` SACK permitted (4),
//!   `T` timestamp (8), any other kind in decimal; `none` without options. A `+` follows when
//!   more than 10 options were sent, a `!` when the options were cut short (a length below 2,
//!   past the TCP header or past the captured frame).
//!
//! Only the SYN's header fields are used; nothing of the payload. The fingerprint is computed
//! the same way live (from the kernel's control record) and in a replay (from the capture's
//! SYN), both through [`TransportFingerprint::of`].

use std::fmt;
use std::num::NonZeroU8;

use sensor_common::{MAX_SYN_OPTIONS, SynOptions, syn_flags};

/// The initial TTLs stacks use, smallest first.
const INITIAL_TTLS: [u8; 4] = [32, 64, 128, 255];

/// A transport fingerprint; see the module docs for its text form. Plain data in 16 bytes (no
/// heap, and `Option<Self>` is no larger), so a flow and each of its transactions carry it by
/// value: at 24 bytes it took an idle flow past its 512-byte budget.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportFingerprint {
    /// The window as sent.
    window: u16,
    /// The MSS value (meaningful with [`meta::MSS`]).
    mss: u16,
    /// Option kinds: the kinds before an EOL are never 0, an EOL is the last one kept, and
    /// unused slots are 0.
    kinds: [u8; MAX_SYN_OPTIONS],
    /// The window scale shift (meaningful with [`meta::WSCALE`]).
    wscale: u8,
    /// The [`meta`] bits; never zero (`ONE` is always set), which gives `Option<Self>` a niche.
    meta: NonZeroU8,
}

/// Bits of [`TransportFingerprint::meta`].
mod meta {
    /// Index of the guessed initial TTL in `INITIAL_TTLS` (two bits).
    pub const ITTL: u8 = 0x03;
    /// The MSS option was present.
    pub const MSS: u8 = 0x04;
    /// The window scale option was present.
    pub const WSCALE: u8 = 0x08;
    /// More options than `kinds` holds.
    pub const MORE: u8 = 0x10;
    /// Options cut short.
    pub const MALFORMED: u8 = 0x20;
    /// The last kind kept is an EOL (0).
    pub const EOL: u8 = 0x40;
    /// Always set.
    pub const ONE: u8 = 0x80;
}

impl TransportFingerprint {
    /// The fingerprint of a client SYN's fields (`None` unless `syn_flags::PARSED` is set).
    pub fn of(syn: &SynOptions) -> Option<Self> {
        if syn.flags & syn_flags::PARSED == 0 {
            return None;
        }
        let ittl = INITIAL_TTLS
            .iter()
            .position(|&t| t >= syn.ttl)
            .unwrap_or(INITIAL_TTLS.len() - 1);
        let mut bits = meta::ONE | (ittl as u8 & meta::ITTL);
        let mut kinds = [0; MAX_SYN_OPTIONS];
        let count = usize::from(syn.option_count).min(MAX_SYN_OPTIONS);
        for (slot, &kind) in kinds.iter_mut().zip(&syn.kinds[..count]) {
            *slot = kind;
            if kind == 0 {
                // The walk ends at an EOL: nothing is kept after it.
                bits |= meta::EOL;
                break;
            }
        }
        for (flag, bit) in [
            (syn_flags::MSS, meta::MSS),
            (syn_flags::WSCALE, meta::WSCALE),
            (syn_flags::MORE, meta::MORE),
            (syn_flags::MALFORMED, meta::MALFORMED),
        ] {
            if syn.flags & flag != 0 {
                bits |= bit;
            }
        }
        Some(Self {
            window: syn.window,
            mss: if bits & meta::MSS != 0 { syn.mss } else { 0 },
            kinds,
            wscale: if bits & meta::WSCALE != 0 {
                syn.wscale
            } else {
                0
            },
            meta: NonZeroU8::new(bits)?,
        })
    }

    /// A [`meta`] bit.
    fn has(self, bit: u8) -> bool {
        self.meta.get() & bit != 0
    }

    /// The option kinds kept, in order.
    fn kinds(&self) -> &[u8] {
        let n = self.kinds.iter().take_while(|&&k| k != 0).count();
        let n = n + usize::from(self.has(meta::EOL));
        self.kinds.get(..n).unwrap_or(&self.kinds)
    }
}

/// A client SYN's fields from its TTL (or hop limit), window and TCP option bytes (the
/// `data offset` words after the fixed header), read exactly as XDP reads them
/// (`sensor-ebpf/src/parse.rs`, `syn_options`): kinds in order, at most
/// [`MAX_SYN_OPTIONS`] kept (`MORE` past them), EOL ending the walk, NOP one byte, any other
/// option its length, a length below 2 or past the options ending the walk with `MALFORMED`.
/// The replay reads a captured SYN through this, so live and replay agree.
pub fn read_syn(ttl: u8, window: u16, options: &[u8]) -> SynOptions {
    let mut syn = SynOptions {
        window,
        ttl,
        flags: syn_flags::PARSED,
        ..SynOptions::default()
    };
    let opts = options.get(..options.len().min(40)).unwrap_or_default();
    let mut at = 0;
    while let Some(&kind) = opts.get(at) {
        match syn.kinds.get_mut(usize::from(syn.option_count)) {
            Some(slot) => {
                *slot = kind;
                syn.option_count += 1;
            }
            None => syn.flags |= syn_flags::MORE,
        }
        match kind {
            0 => break,
            1 => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let len = opts.get(at + 1).map_or(0, |&l| usize::from(l));
        let Some(body) = opts.get(at + 2..at + len.max(2)).filter(|_| len >= 2) else {
            syn.flags |= syn_flags::MALFORMED;
            break;
        };
        match (kind, body) {
            (2, &[hi, lo]) => {
                syn.mss = u16::from_be_bytes([hi, lo]);
                syn.flags |= syn_flags::MSS;
            }
            (3, &[shift]) => {
                syn.wscale = shift;
                syn.flags |= syn_flags::WSCALE;
            }
            (8, _) => syn.flags |= syn_flags::TIMESTAMP,
            _ => {}
        }
        at += len;
    }
    syn
}

impl fmt::Display for TransportFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ittl = INITIAL_TTLS
            .get(usize::from(self.meta.get() & meta::ITTL))
            .copied()
            .unwrap_or(255);
        write!(f, "tcp1_{ittl}_")?;
        let mss = self.has(meta::MSS).then_some(self.mss);
        match mss {
            Some(m) if m != 0 && self.window != 0 && self.window.is_multiple_of(m) => {
                write!(f, "m{}", self.window / m)?;
            }
            _ => write!(f, "{}", self.window)?,
        }
        match mss {
            Some(m) => write!(f, "_{m}_")?,
            None => f.write_str("_x_")?,
        }
        if self.has(meta::WSCALE) {
            write!(f, "{}_", self.wscale)?;
        } else {
            f.write_str("x_")?;
        }
        let kinds = self.kinds();
        if kinds.is_empty() {
            f.write_str("none")?;
        }
        for (i, &kind) in kinds.iter().enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            match kind {
                0 => f.write_str("E")?,
                1 => f.write_str("N")?,
                2 => f.write_str("M")?,
                3 => f.write_str("W")?,
                4 => f.write_str("S")?,
                8 => f.write_str("T")?,
                k => write!(f, "{k}")?,
            }
        }
        if self.has(meta::MORE) {
            f.write_str("+")?;
        }
        if self.has(meta::MALFORMED) {
            f.write_str("!")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TransportFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for TransportFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed SYN with the given TTL, window, options (kinds, MSS, window scale) and flags.
    fn syn(ttl: u8, window: u16, kinds: &[u8], mss: Option<u16>, ws: Option<u8>) -> SynOptions {
        let mut s = SynOptions {
            window,
            ttl,
            flags: syn_flags::PARSED,
            ..SynOptions::default()
        };
        for (slot, &k) in s.kinds.iter_mut().zip(kinds) {
            *slot = k;
        }
        s.option_count = kinds.len().min(MAX_SYN_OPTIONS) as u8;
        if let Some(m) = mss {
            s.mss = m;
            s.flags |= syn_flags::MSS;
        }
        if let Some(w) = ws {
            s.wscale = w;
            s.flags |= syn_flags::WSCALE;
        }
        if kinds.contains(&8) {
            s.flags |= syn_flags::TIMESTAMP;
        }
        s
    }

    fn check(s: &SynOptions, want: &str) {
        let fp = TransportFingerprint::of(s).expect("a parsed SYN has a fingerprint");
        assert_eq!(fp.to_string(), want, "{s:?}");
    }

    #[test]
    fn the_text_form_follows_the_documented_format() {
        // Linux: 64240 = 44 * 1460, MSS, SACK permitted, timestamp, NOP, window scale 7.
        check(
            &syn(64, 64240, &[2, 4, 8, 1, 3], Some(1460), Some(7)),
            "tcp1_64_m44_1460_7_M-S-T-N-W",
        );
        // Windows: TTL 128, MSS, NOP, window scale 8, NOP, NOP, SACK permitted.
        check(
            &syn(128, 64240, &[2, 1, 3, 1, 1, 4], Some(1460), Some(8)),
            "tcp1_128_m44_1460_8_M-N-W-N-N-S",
        );
        // No options at all (a raw-socket scanner's SYN).
        check(&syn(255, 1024, &[], None, None), "tcp1_255_1024_x_x_none");
        // A window that is no multiple of the MSS, and unknown kinds in decimal.
        check(
            &syn(64, 65535, &[2, 30, 0], Some(1440), None),
            "tcp1_64_65535_1440_x_M-30-E",
        );
        // An MSS of zero never divides.
        check(&syn(64, 0, &[2], Some(0), None), "tcp1_64_0_0_x_M");
    }

    #[test]
    fn the_initial_ttl_is_the_next_common_one() {
        for (ttl, ittl) in [
            (0, 32),
            (1, 32),
            (32, 32),
            (33, 64),
            (57, 64),
            (64, 64),
            (65, 128),
            (117, 128),
            (128, 128),
            (129, 255),
            (255, 255),
        ] {
            check(
                &syn(ttl, 1000, &[], None, None),
                &format!("tcp1_{ittl}_1000_x_x_none"),
            );
        }
    }

    #[test]
    fn cut_and_overlong_options_are_marked() {
        let mut s = syn(64, 1000, &[2, 1], None, None);
        s.flags |= syn_flags::MALFORMED;
        check(&s, "tcp1_64_1000_x_x_M-N!");
        let mut s = syn(64, 1000, &[1; 10], None, None);
        s.flags |= syn_flags::MORE;
        check(&s, "tcp1_64_1000_x_x_N-N-N-N-N-N-N-N-N-N+");
        // A count past the array (never written by the kernel) is clamped.
        let mut s = syn(64, 1000, &[1; 10], None, None);
        s.option_count = 200;
        check(&s, "tcp1_64_1000_x_x_N-N-N-N-N-N-N-N-N-N");
    }

    /// Option bytes of a Linux SYN: MSS 1460, SACK permitted, timestamp, NOP, window scale 7.
    const LINUX: [u8; 20] = [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];

    #[test]
    fn options_are_read_as_the_kernel_reads_them() {
        let s = read_syn(64, 64240, &LINUX);
        assert_eq!((s.mss, s.wscale, s.option_count), (1460, 7, 5));
        assert_eq!(&s.kinds[..5], &[2, 4, 8, 1, 3]);
        let want = syn_flags::PARSED | syn_flags::MSS | syn_flags::WSCALE | syn_flags::TIMESTAMP;
        assert_eq!(s.flags, want);
        check(&s, "tcp1_64_m44_1460_7_M-S-T-N-W");
        // EOL ends the walk; what follows is padding.
        let s = read_syn(64, 1000, &[2, 4, 1, 0, 0, 3, 3, 9]);
        check(&s, "tcp1_64_1000_256_x_M-E");
        // A length below 2, or past the options, ends it with a mark.
        check(&read_syn(64, 1000, &[1, 2, 1, 5]), "tcp1_64_1000_x_x_N-M!");
        check(
            &read_syn(64, 1000, &[3, 3, 5, 2, 8, 1]),
            "tcp1_64_1000_x_5_W-M!",
        );
        check(&read_syn(64, 1000, &[1, 1, 2]), "tcp1_64_1000_x_x_N-N-M!");
        // An MSS of the wrong length is kept as a kind, not a value.
        check(&read_syn(64, 1000, &[2, 3, 5]), "tcp1_64_1000_x_x_M");
        // Eleven NOPs: ten kept.
        check(
            &read_syn(64, 1000, &[1; 11]),
            "tcp1_64_1000_x_x_N-N-N-N-N-N-N-N-N-N+",
        );
        check(&read_syn(64, 1000, &[]), "tcp1_64_1000_x_x_none");
    }

    #[test]
    fn it_is_small_and_canonical() {
        assert_eq!(size_of::<Option<TransportFingerprint>>(), 16);
        // Bytes the fingerprint does not show do not make another one.
        let mut a = syn(64, 1000, &[2, 0], Some(1460), None);
        let mut b = a;
        a.kinds[5] = 9;
        b.wscale = 3;
        b.ttl = 60;
        assert_eq!(TransportFingerprint::of(&a), TransportFingerprint::of(&b));
        // An EOL in the middle of the count (never written by the kernel) ends the kinds.
        a.kinds = [1, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        a.option_count = 3;
        check(&a, "tcp1_64_1000_1460_x_N-E");
    }

    #[test]
    fn an_unparsed_record_has_none() {
        assert_eq!(TransportFingerprint::of(&SynOptions::default()), None);
    }

    #[test]
    fn it_serialises_as_its_text() {
        let fp = TransportFingerprint::of(&syn(64, 64240, &[2], Some(1460), None)).unwrap();
        assert_eq!(
            serde_json::to_string(&fp).unwrap(),
            "\"tcp1_64_m44_1460_x_M\""
        );
    }
}
