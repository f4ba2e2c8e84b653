//! The rules: what each role allows, decided in one place.

use std::collections::BTreeMap;

use radport_catalog::{Role, ADMIN_PROJECT};

/// What a request wants to do. Actions on a project's data name the project they concern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// See a project's series, datasets, thumbnails, reports, frames and files (`viewer`).
    View,
    /// Upload into a project, import into it, send instances to it (`contributor`).
    Contribute,
    /// Manage a project's members and DICOM rules, delete or move its series (`manager`).
    Manage,
    /// Create and delete projects, manage accounts, read the audit trail, see project
    /// `admin` (global administrators only).
    Administer,
}

impl Action {
    /// The least project role that allows the action; `None`: administrators only.
    pub fn least_role(self) -> Option<Role> {
        match self {
            Action::View => Some(Role::Viewer),
            Action::Contribute => Some(Role::Contributor),
            Action::Manage => Some(Role::Manager),
            Action::Administer => None,
        }
    }
}

/// Who is asking, with everything the rules need to know about them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The account's name; `None` for an anonymous caller.
    pub user: Option<String>,
    /// Global administrator (through a token: only if the token is unrestricted).
    pub admin: bool,
    /// Role per project, by canonical project name in lower case.
    roles: BTreeMap<String, Role>,
}

impl Principal {
    /// Nobody: may do nothing.
    pub fn anonymous() -> Principal {
        Principal {
            user: None,
            admin: false,
            roles: BTreeMap::new(),
        }
    }

    /// Anyone, when access control is off ([`crate::Mode::Open`]): may do everything, as an
    /// administrator may.
    pub fn everyone() -> Principal {
        Principal {
            user: None,
            admin: true,
            roles: BTreeMap::new(),
        }
    }

    /// A signed-in user with their memberships (`(project, role)`).
    pub fn user(
        name: &str,
        admin: bool,
        memberships: impl IntoIterator<Item = (String, Role)>,
    ) -> Principal {
        Principal {
            user: Some(name.to_string()),
            admin,
            roles: memberships
                .into_iter()
                .map(|(p, r)| (p.to_ascii_lowercase(), r))
                .collect(),
        }
    }

    /// The same principal as a token made with `role` (at most) and `projects` (only) acts:
    /// never more than the user. A restricted token of an administrator acts as a member of
    /// its projects with its role, not as an administrator.
    pub fn restricted(mut self, role: Option<Role>, projects: Option<&[String]>) -> Principal {
        if role.is_none() && projects.is_none() {
            return self;
        }
        let cap = role.unwrap_or(Role::Manager);
        if self.admin {
            // Every project an administrator names, at the token's role.
            self.admin = false;
            self.roles = match projects {
                Some(ps) => ps.iter().map(|p| (p.to_ascii_lowercase(), cap)).collect(),
                None => BTreeMap::new(),
            };
            return self;
        }
        self.roles = self
            .roles
            .into_iter()
            .filter(|(p, _)| projects.is_none_or(|ps| ps.iter().any(|q| q.eq_ignore_ascii_case(p))))
            .map(|(p, r)| (p, r.min(cap)))
            .collect();
        self
    }

    /// The caller's role in `project` (administrators: manager of every project).
    pub fn role_in(&self, project: &str) -> Option<Role> {
        if self.admin {
            return Some(Role::Manager);
        }
        if project.eq_ignore_ascii_case(ADMIN_PROJECT) {
            return None;
        }
        self.roles.get(&project.to_ascii_lowercase()).copied()
    }

    /// Whether the caller may do `action` on `project` (`None`: an action on no project,
    /// which only administrators may do unless it is [`Action::View`] of their own lists).
    pub fn may(&self, action: Action, project: Option<&str>) -> bool {
        if self.admin {
            return true;
        }
        match (action.least_role(), project) {
            (None, _) => false,
            (Some(least), Some(project)) => self.role_in(project).is_some_and(|r| r >= least),
            // Lists across projects: a signed-in user sees those of their projects.
            (Some(Role::Viewer), None) => self.user.is_some(),
            (Some(_), None) => false,
        }
    }

    /// Whether the caller may contribute to at least one project (upload files).
    pub fn contributes_somewhere(&self) -> bool {
        self.admin || self.roles.values().any(|r| *r >= Role::Contributor)
    }

    /// The caller's projects and roles (empty for administrators, who have every project).
    pub fn roles(&self) -> impl Iterator<Item = (&str, Role)> {
        self.roles.iter().map(|(p, r)| (p.as_str(), *r))
    }

    /// The projects whose data the caller may see; `None`: every project (administrators).
    pub fn visible_projects(&self) -> Option<Vec<String>> {
        (!self.admin).then(|| self.roles.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal::user(
            "alice",
            false,
            [
                ("Lung".to_string(), Role::Manager),
                ("brain".to_string(), Role::Viewer),
            ],
        )
    }

    #[test]
    fn roles_allow_what_their_table_says() {
        let a = alice();
        for (action, lung, brain, other) in [
            (Action::View, true, true, false),
            (Action::Contribute, true, false, false),
            (Action::Manage, true, false, false),
            (Action::Administer, false, false, false),
        ] {
            assert_eq!(a.may(action, Some("lung")), lung, "{action:?} lung");
            assert_eq!(a.may(action, Some("BRAIN")), brain, "{action:?} brain");
            assert_eq!(a.may(action, Some("liver")), other, "{action:?} liver");
        }
        // Project `admin` is for administrators, whatever a membership row says.
        let b = Principal::user("b", false, [("admin".to_string(), Role::Manager)]);
        assert!(!b.may(Action::View, Some("admin")));
        let root = Principal::user("root", true, []);
        for action in [
            Action::View,
            Action::Contribute,
            Action::Manage,
            Action::Administer,
        ] {
            assert!(root.may(action, Some("admin")) && root.may(action, None));
        }
        assert_eq!(root.visible_projects(), None);
        assert_eq!(
            a.visible_projects(),
            Some(vec!["brain".into(), "lung".into()])
        );
        let nobody = Principal::anonymous();
        for action in [
            Action::View,
            Action::Contribute,
            Action::Manage,
            Action::Administer,
        ] {
            assert!(!nobody.may(action, Some("lung")) && !nobody.may(action, None));
        }
        assert!(a.may(Action::View, None) && !a.may(Action::Contribute, None));
    }

    #[test]
    fn tokens_never_act_above_their_user() {
        let viewer_token = alice().restricted(Some(Role::Viewer), None);
        assert!(viewer_token.may(Action::View, Some("lung")));
        assert!(!viewer_token.may(Action::Contribute, Some("lung")));
        let lung_only = alice().restricted(None, Some(&["LUNG".to_string()]));
        assert!(lung_only.may(Action::Manage, Some("lung")));
        assert!(!lung_only.may(Action::View, Some("brain")));
        // A manager token of a viewer is a viewer token.
        let capped = alice().restricted(Some(Role::Manager), Some(&["brain".to_string()]));
        assert_eq!(capped.role_in("brain"), Some(Role::Viewer));
        // A project the user is not in stays out of reach.
        let outside = alice().restricted(None, Some(&["liver".to_string()]));
        assert!(!outside.may(Action::View, Some("liver")));
        // An administrator's restricted token is not an administrator.
        let root = Principal::user("root", true, []);
        let scoped = root
            .clone()
            .restricted(Some(Role::Contributor), Some(&["lung".into()]));
        assert!(!scoped.admin && !scoped.may(Action::Administer, None));
        assert!(scoped.may(Action::Contribute, Some("lung")));
        assert!(!scoped.may(Action::Manage, Some("lung")));
        assert!(!scoped.may(Action::View, Some("brain")));
        assert_eq!(root.clone().restricted(None, None), root);
    }
}
