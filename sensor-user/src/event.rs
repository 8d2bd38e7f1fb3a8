//! Decoding ring-buffer records into [`Segment`]s, with length checks and typed errors.
//!
//! The kernel writes segment records (an [`EventHeader`] and a data area of the size class of
//! the captured bytes, `sensor_common::data_class`, at most `RequestEvent`/`ResponseEvent`) or
//! a [`ControlEvent`] for SYN/FIN/RST (a bare [`EventHeader`] is still accepted, as a control
//! record without SYN fields); nothing about a record is trusted before it is checked.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sensor_common::{
    Addr, ControlEvent, Direction, EventHeader, EventKind, REQ_DATA_LEN, RESP_DATA_LEN, SynOptions,
    is_v4_mapped, syn_flags, tcp_flags,
};

use crate::segment::Segment;

const HEADER_LEN: usize = size_of::<EventHeader>();

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than a header.
    #[error("record of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    Short {
        /// Record length.
        len: usize,
    },
    /// Unknown kind.
    #[error("unknown event kind {kind}")]
    Kind {
        /// The kind field.
        kind: u32,
    },
    /// Unknown direction.
    #[error("unknown direction {direction}")]
    Direction {
        /// The direction field.
        direction: u8,
    },
    /// IP version other than 4 or 6, or an address that does not match it.
    #[error("bad ip version {version}")]
    IpVersion {
        /// The version field.
        version: u8,
    },
    /// The captured length exceeds the record, the data area, or the payload length.
    #[error(
        "captured length {captured} exceeds the record ({available} bytes) or payload length {payload_len}"
    )]
    CapturedLen {
        /// Claimed captured length.
        captured: u32,
        /// Bytes after the header (capped at the data area size).
        available: usize,
        /// Claimed payload length.
        payload_len: u32,
    },
}

/// A decoded record: the header and the captured payload bytes.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The header, copied out of the record.
    pub header: EventHeader,
    /// Which way the segment went.
    pub direction: Direction,
    /// Captured payload.
    pub payload: &'a [u8],
    /// A client SYN's fields from a control record (`syn_flags::PARSED` set, the segment a SYN
    /// without ACK, ingress); `None` otherwise.
    pub syn: Option<SynOptions>,
}

/// Decodes one record.
pub fn decode(record: &[u8]) -> Result<Event<'_>, DecodeError> {
    if record.len() < HEADER_LEN {
        return Err(DecodeError::Short { len: record.len() });
    }
    // SAFETY: the length was checked; EventHeader is Pod (every bit pattern valid), and the read
    // is unaligned-safe.
    let header: EventHeader =
        unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<EventHeader>()) };
    let direction = match header.direction {
        0 => Direction::Ingress,
        1 => Direction::Egress,
        direction => return Err(DecodeError::Direction { direction }),
    };
    let data_cap = match direction {
        Direction::Ingress => REQ_DATA_LEN,
        Direction::Egress => RESP_DATA_LEN,
    };
    let kind = match header.kind {
        k if k == EventKind::Segment as u32 => EventKind::Segment,
        k if k == EventKind::Control as u32 => EventKind::Control,
        kind => return Err(DecodeError::Kind { kind }),
    };
    let v4 = is_v4_mapped(&header.src) && is_v4_mapped(&header.dst);
    match header.ip_version {
        4 if v4 => {}
        6 if !v4 => {}
        version => return Err(DecodeError::IpVersion { version }),
    }
    let available = (record.len() - HEADER_LEN).min(data_cap);
    let captured = header.captured_len as usize;
    let bad_len = captured > available
        || header.captured_len > header.payload_len
        || (kind == EventKind::Control && captured != 0);
    if bad_len {
        return Err(DecodeError::CapturedLen {
            captured: header.captured_len,
            available,
            payload_len: header.payload_len,
        });
    }
    let syn = if kind == EventKind::Control
        && direction == Direction::Ingress
        && header.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
        && record.len() >= size_of::<ControlEvent>()
    {
        // SAFETY: the length was checked; SynOptions is Pod, and the read is unaligned-safe.
        let syn: SynOptions = unsafe {
            std::ptr::read_unaligned(record.as_ptr().add(HEADER_LEN).cast::<SynOptions>())
        };
        (syn.flags & syn_flags::PARSED != 0).then_some(syn)
    } else {
        None
    };
    Ok(Event {
        header,
        direction,
        payload: &record[HEADER_LEN..HEADER_LEN + captured],
        syn,
    })
}

/// Converts a stored address to an [`IpAddr`].
pub fn addr_to_ip(addr: &Addr) -> IpAddr {
    if is_v4_mapped(addr) {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}

/// Converts an [`IpAddr`] to the stored form.
pub fn ip_to_addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => sensor_common::v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl<'a> Event<'a> {
    /// The segment this event describes, with its timestamp converted by `to_unix`.
    pub fn segment(&self, to_unix: impl Fn(u64) -> u64) -> Segment<'a> {
        let h = &self.header;
        Segment {
            ts_ns: to_unix(h.ts_ns),
            src: SocketAddr::new(addr_to_ip(&h.src), h.src_port),
            dst: SocketAddr::new(addr_to_ip(&h.dst), h.dst_port),
            seq: h.seq,
            ack: h.ack,
            flags: h.tcp_flags,
            payload_len: h.payload_len,
            payload: self.payload,
            syn: self.syn,
        }
    }
}

#[cfg(test)]
mod tests {
    use sensor_common::{RequestEvent, v4_mapped};

    use super::*;

    fn header() -> EventHeader {
        EventHeader {
            kind: EventKind::Segment as u32,
            captured_len: 5,
            ts_ns: 42,
            src: v4_mapped([198, 51, 100, 2]),
            dst: v4_mapped([198, 51, 100, 1]),
            src_port: 40000,
            dst_port: 80,
            seq: 7,
            ack: 9,
            payload_len: 5,
            ifindex: 3,
            tcp_flags: 0x18,
            direction: Direction::Ingress as u8,
            ip_version: 4,
            reserved: 0,
        }
    }

    fn record(h: EventHeader, data: &[u8]) -> Vec<u8> {
        let mut ev = RequestEvent {
            header: h,
            data: [0; REQ_DATA_LEN],
        };
        ev.data[..data.len()].copy_from_slice(data);
        // SAFETY: RequestEvent is plain data without padding.
        unsafe {
            std::slice::from_raw_parts((&raw const ev).cast::<u8>(), size_of::<RequestEvent>())
        }
        .to_vec()
    }

    /// A control record of `h` (made a control header) with `syn` after it.
    fn control(mut h: EventHeader, flags: u8, syn: SynOptions) -> Vec<u8> {
        h.kind = EventKind::Control as u32;
        h.captured_len = 0;
        h.payload_len = 0;
        h.tcp_flags = flags;
        let ev = ControlEvent { header: h, syn };
        // SAFETY: ControlEvent is plain data without padding.
        unsafe {
            std::slice::from_raw_parts((&raw const ev).cast::<u8>(), size_of::<ControlEvent>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_the_syn_fields_of_a_client_syn_only() {
        let linux = crate::http::transport::read_syn(
            64,
            64240,
            &[
                2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
            ],
        );
        let syn = tcp_flags::SYN;
        let rec = control(header(), syn, linux);
        assert_eq!(rec.len(), 96);
        let ev = decode(&rec).expect("valid control record");
        assert_eq!(ev.syn, Some(linux));
        assert_eq!(ev.segment(|t| t).syn, Some(linux));
        // Not parsed by the kernel, a SYN-ACK, a FIN, an egress record: none.
        assert_eq!(
            decode(&control(header(), syn, SynOptions::default()))
                .unwrap()
                .syn,
            None
        );
        for flags in [syn | tcp_flags::ACK, tcp_flags::FIN] {
            assert_eq!(decode(&control(header(), flags, linux)).unwrap().syn, None);
        }
        let mut egress = header();
        egress.direction = Direction::Egress as u8;
        assert_eq!(decode(&control(egress, syn, linux)).unwrap().syn, None);
        // A bare 72-byte control header (the layout before the SYN fields) still decodes.
        let short = &rec[..HEADER_LEN];
        let ev = decode(short).expect("a bare header is a control record");
        assert_eq!((ev.syn, ev.payload.len()), (None, 0));
        // A segment record never has them.
        assert_eq!(decode(&record(header(), b"GET /")).unwrap().syn, None);
    }

    #[test]
    fn decodes_a_segment() {
        let rec = record(header(), b"GET /");
        let ev = decode(&rec).expect("valid record");
        assert_eq!(ev.payload, b"GET /");
        let seg = ev.segment(|t| t + 1);
        assert_eq!(seg.ts_ns, 43);
        assert_eq!(seg.src, "198.51.100.2:40000".parse().unwrap());
        assert_eq!(seg.dst, "198.51.100.1:80".parse().unwrap());
        assert_eq!((seg.seq, seg.ack, seg.payload_len), (7, 9, 5));
    }

    #[test]
    fn decodes_ipv6_and_control() {
        let mut h = header();
        h.src = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
        h.dst = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        h.ip_version = 6;
        h.kind = EventKind::Control as u32;
        h.captured_len = 0;
        h.payload_len = 0;
        let bytes = record(h, b"");
        let ev = decode(&bytes[..HEADER_LEN]).expect("header-only control record");
        assert_eq!(
            ev.segment(|t| t).src.ip(),
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn rejects_bad_records() {
        let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
            ("empty", vec![], DecodeError::Short { len: 0 }),
            ("short", vec![0; 71], DecodeError::Short { len: 71 }),
            (
                "garbage kind",
                {
                    let mut h = header();
                    h.kind = 77;
                    record(h, b"GET /")
                },
                DecodeError::Kind { kind: 77 },
            ),
            (
                "bad direction",
                {
                    let mut h = header();
                    h.direction = 9;
                    record(h, b"GET /")
                },
                DecodeError::Direction { direction: 9 },
            ),
            (
                "v6 flag on v4 addresses",
                {
                    let mut h = header();
                    h.ip_version = 6;
                    record(h, b"GET /")
                },
                DecodeError::IpVersion { version: 6 },
            ),
            (
                "captured beyond truncated record",
                record(header(), b"GET /")[..HEADER_LEN + 3].to_vec(),
                DecodeError::CapturedLen {
                    captured: 5,
                    available: 3,
                    payload_len: 5,
                },
            ),
            (
                "captured above payload length",
                {
                    let mut h = header();
                    h.payload_len = 4;
                    record(h, b"GET /")
                },
                DecodeError::CapturedLen {
                    captured: 5,
                    available: REQ_DATA_LEN,
                    payload_len: 4,
                },
            ),
            (
                "captured beyond data area",
                {
                    let mut h = header();
                    h.captured_len = 4000;
                    h.payload_len = 4000;
                    record(h, b"")
                },
                DecodeError::CapturedLen {
                    captured: 4000,
                    available: REQ_DATA_LEN,
                    payload_len: 4000,
                },
            ),
            (
                "control with payload",
                {
                    let mut h = header();
                    h.kind = EventKind::Control as u32;
                    record(h, b"GET /")
                },
                DecodeError::CapturedLen {
                    captured: 5,
                    available: REQ_DATA_LEN,
                    payload_len: 5,
                },
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(decode(&bytes).map(|_| ()), Err(want), "case {name}");
        }
    }

    #[test]
    fn every_truncation_of_a_valid_record_is_handled() {
        let rec = record(header(), b"GET /");
        for len in 0..rec.len() {
            let got = decode(&rec[..len]);
            if len < HEADER_LEN + 5 {
                assert!(got.is_err(), "length {len} must be rejected");
            } else {
                assert_eq!(got.expect("long enough").payload, b"GET /");
            }
        }
    }
}
