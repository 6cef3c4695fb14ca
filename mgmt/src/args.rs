//! Helpers for [`crate::Control`] implementations: read a request's `args` with errors
//! that name the argument (`invalid_argument: argument `weight`: ...`).
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::CtlError;

/// The argument `key`, deserialized; missing (or `null`) is an `invalid_argument` error.
pub fn get<T: DeserializeOwned>(args: &Value, key: &str) -> Result<T, CtlError> {
    opt(args, key)?.ok_or_else(|| CtlError::invalid(format!("missing argument `{key}`")))
}

/// The argument `key`, deserialized, or `None` when absent or `null`.
pub fn opt<T: DeserializeOwned>(args: &Value, key: &str) -> Result<Option<T>, CtlError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| CtlError::invalid(format!("argument `{key}`: {e}"))),
    }
}

/// The string argument `key`, borrowed.
pub fn get_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, CtlError> {
    match args.get(key) {
        None | Some(Value::Null) => Err(CtlError::invalid(format!("missing argument `{key}`"))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(CtlError::invalid(format!(
            "argument `{key}` must be a string"
        ))),
    }
}

/// Fails with `invalid_argument` naming the first argument not in `allowed`.
pub fn only(args: &Value, allowed: &[&str]) -> Result<(), CtlError> {
    match args {
        Value::Null => Ok(()),
        Value::Object(map) => match map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(CtlError::invalid(format!(
                "unknown argument `{k}` (expected one of: {})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        },
        _ => Err(CtlError::bad_request("`args` must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    #[test]
    fn named_errors() {
        let a = json!({"name": "be1", "weight": 3, "bad": "x"});
        assert_eq!(get_str(&a, "name").unwrap(), "be1");
        assert_eq!(get::<u32>(&a, "weight").unwrap(), 3);
        assert_eq!(opt::<u32>(&a, "port").unwrap(), None);
        let e = get::<u32>(&a, "bad").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.starts_with("argument `bad`:"), "{}", e.message);
        assert_eq!(
            get_str(&a, "nope").unwrap_err().message,
            "missing argument `nope`"
        );
        assert_eq!(
            get_str(&Value::Null, "name").unwrap_err().message,
            "missing argument `name`"
        );
        assert_eq!(
            get_str(&a, "weight").unwrap_err().message,
            "argument `weight` must be a string"
        );
        assert!(only(&a, &["name", "weight", "bad"]).is_ok());
        assert!(only(&Value::Null, &[]).is_ok());
        assert!(only(&a, &["name", "weight"])
            .unwrap_err()
            .message
            .contains("`bad`"));
    }
}
