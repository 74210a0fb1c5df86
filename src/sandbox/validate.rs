//! Request-body validation in django-ninja's style: every problem becomes one
//! `{"type", "loc": ["body", "payload", field], "msg"}` item of a 422 `detail`.
//!
//! Stricter than the documentation requires on purpose: unknown fields are
//! rejected (`extra_forbidden`) so that a client's typo is caught, and types are
//! checked without coercion (`"5"` is not an integer).

use serde_json::{Map, Value, json};

/// Property types the API accepts.
const PROPERTY_TYPES: &[&str] = &[
    "Detached",
    "Semi-detached",
    "Bungalow",
    "Terraced",
    "End-terrace",
    "Flat",
];

/// Occupant types the API accepts.
const OCCUPANT_TYPES: &[&str] = &[
    "Students",
    "Working adults",
    "At home adults",
    "Young family",
    "Older family",
    "Retirees",
];

/// User roles a partner may set.
const ROLES: &[&str] = &["admin", "staff", "user"];

/// What a field accepts.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A string of at most this many characters (`None`: no documented limit).
    Str(Option<usize>),
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// An integer.
    Int,
    /// A number.
    Number,
    /// `true` / `false`.
    Bool,
    /// A string containing `@`.
    Email,
}

/// One field of a body schema.
struct Field {
    name: &'static str,
    kind: Kind,
    nullable: bool,
}

const fn field(name: &'static str, kind: Kind, nullable: bool) -> Field {
    Field {
        name,
        kind,
        nullable,
    }
}

/// The writable user fields (PUT user).
const USER_FIELDS: &[Field] = &[
    field("external_user_id", Kind::Str(None), true),
    field("first_name", Kind::Str(None), true),
    field("last_name", Kind::Str(None), true),
    field("street_and_number", Kind::Str(None), true),
    field("street_add_info", Kind::Str(None), true),
    field("zip_code", Kind::Str(None), true),
    field("town", Kind::Str(None), true),
    // The write schema (UserUpdateGuide) names the country `country_iso2`; podero-api.md
    // lists `country`. Both are accepted; responses show it as `country`.
    field("country", Kind::Str(None), true),
    field("country_iso2", Kind::Str(None), true),
    field("latitude", Kind::Number, true),
    field("longitude", Kind::Number, true),
    field("email", Kind::Email, false),
    field("role", Kind::Enum(ROLES), false),
];

/// The fields of a POST user (the guide's create schema): the PUT fields without
/// `country` (the create schema names only `country_iso2`); `role` and `email` required.
const USER_CREATE_FIELDS: &[Field] = &[
    field("role", Kind::Enum(ROLES), false),
    field("email", Kind::Email, false),
    field("external_user_id", Kind::Str(None), true),
    field("first_name", Kind::Str(None), true),
    field("last_name", Kind::Str(None), true),
    field("street_and_number", Kind::Str(None), true),
    field("street_add_info", Kind::Str(None), true),
    field("zip_code", Kind::Str(None), true),
    field("town", Kind::Str(None), true),
    field("country_iso2", Kind::Str(None), true),
    field("latitude", Kind::Number, true),
    field("longitude", Kind::Number, true),
];

/// The building fields (POST and PUT building); `name` is also required.
const BUILDING_FIELDS: &[Field] = &[
    field("name", Kind::Str(Some(100)), false),
    field("property_type", Kind::Enum(PROPERTY_TYPES), true),
    field("occupant_type", Kind::Enum(OCCUPANT_TYPES), true),
    field("space_heating", Kind::Str(Some(50)), true),
    field("water_heating", Kind::Str(Some(50)), true),
    field("property_size_m2", Kind::Int, true),
    field("property_age", Kind::Int, true),
    field("num_occupants", Kind::Int, true),
    field("photovoltaic", Kind::Bool, true),
    field("street_and_number", Kind::Str(Some(100)), true),
    field("street_add_info", Kind::Str(Some(100)), true),
    field("town", Kind::Str(Some(100)), true),
    field("zip_code", Kind::Str(Some(20)), true),
    field("country", Kind::Str(None), true),
];

/// Every field a building response carries (besides `id`).
pub(crate) fn building_field_names() -> impl Iterator<Item = &'static str> {
    BUILDING_FIELDS.iter().map(|f| f.name)
}

/// The outcome of validating a body: the fields to store, or every problem.
pub(crate) type Validated = Result<Map<String, Value>, Vec<Problem>>;

/// One validation problem.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Problem {
    /// The pydantic error type (`missing`, `string_too_long`, ...).
    pub kind: &'static str,
    /// Where: `["body", "payload", field]` or `["path", name]`.
    pub loc: Vec<String>,
    /// A human message.
    pub msg: String,
}

impl Problem {
    /// A problem with a body field.
    pub fn body(kind: &'static str, field: &str, msg: impl Into<String>) -> Self {
        let loc = ["body", "payload", field].map(String::from).to_vec();
        Problem {
            kind,
            loc,
            msg: msg.into(),
        }
    }

    /// A problem with a path parameter.
    pub fn path(kind: &'static str, param: &str, msg: impl Into<String>) -> Self {
        Problem {
            kind,
            loc: vec!["path".into(), param.into()],
            msg: msg.into(),
        }
    }

    /// Whether this is a client bug (wrong shape) rather than bad data.
    pub fn is_client_bug(&self) -> bool {
        matches!(self.kind, "missing" | "extra_forbidden") || self.kind.ends_with("_type")
    }
}

/// The 422 body for `problems`.
pub(crate) fn detail(problems: &[Problem]) -> Value {
    let items: Vec<Value> = problems
        .iter()
        .map(|p| json!({"type": p.kind, "loc": p.loc, "msg": p.msg}))
        .collect();
    json!({ "detail": items })
}

/// Validates a PUT user body; returns the fields to set.
pub(crate) fn user_update(body: &Value) -> Validated {
    object_of(body, USER_FIELDS, &[])
}

/// Validates a POST user body; returns the fields of the new user.
pub(crate) fn user_create(body: &Value) -> Validated {
    object_of(body, USER_CREATE_FIELDS, &["role", "email"])
}

/// Validates a POST/PUT building body; returns the fields to store.
pub(crate) fn building(body: &Value) -> Validated {
    object_of(body, BUILDING_FIELDS, &["name"])
}

fn object_of(body: &Value, schema: &[Field], required: &[&str]) -> Validated {
    let Value::Object(map) = body else {
        let msg = "Input should be a valid dictionary or object to extract fields from";
        let loc = vec!["body".into(), "payload".into()];
        return Err(vec![Problem {
            kind: "model_attributes_type",
            loc,
            msg: msg.into(),
        }]);
    };
    let mut problems: Vec<Problem> = required
        .iter()
        .filter(|name| !map.contains_key(**name))
        .map(|name| Problem::body("missing", name, "Field required"))
        .collect();
    for (key, value) in map {
        match schema.iter().find(|f| f.name == key) {
            Some(f) => problems.extend(check(f, value)),
            None => problems.push(Problem::body(
                "extra_forbidden",
                key,
                "Extra inputs are not permitted",
            )),
        }
    }
    if problems.is_empty() {
        Ok(map.clone())
    } else {
        Err(problems)
    }
}

/// Checks one value against its field.
fn check(f: &Field, value: &Value) -> Option<Problem> {
    if value.is_null() {
        return (!f.nullable)
            .then(|| Problem::body("string_type", f.name, "Input should be a valid string"));
    }
    let bad = |kind, msg: &str| Some(Problem::body(kind, f.name, msg));
    match (f.kind, value) {
        (Kind::Str(max), Value::String(s)) => check_len(f.name, s, max),
        (Kind::Str(_), _) => bad("string_type", "Input should be a valid string"),
        (Kind::Enum(options), Value::String(s)) if options.contains(&s.as_str()) => None,
        (Kind::Enum(options), _) => bad(
            "enum",
            &format!("Input should be one of: {}", options.join(", ")),
        ),
        (Kind::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => None,
        (Kind::Int, _) => bad("int_type", "Input should be a valid integer"),
        (Kind::Number, Value::Number(_)) => None,
        (Kind::Number, _) => bad("float_type", "Input should be a valid number"),
        (Kind::Bool, Value::Bool(_)) => None,
        (Kind::Bool, _) => bad("bool_type", "Input should be a valid boolean"),
        (Kind::Email, Value::String(s)) if is_email(s) => None,
        (Kind::Email, Value::String(_)) => bad("value_error", "value is not a valid email address"),
        (Kind::Email, _) => bad("string_type", "Input should be a valid string"),
    }
}

fn check_len(name: &str, s: &str, max: Option<usize>) -> Option<Problem> {
    let len = s.chars().count();
    if name == "name" && len == 0 {
        return Some(Problem::body(
            "string_too_short",
            name,
            "String should have at least 1 character",
        ));
    }
    match max {
        Some(max) if len > max => Some(Problem::body(
            "string_too_long",
            name,
            format!("String should have at most {max} characters"),
        )),
        _ => None,
    }
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(result: Validated) -> Vec<&'static str> {
        result
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.kind)
            .collect()
    }

    #[test]
    fn building_rules() {
        assert!(building(&json!({"name": "Main House", "photovoltaic": null})).is_ok());
        assert_eq!(kinds(building(&json!({}))), ["missing"]);
        assert_eq!(kinds(building(&json!({"name": ""}))), ["string_too_short"]);
        assert_eq!(
            kinds(building(&json!({"name": "x".repeat(101)}))),
            ["string_too_long"]
        );
        assert!(building(&json!({"name": "é".repeat(100)})).is_ok());
        assert_eq!(
            kinds(building(&json!({"name": "a", "property_type": "Castle"}))),
            ["enum"]
        );
        assert_eq!(
            kinds(building(&json!({"name": "a", "num_occupants": "3"}))),
            ["int_type"]
        );
        assert_eq!(
            kinds(building(&json!({"name": "a", "colour": "red"}))),
            ["extra_forbidden"]
        );
        assert_eq!(kinds(building(&json!(["a"]))), ["model_attributes_type"]);
    }

    #[test]
    fn user_rules() {
        assert!(user_update(&json!({"external_user_id": "12345abc", "latitude": 48})).is_ok());
        assert_eq!(
            kinds(user_update(&json!({"external_user_id": 5}))),
            ["string_type"]
        );
        assert_eq!(
            kinds(user_update(&json!({"email": "nope"}))),
            ["value_error"]
        );
        assert_eq!(kinds(user_update(&json!({"role": "owner"}))), ["enum"]);
        assert_eq!(
            kinds(user_update(&json!({"externalUserId": "x"}))),
            ["extra_forbidden"]
        );
    }

    #[test]
    fn user_create_rules() {
        let ok = json!({"role": "user", "email": "a@b.de", "external_user_id": "CRM-1",
            "zip_code": "01067", "country_iso2": "DE", "first_name": null});
        assert!(user_create(&ok).is_ok());
        assert_eq!(kinds(user_create(&json!({}))), ["missing", "missing"]);
        assert_eq!(
            kinds(user_create(&json!({"role": "owner", "email": "a@b.de"}))),
            ["enum"]
        );
        assert_eq!(
            kinds(user_create(&json!({"role": "user", "email": "nope"}))),
            ["value_error"]
        );
        assert_eq!(
            kinds(user_create(
                &json!({"role": "user", "email": "a@b.de", "zip_code": 1067})
            )),
            ["string_type"]
        );
        assert_eq!(
            kinds(user_create(&json!({"role": "user", "email": null}))),
            ["string_type"]
        );
        assert_eq!(
            kinds(user_create(
                &json!({"role": "user", "email": "a@b.de", "country": "DE"})
            )),
            ["extra_forbidden"]
        );
    }
}
