//! Bounds on the free-form JSON a session carries.

use serde_json::Value;

use super::DomainError;

/// A JSON object, as stored in `flags` and `relationships`.
pub type JsonMap = serde_json::Map<String, Value>;

/// Size and depth limits for `flags` and `relationships`.
///
/// The depth limit sits well below what prost can decode (about 33 JSON levels inside
/// a `Struct`), so a caller gets this clear INVALID_ARGUMENT instead of tonic's INTERNAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Longest accepted JSON encoding, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting; the object itself is level 1.
    pub max_depth: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024,
            max_depth: 24,
        }
    }
}

impl JsonLimits {
    /// Checks one top-level object, naming `field` in the error.
    pub fn check(&self, field: &str, map: &JsonMap) -> Result<(), DomainError> {
        let depth = 1 + map.values().map(depth_of).max().unwrap_or(0);
        if depth > self.max_depth {
            return Err(DomainError::invalid(
                field,
                format!("nests {depth} levels deep; at most {} allowed", self.max_depth),
            ));
        }
        let bytes = encoded_len(map);
        if bytes > self.max_bytes {
            return Err(DomainError::invalid(
                field,
                format!("is {bytes} bytes as JSON; at most {} allowed", self.max_bytes),
            ));
        }
        Ok(())
    }
}

/// The largest integer a protobuf `Struct` (a double) holds exactly: 2^53. Integers
/// the service writes into session JSON must stay within ±this, or they would come
/// back from the wire as a different number.
pub const MAX_EXACT_INT: i64 = 1 << 53;

/// A JSON number in canonical form: integral values within ±2^53 as integers.
///
/// Protobuf `Struct` numbers are doubles; without one canonical form `85` and `85.0`
/// would compare unequal and a client's optimistic state would never match the server's.
pub fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() <= MAX_EXACT_INT as f64 {
        Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

fn depth_of(value: &Value) -> usize {
    match value {
        Value::Object(m) => 1 + m.values().map(depth_of).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

/// Length of the compact JSON encoding, without allocating it.
pub(crate) fn encoded_len(map: &JsonMap) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Map to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, map);
    counter.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> JsonMap {
        let mut v = json!(1);
        for _ in 1..levels {
            v = json!({ "a": v });
        }
        json!({ "a": v }).as_object().unwrap().clone()
    }

    #[test]
    fn depth_counts_the_object_itself_as_level_one() {
        let limits = JsonLimits::default();
        assert!(limits.check("flags", &nested(24)).is_ok());
        let err = limits.check("flags", &nested(25)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.field == "flags"));
    }

    #[test]
    fn size_is_measured_on_the_compact_encoding() {
        let limits = JsonLimits {
            max_bytes: 20,
            max_depth: 24,
        };
        let small = json!({ "k": "0123456789" }).as_object().unwrap().clone();
        assert_eq!(encoded_len(&small), 18);
        assert!(limits.check("flags", &small).is_ok());
        let big = json!({ "k": "0123456789abc" }).as_object().unwrap().clone();
        assert!(limits.check("flags", &big).is_err());
    }
}
