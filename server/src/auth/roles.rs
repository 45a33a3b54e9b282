//! The one place that answers "may this user do this?".

use ft_protocol::Role;

/// Something a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a file that will not replace another (keep-both), or resume one.
    Upload,
    /// Send a file that replaces one of the same name.
    Overwrite,
    /// Create a folder.
    MakeDir,
    /// See what is stored.
    List,
    /// Download a stored file.
    Get,
    /// Delete a stored file.
    Delete,
    /// See the server's version, limits and the namespace's totals.
    Info,
    /// Offer files to other online users (relay).
    Offer,
}

impl Action {
    /// How the action is named in a refusal.
    pub fn describe(self) -> &'static str {
        match self {
            Action::Upload => "upload files",
            Action::Overwrite => "overwrite files",
            Action::MakeDir => "create folders",
            Action::List => "list files",
            Action::Get => "download files",
            Action::Delete => "delete files",
            Action::Info => "see server information",
            Action::Offer => "send files to other users",
        }
    }
}

/// Whether `role` allows `action` (within the namespaces the role reaches: an admin's are
/// all, everyone else's is their own).
pub fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Write => true,
        // A drop box: new files in, nothing out, nothing replaced or removed. Sending to
        // another user is sending files in, so it may offer too.
        Role::Upload => matches!(action, Upload | MakeDir | Info | Offer),
        Role::Read => matches!(action, List | Get | Info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_exactly_its_actions() {
        use Action::*;
        let all = [Upload, Overwrite, MakeDir, List, Get, Delete, Info, Offer];
        let allowed = |role| -> Vec<Action> {
            all.into_iter()
                .filter(|action| allows(role, *action))
                .collect()
        };
        assert_eq!(allowed(Role::Admin), all);
        assert_eq!(allowed(Role::Write), all);
        assert_eq!(allowed(Role::Upload), [Upload, MakeDir, Info, Offer]);
        assert_eq!(allowed(Role::Read), [List, Get, Info]);
    }
}
