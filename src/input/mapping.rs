//! `--mapping FILE`: a CRM export's column mapping in a small TOML file, so the nightly
//! command line stays readable. Each entry is what a `--column` flag would say:
//!
//! ```toml
//! [columns]
//! external_user_id = "Kundennummer"
//! zip_code = "PLZ"
//! building_zip_code = "PLZ"                      # one header, two fields
//! street_and_number = ["Straße", "Hausnummer"]   # joined by a space
//!
//! [defaults]
//! building_name = "Zuhause"                      # rows without a building name
//! ```
//!
//! Every entry is checked like the flag (a known column, a header), and unknown keys are
//! refused, so a typo fails before anything is read. The `toml` crate parses it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::header::parse_rename;

/// A mapping file, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// `(column, header)` pairs, as `--column` gives them (a join is `A+B`).
    pub renames: Vec<(String, String)>,
    /// `[defaults] building_name`.
    pub building_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    columns: BTreeMap<String, Headers>,
    #[serde(default)]
    defaults: Defaults,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Headers {
    One(String),
    Joined(Vec<String>),
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    building_name: Option<String>,
}

/// Reads and checks the mapping file at `path`; the error names the file and the entry.
pub fn read_mapping(path: &Path) -> Result<Mapping, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the mapping file {name}: {e}"))?;
    let file: File =
        toml::from_str(&text).map_err(|e| format!("mapping file {name}: {}", e.message()))?;
    let mut renames = Vec::with_capacity(file.columns.len());
    for (column, headers) in file.columns {
        let header = match headers {
            Headers::One(header) => header,
            Headers::Joined(parts) if parts.len() >= 2 => parts.join("+"),
            Headers::Joined(_) => {
                return Err(format!(
                    "mapping file {name}: {column}: a list joins two or more headers; for one \
                     header write {column} = \"HEADER\""
                ));
            }
        };
        let rename = parse_rename(&format!("{column}={header}"))
            .map_err(|e| format!("mapping file {name}: {e}"))?;
        renames.push(rename);
    }
    Ok(Mapping {
        renames,
        building_name: file.defaults.building_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Mapping, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mapping.toml");
        std::fs::write(&path, text).unwrap();
        read_mapping(&path)
    }

    #[test]
    fn columns_joins_and_the_default_building_name_are_read() {
        let mapping = read(
            "[columns]\nzip_code = \"PLZ\"\nstreet_and_number = [\"Straße\", \"Nr\"]\n\
             [defaults]\nbuilding_name = \"Zuhause\"\n",
        )
        .unwrap();
        assert_eq!(
            mapping.renames,
            vec![
                ("street_and_number".into(), "Straße+Nr".into()),
                ("zip_code".into(), "PLZ".into())
            ]
        );
        assert_eq!(mapping.building_name.as_deref(), Some("Zuhause"));
    }

    #[test]
    fn typos_and_unknown_columns_are_refused_naming_the_entry() {
        let unknown = read("[columns]\nzipcode = \"PLZ\"\n").unwrap_err();
        assert!(unknown.contains("unknown column \"zipcode\""), "{unknown}");
        let section = read("[column]\nzip_code = \"PLZ\"\n").unwrap_err();
        assert!(section.contains("column"), "{section}");
        let one = read("[columns]\nzip_code = [\"PLZ\"]\n").unwrap_err();
        assert!(one.contains("two or more"), "{one}");
    }
}
