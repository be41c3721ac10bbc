//! Who is running the engine, for journals and gate decisions: `$USER`,
//! else `$LOGNAME`, else the name of the process's user id in
//! `/etc/passwd` or, failing that, the system's name service. Containers and cron often set neither variable, and a
//! timeline that says `?` about who acted is no use in a post-incident
//! review.

/// The current user's name, if it can be found.
pub fn current_user() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.is_empty())
        .or_else(user_from_passwd)
}

fn user_from_passwd() -> Option<String> {
    let uid = nix::unistd::getuid();
    // `/etc/passwd` first: reading it is cheaper than the name service at
    // every start. A user from a directory (LDAP, SSSD), common on
    // bastions, is only known to the name service.
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| name_of_uid(&passwd, &uid.to_string()))
        .or_else(|| {
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|user| user.name)
                .filter(|name| !name.is_empty())
        })
}

/// The name of `uid` in the text of an `/etc/passwd` file.
fn name_of_uid(passwd: &str, uid: &str) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid = fields.nth(1)?;
        (entry_uid == uid && !name.is_empty()).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::name_of_uid;

    #[test]
    fn finds_the_name_of_a_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nsre:x:1000:1000::/home/sre:/bin/sh\n";
        assert_eq!(name_of_uid(passwd, "1000").as_deref(), Some("sre"));
        assert_eq!(name_of_uid(passwd, "0").as_deref(), Some("root"));
        assert_eq!(name_of_uid(passwd, "42"), None);
        assert_eq!(name_of_uid("garbage", "0"), None);
    }
}
