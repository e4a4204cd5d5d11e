//! Reading a daemon's `--metrics-addr` endpoint (Prometheus text over plain HTTP).

use std::io::{Read, Write};
use std::time::Duration;

/// The whole response (status line, headers and body) of `GET /metrics` on `addr`.
pub fn scrape(addr: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The value of the sample named exactly `series` (name and labels, as written), if present.
pub fn gauge(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_gauge_is_found_by_its_whole_series_name() {
        let text = "# TYPE a gauge\na_total 9\na 3\nb{kind=\"x\"} 4.5\n";
        assert_eq!(super::gauge(text, "a"), Some(3.0));
        assert_eq!(super::gauge(text, "b{kind=\"x\"}"), Some(4.5));
        assert_eq!(super::gauge(text, "b{kind=\"y\"}"), None);
    }
}
