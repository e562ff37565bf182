//! The registered-user directory: a CSV file with the header row
//! `email,user_id,external_id,org_id` and, optionally, a fifth column
//! `groups` (`;`-separated group names), looked up by the normalised email.

use std::collections::HashMap;
use std::path::Path;

use ferrygate_core::AccountHasher;
use serde::Deserialize;

/// One registered user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct User {
    pub email: String,
    pub user_id: String,
    pub external_id: String,
    pub org_id: String,
    /// `;`-separated group names (the optional `groups` column).
    #[serde(default)]
    pub groups: String,
}

impl User {
    /// The user's groups.
    pub fn groups(&self) -> Vec<String> {
        self.groups.split(';').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect()
    }
}

/// Users by normalised email.
#[derive(Debug, Default)]
pub struct Directory {
    users: HashMap<String, User>,
}

const HEADER: [&str; 4] = ["email", "user_id", "external_id", "org_id"];

/// Why the directory cannot be read: where, and what kind of problem (never
/// the file's content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DirectoryError(String);

impl DirectoryError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message, for checks in tests.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Directory {
    /// Reads the CSV at `path`; errors name the line.
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let file = std::fs::File::open(path)
            .map_err(|e| DirectoryError::new(format!("cannot read {}: {e}", path.display())))?;
        Self::read(file)
    }

    pub fn read(input: impl std::io::Read) -> Result<Self, DirectoryError> {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| DirectoryError::new(format!("line 1: {e}")))?
            .iter()
            .map(str::to_ascii_lowercase)
            .collect();
        let with_groups = header.len() == HEADER.len() + 1 && header.last().is_some_and(|h| h == "groups");
        if header[..header.len().min(HEADER.len())] != HEADER || (header.len() != HEADER.len() && !with_groups) {
            // What the file holds is never quoted: `users` may name the wrong file, a secret one.
            return Err(DirectoryError::new(format!(
                "line 1: the header row must be {} (and optionally groups; the file's content is not shown)",
                HEADER.join(",")
            )));
        }
        let mut users = HashMap::new();
        for row in reader.deserialize::<User>() {
            let user = row.map_err(|e| match e.position() {
                Some(p) => DirectoryError::new(format!("line {}: {}", p.line(), e.kind_message())),
                None => DirectoryError::new(e.kind_message()),
            })?;
            if user.email.is_empty() {
                return Err(DirectoryError::new("a row has an empty email"));
            }
            users.insert(AccountHasher::normalise(&user.email), user);
        }
        Ok(Self { users })
    }

    pub fn get(&self, email: &str) -> Option<&User> {
        self.users.get(&AccountHasher::normalise(email))
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

trait KindMessage {
    fn kind_message(&self) -> String;
}

impl KindMessage for csv::Error {
    /// The error without csv's own position prefix (we print the line ourselves).
    fn kind_message(&self) -> String {
        match self.kind() {
            csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                format!("{len} fields where the header has {expected_len}")
            }
            csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                Some(n) => format!("field {} cannot be read", n + 1),
                None => "a field cannot be read".to_owned(),
            },
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
            _ => self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_trimmed_and_case_insensitively() {
        let dir = Directory::read(
            "email,user_id,external_id,org_id\nAlice@Corp.example,1,ext-1,7\n\"bob, jr@corp.example\",2,\"ext,2\",8\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(dir.len(), 2);
        assert_eq!(dir.get("  alice@corp.EXAMPLE ").map(|u| u.user_id.as_str()), Some("1"));
        assert_eq!(dir.get("bob, jr@corp.example").map(|u| u.external_id.as_str()), Some("ext,2"));
        assert!(dir.get("carol@corp.example").is_none());
    }

    #[test]
    fn an_optional_groups_column_gives_the_users_groups() {
        let dir = Directory::read(
            "email,user_id,external_id,org_id,groups\nalice@x,1,,7,admins; staff\nbob@x,2,,7,\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(dir.get("alice@x").unwrap().groups(), vec!["admins", "staff"]);
        assert!(dir.get("bob@x").unwrap().groups().is_empty());
        assert!(Directory::read("email,user_id,external_id,org_id,colour\n".as_bytes()).is_err());
    }

    #[test]
    fn a_malformed_file_names_the_line() {
        let err = Directory::read("email,user_id,external_id,org_id\na@x,1,e,7\nb@x,2\n".as_bytes()).unwrap_err();
        assert!(err.as_str().starts_with("line 3:"), "{err}");
        let err = Directory::read("mail,id\n".as_bytes()).unwrap_err();
        assert!(err.as_str().starts_with("line 1:"), "{err}");
        // A secret file named by mistake: its first line is never quoted.
        let err = Directory::read("hunter2-the-secret\n".as_bytes()).unwrap_err();
        assert!(!err.as_str().contains("hunter2"), "{err}");
    }
}
