//! Who connected, asked once. The organization's user list (`GET .../users`) shows
//! `num_heat_pumps` for every user, so one list call tells which customers have a heat
//! pump at all; only those (and not yet recorded as connected) get their heat pumps
//! listed. A quiet night then costs the token and the list, not a call per customer.
//!
//! The list is one bare array with every user of the organization: for a run that checks
//! a few customers of a large organization, asking each of them is cheaper. The choice is
//! made by counting ([`way`]); a failed list (timeout, 5xx, too large, no
//! `num_heat_pumps`) falls back to asking each customer, and the run goes on.

pub use crate::api::Way;
use crate::api::{Client, Directory, Keep};
use crate::checkpoint::links::HeatPumpChecks;

/// Which way is cheaper for `checks`, counted in requests (see [`Way::choose`]).
pub fn way(checks: HeatPumpChecks) -> Way {
    Way::choose(checks.users, checks.known_users)
}

/// The heat-pump owners from the user list when it is the cheaper way (`None`: ask each
/// customer), and the way taken; `-v` says which and why.
pub async fn heat_pump_owners(client: &Client, checks: HeatPumpChecks) -> (Option<Directory>, Way) {
    let customers = checks.users;
    match way(checks) {
        Way::UserList => {}
        other => {
            tracing::info!(
                customers,
                known_users = checks.known_users,
                "asking each customer for its heat pumps: fewer customers to check than one \
                 user list costs"
            );
            return (None, other);
        }
    }
    match client.list_users(Keep::HeatPumpOwners).await {
        Ok(list) => {
            tracing::info!(
                customers,
                listed = list.users,
                "one user list instead of a heat-pump list per customer"
            );
            (Some(list), Way::UserList)
        }
        Err(error) => {
            tracing::warn!(
                "listing the organization's users failed ({error}); asking each customer \
                 for its heat pumps instead"
            );
            (None, Way::PerCustomerAfterListFailed)
        }
    }
}
