//! The switch's own answers for rules whose `action` is not a pool: `deny`, `redirect`
//! and `respond` (see [`crate::config::RuleAction`]). `deny` and `respond` are built
//! once, when the rules are compiled; a redirect's Location depends on the request, so
//! it is built per request (one small allocation, on a path where no backend is
//! involved at all).
use std::sync::Arc;

use crate::config::{PrefixRewrite, RuleAction};
use crate::http::RequestHead;

/// What a matching rule does with a request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send it to this pool.
    Pool(crate::PoolId),
    /// Answer with these bytes (a complete response, `Connection: close`).
    Respond(Arc<[u8]>),
    /// Answer with a redirect built from the request.
    Redirect(Arc<Redirect>),
    /// Answer with the switch's own error response for this status
    /// ([`crate::error_response`]), as for a request it cannot parse: never a rule's
    /// action, but what [`crate::Router::decide`] gives a request whose path cannot be
    /// normalised (400).
    Error(u16),
}

/// A compiled `redirect` action.
#[derive(Debug, Clone)]
pub struct Redirect {
    status: u16,
    location: String,
    replace_prefix: Option<PrefixRewrite>,
}

impl Redirect {
    /// The complete redirect response for `req`.
    pub fn response(&self, req: &RequestHead<'_>) -> Vec<u8> {
        let location = self.location_for(req.host.unwrap_or(""), req.path);
        let body = format!("Redirecting to {location}\n");
        build(
            self.status,
            &[("Location", location.as_str())],
            "text/plain",
            body.as_bytes(),
        )
    }

    /// The Location for a request with this Host and path (query included).
    pub fn location_for(&self, host: &str, path: &str) -> String {
        let path = match &self.replace_prefix {
            Some(r) => match path.strip_prefix(r.from.as_str()) {
                Some(rest) => format!("{}{rest}", r.to),
                None => path.to_string(),
            },
            None => path.to_string(),
        };
        // The request's bytes were checked by the parser (no CR/LF can reach here);
        // the template was checked by the config.
        self.location
            .replace("{host}", host)
            .replace("{path}", &path)
    }
}

impl Action {
    /// Compiles a rule's action (already validated).
    pub fn compile(a: &RuleAction) -> Action {
        match a {
            RuleAction::Deny { status } => {
                let reason = reason(*status);
                let body = format!("{reason}\n");
                Action::Respond(build(*status, &[], "text/plain", body.as_bytes()).into())
            }
            RuleAction::Redirect {
                status,
                location,
                replace_prefix,
            } => Action::Redirect(Arc::new(Redirect {
                status: *status,
                location: location.clone(),
                replace_prefix: replace_prefix.clone(),
            })),
            RuleAction::Respond {
                status,
                headers,
                content_type,
                body,
            } => {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                Action::Respond(build(*status, &h, content_type, body.as_bytes()).into())
            }
        }
    }
}

/// An HTTP/1.1 response with `Connection: close` and a Content-Length.
pub fn build(status: u16, headers: &[(&str, &str)], content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// The reason phrase of a status (RFC 9110 section 15), "Status" for unknown ones.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request;

    #[test]
    fn deny_and_respond_are_complete_responses() {
        let Action::Respond(r) = Action::compile(&RuleAction::Deny { status: 403 }) else {
            panic!("deny responds")
        };
        let text = std::str::from_utf8(&r).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains("Content-Length: 10\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nForbidden\n"), "{text}");
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("Retry-After".to_string(), "120".to_string());
        let Action::Respond(r) = Action::compile(&RuleAction::Respond {
            status: 503,
            headers,
            content_type: "text/html".into(),
            body: "<h1>maintenance</h1>".into(),
        }) else {
            panic!("respond responds")
        };
        let text = std::str::from_utf8(&r).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 120\r\n"));
        assert!(text.contains("Content-Type: text/html\r\nContent-Length: 20\r\n"));
        assert!(text.ends_with("<h1>maintenance</h1>"));
    }

    #[test]
    fn redirect_templates() {
        let r = Redirect {
            status: 308,
            location: "https://{host}{path}".into(),
            replace_prefix: Some(PrefixRewrite {
                from: "/old/".into(),
                to: "/new/".into(),
            }),
        };
        assert_eq!(
            r.location_for("a.example:8080", "/old/x?y=1"),
            "https://a.example:8080/new/x?y=1"
        );
        assert_eq!(
            r.location_for("a.example", "/other"),
            "https://a.example/other"
        );
        let head = b"GET /old/p?q HTTP/1.1\r\nHost: shop.example\r\n\r\n";
        let req = parse_request(head).unwrap();
        let resp = String::from_utf8(r.response(&req)).unwrap();
        assert!(
            resp.starts_with(
                "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://shop.example/new/p?q\r\n"
            ),
            "{resp}"
        );
    }
}
