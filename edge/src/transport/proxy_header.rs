//! The PROXY protocol header (HAProxy's spec, v1 text and v2 binary) that a load balancer sends
//! as the very first bytes of a connection, before RTMP or TLS, to say who the client is.
//!
//! [`step`] is a sans-IO reader: given the bytes read so far it says exactly how many more to
//! read, or what the header says. Reading exactly that many bytes means no byte after the header
//! (the RTMP handshake, the TLS ClientHello) is ever consumed here, so what follows needs no
//! buffer handed on. Parsing itself is `ppp`'s; the limits are ours: a v1 header is at most 107
//! bytes (the spec's maximum), a v2 header at most [`MAX_V2_HEADER`] bytes.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use tokio::{io::AsyncReadExt, net::TcpStream};

/// Which headers a listener expects (`--proxy-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyMode {
    /// No header: the TCP peer is the client.
    Off,
    /// The text header (HAProxy's `send-proxy`).
    V1,
    /// The binary header (HAProxy's `send-proxy-v2`, AWS NLB, most cloud balancers).
    V2,
    /// Either version.
    Any,
}

/// The spec's longest v1 header (`PROXY TCP6 <39> <39> <5> <5>\r\n`).
pub(crate) const MAX_V1_HEADER: usize = 107;
/// The longest v2 header accepted: the 16-byte preamble, the addresses (36 bytes for IPv6; 216
/// for UNIX sockets) and some room for TLVs (cloud balancers add an endpoint or link ID of a
/// few dozen bytes). Longer is refused: the spec allows 64 KiB, which nobody needs to buffer
/// for an unauthenticated connection.
pub(crate) const MAX_V2_HEADER: usize = 1024;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Enough to tell the versions apart: `PROXY ` or the first six bytes of the v2 signature.
const PREFIX: usize = 6;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// The client's address (the header's source).
    Client(SocketAddr),
    /// No client address: a v2 LOCAL command (the balancer's own health check) or v1
    /// `UNKNOWN`; the TCP peer stands for the client, as the spec says.
    Local,
}

/// The reader's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read exactly this many more bytes (never 0), then call [`step`] again with all of them.
    Need(usize),
    Done(Proxied),
}

/// Why a header was refused (`proxy_header_failures_total{reason}` is [`HeaderError::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a PROXY protocol header")]
    Missing,
    #[error("PROXY protocol {got} header where {want:?} is expected")]
    WrongVersion { got: &'static str, want: ProxyMode },
    #[error("PROXY protocol header longer than {0} bytes")]
    TooLarge(usize),
    #[error("malformed PROXY protocol header: {0}")]
    Invalid(String),
}

impl HeaderError {
    pub fn reason(&self) -> &'static str {
        match self {
            HeaderError::Missing => "missing",
            HeaderError::WrongVersion { .. } => "wrong_version",
            HeaderError::TooLarge(_) => "too_large",
            HeaderError::Invalid(_) => "invalid",
        }
    }
}

/// The next step for the bytes read so far (`buf` holds exactly what earlier steps asked for).
pub fn step(buf: &[u8], mode: ProxyMode) -> Result<Step, HeaderError> {
    if buf.len() < PREFIX {
        return Ok(Step::Need(PREFIX - buf.len()));
    }
    if buf.starts_with(b"PROXY ") {
        if mode == ProxyMode::V2 {
            return Err(HeaderError::WrongVersion { got: "v1", want: mode });
        }
        return step_v1(buf);
    }
    if V2_SIGNATURE.starts_with(&buf[..PREFIX]) {
        if mode == ProxyMode::V1 {
            return Err(HeaderError::WrongVersion { got: "v2", want: mode });
        }
        return step_v2(buf);
    }
    Err(HeaderError::Missing)
}

fn step_v1(buf: &[u8]) -> Result<Step, HeaderError> {
    if !buf.ends_with(b"\r\n") {
        // A byte at a time: the header's end is only known when it is there, and reading past
        // it would take bytes that belong to what follows.
        if buf.len() >= MAX_V1_HEADER {
            return Err(HeaderError::TooLarge(MAX_V1_HEADER));
        }
        return Ok(Step::Need(1));
    }
    let header = ppp::v1::Header::try_from(buf).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    Ok(Step::Done(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Proxied::Client(SocketAddr::new(a.source_address.into(), a.source_port)),
        ppp::v1::Addresses::Tcp6(a) => Proxied::Client(SocketAddr::new(a.source_address.into(), a.source_port)),
        ppp::v1::Addresses::Unknown => Proxied::Local,
    }))
}

fn step_v2(buf: &[u8]) -> Result<Step, HeaderError> {
    const PREAMBLE: usize = 16;
    if buf.len() < PREAMBLE {
        return Ok(Step::Need(PREAMBLE - buf.len()));
    }
    if &buf[..V2_SIGNATURE.len()] != V2_SIGNATURE {
        return Err(HeaderError::Missing);
    }
    let total = PREAMBLE + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if total > MAX_V2_HEADER {
        return Err(HeaderError::TooLarge(MAX_V2_HEADER));
    }
    if buf.len() < total {
        return Ok(Step::Need(total - buf.len()));
    }
    let header = ppp::v2::Header::try_from(buf).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(Step::Done(Proxied::Local));
    }
    Ok(Step::Done(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Proxied::Client(SocketAddr::new(a.source_address.into(), a.source_port)),
        ppp::v2::Addresses::IPv6(a) => Proxied::Client(SocketAddr::new(a.source_address.into(), a.source_port)),
        // A PROXY command over UNIX sockets or without an address family names no TCP client.
        ppp::v2::Addresses::Unix(_) | ppp::v2::Addresses::Unspecified => Proxied::Local,
    }))
}

/// Why reading a header failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("connection closed before the PROXY protocol header ended")]
    Eof,
    #[error("reading the PROXY protocol header: {0}")]
    Io(std::io::Error),
}

impl ReadError {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ReadError::Header(e) => e.reason(),
            ReadError::Eof => "eof",
            ReadError::Io(_) => "io",
        }
    }
}

/// Reads the header off the socket, consuming nothing after it. The caller bounds the time.
pub(crate) async fn read(socket: &mut TcpStream, mode: ProxyMode) -> Result<Proxied, ReadError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match step(&buf, mode)? {
            Step::Done(p) => return Ok(p),
            Step::Need(n) => {
                let at = buf.len();
                buf.resize(at + n, 0);
                match socket.read_exact(&mut buf[at..]).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Eof),
                    Err(e) => return Err(ReadError::Io(e)),
                }
            }
        }
    }
}

/// One trusted source range (`10.0.0.0/8`, `2001:db8::/32`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The peers allowed to send a header (`--proxy-trusted-cidrs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedCidrs(pub Vec<Cidr>);

impl FromStr for TrustedCidrs {
    type Err = String;

    fn from_str(s: &str) -> Result<TrustedCidrs, String> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(Cidr::from_str).collect::<Result<_, _>>().map(TrustedCidrs)
    }
}

impl TrustedCidrs {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// The fuzz target's body (`edge/fuzz`, target `proxy_header`), also run on stable by the
/// tests: byte 0 picks the mode, the rest is the connection's input. Panics on a broken rule:
/// a step asking for nothing, or reading past the limits.
pub fn fuzz_proxy_header(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else { return };
    let mode = [ProxyMode::V1, ProxyMode::V2, ProxyMode::Any, ProxyMode::Any][usize::from(first & 3)];
    let mut len = 0;
    loop {
        match step(&input[..len], mode) {
            Ok(Step::Need(n)) => {
                assert!(n > 0, "a step must ask for at least one byte");
                len += n;
                assert!(len <= MAX_V2_HEADER.max(MAX_V1_HEADER), "read past the header limits: {len}");
                if len > input.len() {
                    return;
                }
            }
            Ok(Step::Done(_)) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], mode: ProxyMode) -> (Result<Step, HeaderError>, usize) {
        let mut len = 0;
        loop {
            match step(&input[..len], mode) {
                Ok(Step::Need(n)) if len + n <= input.len() => len += n,
                other => return (other, len),
            }
        }
    }

    #[test]
    fn v1_gives_the_source_and_consumes_nothing_after_it() {
        let mut input = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 1935\r\n".to_vec();
        let header_len = input.len();
        input.extend_from_slice(&[3, 0, 0, 0]); // the RTMP handshake's C0 and what follows
        let (r, used) = run(&input, ProxyMode::Any);
        assert_eq!(r, Ok(Step::Done(Proxied::Client("192.0.2.7:51234".parse().unwrap()))));
        assert_eq!(used, header_len);
        let (r, _) = run(b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n", ProxyMode::V1);
        assert_eq!(r, Ok(Step::Done(Proxied::Client("[2001:db8::7]:51234".parse().unwrap()))));
        assert_eq!(run(b"PROXY UNKNOWN\r\n", ProxyMode::V1).0, Ok(Step::Done(Proxied::Local)));
    }

    #[test]
    fn v2_gives_the_source_local_is_the_peer() {
        let addrs: (SocketAddr, SocketAddr) = ("198.51.100.9:40000".parse().unwrap(), "10.0.0.1:443".parse().unwrap());
        let mut header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addrs,
        )
        .write_tlv(ppp::v2::Type::NoOp, &[0; 20])
        .unwrap()
        .build()
        .unwrap();
        let header_len = header.len();
        header.extend_from_slice(&[0x16, 3, 1]); // a ClientHello's first bytes
        let (r, used) = run(&header, ProxyMode::V2);
        assert_eq!(r, Ok(Step::Done(Proxied::Client(addrs.0))));
        assert_eq!(used, header_len);
        let local = ppp::v2::Builder::new(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified as u8,
        )
        .build()
        .unwrap();
        assert_eq!(run(&local, ProxyMode::Any).0, Ok(Step::Done(Proxied::Local)));
    }

    #[test]
    fn refusals_say_why() {
        // A plain RTMP client (C0 = 3) and a TLS ClientHello are not headers.
        assert_eq!(run(&[3; 1537], ProxyMode::Any).0, Err(HeaderError::Missing));
        assert_eq!(run(&[0x16, 3, 1, 0, 0xa5, 1], ProxyMode::Any).0, Err(HeaderError::Missing));
        assert!(matches!(
            run(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyMode::V2).0,
            Err(HeaderError::WrongVersion { got: "v1", .. })
        ));
        // No line end within the spec's 107 bytes.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        let (r, used) = run(&long, ProxyMode::V1);
        assert_eq!(r, Err(HeaderError::TooLarge(MAX_V1_HEADER)));
        assert_eq!(used, MAX_V1_HEADER);
        // A v2 length beyond the limit is refused from the preamble, before the body is read.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(run(&big, ProxyMode::V2), (Err(HeaderError::TooLarge(MAX_V2_HEADER)), 16));
        assert!(matches!(run(b"PROXY TCP4 nonsense\r\n", ProxyMode::Any).0, Err(HeaderError::Invalid(_))));
    }

    #[test]
    fn cidrs_match_their_ranges_only() {
        let t: TrustedCidrs = "10.0.0.0/8, 127.0.0.1,2001:db8::/32".parse().unwrap();
        assert!(t.contains("10.200.3.4".parse().unwrap()));
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(t.contains("::ffff:10.0.0.9".parse().unwrap()));
        assert!(t.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!t.contains("127.0.0.2".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        assert!(!t.contains("2001:db9::1".parse().unwrap()));
        let all: TrustedCidrs = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<TrustedCidrs>().is_err());
        assert!("example.com".parse::<TrustedCidrs>().is_err());
    }

    /// Seeded mutations of valid headers through the fuzz body (the `proxy_header` fuzz
    /// target runs the same function under libFuzzer).
    #[test]
    fn mutated_headers_are_handled() {
        let seeds: Vec<Vec<u8>> = vec![
            b"\x02PROXY TCP4 192.0.2.7 10.0.0.1 51234 1935\r\n".to_vec(),
            b"\x02PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n".to_vec(),
            [
                &[1u8][..],
                &ppp::v2::Builder::with_addresses(
                    ppp::v2::Version::Two | ppp::v2::Command::Proxy,
                    ppp::v2::Protocol::Stream,
                    ("[2001:db8::7]:1".parse::<SocketAddr>().unwrap(), "[::1]:2".parse::<SocketAddr>().unwrap()),
                )
                .build()
                .unwrap(),
            ]
            .concat(),
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..20_000 {
            let mut input = seeds[i % seeds.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % input.len();
                match next() % 3 {
                    0 => input[at] = next() as u8,
                    1 => input.insert(at, next() as u8),
                    _ => {
                        input.truncate(at.max(1));
                    }
                }
            }
            fuzz_proxy_header(&input);
        }
    }
}
