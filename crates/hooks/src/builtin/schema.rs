//! A documented subset of JSON Schema, enough for "these fields, of these types".
//!
//! Supported keywords: `type` (a name or a list of names: object, array, string, number,
//! integer, boolean, null), `properties`, `required`, `additionalProperties` (a boolean),
//! `items` (one schema for every element), `enum`, `const`, `minimum`, `maximum`,
//! `minLength`, `maxLength`, `minItems`, `maxItems`. Annotations (`$schema`, `$id`, `title`,
//! `description`, `default`, `examples`, `$comment`) are ignored. Any other keyword (`$ref`,
//! `oneOf`, `pattern`, `format`, ...) is refused when the schema is loaded, so a schema never
//! silently checks less than it says. A full implementation would need a JSON-Schema crate
//! with a large dependency tree; this subset covers the common "required fields and types".

use std::collections::BTreeMap;

use serde_json::Value;

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "default",
    "examples",
    "$comment",
];

/// A compiled schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    types: Option<Vec<String>>,
    properties: BTreeMap<String, Schema>,
    required: Vec<String>,
    additional_properties: bool,
    items: Option<Box<Schema>>,
    allowed: Option<Vec<Value>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
}

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

impl Schema {
    /// Compiles a schema document; refuses keywords outside the subset.
    pub fn compile(doc: &Value) -> Result<Schema, String> {
        compile_at(doc, "#")
    }

    /// Checks a value; the error names the path of the first problem.
    pub fn check(&self, v: &Value) -> Result<(), String> {
        check_at(self, v, "$")
    }
}

fn compile_at(doc: &Value, at: &str) -> Result<Schema, String> {
    let obj = match doc {
        Value::Bool(true) => return Ok(Schema::permissive()),
        Value::Object(o) => o,
        _ => return Err(format!("{at}: a schema must be an object")),
    };
    let mut s = Schema::permissive();
    let usize_of = |k: &str, v: &Value| {
        v.as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("{at}/{k}: must be a non-negative integer"))
    };
    for (k, v) in obj {
        match k.as_str() {
            "type" => {
                let names: Vec<String> = match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .map(|t| t.as_str().map(str::to_string))
                        .collect::<Option<_>>()
                        .ok_or_else(|| format!("{at}/type: names must be strings"))?,
                    _ => return Err(format!("{at}/type: must be a name or a list")),
                };
                if let Some(bad) = names.iter().find(|n| !TYPES.contains(&n.as_str())) {
                    return Err(format!("{at}/type: unknown type {bad:?}"));
                }
                s.types = Some(names);
            }
            "properties" => {
                let props = v
                    .as_object()
                    .ok_or_else(|| format!("{at}/properties: must be an object"))?;
                for (name, sub) in props {
                    s.properties
                        .insert(name.clone(), compile_at(sub, &format!("{at}/{name}"))?);
                }
            }
            "required" => {
                s.required = v
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|n| n.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                    })
                    .ok_or_else(|| format!("{at}/required: must be a list of names"))?;
            }
            "additionalProperties" => {
                s.additional_properties = v.as_bool().ok_or_else(|| {
                    format!("{at}/additionalProperties: only true or false are supported")
                })?;
            }
            "items" => s.items = Some(Box::new(compile_at(v, &format!("{at}/items"))?)),
            "enum" => {
                s.allowed = Some(
                    v.as_array()
                        .cloned()
                        .ok_or_else(|| format!("{at}/enum: must be a list"))?,
                )
            }
            "const" => s.allowed = Some(vec![v.clone()]),
            "minimum" => s.minimum = v.as_f64(),
            "maximum" => s.maximum = v.as_f64(),
            "minLength" => s.min_length = Some(usize_of(k, v)?),
            "maxLength" => s.max_length = Some(usize_of(k, v)?),
            "minItems" => s.min_items = Some(usize_of(k, v)?),
            "maxItems" => s.max_items = Some(usize_of(k, v)?),
            a if ANNOTATIONS.contains(&a) => {}
            other => {
                return Err(format!(
                    "{at}: keyword {other:?} is not in the supported JSON Schema subset"
                ))
            }
        }
    }
    Ok(s)
}

impl Schema {
    fn permissive() -> Schema {
        Schema {
            additional_properties: true,
            ..Default::default()
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_at(s: &Schema, v: &Value, at: &str) -> Result<(), String> {
    if let Some(types) = &s.types {
        let ok = types.iter().any(|t| match t.as_str() {
            "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
            t => t == type_name(v),
        });
        if !ok {
            return Err(format!(
                "{at}: expected {}, got {}",
                types.join(" or "),
                type_name(v)
            ));
        }
    }
    if let Some(allowed) = &s.allowed {
        if !allowed.contains(v) {
            return Err(format!("{at}: {v} is not one of the allowed values"));
        }
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if s.minimum.is_some_and(|m| x < m) || s.maximum.is_some_and(|m| x > m) {
                return Err(format!("{at}: {x} is out of range"));
            }
        }
        Value::String(t) => {
            let n = t.chars().count();
            if s.min_length.is_some_and(|m| n < m) || s.max_length.is_some_and(|m| n > m) {
                return Err(format!("{at}: length {n} is out of range"));
            }
        }
        Value::Array(items) => {
            let n = items.len();
            if s.min_items.is_some_and(|m| n < m) || s.max_items.is_some_and(|m| n > m) {
                return Err(format!("{at}: {n} items is out of range"));
            }
            if let Some(item) = &s.items {
                for (i, e) in items.iter().enumerate() {
                    check_at(item, e, &format!("{at}[{i}]"))?;
                }
            }
        }
        Value::Object(fields) => {
            if let Some(missing) = s.required.iter().find(|r| !fields.contains_key(*r)) {
                return Err(format!("{at}: required field {missing:?} is missing"));
            }
            for (k, fv) in fields {
                match s.properties.get(k) {
                    Some(sub) => check_at(sub, fv, &format!("{at}.{k}"))?,
                    None if !s.additional_properties => {
                        return Err(format!("{at}: field {k:?} is not allowed"))
                    }
                    None => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, v: Value) -> Result<(), String> {
        Schema::compile(&schema)?.check(&v)
    }

    #[test]
    fn subset_checks() {
        let order = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["id", "amount"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "amount": {"type": "number", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}},
                "kind": {"enum": ["a", "b"]}
            }
        });
        assert!(check(order.clone(), json!({"id": "x", "amount": 3})).is_ok());
        let e = check(order.clone(), json!({"id": "x"})).unwrap_err();
        assert!(e.contains("amount"), "{e}");
        assert!(check(order.clone(), json!({"id": "x", "amount": -1})).is_err());
        assert!(check(order.clone(), json!({"id": "x", "amount": 1, "tags": [1]})).is_err());
        assert!(check(order.clone(), json!({"id": "x", "amount": 1, "kind": "c"})).is_err());
        assert!(check(order, json!([1])).is_err());
        assert!(check(json!({"type": "integer"}), json!(1.5)).is_err());
        assert!(check(json!({"additionalProperties": false}), json!({"a": 1})).is_err());
        let e = Schema::compile(&json!({"oneOf": []})).unwrap_err();
        assert!(e.contains("oneOf"), "{e}");
    }
}
