//! Users that exist before a run (customers with a CRM id) and the checks every
//! create-users test makes on the simulator: one user per CRM id, nobody privileged.

use std::collections::BTreeMap;

use podero_onboard::sandbox::{SeedUser, Snapshot};
use uuid::Uuid;

/// The CRM id of the `i`-th customer: `CRM-<i>`.
pub fn crm_id(i: usize) -> String {
    format!("CRM-{i}")
}

/// The e-mail of the `i`-th customer: `customer-<i>@example.com`.
pub fn email(i: usize) -> String {
    format!("customer-{i}@example.com")
}

/// The `i`-th customer as a seeded Podero user: [`crm_id`], [`email`], named
/// `Kim Customer<i>`, role `user`, a random id.
pub fn customer(i: usize) -> SeedUser {
    SeedUser::new(&crm_id(i), &email(i)).names("Kim", &format!("Customer{i}"))
}

/// Customers `range` (e.g. `0..100_000` for a benchmark).
pub fn customers(range: std::ops::Range<usize>) -> impl Iterator<Item = SeedUser> {
    range.map(customer)
}

/// CRM id → the ids of the users carrying it.
pub fn users_by_crm_id(state: &Snapshot) -> BTreeMap<String, Vec<Uuid>> {
    let mut map: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    for user in state.users.values() {
        if let Some(crm) = &user.external_user_id {
            map.entry(crm.clone()).or_default().push(user.id);
        }
    }
    map
}

/// Panics unless every CRM id is carried by at most one user.
pub fn assert_one_user_per_crm_id(state: &Snapshot) {
    let shared = state.external_id_duplicates();
    assert!(
        shared.is_empty(),
        "CRM ids held by several users: {shared:?}"
    );
}

/// Panics if any user has a role other than `user` (admins and staff get invitations).
pub fn assert_no_privileged_users(state: &Snapshot) {
    let privileged: Vec<_> = state
        .users
        .values()
        .filter(|u| u.role != "user")
        .map(|u| (u.id, u.role.clone(), u.email.clone()))
        .collect();
    assert!(privileged.is_empty(), "privileged users: {privileged:?}");
}
