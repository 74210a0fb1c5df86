//! Users by CRM id and by e-mail: the by-ext-id lookup's answer ([`Lookup`]), and the
//! organization's user list read as a stream into a [`Directory`] by e-mail.
//!
//! The list (`GET .../users`) is one bare JSON array with no documented pagination: for a
//! large organization it may hold 100k users, far over the bound every other body is read
//! with. It is parsed element by element as the bytes arrive ([`ArraySplitter`]): only the
//! current element is buffered (bounded like any body), and of each user only the id, the
//! lower-cased e-mail and the CRM id are kept.

use std::collections::{HashMap, HashSet};

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
}

/// The organization's users by lower-cased e-mail, or the ids of those with heat pumps.
#[derive(Debug, Default)]
pub struct Directory {
    keep: Keep,
    by_email: HashMap<String, Vec<Listed>>,
    owners: HashSet<Uuid>,
    /// Users listed.
    pub users: usize,
}

impl Directory {
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
        let mut reader = DirectoryReader::default();
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
}
