//! `google.protobuf.Struct` ⇄ JSON objects.

use prost_types::{ListValue, Struct, value::Kind};
use serde_json::Value;

use crate::domain::{DomainError, JsonMap, number};

/// Converts a Struct from a request; `field` names it in errors (NaN and ±∞ are refused).
pub fn struct_to_json(s: Struct, field: &str) -> Result<JsonMap, DomainError> {
    s.fields
        .into_iter()
        .map(|(k, v)| {
            let value = value_to_json(v, field)?;
            Ok((k, value))
        })
        .collect()
}

/// Converts one `google.protobuf.Value`; integral numbers become JSON integers.
pub fn value_to_json(v: prost_types::Value, field: &str) -> Result<Value, DomainError> {
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) => {
            if !n.is_finite() {
                return Err(DomainError::invalid(field, "numbers must be finite"));
            }
            number(n)
        }
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s, field)?),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .into_iter()
                .map(|v| value_to_json(v, field))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Converts a JSON object for a response or request.
pub fn json_to_struct(map: &JsonMap) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect(),
    }
}

/// Converts one JSON value; numbers become doubles, as protobuf has no other kind.
pub fn json_to_value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Value::Object(m) => Kind::StructValue(json_to_struct(m)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_survives_a_round_trip_through_struct_with_canonical_numbers() {
        let original = json!({"a": 1, "b": 2.5, "c": [true, null, "s"], "d": {"e": -3}});
        let map = original.as_object().unwrap();
        let back = struct_to_json(json_to_struct(map), "flags").unwrap();
        assert_eq!(Value::Object(back), original);
    }

    #[test]
    fn non_finite_numbers_are_refused_with_the_field_named() {
        let s = Struct {
            fields: [(
                "x".to_string(),
                prost_types::Value {
                    kind: Some(Kind::NumberValue(f64::NAN)),
                },
            )]
            .into(),
        };
        let err = struct_to_json(s, "relationships").unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.field == "relationships"));
    }
}
