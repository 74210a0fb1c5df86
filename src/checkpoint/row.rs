//! A checkpoint row as a run sees it: its identity within the user (`row_key`), its state,
//! what the checkpoint remembers of it ([`Prior`]) and this run's input joined with that
//! history ([`PlannedRow`]). The fingerprint of the input payloads notices changed rows.

use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

/// A row's state in the checkpoint (`rows.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Known, not finished; will be attempted (after a transient failure too).
    Pending,
    /// A building POST was (maybe) sent and its outcome is not recorded yet.
    Posting,
    /// The building exists (its id is recorded) and the user update was applied.
    Done,
    /// The last attempt failed; `permanent` says whether retrying the same data can help.
    Failed,
    /// The POST's outcome is unknown and could not be verified: needs a human or
    /// `--resolve-unknown=repost`.
    Unresolved,
}

impl State {
    /// Parses a stored name.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => State::Pending,
            "posting" => State::Posting,
            "done" => State::Done,
            "failed" => State::Failed,
            "unresolved" => State::Unresolved,
            _ => return None,
        })
    }
}

/// What the checkpoint remembers of a row.
#[derive(Clone, Debug)]
pub struct Prior {
    /// Its state.
    pub state: State,
    /// The building, once known.
    pub building_id: Option<Uuid>,
    /// For failed rows: whether the failure was permanent (404, 422...).
    pub permanent: bool,
    /// Fingerprint of the input when the row was last worked on.
    pub fingerprint: i64,
    /// The building payload last applied (POST or PUT); `None` for rows written by schema 1.
    pub building_payload: Option<String>,
}

/// One valid input row, joined with its history.
#[derive(Clone, Debug)]
pub struct PlannedRow {
    /// Line in this run's input.
    pub line: u64,
    /// The Podero user; nil while [`lookup`](Self::lookup) is set and the customer is not
    /// found yet.
    pub user_id: Uuid,
    /// The row names no user_id and the checkpoint does not know its customer yet: the user
    /// is found by the CRM id (or created) before anything else. Its staged owner key is
    /// `ext:<CRM id>` (see `owner_key`).
    pub lookup: bool,
    /// A lookup row whose CRM id the checkpoint has no record of (`customers`: never looked
    /// up, no create intent, no failure): the only customers a user list that does not show
    /// the CRM id may create without a lookup (`run::customer`).
    pub new_customer: bool,
    /// The building name; empty for a user-only row.
    pub building_name: String,
    /// The CRM's property id, when the file has that column.
    pub property_id: Option<String>,
    /// The row's identity within the user (see `row_key`).
    pub row_key: String,
    /// The key of the checkpoint row it continues: `row_key`, or on the first run with
    /// `property_id` over an older checkpoint, the `name:` key of the same building name.
    pub match_key: String,
    /// The CRM id.
    pub external_user_id: String,
    /// The PUT body, canonical JSON.
    pub user_payload: String,
    /// The POST body (and the fields a PUT overlays), canonical JSON; empty for a user-only row.
    pub building_payload: String,
    /// Fingerprint of both payloads.
    pub fingerprint: i64,
    /// The checkpoint's record of this row, if any.
    pub prior: Option<Prior>,
    /// The user payload last applied successfully, if any.
    pub user_applied: Option<String>,
}

/// The owner part of a row's identity: the Podero user id, or `ext:<CRM id>` for a row
/// whose customer is known only by its CRM id (see `migrations/004_customers.sql`).
pub(crate) fn owner_key(user_id: Option<Uuid>, external_user_id: &str) -> String {
    match user_id {
        Some(id) => id.to_string(),
        None => format!("{EXT_PREFIX}{external_user_id}"),
    }
}

/// The prefix of a CRM-keyed owner key.
pub(crate) const EXT_PREFIX: &str = "ext:";

impl PlannedRow {
    /// The row's staged owner key (`user_id`, or `ext:<CRM id>` for a lookup row).
    pub fn owner(&self) -> String {
        owner_key(
            (!self.lookup).then_some(self.user_id),
            &self.external_user_id,
        )
    }
}

/// A row's identity within its user: `''` for a user-only row, `property:<id>` when the
/// file has `property_id`, else `name:<building name>` (the identity of schema 1).
pub(crate) fn row_key(building_name: &str, property_id: Option<&str>) -> String {
    match property_id {
        _ if building_name.is_empty() => String::new(),
        Some(id) => format!("property:{id}"),
        None => format!("name:{building_name}"),
    }
}

/// FNV-1a, 64 bits: a fingerprint that is stable across versions and platforms (std's
/// hasher is not), stored to notice changed input.
pub(crate) fn fingerprint(user_payload: &str, building_payload: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user_payload
        .bytes()
        .chain([0])
        .chain(building_payload.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        assert_eq!(fingerprint("a", "b"), fingerprint("a", "b"));
        assert_ne!(fingerprint("a", "b"), fingerprint("ab", ""));
        assert_eq!(fingerprint("", ""), 0xaf63_bd4c_8601_b7df_u64 as i64);
    }

    #[test]
    fn owners_are_user_ids_or_crm_ids() {
        let id = Uuid::from_u128(1);
        assert_eq!(owner_key(Some(id), "C1"), id.to_string());
        assert_eq!(owner_key(None, "C1"), "ext:C1");
    }

    #[test]
    fn row_keys_name_the_identity() {
        assert_eq!(row_key("", None), "");
        assert_eq!(row_key("", Some("P1")), "");
        assert_eq!(row_key("Home", None), "name:Home");
        assert_eq!(row_key("Home", Some("P1")), "property:P1");
    }
}

/// A rejected row, as stored in `rejects`.
#[derive(Clone, Debug)]
pub(crate) struct Reject {
    /// Its line.
    pub line: u64,
    /// invalid | duplicate | conflict.
    pub kind: String,
    /// Raw user id, when known.
    pub user_id: Option<String>,
    /// Raw building name, when known.
    pub building_name: Option<String>,
    /// Raw external id, when known.
    pub external_user_id: Option<String>,
    /// The column at fault.
    pub column: Option<String>,
    /// The value at fault (already made safe to display).
    pub value: Option<String>,
    /// Why, and what to do.
    pub reason: String,
}

/// The checkpoint row `(user, key)` as this run's plan sees it, if there is one.
pub(super) fn prior(
    conn: &rusqlite::Connection,
    user: &str,
    key: &str,
) -> rusqlite::Result<Option<Prior>> {
    conn.prepare_cached(
        "SELECT state, building_id, permanent, fingerprint, building_payload
         FROM main.rows WHERE user_id = ?1 AND row_key = ?2",
    )?
    .query_row(params![user, key], |r| {
        Ok(Prior {
            state: State::parse(&r.get::<_, String>(0)?).unwrap_or(State::Pending),
            building_id: r
                .get::<_, Option<String>>(1)?
                .and_then(|id| Uuid::parse_str(&id).ok()),
            permanent: r.get::<_, Option<bool>>(2)?.unwrap_or(false),
            fingerprint: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            building_payload: r.get(4)?,
        })
    })
    .optional()
}
