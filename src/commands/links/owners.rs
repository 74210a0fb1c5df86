//! Who connected, asked once. The organization's user list (`GET .../users`) shows
//! `num_heat_pumps` for every user, so one list call tells which customers have a heat
//! pump at all; only those (and not yet recorded as connected) get their heat pumps
//! listed. A quiet night then costs the token and the list, not a call per customer.
//!
//! The list is one bare array with every user of the organization: for a run that checks
//! a few customers of a large organization, asking each of them is cheaper. The choice is
//! made by counting ([`way`]); a failed list (timeout, 5xx, too large, no
//! `num_heat_pumps`) falls back to asking each customer, and the run goes on.

use serde::Serialize;

use crate::api::{Client, Directory, Keep};
use crate::checkpoint::links::HeatPumpChecks;

/// Users the list may show per request it replaces: a list of 1,000 users is taken to cost
/// about one extra request (a few hundred KB), so the list is read when the customers to
/// check outnumber 1 + known users / 1,000.
pub const USERS_PER_REQUEST: u64 = 1000;

/// How a links run learned who connected (in the `--json` summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Way {
    /// No customer needed checking (or a dry run, which sends nothing).
    #[default]
    None,
    /// One user list; heat pumps listed only for customers with a heat pump.
    UserList,
    /// A heat-pump list per customer: fewer customers than one user list costs.
    PerCustomer,
    /// A heat-pump list per customer, because the user list failed.
    PerCustomerAfterListFailed,
}

/// Which way is cheaper for `checks`, counted in requests.
pub fn way(checks: HeatPumpChecks) -> Way {
    match checks.users {
        0 => Way::None,
        n if n > 1 + checks.known_users / USERS_PER_REQUEST => Way::UserList,
        _ => Way::PerCustomer,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(users: u64, known_users: u64) -> HeatPumpChecks {
        HeatPumpChecks { users, known_users }
    }

    #[test]
    fn the_list_is_read_when_the_customers_outnumber_what_it_costs() {
        assert_eq!(way(checks(0, 10)), Way::None);
        assert_eq!(way(checks(1, 10)), Way::PerCustomer);
        assert_eq!(way(checks(2, 10)), Way::UserList);
        assert_eq!(way(checks(500, 500)), Way::UserList);
        assert_eq!(way(checks(5, 100_000)), Way::PerCustomer);
        assert_eq!(way(checks(101, 100_000)), Way::PerCustomer);
        assert_eq!(way(checks(102, 100_000)), Way::UserList);
    }
}
