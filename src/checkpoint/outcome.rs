//! What became of each row in a run (workers return it, or the plan skipped the row), and
//! the counters the single writer keeps.

use serde::Serialize;
use uuid::Uuid;

/// The final word on one row in this run.
#[derive(Clone, Debug)]
pub(crate) struct RowOutcome {
    /// The row's user; nil when the row's customer (a lookup row) was not found.
    pub user_id: Uuid,
    /// The row's staged owner key (its user id, or `ext:<CRM id>` for a lookup row).
    pub owner: String,
    /// The row was staged as a lookup row (keyed by its CRM id).
    pub lookup: bool,
    /// The row's building name (empty for a user-only row).
    pub building_name: String,
    /// The row's property id, if the file has them.
    pub property_id: Option<String>,
    /// The row's identity within the user.
    pub row_key: String,
    /// The checkpoint row it continues (see [`super::row::PlannedRow::match_key`]).
    pub match_key: String,
    /// The building payload now applied, when this outcome applied or confirmed one
    /// (`None`: the stored one stays).
    pub building_applied: Option<String>,
    /// Its line in this run's input.
    pub line: u64,
    /// The CRM id it was given.
    pub external_user_id: String,
    /// Fingerprint of its input payloads.
    pub fingerprint: i64,
    /// What happened.
    pub result: RowResult,
}

/// What happened to one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RowResult {
    /// The building was created; its id.
    Created(Uuid),
    /// An earlier unknown outcome was resolved: the building existed; its id.
    Adopted(Uuid),
    /// Only the user was updated (the building existed already).
    Updated,
    /// The building's fields changed: it was read, overlaid and updated (PUT).
    BuildingUpdated,
    /// `--adopt-existing`: the user already had one building of this name; its id was
    /// recorded and the row's fields applied to it.
    AdoptedExisting(Uuid),
    /// A user-only row: the user is up to date, no building.
    UserOnly,
    /// The row failed.
    Failed {
        /// HTTP status, if any.
        status: Option<u16>,
        /// The reason, readable.
        message: String,
        /// Whether retrying the same data cannot help.
        permanent: bool,
    },
    /// The building may exist and could not be verified.
    Unresolved {
        /// Why, and what to do.
        message: String,
    },
}

impl RowResult {
    /// The outcome's name in the `--report` (`outcome` column).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            RowResult::Created(_) => "created",
            RowResult::Adopted(_) => "verified_existing",
            RowResult::Updated => "user_updated",
            RowResult::BuildingUpdated => "building_updated",
            RowResult::AdoptedExisting(_) => "adopted_existing",
            RowResult::UserOnly => "user_only",
            RowResult::Failed { .. } => "failed",
            RowResult::Unresolved { .. } => "unresolved",
        }
    }
}

/// Why a row costs nothing in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Done and unchanged.
    Done,
    /// Failed permanently with the same input (`--retry-failed` retries it).
    Failed,
    /// Not selected by `--only-failed`.
    NotSelected,
}

impl Skip {
    /// Its name in `input.skip` (a [`Tally`] field).
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Done => "skipped_done",
            Skip::Failed => "skipped_failed",
            Skip::NotSelected => "skipped_not_selected",
        }
    }
}

/// Counters for one run; kept by the single writer, read by progress and the summary.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// Buildings created in this run.
    pub created: u64,
    /// Unknown outcomes resolved to an existing building.
    pub adopted: u64,
    /// Done rows whose user fields changed: updated, no new building.
    pub updated: u64,
    /// Done rows whose building fields changed: building read and updated (GET + PUT).
    pub buildings_updated: u64,
    /// `--adopt-existing`: a same-named building the user already had was adopted.
    pub adopted_existing: u64,
    /// User-only rows done in this run (user updated, no building).
    pub user_only: u64,
    /// Done and unchanged: no call.
    pub skipped_done: u64,
    /// Failed permanently before, input unchanged: not retried (see `--retry-failed`).
    pub skipped_failed: u64,
    /// Not selected by `--only-failed`.
    pub skipped_not_selected: u64,
    /// Failed in this run, permanently (data or server rejection).
    pub failed_permanent: u64,
    /// Failed in this run after retries, transient: retried automatically next run.
    pub failed_transient: u64,
    /// POST outcome unknown and not verifiable.
    pub unresolved: u64,
    /// Customers (CRM ids) whose Podero user this run created (`--create-users`).
    pub users_created: u64,
    /// Customers (CRM ids) found in Podero by their CRM id.
    pub users_found: u64,
    /// Customers (CRM ids) whose e-mail belonged to a user without a CRM id, adopted
    /// (`--adopt-existing`).
    pub users_adopted: u64,
}

impl Tally {
    /// Counts one outcome.
    pub(crate) fn add(&mut self, result: &RowResult) {
        match result {
            RowResult::Created(_) => self.created += 1,
            RowResult::Adopted(_) => self.adopted += 1,
            RowResult::Updated => self.updated += 1,
            RowResult::BuildingUpdated => self.buildings_updated += 1,
            RowResult::AdoptedExisting(_) => self.adopted_existing += 1,
            RowResult::UserOnly => self.user_only += 1,
            RowResult::Failed {
                permanent: true, ..
            } => self.failed_permanent += 1,
            RowResult::Failed { .. } => self.failed_transient += 1,
            RowResult::Unresolved { .. } => self.unresolved += 1,
        }
    }

    /// Counts one customer that became known.
    pub(crate) fn customer(&mut self, how: Resolution) {
        match how {
            Resolution::Found => self.users_found += 1,
            Resolution::Created => self.users_created += 1,
            Resolution::Adopted => self.users_adopted += 1,
        }
    }

    /// Counts one skipped row.
    pub(crate) fn skip(&mut self, skip: Skip) {
        match skip {
            Skip::Done => self.skipped_done += 1,
            Skip::Failed => self.skipped_failed += 1,
            Skip::NotSelected => self.skipped_not_selected += 1,
        }
    }

    /// Adds the skip counts of `skipped`.
    pub(crate) fn add_skips(&mut self, skipped: &Tally) {
        self.skipped_done += skipped.skipped_done;
        self.skipped_failed += skipped.skipped_failed;
        self.skipped_not_selected += skipped.skipped_not_selected;
    }

    /// Rows accounted for (skipped or finished).
    pub(crate) fn processed(&self) -> u64 {
        self.created
            + self.adopted
            + self.updated
            + self.buildings_updated
            + self.adopted_existing
            + self.user_only
            + self.skipped_done
            + self.skipped_failed
            + self.skipped_not_selected
            + self.failed_permanent
            + self.failed_transient
            + self.unresolved
    }

    /// Rows that failed in this run, permanently or not.
    pub(crate) fn failed(&self) -> u64 {
        self.failed_permanent + self.failed_transient
    }
}

/// How a customer's Podero user became known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The by-ext-id lookup found it.
    Found,
    /// This job created it.
    Created,
    /// `--adopt-existing`: the user with the row's e-mail, given the CRM id.
    Adopted,
}

impl Resolution {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Resolution::Found => "found",
            Resolution::Created => "created",
            Resolution::Adopted => "adopted",
        }
    }
}
