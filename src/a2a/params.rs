//! Lenient, precise reading of request params. Real clients and conformance kits send
//! snake_case (`task_id`) as well as the ProtoJSON camelCase (`taskId`); both are accepted.
//! Every failure names the field and what was wrong with it.

use serde_json::{Map, Value};

/// A field that is missing or has the wrong type or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> InvalidField {
        InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A JSON object whose keys may be camelCase or snake_case.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// Dotted path of this object inside the request, for error messages (`""` at the top).
    path: String,
    fields: Map<String, Value>,
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Params {
    /// Reads request params; absent params are an empty object.
    pub fn from_value(value: Option<Value>) -> Result<Params, InvalidField> {
        match value {
            None | Some(Value::Null) => Ok(Params::default()),
            Some(Value::Object(fields)) => Ok(Params {
                path: String::new(),
                fields,
            }),
            Some(other) => Err(InvalidField::new(
                "params",
                format!("must be an object, got {}", kind_of(&other)),
            )),
        }
    }

    /// Refuses any field not in `known` (camelCase names; their snake_case spellings pass too),
    /// naming the first unknown one and the fields there are.
    pub fn only(&self, known: &[&str]) -> Result<(), InvalidField> {
        let unknown = self.fields.keys().find(|key| {
            !known
                .iter()
                .any(|k| *k == key.as_str() || snake_case(k) == **key)
        });
        match unknown {
            None => Ok(()),
            Some(key) => Err(InvalidField::new(
                self.qualified(key),
                format!(
                    "is not a known field; expected one of: {}",
                    known.join(", ")
                ),
            )),
        }
    }

    fn qualified(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The value under `camel` or its snake_case spelling; both given and different is an error.
    fn raw(&self, camel: &str) -> Result<Option<&Value>, InvalidField> {
        let snake = snake_case(camel);
        let a = self.fields.get(camel).filter(|v| !v.is_null());
        let b = if snake != camel {
            self.fields.get(&snake).filter(|v| !v.is_null())
        } else {
            None
        };
        match (a, b) {
            (Some(x), Some(y)) if x != y => Err(InvalidField::new(
                self.qualified(camel),
                format!("is given twice, as `{camel}` and `{snake}`, with different values"),
            )),
            (Some(x), _) | (None, Some(x)) => Ok(Some(x)),
            (None, None) => Ok(None),
        }
    }

    /// An optional string; an empty string counts as absent (ProtoJSON default).
    pub fn string(&self, camel: &str) -> Result<Option<String>, InvalidField> {
        match self.raw(camel)? {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(InvalidField::new(
                self.qualified(camel),
                format!("must be a string, got {}", kind_of(other)),
            )),
        }
    }

    /// A required, non-empty string.
    pub fn required_string(&self, camel: &str) -> Result<String, InvalidField> {
        self.string(camel)?
            .ok_or_else(|| InvalidField::new(self.qualified(camel), "is required"))
    }

    /// An optional whole number (ProtoJSON may send int32 as a string).
    pub fn integer(&self, camel: &str) -> Result<Option<i64>, InvalidField> {
        let field = || self.qualified(camel);
        match self.raw(camel)? {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| InvalidField::new(field(), "must be a whole number")),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| InvalidField::new(field(), "must be a whole number")),
            Some(other) => Err(InvalidField::new(
                field(),
                format!("must be a whole number, got {}", kind_of(other)),
            )),
        }
    }

    /// An optional boolean.
    pub fn boolean(&self, camel: &str) -> Result<Option<bool>, InvalidField> {
        match self.raw(camel)? {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(InvalidField::new(
                self.qualified(camel),
                format!("must be true or false, got {}", kind_of(other)),
            )),
        }
    }

    /// An optional array, as raw values.
    pub fn raw_array(&self, camel: &str) -> Result<Option<Vec<Value>>, InvalidField> {
        match self.raw(camel)? {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.clone())),
            Some(other) => Err(InvalidField::new(
                self.qualified(camel),
                format!("must be an array, got {}", kind_of(other)),
            )),
        }
    }

    /// An optional nested object.
    pub fn object(&self, camel: &str) -> Result<Option<Params>, InvalidField> {
        match self.raw(camel)? {
            None => Ok(None),
            Some(Value::Object(fields)) => Ok(Some(Params {
                path: self.qualified(camel),
                fields: fields.clone(),
            })),
            Some(other) => Err(InvalidField::new(
                self.qualified(camel),
                format!("must be an object, got {}", kind_of(other)),
            )),
        }
    }
}

/// Checks an identifier (task id, config id, tenant) that becomes part of a storage key and a
/// URL path: non-empty, at most 256 bytes, no control characters.
pub fn check_id(field: &str, value: &str) -> Result<(), InvalidField> {
    if value.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if value.len() > 256 {
        return Err(InvalidField::new(field, "must be at most 256 bytes long"));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_and_snake_case_are_both_read() {
        let p = Params::from_value(Some(json!({"task_id": "t1", "pageSize": 5}))).unwrap();
        assert_eq!(p.string("taskId").unwrap().as_deref(), Some("t1"));
        assert_eq!(p.integer("pageSize").unwrap(), Some(5));
        let p = Params::from_value(Some(json!({"page_size": "7"}))).unwrap();
        assert_eq!(p.integer("pageSize").unwrap(), Some(7));
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let p =
            Params::from_value(Some(json!({"url": 5, "authentication": {"scheme": []}}))).unwrap();
        assert_eq!(
            p.string("url").unwrap_err().to_string(),
            "`url` must be a string, got a number"
        );
        let auth = p.object("authentication").unwrap().unwrap();
        assert_eq!(
            auth.string("scheme").unwrap_err().to_string(),
            "`authentication.scheme` must be a string, got an array"
        );
        assert_eq!(
            p.required_string("taskId").unwrap_err().to_string(),
            "`taskId` is required"
        );
        let twice = Params::from_value(Some(json!({"taskId": "a", "task_id": "b"}))).unwrap();
        assert!(
            twice
                .string("taskId")
                .unwrap_err()
                .reason
                .contains("given twice")
        );
        assert!(Params::from_value(Some(json!([1]))).is_err());
    }

    #[test]
    fn ids_with_control_characters_or_too_long_are_refused() {
        assert!(check_id("taskId", "ok-id").is_ok());
        assert!(check_id("taskId", "").is_err());
        assert!(check_id("taskId", "a\u{0}b").is_err());
        assert!(check_id("taskId", &"x".repeat(257)).is_err());
    }
}
