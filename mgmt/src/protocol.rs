//! The wire format: one JSON object per line in each direction.
//!
//! Request: `{"id": <any JSON, optional>, "cmd": "<string>", "args": {...optional}}`.
//! Reply: `{"id": <same>, "ok": true, "result": <value>}` or
//! `{"id": <same>, "ok": false, "error": {"code": "<snake_case>", "message": "..."}}`.
use serde::Serialize;
use serde_json::Value;

use crate::error::{CtlError, ErrorCode};

/// The longest line (request or reply, without its `\n`) a server accepts: 1 MiB.
pub const MAX_LINE: usize = 1 << 20;

/// A parsed request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed back verbatim; `Value::Null` when the request had none.
    pub id: Value,
    pub cmd: String,
    /// The request's `args` object, or `Value::Null` when absent (or `null`).
    pub args: Value,
}

/// Parses one request line (without its newline; a trailing `\r` is tolerated).
///
/// On failure returns the id to answer with (the request's own id when the line was a
/// JSON object, `null` when it was not JSON at all) and a `bad_request` error.
pub fn parse_request(line: &[u8]) -> Result<Request, (Value, CtlError)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        (
            Value::Null,
            CtlError::bad_request(format!("malformed JSON: {e}")),
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err((
            Value::Null,
            CtlError::bad_request("a request must be a JSON object"),
        ));
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    let cmd = match obj.remove("cmd") {
        Some(Value::String(s)) => s,
        Some(_) => return Err((id, CtlError::bad_request("`cmd` must be a string"))),
        None => return Err((id, CtlError::bad_request("missing `cmd`"))),
    };
    let args = match obj.remove("args") {
        None | Some(Value::Null) => Value::Null,
        Some(a @ Value::Object(_)) => a,
        Some(_) => return Err((id, CtlError::bad_request("`args` must be an object"))),
    };
    Ok(Request { id, cmd, args })
}

#[derive(Serialize)]
struct ReplyLine<'a> {
    id: &'a Value,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a CtlError>,
}

/// Encodes a reply as one line, `\n` included.
pub fn encode_reply(id: &Value, outcome: &Result<Value, CtlError>) -> Vec<u8> {
    let line = match outcome {
        Ok(result) => ReplyLine {
            id,
            ok: true,
            result: Some(result),
            error: None,
        },
        Err(error) => ReplyLine {
            id,
            ok: false,
            result: None,
            error: Some(error),
        },
    };
    let mut out = serde_json::to_vec(&line).unwrap_or_else(|e| {
        // Only a map with non-string keys could fail, and a `Value` has none; stay total anyway.
        let fallback = CtlError::internal(format!("cannot encode reply: {e}"));
        serde_json::to_vec(&ReplyLine {
            id: &Value::Null,
            ok: false,
            result: None,
            error: Some(&fallback),
        })
        .unwrap_or_default()
    });
    out.push(b'\n');
    out
}

#[derive(Serialize)]
struct RequestLine<'a> {
    id: &'a Value,
    cmd: &'a str,
    #[serde(skip_serializing_if = "is_null")]
    args: &'a Value,
}

fn is_null(v: &&Value) -> bool {
    v.is_null()
}

/// Encodes a request as one line, `\n` included (`args` omitted when `null`).
pub fn encode_request(id: &Value, cmd: &str, args: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(&RequestLine { id, cmd, args }).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A decoded reply line.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub id: Value,
    pub outcome: Result<Value, CtlError>,
}

/// Decodes one reply line. An error code this client does not know becomes `internal`
/// with the unknown code prefixed to the message, so newer servers stay readable.
pub fn parse_reply(line: &[u8]) -> Result<Reply, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("malformed reply: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("reply is not a JSON object".into());
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    let outcome = match obj.remove("ok") {
        Some(Value::Bool(true)) => Ok(obj.remove("result").unwrap_or(Value::Null)),
        Some(Value::Bool(false)) => {
            let err = obj
                .remove("error")
                .ok_or("reply has ok:false but no `error`")?;
            let code = err
                .get("code")
                .and_then(Value::as_str)
                .ok_or("reply error has no string `code`")?;
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            Err(match ErrorCode::from_name(code) {
                Some(code) => CtlError { code, message },
                None => CtlError::internal(format!("{code}: {message}")),
            })
        }
        _ => return Err("reply has no boolean `ok`".into()),
    };
    Ok(Reply { id, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_requests() {
        let r = parse_request(br#"{"id":7,"cmd":"status"}"#).unwrap();
        assert_eq!(
            (r.id, r.cmd.as_str(), r.args),
            (json!(7), "status", Value::Null)
        );
        let r = parse_request(b"{\"cmd\":\"x\",\"args\":{\"a\":1}}\r").unwrap();
        assert_eq!((r.id, r.args), (Value::Null, json!({"a": 1})));
        let r = parse_request(br#"{"id":"s","cmd":"x","args":null,"extra":1}"#).unwrap();
        assert_eq!((r.id, r.args), (json!("s"), Value::Null));
    }

    #[test]
    fn rejects_bad_requests_with_the_right_id() {
        let (id, e) = parse_request(b"{nope").unwrap_err();
        assert_eq!((id, e.code), (Value::Null, ErrorCode::BadRequest));
        let (id, e) = parse_request(b"[1,2]").unwrap_err();
        assert_eq!((id, e.code), (Value::Null, ErrorCode::BadRequest));
        let (id, e) = parse_request(br#"{"id":3}"#).unwrap_err();
        assert_eq!((id, e.message.as_str()), (json!(3), "missing `cmd`"));
        let (id, e) = parse_request(br#"{"id":[1],"cmd":5}"#).unwrap_err();
        assert_eq!(
            (id, e.message.as_str()),
            (json!([1]), "`cmd` must be a string")
        );
        let (_, e) = parse_request(br#"{"cmd":"x","args":[1]}"#).unwrap_err();
        assert_eq!(e.message, "`args` must be an object");
    }

    #[test]
    fn replies_round_trip() {
        let ok = encode_reply(&json!("a"), &Ok(json!({"version": 3})));
        assert_eq!(
            ok,
            b"{\"id\":\"a\",\"ok\":true,\"result\":{\"version\":3}}\n"
        );
        let r = parse_reply(ok.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(
            r,
            Reply {
                id: json!("a"),
                outcome: Ok(json!({"version": 3}))
            }
        );

        let err = encode_reply(&Value::Null, &Err(CtlError::conflict("taken")));
        assert_eq!(
            err,
            b"{\"id\":null,\"ok\":false,\"error\":{\"code\":\"conflict\",\"message\":\"taken\"}}\n"
        );
        let r = parse_reply(&err).unwrap();
        assert_eq!(r.outcome, Err(CtlError::conflict("taken")));
    }

    #[test]
    fn unknown_error_codes_stay_readable() {
        let r =
            parse_reply(br#"{"id":1,"ok":false,"error":{"code":"shiny","message":"m"}}"#).unwrap();
        assert_eq!(r.outcome, Err(CtlError::internal("shiny: m")));
        assert!(parse_reply(br#"{"id":1}"#).is_err());
        assert!(parse_reply(br#"{"id":1,"ok":false}"#).is_err());
    }

    #[test]
    fn encodes_requests() {
        assert_eq!(
            encode_request(&json!(1), "status", &Value::Null),
            b"{\"id\":1,\"cmd\":\"status\"}\n"
        );
        let line = encode_request(&json!(2), "backends.drain", &json!({"name": "be1"}));
        let r = parse_request(line.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(
            (r.cmd.as_str(), r.args),
            ("backends.drain", json!({"name": "be1"}))
        );
    }
}
