//! The known columns: their CSV name, where the value goes in the API, and how it is
//! checked and typed. One table ([`COLUMNS`]) drives header matching and row checks.

use serde_json::{Number, Value};
use uuid::Uuid;

/// Longest `external_user_id` accepted. The API documents no limit; 255 is a
/// conservative cap (a common database column size) that no real CRM id exceeds.
pub const MAX_EXTERNAL_USER_ID_CHARS: usize = 255;
/// Longest `property_id` (the CRM's id of a property): like `external_user_id`, a
/// conservative cap no real CRM id exceeds.
pub const MAX_PROPERTY_ID_CHARS: usize = 255;
/// Longest building name (Podero's documented `maxLength`).
pub const MAX_BUILDING_NAME_CHARS: usize = 100;
/// Cap for text fields whose limit Podero does not document (user fields, building
/// country): a sanity bound, not an API rule.
const UNDOCUMENTED_TEXT_CHARS: usize = 255;
/// Largest integer accepted for counts (a signed 32-bit database column).
const MAX_COUNT: u64 = i32::MAX as u64;

const PROPERTY_TYPES: &[&str] = &[
    "Detached",
    "Semi-detached",
    "Bungalow",
    "Terraced",
    "End-terrace",
    "Flat",
];
const OCCUPANT_TYPES: &[&str] = &[
    "Students",
    "Working adults",
    "At home adults",
    "Young family",
    "Older family",
    "Retirees",
];

/// Where a checked value goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    UserId,
    ExternalUserId,
    BuildingName,
    /// The CRM's property id: with `user_id`, the row's identity when the file has it.
    PropertyId,
    /// An optional field of the user update (PUT).
    User,
    /// An optional field of the building creation (POST).
    Building,
}

/// How a value is checked and typed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Uuid,
    /// Text of at most `max` chars; `newlines` allows `\n`/`\r` (address additions).
    Text {
        max: usize,
        newlines: bool,
    },
    /// One of the documented spellings (matched case-insensitively, sent as documented).
    Choice(&'static [&'static str]),
    /// A non-negative whole number.
    Count,
    /// true/false/yes/no/1/0.
    Flag,
    /// A coordinate in degrees, `-limit..=limit`.
    Degrees(f64),
    Email,
    /// An ISO 3166-1 alpha-2 country code (matched case-insensitively, sent upper-case).
    Country,
}

/// One known column.
#[derive(Debug)]
pub(super) struct Column {
    /// The canonical CSV column name.
    pub name: &'static str,
    /// The field name in the API body.
    pub api: &'static str,
    pub target: Target,
    pub kind: Kind,
}

const fn col(name: &'static str, api: &'static str, target: Target, kind: Kind) -> Column {
    Column {
        name,
        api,
        target,
        kind,
    }
}

const fn text(max: usize) -> Kind {
    Kind::Text {
        max,
        newlines: false,
    }
}

const fn multiline(max: usize) -> Kind {
    Kind::Text {
        max,
        newlines: true,
    }
}

use Target::{Building, User};

/// Every known column, required ones first.
pub(super) const COLUMNS: &[Column] = &[
    col("user_id", "id", Target::UserId, Kind::Uuid),
    col(
        "external_user_id",
        "external_user_id",
        Target::ExternalUserId,
        text(MAX_EXTERNAL_USER_ID_CHARS),
    ),
    col(
        "building_name",
        "name",
        Target::BuildingName,
        text(MAX_BUILDING_NAME_CHARS),
    ),
    col(
        "property_id",
        "property_id",
        Target::PropertyId,
        text(MAX_PROPERTY_ID_CHARS),
    ),
    col(
        "first_name",
        "first_name",
        User,
        text(UNDOCUMENTED_TEXT_CHARS),
    ),
    col(
        "last_name",
        "last_name",
        User,
        text(UNDOCUMENTED_TEXT_CHARS),
    ),
    col(
        "street_and_number",
        "street_and_number",
        User,
        text(UNDOCUMENTED_TEXT_CHARS),
    ),
    col(
        "street_add_info",
        "street_add_info",
        User,
        multiline(UNDOCUMENTED_TEXT_CHARS),
    ),
    col("zip_code", "zip_code", User, text(UNDOCUMENTED_TEXT_CHARS)),
    col("town", "town", User, text(UNDOCUMENTED_TEXT_CHARS)),
    // The documented write schema (UserUpdateGuide) names it `country_iso2`; reads call it `country`.
    // The guide sends `DE`: an ISO 3166-1 alpha-2 code (the reference's "alpha-3" is a slip).
    col("country", "country_iso2", User, Kind::Country),
    col("latitude", "latitude", User, Kind::Degrees(90.0)),
    col("longitude", "longitude", User, Kind::Degrees(180.0)),
    col("email", "email", User, Kind::Email),
    col(
        "property_type",
        "property_type",
        Building,
        Kind::Choice(PROPERTY_TYPES),
    ),
    col(
        "occupant_type",
        "occupant_type",
        Building,
        Kind::Choice(OCCUPANT_TYPES),
    ),
    col("space_heating", "space_heating", Building, text(50)),
    col("water_heating", "water_heating", Building, text(50)),
    col(
        "property_size_m2",
        "property_size_m2",
        Building,
        Kind::Count,
    ),
    col("property_age", "property_age", Building, Kind::Count),
    col("num_occupants", "num_occupants", Building, Kind::Count),
    col("photovoltaic", "photovoltaic", Building, Kind::Flag),
    col(
        "building_street_and_number",
        "street_and_number",
        Building,
        text(100),
    ),
    col(
        "building_street_add_info",
        "street_add_info",
        Building,
        multiline(100),
    ),
    col("building_town", "town", Building, text(100)),
    col("building_zip_code", "zip_code", Building, text(20)),
    col(
        "building_country",
        "country",
        Building,
        text(UNDOCUMENTED_TEXT_CHARS),
    ),
];

/// The column called `name` (already normalised), if known.
pub(super) fn find(name: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.name == name)
}

/// A checked, typed cell.
#[derive(Debug, PartialEq)]
pub(super) enum Cell {
    /// An empty optional cell: not sent.
    Empty,
    Id(Uuid),
    Json(Value),
}

/// Why a cell is rejected. `show_value` is false when the value says nothing (empty).
#[derive(Debug, PartialEq)]
pub(super) struct Problem {
    pub reason: String,
    pub show_value: bool,
}

impl Problem {
    fn of_value(reason: impl Into<String>) -> Self {
        Problem {
            reason: reason.into(),
            show_value: true,
        }
    }

    fn of_empty(reason: impl Into<String>) -> Self {
        Problem {
            reason: reason.into(),
            show_value: false,
        }
    }
}

/// Checks one trimmed value of `column`.
pub(super) fn check(column: &Column, value: &str) -> Result<Cell, Problem> {
    if value.is_empty() {
        return empty(column);
    }
    reject_controls(column, value)?;
    match column.kind {
        Kind::Uuid => user_id(value).map(Cell::Id),
        Kind::Text { max, .. } => bounded_text(column, value, max),
        Kind::Choice(allowed) => choice(column, value, allowed),
        Kind::Count => count(value),
        Kind::Flag => flag(value),
        Kind::Degrees(limit) => degrees(column, value, limit),
        Kind::Email => email(value),
        Kind::Country => country(value),
    }
}

fn empty(column: &Column) -> Result<Cell, Problem> {
    let reason = match column.target {
        Target::ExternalUserId => "is empty: fill in the CRM id (your own id for this customer)",
        // An empty user id keys the row by its CRM id; an empty building name is a
        // user-only row; an empty property id is checked with the rest of the row
        // (`record::check_building`).
        Target::UserId
        | Target::BuildingName
        | Target::PropertyId
        | Target::User
        | Target::Building => {
            return Ok(Cell::Empty);
        }
    };
    Err(Problem::of_empty(reason))
}

/// True for C0 controls (incl. tab, CR, LF), DEL and C1 controls.
pub(super) fn is_control(c: char) -> bool {
    c.is_control()
}

fn reject_controls(column: &Column, value: &str) -> Result<(), Problem> {
    if value.chars().any(crate::bidi::is_bidi_control) {
        return Err(Problem::of_value(
            "contains an invisible bidirectional control character (shown escaped, e.g. \
             \\u{202e}), which makes text display in another order than it is stored: \
             remove it from the cell",
        ));
    }
    let newlines = matches!(column.kind, Kind::Text { newlines: true, .. });
    let allowed = |c: char| newlines && (c == '\n' || c == '\r');
    if !value.chars().any(|c| is_control(c) && !allowed(c)) {
        return Ok(());
    }
    let what = if newlines {
        "a control character other than a line break"
    } else {
        "a control character (a tab, line break or invisible character; shown escaped)"
    };
    Err(Problem::of_value(format!(
        "contains {what}: remove it from the cell"
    )))
}

fn user_id(value: &str) -> Result<Uuid, Problem> {
    let shaped = value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    let id = shaped.then(|| Uuid::parse_str(value).ok()).flatten().ok_or_else(|| {
        Problem::of_value(
            "is not a UUID: user_id must be the Podero user id, 8-4-4-4-12 hex digits such as \
             497f6eca-6276-4993-bfeb-53cbbbba6f08 and nothing else (no braces, spaces, '/', '%', '?' or '#': \
             it becomes part of the API URL); copy the id Podero returned for this user",
        )
    })?;
    if id.is_nil() {
        return Err(Problem::of_value(
            "is the nil UUID, a placeholder rather than a user: fill in the user's real Podero id",
        ));
    }
    Ok(id)
}

fn bounded_text(column: &Column, value: &str, max: usize) -> Result<Cell, Problem> {
    let chars = value.chars().count();
    if chars > max {
        return Err(Problem::of_value(format!(
            "is {chars} characters long; {} may be at most {max} characters: shorten it",
            column.name
        )));
    }
    Ok(Cell::Json(Value::String(value.to_owned())))
}

fn choice(column: &Column, value: &str, allowed: &[&str]) -> Result<Cell, Problem> {
    match allowed.iter().find(|a| a.eq_ignore_ascii_case(value)) {
        Some(documented) => Ok(Cell::Json(Value::String((*documented).to_owned()))),
        None => Err(Problem::of_value(format!(
            "is not a known {}: use one of {} (or leave the cell empty)",
            column.name,
            allowed.join(", ")
        ))),
    }
}

fn count(value: &str) -> Result<Cell, Problem> {
    let digits = value.bytes().all(|b| b.is_ascii_digit());
    let number = digits.then(|| value.parse::<u64>().ok()).flatten();
    match number {
        Some(n) if n <= MAX_COUNT => Ok(Cell::Json(Value::from(n))),
        Some(_) => Err(Problem::of_value(format!(
            "is too large: write a whole number up to {MAX_COUNT}"
        ))),
        None => Err(Problem::of_value(
            "is not a whole number of 0 or more: write digits only, e.g. 120 (no sign, decimals or units)",
        )),
    }
}

fn flag(value: &str) -> Result<Cell, Problem> {
    let lower = value.to_ascii_lowercase();
    match lower.as_str() {
        "true" | "yes" | "1" => Ok(Cell::Json(Value::Bool(true))),
        "false" | "no" | "0" => Ok(Cell::Json(Value::Bool(false))),
        _ => Err(Problem::of_value(
            "is not yes or no: write true, false, yes, no, 1 or 0",
        )),
    }
}

fn degrees(column: &Column, value: &str, limit: f64) -> Result<Cell, Problem> {
    if value.contains(',') {
        return Err(Problem::of_value(
            "uses a comma: write the decimal separator as a dot, e.g. 48.2082",
        ));
    }
    let number = value
        .parse::<f64>()
        .ok()
        .filter(|d| d.is_finite() && d.abs() <= limit);
    match number.and_then(Number::from_f64) {
        Some(n) => Ok(Cell::Json(Value::Number(n))),
        None => Err(Problem::of_value(format!(
            "is not a {} in degrees: write a decimal number from -{limit} to {limit}, e.g. 48.2082",
            column.name
        ))),
    }
}

/// `48,2082` written as `48.2082`, for a coordinate column of a file whose separator is
/// not a comma (there a comma in a cell can only be a decimal comma). `None` for other
/// columns, where a comma could be a thousands separator (counts stay whole numbers),
/// and for anything but `[sign]digits,digits`.
pub(super) fn decimal_point(column: &Column, value: &str) -> Option<String> {
    if !matches!(column.kind, Kind::Degrees(_)) {
        return None;
    }
    let (whole, fraction) = value.split_once(',')?;
    let unsigned = whole.strip_prefix(['-', '+']).unwrap_or(whole);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(unsigned) && digits(fraction)).then(|| format!("{whole}.{fraction}"))
}

fn email(value: &str) -> Result<Cell, Problem> {
    if looks_like_email(value) {
        return Ok(Cell::Json(Value::String(value.to_owned())));
    }
    Err(Problem::of_value(
        "is not an email address (expected name@domain.tld): correct it or leave the cell empty",
    ))
}

/// The basic `x@y.z` shape: one `@`, a non-empty local part, a dotted domain, no spaces.
fn looks_like_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
    value.chars().count() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && labels_ok
        && !value.chars().any(char::is_whitespace)
}

/// The canonical column that sends the API field `api` of the user (`building` false) or
/// of the building, with its place in [`COLUMNS`]: how a stored body is written back as
/// the CSV columns it came from (`export --state failed`).
pub(crate) fn column_of_field(building: bool, api: &str) -> Option<(usize, &'static str)> {
    let target = if building { Building } else { User };
    COLUMNS
        .iter()
        .position(|c| c.target == target && c.api == api)
        .map(|i| (i, COLUMNS[i].name))
}

/// Every ISO 3166-1 alpha-2 code (249, as assigned).
const ISO_3166_ALPHA_2: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS \
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE \
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM \
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC \
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA \
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO \
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Codes people write for a country whose ISO code differs.
const NOT_ISO: &[(&str, &str)] = &[("UK", "GB"), ("EL", "GR")];

fn country(value: &str) -> Result<Cell, Problem> {
    let upper = value.to_ascii_uppercase();
    let known = upper.len() == 2 && ISO_3166_ALPHA_2.split(' ').any(|code| code == upper);
    if known {
        return Ok(Cell::Json(Value::String(upper)));
    }
    let hint = match NOT_ISO.iter().find(|(common, _)| *common == upper) {
        Some((common, iso)) => format!("{common} is not the ISO code: write {iso}"),
        None if upper.len() == 3 && upper.bytes().all(|b| b.is_ascii_alphabetic()) => {
            "looks like a three-letter code: write the two-letter one (AUT → AT, DEU → DE)".into()
        }
        None => "write the two-letter code, e.g. AT for Austria, DE for Germany, CH for \
                 Switzerland"
            .into(),
    };
    Err(Problem::of_value(format!(
        "is not an ISO 3166-1 alpha-2 country code: {hint} (or leave the cell empty)"
    )))
}
