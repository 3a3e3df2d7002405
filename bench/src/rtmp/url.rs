//! `rtmp://host[:port]/app/name` and `rtmps://` URLs, with an optional `{i}` placeholder that scenarios replace
//! with a client's index (distinct stream names for many publishers).

use std::fmt;

/// A parsed RTMP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    /// Application (everything between the authority and the last `/`).
    pub app: String,
    /// Stream name (publish key or playback name).
    pub name: String,
    /// `rtmps://`: RTMP over TLS.
    pub tls: bool,
}

impl RtmpUrl {
    /// Parses a URL; the name must not be empty.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls) = match (url.strip_prefix("rtmp://"), url.strip_prefix("rtmps://")) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => return Err("must start with rtmp:// or rtmps://".into()),
        };
        let (authority, path) = rest.split_once('/').ok_or("needs /app/name after the host")?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
            None => (authority, if tls { 443 } else { 1935 }),
        };
        if host.is_empty() {
            return Err("empty host".into());
        }
        let (app, name) = path.rsplit_once('/').ok_or("needs /app/name after the host")?;
        if app.is_empty() || name.is_empty() {
            return Err("app and stream name must not be empty".into());
        }
        Ok(RtmpUrl { host: host.to_string(), port, app: app.to_string(), name: name.to_string(), tls })
    }

    /// Parses `template` with every `{i}` replaced by `index`.
    pub fn parse_indexed(template: &str, index: usize) -> Result<Self, String> {
        Self::parse(&template.replace("{i}", &index.to_string()))
    }

    /// `host:port` for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The `tcUrl` sent in `connect`: the URL without the stream name.
    pub fn tc_url(&self) -> String {
        format!("{}://{}:{}/{}", self.scheme(), self.host, self.port, self.app)
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "rtmps" } else { "rtmp" }
    }
}

impl fmt::Display for RtmpUrl {
    /// Never prints the stream name: for publishers it is the secret publish key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}/{}/…", self.scheme(), self.host, self.port, self.app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_and_without_port() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:19350/live/key-1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.app.as_str(), u.name.as_str()), ("127.0.0.1", 19350, "live", "key-1"));
        assert_eq!(u.tc_url(), "rtmp://127.0.0.1:19350/live");
        let u = RtmpUrl::parse("rtmp://example.net/app/inst/stream").unwrap();
        assert_eq!((u.port, u.app.as_str(), u.name.as_str()), (1935, "app/inst", "stream"));
        assert!(!u.to_string().contains("stream"));
    }

    #[test]
    fn rtmps_defaults_to_443() {
        let u = RtmpUrl::parse("rtmps://example.net/live/key").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 443);
        assert_eq!(u.tc_url(), "rtmps://example.net:443/live");
    }

    #[test]
    fn rejects_malformed_urls() {
        for bad in ["http://h/live/x", "rtmp://h", "rtmp://h/live", "rtmp://h/live/", "rtmp://:1/a/b", "rtmp://h:x/a/b"]
        {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn substitutes_the_index() {
        let u = RtmpUrl::parse_indexed("rtmp://h:1/live/bench-{i}", 42).unwrap();
        assert_eq!(u.name, "bench-42");
    }
}
