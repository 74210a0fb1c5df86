//! One user list instead of a lookup per new customer (`run --create-users`).
//!
//! A customer the checkpoint has no record of is looked up by CRM id before it is created
//! (`customer`): on the first run of a migration that is one 404 per customer, a third of
//! its requests. The organization's user list (`GET .../users`) shows every user's CRM id,
//! so one list at run start answers "nobody has it" for all of them: a new customer whose
//! CRM id the list does not show is created without the lookup. The reading keeps a hash
//! of each CRM id (`Keep::CrmIds`), so its memory does not grow with the users' objects.
//!
//! What the list does not change: a CRM id the list shows (once, several times, or a hash
//! collision) is looked up as before (the lookup gives the user to update, and answers a
//! CRM id held by two users with the 5xx that makes it `unresolved`); a customer the
//! checkpoint has a record of (`creating`, `unknown`, `failed`...) is always looked up, so
//! an unknown create is verified by CRM id before any re-send.
//!
//! The list is a snapshot taken at run start: a user given the CRM id by someone else after
//! it is read is not seen, where a lookup just before the create would see it (see
//! docs/correctness.md, "New customers and the user list").
//!
//! The choice is made by counting ([`Way::choose`]), as for `links`; a failed list
//! (timeout, 5xx, too large) falls back to the lookups, and the run goes on.

use std::sync::Arc;

use super::config::Settings;
use crate::api::{Client, Keep, Way};
use crate::checkpoint::customers::NewCustomers;

/// Reads the user list when it is the cheaper way to learn which new customers exist, into
/// the run's shared directory (where `customer` and `--adopt-existing` find it); returns
/// the way taken. `-v` says which and why.
pub async fn read(client: &Client, settings: &Settings, count: NewCustomers) -> Way {
    let NewCustomers {
        customers,
        known_users,
    } = count;
    match Way::choose(customers, known_users) {
        Way::UserList => {}
        Way::PerCustomer => {
            tracing::info!(
                customers,
                known_users,
                "looking up each new customer by CRM id: fewer of them than one user list costs"
            );
            return Way::PerCustomer;
        }
        other => return other,
    }
    // With --adopt-existing the same list serves a taken e-mail: one list per run.
    let keep = match settings.adopt_existing {
        true => Keep::EmailsAndCrmIds,
        false => Keep::CrmIds,
    };
    match client.list_users(keep).await {
        Ok(list) => {
            tracing::info!(
                customers,
                listed = list.users,
                "one user list instead of a lookup per new customer: those whose CRM id it \
                 does not show are created without one"
            );
            // Unset until now: nothing has run yet.
            let _ = settings.directory.set(Ok(Arc::new(list)));
            Way::UserList
        }
        Err(error) => {
            // Not kept: --adopt-existing may still read the list for a taken e-mail.
            tracing::warn!(
                "listing the organization's users failed ({error}); looking up each new \
                 customer by CRM id instead"
            );
            Way::PerCustomerAfterListFailed
        }
    }
}
