//! Users by CRM id and by e-mail: the by-ext-id lookup's answer ([`Lookup`]), and the
//! organization's user list read as a stream into a [`Directory`] by e-mail.
//!
//! The list (`GET .../users`) is one bare JSON array with no documented pagination: for a
//! large organization it may hold 100k users, far over the bound every other body is read
//! with. It is parsed element by element as the bytes arrive (`ArraySplitter`): only the
//! current element is buffered (bounded like any body), and of each user only what the
//! caller asked for ([`Keep`]) is kept: the id, lower-cased e-mail and CRM id (adoption by
//! e-mail), the ids of heat-pump owners (`links`), or a 64-bit hash of each CRM id (`run
//! --create-users`: 8 bytes a user, so 100k users stay a few MB).
//!
//! Which way is cheaper, one list or a request per customer, is decided by counting
//! ([`Way::choose`]), the same for `links` and `run`.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::MAX_BODY_BYTES;

/// What a by-ext-id lookup answered.
#[derive(Debug)]
pub enum Lookup {
    /// The user with that CRM id (the JSON object).
    Found(Map<String, Value>),
    /// No user has that CRM id (404 with a JSON body).
    NotFound,
}

/// A user of the organization as the list shows it: what adoption by e-mail needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The Podero user.
    pub id: Uuid,
    /// Its CRM id; `None` when empty or absent.
    pub external_user_id: Option<String>,
}

/// What a reading of the user list keeps of each user: the list may hold 100k users, so
/// a reading keeps only what its caller needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// E-mail and CRM id of every user (adoption by e-mail).
    #[default]
    Emails,
    /// Only the ids of users with at least one heat pump (`links`): memory grows with the
    /// customers who connected, not with the organization.
    HeatPumpOwners,
    /// Only a hash of each CRM id (`run --create-users`): which CRM ids the list may show.
    CrmIds,
    /// Both [`Keep::Emails`] and [`Keep::CrmIds`] (`--create-users --adopt-existing`: one
    /// list serves both).
    EmailsAndCrmIds,
}

impl Keep {
    fn emails(self) -> bool {
        matches!(self, Keep::Emails | Keep::EmailsAndCrmIds)
    }

    fn crm_ids(self) -> bool {
        matches!(self, Keep::CrmIds | Keep::EmailsAndCrmIds)
    }
}

/// Users the list may show per request it replaces: a list of 1,000 users is taken to cost
/// about one extra request (a few hundred KB).
pub const USERS_PER_REQUEST: u64 = 1000;

/// How a run asked Podero about many customers (in the `--json` summaries): one user list,
/// or a request per customer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Way {
    /// No customer needed asking (or a dry run, which sends nothing).
    #[default]
    None,
    /// One user list; per-customer requests only where the list cannot answer.
    UserList,
    /// A request per customer: fewer customers than one user list costs.
    PerCustomer,
    /// A request per customer, because the user list failed.
    PerCustomerAfterListFailed,
}

impl Way {
    /// The cheaper way to ask about `customers` customers, each costing one request, in an
    /// organization of at least `known_users` users (what the checkpoint knows): the list
    /// when they outnumber 1 + known users / [`USERS_PER_REQUEST`].
    pub fn choose(customers: u64, known_users: u64) -> Way {
        match customers {
            0 => Way::None,
            n if n > 1 + known_users / USERS_PER_REQUEST => Way::UserList,
            _ => Way::PerCustomer,
        }
    }
}

/// The organization's users by lower-cased e-mail, the ids of those with heat pumps, or
/// the hashes of their CRM ids.
#[derive(Debug, Default)]
pub struct Directory {
    keep: Keep,
    by_email: HashMap<String, Vec<Listed>>,
    owners: HashSet<Uuid>,
    crm_ids: HashSet<u64>,
    /// Users listed.
    pub users: usize,
}

/// The hash a CRM id is kept as. A collision only makes a CRM id look listed (it is then
/// looked up, as without the list), never the other way round. Case and surrounding spaces
/// are ignored for the same reason: whether Podero's lookup tells `c-1` from `C-1 ` is not
/// documented, so a CRM id the list shows in any such spelling is looked up.
fn crm_hash(crm: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    crm.trim().to_lowercase().hash(&mut hasher);
    hasher.finish()
}

impl Directory {
    /// Whether the list may show a user with CRM id `crm` (its hash is there: that user,
    /// several, or a collision); `None` when this reading did not keep CRM ids.
    pub fn may_show_crm_id(&self, crm: &str) -> Option<bool> {
        self.keep
            .crm_ids()
            .then(|| self.crm_ids.contains(&crm_hash(crm)))
    }

    /// Whether the list showed `user` with at least one heat pump (`num_heat_pumps` > 0).
    /// A user the list did not show has none.
    pub fn has_heat_pumps(&self, user: Uuid) -> bool {
        self.owners.contains(&user)
    }

    /// The users whose e-mail is `email`, compared case-insensitively.
    pub fn with_email(&self, email: &str) -> &[Listed] {
        self.by_email
            .get(&email.to_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    fn add(&mut self, entry: Entry) -> Result<(), String> {
        self.users += 1;
        if self.keep.crm_ids()
            && let Some(crm) = entry.external_user_id.as_deref().filter(|c| !c.is_empty())
        {
            self.crm_ids.insert(crm_hash(crm));
        }
        if self.keep == Keep::HeatPumpOwners {
            // Without the count the list cannot tell who connected: the caller falls back
            // to asking per customer.
            let count = entry.num_heat_pumps.ok_or_else(|| {
                "the user list does not show num_heat_pumps for every user".to_owned()
            })?;
            if count > 0 {
                self.owners.insert(entry.id);
            }
            return Ok(());
        }
        if !self.keep.emails() {
            return Ok(());
        }
        let Some(email) = entry.email.filter(|e| !e.is_empty()) else {
            return Ok(());
        };
        let listed = Listed {
            id: entry.id,
            external_user_id: entry.external_user_id.filter(|id| !id.is_empty()),
        };
        self.by_email
            .entry(email.to_lowercase())
            .or_default()
            .push(listed);
        Ok(())
    }
}

#[derive(Deserialize)]
struct Entry {
    id: Uuid,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    external_user_id: Option<String>,
    #[serde(default)]
    num_heat_pumps: Option<u64>,
}

/// Reads the user list as it streams in: one element at a time into the [`Directory`].
#[derive(Debug, Default)]
pub(crate) struct DirectoryReader {
    splitter: ArraySplitter,
    directory: Directory,
}

impl DirectoryReader {
    /// A reader keeping `keep` of each user.
    pub(crate) fn keeping(keep: Keep) -> Self {
        let mut reader = DirectoryReader::default();
        reader.directory.keep = keep;
        reader
    }

    /// Starts over (a retried request sends the body again).
    pub(crate) fn reset(&mut self) {
        *self = DirectoryReader::keeping(self.directory.keep);
    }

    /// Feeds the next bytes of the body.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let directory = &mut self.directory;
        self.splitter.feed(chunk, &mut |element| {
            let entry: Entry = serde_json::from_slice(element)
                .map_err(|_| "an element of the user list is not a user with an id".to_owned())?;
            directory.add(entry)
        })
    }

    /// The directory, once the whole array was read.
    pub(crate) fn finish(&mut self) -> Result<Directory, String> {
        if !self.splitter.closed {
            return Err("the user list ended before its closing bracket".into());
        }
        Ok(std::mem::take(&mut self.directory))
    }
}

/// Splits a JSON array arriving in chunks into its elements' bytes (strings and nesting
/// honoured), so each element can be parsed alone.
#[derive(Debug, Default)]
pub(crate) struct ArraySplitter {
    opened: bool,
    closed: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    element: Vec<u8>,
}

type Each<'a> = dyn FnMut(&[u8]) -> Result<(), String> + 'a;

impl ArraySplitter {
    /// Feeds bytes; `each` gets every complete element.
    pub(crate) fn feed(&mut self, chunk: &[u8], each: &mut Each<'_>) -> Result<(), String> {
        for &byte in chunk {
            self.byte(byte, each)?;
        }
        Ok(())
    }

    fn byte(&mut self, byte: u8, each: &mut Each<'_>) -> Result<(), String> {
        if self.closed {
            return match byte {
                b if b.is_ascii_whitespace() => Ok(()),
                _ => Err("the user list has data after its closing bracket".into()),
            };
        }
        if !self.opened {
            return match byte {
                b'[' => {
                    self.opened = true;
                    Ok(())
                }
                b if b.is_ascii_whitespace() => Ok(()),
                _ => Err("the user list is not a JSON array".into()),
            };
        }
        if self.in_string {
            self.in_string = self.escaped || byte != b'"';
            self.escaped = !self.escaped && byte == b'\\';
            return self.push(byte);
        }
        match byte {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth > 0 => self.depth -= 1,
            b']' => {
                self.closed = true;
                return self.emit(each);
            }
            b',' if self.depth == 0 => return self.emit(each),
            _ => {}
        }
        self.push(byte)
    }

    fn push(&mut self, byte: u8) -> Result<(), String> {
        if self.element.len() >= MAX_BODY_BYTES {
            return Err(format!(
                "a user in the list is larger than {MAX_BODY_BYTES} bytes"
            ));
        }
        self.element.push(byte);
        Ok(())
    }

    fn emit(&mut self, each: &mut Each<'_>) -> Result<(), String> {
        let element = std::mem::take(&mut self.element);
        if element.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        each(&element)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&[u8]]) -> Result<Directory, String> {
        read_keeping(Keep::Emails, chunks)
    }

    fn read_keeping(keep: Keep, chunks: &[&[u8]]) -> Result<Directory, String> {
        let mut reader = DirectoryReader::keeping(keep);
        for chunk in chunks {
            reader.feed(chunk)?;
        }
        reader.finish()
    }

    const A: &str = "00000000-0000-4000-8000-00000000000a";
    const B: &str = "00000000-0000-4000-8000-00000000000b";

    #[test]
    fn the_user_list_is_read_element_by_element_across_any_chunking() {
        let body = format!(
            r#" [ {{"id":"{A}","email":"Ann@Example.com","external_user_id":"","n":{{"x":[1,"]"]}}}},
               {{"id":"{B}","email":"bob@example.com","external_user_id":"C-\"2\""}} ] "#
        );
        for split in 0..body.len() {
            let (head, tail) = body.as_bytes().split_at(split);
            let directory = read(&[head, tail]).expect("parses");
            assert_eq!(directory.users, 2);
            let ann = directory.with_email("ann@EXAMPLE.com");
            assert_eq!(ann.len(), 1);
            assert_eq!(ann[0].external_user_id, None, "empty is no CRM id");
            let bob = directory.with_email("bob@example.com");
            assert_eq!(bob[0].external_user_id.as_deref(), Some("C-\"2\""));
        }
    }

    #[test]
    fn a_truncated_or_foreign_list_is_an_error() {
        assert!(read(&[format!(r#"[{{"id":"{A}"}}"#).as_bytes()]).is_err());
        assert!(read(&[b"{\"detail\":\"x\"}"]).is_err());
        assert!(read(&[b"[{\"no\":\"id\"}]"]).is_err());
        assert_eq!(read(&[b"[]"]).expect("empty list").users, 0);
    }

    #[test]
    fn a_crm_id_reading_keeps_hashes_only_and_never_misses_a_listed_crm_id() {
        let body = format!(
            r#"[{{"id":"{A}","email":"a@x.de","external_user_id":"C-1"}},
                {{"id":"{B}","email":"b@x.de","external_user_id":"C-1"}},
                {{"id":"{A}","external_user_id":""}}]"#
        );
        let crm = read_keeping(Keep::CrmIds, &[body.as_bytes()]).expect("parses");
        assert_eq!(crm.users, 3);
        assert_eq!(crm.may_show_crm_id("C-1"), Some(true), "twice is shown");
        assert_eq!(crm.may_show_crm_id("C-2"), Some(false));
        assert_eq!(
            crm.may_show_crm_id(" c-1"),
            Some(true),
            "any spelling is looked up"
        );
        assert_eq!(crm.may_show_crm_id(""), Some(false), "empty is no CRM id");
        assert!(crm.with_email("a@x.de").is_empty(), "no e-mails kept");
        let both = read_keeping(Keep::EmailsAndCrmIds, &[body.as_bytes()]).expect("parses");
        assert_eq!(both.may_show_crm_id("C-1"), Some(true));
        assert_eq!(both.with_email("a@x.de").len(), 1);
        let emails = read(&[body.as_bytes()]).expect("parses");
        assert_eq!(emails.may_show_crm_id("C-1"), None, "not kept: not known");
    }

    #[test]
    fn the_list_is_chosen_when_the_customers_outnumber_what_it_costs() {
        assert_eq!(Way::choose(0, 10), Way::None);
        assert_eq!(Way::choose(1, 10), Way::PerCustomer);
        assert_eq!(Way::choose(2, 10), Way::UserList);
        assert_eq!(Way::choose(500, 500), Way::UserList);
        assert_eq!(Way::choose(5, 100_000), Way::PerCustomer);
        assert_eq!(Way::choose(101, 100_000), Way::PerCustomer);
        assert_eq!(Way::choose(102, 100_000), Way::UserList);
    }
}
