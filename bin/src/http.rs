//! The least HTTP/1.1 server side the metrics endpoint and the console need, written here
//! rather than pulled in as a server crate: one request a connection, its head bounded in
//! size and time, a body only as long as its Content-Length and bounded too; answered and
//! closed.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request head longer than this is refused: a browser's is a few hundred bytes.
const HEAD_BYTES_MAX: usize = 8 * 1024;
/// A request body longer than this is refused: the console posts small forms.
const BODY_BYTES_MAX: usize = 64 * 1024;
/// A request must arrive whole within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's and a form body's fields, percent-decoded.
    pub fields: BTreeMap<String, String>,
    /// The request line and headers, as read (bounded by the head's limit).
    pub head: String,
}

impl Request {
    /// The value of header `name` (case-insensitive), if the request has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.head, name)
    }
}

/// The value of header `name` in a request head.
fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

/// Reads one request; `None` for one that is not HTTP, too long or too slow, which is
/// answered 400 (when it can be) and closed.
pub async fn read_request(mut stream: TcpStream) -> std::io::Result<Option<(TcpStream, Request)>> {
    let read = tokio::time::timeout(REQUEST_TIMEOUT, read_whole(&mut stream)).await;
    match read {
        Ok(Ok(Some(request))) => Ok(Some((stream, request))),
        Ok(Ok(None)) => {
            respond(&mut stream, "400 Bad Request", "text/plain", b"not an HTTP request\n").await?;
            Ok(None)
        }
        Ok(Err(_)) | Err(_) => Ok(None),
    }
}

async fn read_whole(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut data = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if data.len() > HEAD_BYTES_MAX {
            return Err(std::io::Error::other("request head too long"));
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        data.extend_from_slice(&chunk[..read]);
    };
    let Some(mut request) = parse_head(&data[..head_end]) else { return Ok(None) };
    let length = content_length(&data[..head_end]);
    if length > BODY_BYTES_MAX {
        return Err(std::io::Error::other("request body too long"));
    }
    while data.len() < head_end + length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        data.extend_from_slice(&chunk[..read]);
    }
    let body = &data[head_end..head_end + length];
    if let Ok(body) = std::str::from_utf8(body) {
        request.fields.extend(form_fields(body));
    }
    Ok(Some(request))
}

/// The request line's method and target, with the query's fields.
fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/") || method.is_empty() {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        fields: form_fields(query),
        head: text.to_owned(),
    })
}

/// The Content-Length header's value, 0 without one.
fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head);
    header_value(&text, "content-length").and_then(|value| value.parse().ok()).unwrap_or(0)
}

/// `a=1&b=x%20y` as fields, `+` as a space, percent escapes decoded.
pub fn form_fields(text: &str) -> BTreeMap<String, String> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes a whole answer and closes the connection.
pub async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_and_forms_are_read_as_browsers_send_them() {
        let request =
            parse_head(b"GET /metrics?x=1&name=a%20b+c HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/metrics"));
        assert_eq!(request.fields["name"], "a b c");
        assert_eq!((request.header("HOST"), request.header("Cookie")), (Some("x"), None));
        assert_eq!(parse_head(b"\x00\x00\x00\x10garbage\r\n\r\n"), None);
        assert_eq!(parse_head(b"GET / SPDY\r\n\r\n"), None);
        let fields = form_fields("t=%E4%B8%AD&bad=%zz&end=%4&multi=%\u{e9}x");
        let expected = [("bad", "%zz"), ("end", "%4"), ("multi", "%\u{e9}x"), ("t", "\u{4e2d}")];
        let expected: BTreeMap<String, String> =
            expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(fields, expected);
        assert_eq!(content_length(b"POST / HTTP/1.1\r\ncontent-length: 12\r\n\r\n"), 12);
    }
}
