//! Reading a lease as the scripts store it (see `lua/lease.lua`).

/// `token \n attempts \n record`: a lease taken before the token was kept apart from the record
/// (see `lua/lease.lua`).
pub(super) fn split_lease(value: &str) -> Option<(&str, u32, &str)> {
    let mut parts = value.splitn(3, '\n');
    let token = parts.next()?;
    let attempts = parts.next()?.parse().ok()?;
    Some((token, attempts, parts.next()?))
}

/// A lease's token, attempts and record, from its `inflight` value and its `leased` record
/// (`lua/lease.lua`'s `read_lease`).
pub(super) fn read_lease(value: &str, leased: Option<&str>) -> Option<(String, u32, String)> {
    if let Some((token, attempts, record)) = split_lease(value) {
        return Some((token.to_owned(), attempts, record.to_owned()));
    }
    let record = leased?;
    let started = u32::from(!value.starts_with(crate::driver::PREFETCHED));
    let attempts = count_field(record, "attempts").saturating_add(started);
    Some((value.to_owned(), attempts, record.to_owned()))
}

/// A record's first `"name": digits` field, read the way the scripts read it (Lua's
/// `"name"%s*:%s*(%d+)`), so that the worker and Redis agree; 0 when there is none or it does
/// not fit.
pub(super) fn count_field(record: &str, name: &str) -> u32 {
    let key = format!("\"{name}\"");
    let mut rest = record;
    while let Some(at) = rest.find(&key) {
        rest = &rest[at + key.len()..];
        let Some(value) = rest.trim_start().strip_prefix(':') else {
            continue;
        };
        let value = value.trim_start();
        let digits = value.len() - value.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            return value[..digits].parse().unwrap_or(0);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_like_the_scripts_read_them() {
        let record = r#"{"id": "q:1", "payload": "{\"attempts\": 9}", "attempts": 2, "stalls":3}"#;
        assert_eq!(
            count_field(record, "attempts"),
            2,
            "the payload's own key is escaped"
        );
        assert_eq!(count_field(record, "stalls"), 3);
        assert_eq!(
            count_field(r#"{"attempts": null, "x": {"attempts": 4}}"#, "attempts"),
            4
        );
        assert_eq!(
            count_field(r#"{"attempts": 4294967296}"#, "attempts"),
            0,
            "too big"
        );
        assert_eq!(count_field("not a record", "attempts"), 0);
    }

    #[test]
    fn both_forms_of_a_lease_are_read() {
        let record = r#"{"id": "q:1", "payload": "{}", "attempts": 1}"#;
        let old = format!("7\n3\n{record}");
        assert_eq!(read_lease(&old, None), Some(("7".into(), 3, record.into())));
        assert_eq!(
            read_lease("8", Some(record)),
            Some(("8".into(), 2, record.into()))
        );
        assert_eq!(
            read_lease("p8", Some(record)),
            Some(("p8".into(), 1, record.into()))
        );
        assert_eq!(read_lease("8", None), None, "a token without its record");
    }
}
