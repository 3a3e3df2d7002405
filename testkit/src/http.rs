//! A minimal HTTP/1.0 GET for the edges' own endpoints (`/readyz`, `/metrics`, `/api/v1/*`).
//! It returns `None` instead of failing when the edge is not answering, because the tests poll
//! edges that are starting, draining or dead. Callers that need an answer turn `None` into a
//! test failure themselves. [`metric_value`] and [`metric_series`] read the Prometheus text
//! exposition of `/metrics`.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

/// Most time one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET path` → (status, body), or `None` if the server did not answer in time.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    get_within(addr, path, REQUEST_TIMEOUT).await
}

/// Like [`get`] with another limit on the whole request.
pub async fn get_within(addr: SocketAddr, path: &str, limit: Duration) -> Option<(u16, String)> {
    let work = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    timeout(limit, work).await.ok().flatten()
}

/// The value of one Prometheus exposition series, e.g.
/// `streamfleet_edge_publish_rejections_total{reason="already_active"}`; 0 when the series does
/// not exist (yet). A bare family name sums all its series: `streamfleet_edge_players_active` is
/// every protocol's players.
pub fn metric_value(exposition: &str, series: &str) -> f64 {
    let Some((family, wanted)) = series.strip_suffix('}').and_then(|s| s.split_once('{')) else {
        return metric_series(exposition, series).iter().map(|(_, v)| v).sum();
    };
    // Labels given select every series that has them, summed: `{reason="unknown_key"}` counts
    // the refusals of every protocol once a `protocol` label is added beside `reason`.
    let wanted: Vec<&str> = wanted.split(',').filter(|l| !l.is_empty()).collect();
    metric_series(exposition, family)
        .iter()
        .filter(|(labels, _)| {
            let have: Vec<&str> = labels.split(',').collect();
            wanted.iter().all(|w| have.contains(w))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Every labelled series of one metric family as (labels, value), e.g. all the `reason`s of
/// `streamfleet_edge_publish_rejections_total`.
pub fn metric_series(exposition: &str, family: &str) -> Vec<(String, f64)> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, value) = r.split_once("} ")?;
                    (labels.to_string(), value)
                }
                None => (String::new(), rest.strip_prefix(' ')?),
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_parsed_with_and_without_labels() {
        let text = "# HELP x\nstreamfleet_edge_publishers_active 1\nstreamfleet_edge_publish_rejections_total{reason=\"already_active\"} 99\nstreamfleet_edge_publish_rejections_total{reason=\"unknown_key\"} 2\n";
        assert_eq!(metric_value(text, "streamfleet_edge_publishers_active"), 1.0);
        assert_eq!(metric_value(text, "streamfleet_edge_publish_rejections_total{reason=\"already_active\"}"), 99.0);
        assert_eq!(metric_value(text, "streamfleet_edge_takeovers_total"), 0.0);
        let all = metric_series(text, "streamfleet_edge_publish_rejections_total");
        assert_eq!(
            all,
            vec![("reason=\"already_active\"".to_string(), 99.0), ("reason=\"unknown_key\"".to_string(), 2.0)]
        );
    }

    #[test]
    fn labels_given_select_every_series_that_has_them() {
        let text = "f{protocol=\"rtmp\",reason=\"unknown_key\"} 2\nf{protocol=\"srt\",reason=\"unknown_key\"} 3\nf{protocol=\"srt\",reason=\"disabled\"} 5\n";
        assert_eq!(metric_value(text, "f{reason=\"unknown_key\"}"), 5.0, "both protocols");
        assert_eq!(metric_value(text, "f{protocol=\"srt\",reason=\"unknown_key\"}"), 3.0);
        assert_eq!(metric_value(text, "f{reason=\"unknown_key\",protocol=\"srt\"}"), 3.0, "in any order");
        assert_eq!(metric_value(text, "f{protocol=\"srt\"}"), 8.0);
        assert_eq!(metric_value(text, "f{reason=\"already_active\"}"), 0.0);
        assert_eq!(metric_value(text, "f"), 10.0, "a bare family name: every series");
    }
}
