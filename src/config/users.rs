//! Lowering of `users:` and the users file it names (problems located in that file).

use schemars::JsonSchema;
use serde::Deserialize;

use std::path::Path;

use super::{did_you_mean, lenient, problem, Diagnostic, Problem};
use crate::auth::passwords::is_argon2_hash;
use crate::auth::users::{FileUser, UserSettings};
use crate::policy::Roles;

/// `users:`: the users file and who may manage users.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsers {
    pub file: Option<String>,
    pub admin_role: String,
}

impl Default for RawUsers {
    fn default() -> Self {
        RawUsers { file: None, admin_role: "admin".into() }
    }
}

/// One entry of the users file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFileUser {
    pub id: String,
    pub email: String,
    pub role: String,
    pub password_hash: String,
}

/// The users file: `users: [ ... ]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawUsersFile {
    #[serde(default)]
    pub users: Vec<serde_yaml::Value>,
}

pub(super) fn lower_users(
    u: &RawUsers,
    source: &Path,
    roles: &Roles,
    p: &mut Vec<Problem>,
    other_files: &mut Vec<Diagnostic>,
) -> Option<UserSettings> {
    if roles.level(&u.admin_role).is_none() && roles.names().next().is_some() {
        problem(p, "users.admin_role", format!("unknown role `{}`{}", u.admin_role, did_you_mean(&u.admin_role, roles.names())));
    }
    let file_users = match &u.file {
        None => Vec::new(),
        Some(file) => {
            let path = source.parent().unwrap_or(Path::new(".")).join(file);
            match load_users_file(&path, roles) {
                Ok(users) => users,
                Err(mut diagnostics) => {
                    if diagnostics.is_empty() {
                        problem(p, "users.file", "cannot read the users file");
                    }
                    other_files.append(&mut diagnostics);
                    Vec::new()
                }
            }
        }
    };
    Some(UserSettings { file_users, admin_role: u.admin_role.clone() })
}

/// Reads and checks the users file; problems are located in that file.
pub(super) fn load_users_file(path: &Path, roles: &Roles) -> Result<Vec<FileUser>, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.display().to_string(),
            line: 1,
            col: 1,
            path: String::new(),
            message: format!("cannot read the users file: {e}"),
        }]
    })?;
    let value = super::parse_yaml(&text, path).map_err(|d| vec![d])?;
    let mut p = Vec::new();
    let file: Option<RawUsersFile> = if value.is_null() { Some(RawUsersFile::default()) } else { lenient::deserialize(value, "", &mut p) };
    let mut users: Vec<FileUser> = Vec::new();
    for (i, entry) in file.map(|f| f.users).unwrap_or_default().into_iter().enumerate() {
        let at = format!("users[{i}]");
        let Some(u) = lenient::deserialize::<RawFileUser>(entry, &at, &mut p) else { continue };
        if roles.level(&u.role).is_none() {
            problem(&mut p, &format!("{at}.role"), format!("unknown role `{}`{}", u.role, did_you_mean(&u.role, roles.names())));
        }
        if !is_argon2_hash(&u.password_hash) {
            // Never repeat the hash.
            problem(&mut p, &format!("{at}.password_hash"), "not an argon2 PHC string (make one with `portcullis hash-password`)");
        }
        if !u.email.contains('@') {
            problem(&mut p, &format!("{at}.email"), "not an email address");
        }
        if users.iter().any(|o| o.id == u.id) {
            problem(&mut p, &format!("{at}.id"), format!("user id `{}` appears twice", u.id));
        }
        if users.iter().any(|o| o.email.eq_ignore_ascii_case(&u.email)) {
            problem(&mut p, &format!("{at}.email"), "this email appears twice");
        }
        users.push(FileUser { id: u.id, email: u.email, role: u.role, password_hash: u.password_hash });
    }
    if p.is_empty() {
        Ok(users)
    } else {
        Err(super::locate(&text, path, p))
    }
}
