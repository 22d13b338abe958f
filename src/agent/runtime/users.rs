//! Who a container's process runs as, decided as the kubelet and containerd's CRI decide
//! it together:
//! - the kubelet takes `runAsUser` (container over pod), else the uid of the image's
//!   `User` when its user part is numeric (its group part is dropped), else the image's
//!   user name, else uid 0;
//! - a uid without `runAsGroup` gets its group from the image's `/etc/passwd` (0 when it
//!   has no entry); a user name must be in `/etc/passwd` ("no users found");
//! - the supplementary groups are the primary group, the groups `/etc/group` lists the
//!   user in (unless `supplementalGroupsPolicy: Strict`), `supplementalGroups` and
//!   `fsGroup`, sorted and without repeats.

use thiserror::Error;

/// One line of an image's `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One line of an image's `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The users and groups an image's root filesystem names; `None` for a file the image
/// does not have.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserDb {
    pub passwd: Option<Vec<PasswdEntry>>,
    pub group: Option<Vec<GroupEntry>>,
}

/// What the pod asks for (its container's effective security context).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRequest {
    /// `runAsUser` (container over pod).
    pub run_as_user: Option<u32>,
    /// `runAsGroup` (container over pod).
    pub run_as_group: Option<u32>,
    /// The pod's `fsGroup` and `supplementalGroups`.
    pub supplemental_groups: Vec<u32>,
    /// `supplementalGroupsPolicy: Strict`: the image's `/etc/group` adds nothing.
    pub strict_groups: bool,
}

/// The process's user as the runtime spec carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    /// containerd's words for a user name the image's `/etc/passwd` lacks.
    #[error("no users found")]
    NoUser,
}

/// The user the kubelet takes from an image's `User` (CRI image status): the uid when the
/// user part is numeric, else the name; uid 0 when the image sets none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    Uid(u32),
    Name(String),
}

impl ImageUser {
    pub fn of(image_user: &str) -> ImageUser {
        let user = image_user.split(':').next().unwrap_or("");
        if user.is_empty() {
            return ImageUser::Uid(0);
        }
        match user.parse::<u32>() {
            Ok(uid) => ImageUser::Uid(uid),
            Err(_) => ImageUser::Name(user.to_string()),
        }
    }
}

/// Lines of `/etc/passwd` (`name:password:uid:gid:gecos:home:shell`); comments, blank
/// and malformed lines are skipped, as libcontainer's parser does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let parts: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: parts.first()?.to_string(),
                uid: parts.get(2)?.parse().ok()?,
                gid: parts.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// Lines of `/etc/group` (`name:password:gid:member,member`).
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let parts: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: parts.first()?.to_string(),
                gid: parts.get(2)?.parse().ok()?,
                members: parts
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

impl UserDb {
    fn by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.as_ref()?.iter().find(|u| u.uid == uid)
    }

    fn by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.as_ref()?.iter().find(|u| u.name == name)
    }

    /// The groups `/etc/group` lists `name` in, except the one named as the user
    /// (containerd's `WithAdditionalGIDs`).
    fn groups_of(&self, name: &str) -> Vec<u32> {
        self.group
            .iter()
            .flatten()
            .filter(|g| g.name != name && g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect()
    }
}

/// The process user for `request` in an image whose `User` is `image_user` and whose
/// root filesystem holds `db`.
pub fn resolve(
    request: &UserRequest,
    image_user: &str,
    db: &UserDb,
) -> Result<ProcessUser, UserError> {
    let user = match request.run_as_user {
        Some(uid) => ImageUser::Uid(uid),
        None => ImageUser::of(image_user),
    };
    let (uid, gid, name) = match &user {
        ImageUser::Uid(uid) => {
            let entry = db.by_uid(*uid);
            let gid = request
                .run_as_group
                .unwrap_or_else(|| entry.map_or(0, |e| e.gid));
            (*uid, gid, entry.map(|e| e.name.clone()))
        }
        ImageUser::Name(name) => {
            let entry = db.by_name(name).ok_or(UserError::NoUser)?;
            let gid = request.run_as_group.unwrap_or(entry.gid);
            (entry.uid, gid, Some(name.clone()))
        }
    };
    let mut additional = Vec::new();
    if !request.strict_groups {
        // containerd adds the primary group to the supplementary ones (CVE-2023-25173).
        additional.push(gid);
        if let Some(name) = &name {
            additional.extend(db.groups_of(name));
        }
    }
    additional.extend(&request.supplemental_groups);
    additional.sort_unstable();
    additional.dedup();
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPINE_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        bin:x:1:1:bin:/bin:/sbin/nologin\n\
        # a comment\n\
        \n\
        broken line\n\
        nobody:x:65534:65534:nobody:/:/sbin/nologin\n\
        node:x:1000:1000::/home/node:/bin/sh\n";
    const ALPINE_GROUP: &str = "root:x:0:root\n\
        bin:x:1:root,bin,daemon\n\
        wheel:x:10:root,node\n\
        nogroup:x:65533:\n\
        node:x:1000:node\n\
        audio:x:18:node\n";

    fn alpine() -> UserDb {
        UserDb {
            passwd: Some(parse_passwd(ALPINE_PASSWD)),
            group: Some(parse_group(ALPINE_GROUP)),
        }
    }

    fn user(uid: u32, gid: u32, additional: &[u32]) -> ProcessUser {
        ProcessUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
        }
    }

    #[test]
    fn files_parse_as_libcontainer_reads_them() {
        let users = parse_passwd(ALPINE_PASSWD);
        assert_eq!(users.len(), 4, "comments, blank and broken lines skipped");
        assert_eq!(
            users[2],
            PasswdEntry {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534
            }
        );
        let groups = parse_group(ALPINE_GROUP);
        assert_eq!(groups[2].members, ["root", "node"]);
        assert!(groups[3].members.is_empty());
    }

    #[test]
    fn an_image_without_a_user_runs_as_root_with_roots_groups() {
        let got = resolve(&UserRequest::default(), "", &alpine()).unwrap();
        assert_eq!(
            got,
            user(0, 0, &[0, 1, 10]),
            "root's own group is not repeated"
        );
        let bare = resolve(&UserRequest::default(), "", &UserDb::default()).unwrap();
        assert_eq!(bare, user(0, 0, &[0]));
    }

    #[test]
    fn an_image_user_name_is_looked_up_and_must_exist() {
        let got = resolve(&UserRequest::default(), "node", &alpine()).unwrap();
        assert_eq!(got, user(1000, 1000, &[10, 18, 1000]));
        // The group part of the image's User is dropped by the kubelet's image status.
        let got = resolve(&UserRequest::default(), "nobody:nogroup", &alpine()).unwrap();
        assert_eq!(got, user(65534, 65534, &[65534]));
        assert_eq!(
            resolve(&UserRequest::default(), "postgres", &alpine()),
            Err(UserError::NoUser)
        );
        assert_eq!(
            resolve(&UserRequest::default(), "node", &UserDb::default()),
            Err(UserError::NoUser)
        );
    }

    #[test]
    fn a_uid_takes_its_group_from_passwd_or_zero() {
        let got = resolve(&UserRequest::default(), "1000:5", &alpine()).unwrap();
        assert_eq!(
            got,
            user(1000, 1000, &[10, 18, 1000]),
            "image group dropped"
        );
        let got = resolve(&UserRequest::default(), "4242", &alpine()).unwrap();
        assert_eq!(got, user(4242, 0, &[0]));
        let request = UserRequest {
            run_as_user: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            resolve(&request, "nobody", &alpine()).unwrap(),
            user(1000, 1000, &[10, 18, 1000]),
            "runAsUser wins over the image's user"
        );
    }

    #[test]
    fn run_as_group_supplemental_groups_and_fs_group_join() {
        let request = UserRequest {
            run_as_user: Some(1001),
            run_as_group: Some(3000),
            supplemental_groups: vec![2000, 4000, 2000],
            strict_groups: false,
        };
        assert_eq!(
            resolve(&request, "", &alpine()).unwrap(),
            user(1001, 3000, &[2000, 3000, 4000])
        );
        let request = UserRequest {
            run_as_group: Some(7),
            ..Default::default()
        };
        assert_eq!(
            resolve(&request, "node", &alpine()).unwrap(),
            user(1000, 7, &[7, 10, 18]),
            "a name with runAsGroup keeps the name's uid"
        );
    }

    #[test]
    fn strict_policy_leaves_the_images_groups_out() {
        let request = UserRequest {
            supplemental_groups: vec![2000],
            strict_groups: true,
            ..Default::default()
        };
        assert_eq!(
            resolve(&request, "node", &alpine()).unwrap(),
            user(1000, 1000, &[2000])
        );
    }

    #[test]
    fn image_users_as_the_kubelet_reads_them() {
        assert_eq!(ImageUser::of(""), ImageUser::Uid(0));
        assert_eq!(ImageUser::of("101:101"), ImageUser::Uid(101));
        assert_eq!(ImageUser::of("nginx"), ImageUser::Name("nginx".into()));
        assert_eq!(ImageUser::of("nobody:1"), ImageUser::Name("nobody".into()));
    }
}
